//! Named network namespaces (`/run/netns/<name>`, where `ip netns` finds them too) without
//! `ip netns`: a dedicated thread unshares a new netns and bind-mounts its own
//! `/proc/thread-self/ns/net` onto the name. Work inside a netns also runs on a dedicated
//! thread that `setns`es; no thread that other code uses ever changes namespace.
use std::{
    fs,
    io::{self, ErrorKind},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    mount::{MntFlags, MsFlags},
    sched::CloneFlags,
    sys::statfs,
};

use crate::error::{Error, Result};

/// Where named network namespaces live (iproute2's `NETNS_RUN_DIR`).
pub const RUN_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// What is at a netns path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Absent,
    /// A network namespace is mounted there.
    Live,
    /// A file that is not a mounted namespace: the leftover of a creation that was killed
    /// between creating the file and mounting onto it.
    Stale,
}

/// What is at `path`. Only ENOENT means absent; any other failure is an error.
pub fn probe(path: &Path) -> Result<Found> {
    match statfs::statfs(path) {
        Ok(s) if s.filesystem_type() == statfs::NSFS_MAGIC => Ok(Found::Live),
        Ok(_) => Ok(Found::Stale),
        Err(Errno::ENOENT) => Ok(Found::Absent),
        Err(e) => Err(Error::io("examining the netns", path, e.into())),
    }
}

/// Opens a mounted netns (for `setns` or `IFLA_NET_NS_FD`).
pub fn open(path: &Path) -> Result<fs::File> {
    fs::File::open(path).map_err(|e| Error::io("opening the netns", path, e))
}

/// Creates the named netns at `path` (which must not exist) and returns it opened.
pub fn create(path: &Path) -> Result<fs::File> {
    let dir = path.parent().unwrap_or(Path::new(RUN_DIR));
    share_run_dir(dir)?;
    // O_EXCL: two creators of one name must not both believe they made it.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path)
        .map_err(|e| Error::io("creating the netns file", path, e))?;
    let mounted = run_on_thread(|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io("unsharing a network namespace for", path, e.into()))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::io("bind-mounting the new netns on", path, e.into()))
    })
    .and_then(|r| r);
    let opened = mounted.and_then(|()| open(path));
    match opened {
        Ok(f) => Ok(f),
        Err(e) => match remove(path) {
            Ok(()) => Err(e),
            Err(u) => Err(Error::Multiple(vec![e, u])),
        },
    }
}

/// Unmounts and removes the named netns at `path`; a missing one is not an error. The kernel
/// frees the namespace (and destroys its interfaces) once nothing else holds it.
pub fn remove(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a stale file); ENOENT: nothing there.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::io("unmounting the netns", path, e.into())),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing the netns file", path, e)),
    }
}

/// Runs `f` on a new thread that has joined the netns `ns`; the thread ends with `f`.
pub fn run_in<T: Send>(ns: &fs::File, what: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    run_on_thread(|| {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io("joining the netns", what, e.into()))
            .map(|()| f())
    })
    .and_then(|r| r)
}

fn run_on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("linkrt-netns".into())
            .spawn_scoped(s, f)
            .map_err(|e| Error::io("spawning a thread for", "a network namespace", e))?
            .join()
            .map_err(|_| Error::sys("the network namespace thread panicked"))
    })
}

/// Makes the netns directory a shared mount point, as `ip netns add` does.
///
/// Not needed for visibility: runc and `ip netns` open the path in this mount namespace.
/// It matters for freeing. A mount namespace created while a container's netns is mounted
/// (a container's, or any tool's `unshare -m`) gets its own copy of that mount, and the copy
/// keeps the netns, and with it the veth, alive after we unmount ours. With a shared
/// `/run/netns` such copies are peers or slaves, and our unmount propagates to them. Doing
/// what iproute2 does also keeps the directory as `ip netns` expects it.
fn share_run_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io("creating", dir, e))?;
    let make_shared = || {
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself once, then it can be made shared.
        Err(Errno::EINVAL) => {
            nix::mount::mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::io("bind-mounting onto itself", dir, e.into()))?;
            make_shared().map_err(|e| Error::io("making a shared mount of", dir, e.into()))
        }
        Err(e) => Err(Error::io("making a shared mount of", dir, io::Error::from(e))),
    }
}
