//! `BPF_MAP_UPDATE_BATCH` / `BPF_MAP_DELETE_BATCH` through the raw syscall on an aya map's fd
//! (aya 0.14 offers no batch operations), with the caller falling back to one call per entry
//! where the kernel has none (before 5.6, or a map type without them).
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::maps::MapData;

use super::features::{BatchAttr, sys_bpf};

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// What a batch call did.
#[derive(Debug, PartialEq, Eq)]
pub enum Batched {
    /// Done in the kernel: the number of batch syscalls it took.
    Done { calls: usize },
    /// The kernel (or this map type) has no batch operations: do it one entry at a time.
    Unsupported,
}

fn unsupported(e: &io::Error) -> bool {
    // EINVAL: an unknown command; ENOTSUPP (524) / EOPNOTSUPP: a map type without it.
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(524) | Some(libc::EOPNOTSUPP)
    )
}

/// Writes `keys[i] -> values[i]` (flags `BPF_ANY`) in one syscall.
pub fn update<K: aya::Pod, V: aya::Pod>(map: &MapData, keys: &[K], values: &[V]) -> io::Result<Batched> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    if keys.is_empty() {
        return Ok(Batched::Done { calls: 0 });
    }
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    match sys_bpf(BPF_MAP_UPDATE_BATCH, &mut attr) {
        Ok(_) => Ok(Batched::Done { calls: 1 }),
        // Nothing was written: the fallback may redo all of it.
        Err(e) if attr.count == 0 && unsupported(&e) => Ok(Batched::Unsupported),
        Err(e) => Err(e),
    }
}

/// Deletes `keys`; a key that is not there (an entry never written, or removed meanwhile) is
/// skipped, not an error. The kernel stops at the first missing key, so the batch goes on
/// after it.
pub fn delete<K: aya::Pod>(map: &MapData, keys: &[K]) -> io::Result<Batched> {
    let mut done = 0usize;
    let mut calls = 0usize;
    while done < keys.len() {
        let rest = &keys[done..];
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: rest.len() as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        calls += 1;
        match sys_bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(_) => return Ok(Batched::Done { calls }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => done += attr.count as usize + 1,
            Err(e) if calls == 1 && attr.count == 0 && unsupported(&e) => return Ok(Batched::Unsupported),
            Err(e) => return Err(e),
        }
    }
    Ok(Batched::Done { calls })
}
