//! Unpacking one layer (a tar stream) into its own directory, in the form overlayfs reads as a
//! lower layer (as Docker's overlay2 keeps them): a whiteout `.wh.NAME` becomes a character
//! device 0:0 named `NAME`, an opaque directory (`.wh..wh..opq`) gets the xattr
//! `trusted.overlay.opaque=y`.
//!
//! Nothing in the archive is trusted:
//! - an entry with a `..` component or an absolute path is refused;
//! - every parent directory is resolved with `openat2(RESOLVE_BENEATH)`, so an entry that goes
//!   through a symlink leading outside the layer (absolute, or `..` past the top) is refused
//!   (EXDEV), and the final component is created with `*at` calls that never follow it;
//! - hard links must point inside the layer, resolved the same way;
//! - device nodes are skipped (counted in [`Unpacked::skipped_devices`]), as rootless tools do:
//!   an image has no business creating devices on the host's disk (a container's `/dev` is its
//!   own tmpfs anyway), and a character device 0:0 would otherwise act as a whiteout;
//! - sizes are charged to a [`Budget`] before anything is written: an entry that declares more
//!   than the free space (less a reserve), or too many entries, ends the import (a tar bomb).
use std::{
    ffi::OsStr,
    io::{Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, OpenHow, ResolveFlag, openat2},
    sys::stat::{Mode, SFlag, mkdirat, mknodat},
    unistd::{Gid, Uid},
};

use crate::error::{Error, Result};

/// What may still be written by one import.
#[derive(Clone, Debug)]
pub struct Budget {
    bytes: u64,
    entries: u64,
    dir: PathBuf,
}

/// Kept free on the store's filesystem whatever an import declares.
pub const RESERVE: u64 = 256 << 20;
/// At most this many entries per import (an absurd count is a bomb of another kind).
pub const MAX_ENTRIES: u64 = 4_000_000;
/// Bytes charged per entry besides its data (its inode and directory entry).
const ENTRY_COST: u64 = 512;

impl Budget {
    /// The free space of the filesystem of `dir` (less [`RESERVE`]).
    pub fn for_dir(dir: &Path) -> Result<Budget> {
        let st = nix::sys::statvfs::statvfs(dir).map_err(|e| Error::io("statvfs", dir, e.into()))?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        Ok(Budget {
            bytes: free.saturating_sub(RESERVE),
            entries: MAX_ENTRIES,
            dir: dir.to_path_buf(),
        })
    }

    /// A budget of `bytes` (tests).
    pub fn fixed(bytes: u64, dir: &Path) -> Budget {
        Budget {
            bytes,
            entries: MAX_ENTRIES,
            dir: dir.to_path_buf(),
        }
    }

    /// Bytes that may still be written.
    pub fn remaining(&self) -> u64 {
        self.bytes
    }

    /// Charges an entry of `size` declared bytes, refusing it before it is written.
    pub fn charge(&mut self, what: &str, size: u64) -> Result<()> {
        let need = size.saturating_add(ENTRY_COST);
        if self.entries == 0 {
            return Err(Error::user(format!(
                "refusing the archive: more than {MAX_ENTRIES} entries (a tar bomb?)"
            )));
        }
        if need > self.bytes {
            return Err(Error::user(format!(
                "refusing the archive: {what} declares {size} bytes, more than the {} bytes that may still be written to {} (its free space less {} MiB): a tar bomb?",
                self.bytes,
                self.dir.display(),
                RESERVE >> 20
            )));
        }
        self.bytes -= need;
        self.entries -= 1;
        Ok(())
    }
}

/// The result of unpacking a layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Bytes of regular files (Docker's layer size).
    pub size: u64,
    pub entries: u64,
    pub skipped_devices: u64,
}

/// What an entry's name means in a layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// An ordinary entry.
    Plain,
    /// `.wh.NAME`: NAME is deleted from the layers below.
    Whiteout(&'a OsStr),
    /// `.wh..wh..opq`: the directory hides the layers below.
    Opaque,
    /// Other `.wh..wh.*` names (aufs bookkeeping): ignored.
    Meta,
}

/// Classifies an entry's file name.
pub fn classify(name: &OsStr) -> Kind<'_> {
    let b = name.as_bytes();
    if b == b".wh..wh..opq" {
        Kind::Opaque
    } else if b.starts_with(b".wh..wh.") {
        Kind::Meta
    } else if let Some(rest) = b.strip_prefix(b".wh.") {
        Kind::Whiteout(OsStr::from_bytes(rest))
    } else {
        Kind::Plain
    }
}

/// An entry's path, checked: relative, no `..`; `None` for the layer's root itself.
pub fn clean_path(p: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::user(format!(
                    "refusing the archive: entry {:?} has a '..' component (path traversal)",
                    p.display().to_string()
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::user(format!(
                    "refusing the archive: entry {:?} is an absolute path",
                    p.display().to_string()
                )));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Unpacks into one directory; every path resolved beneath it.
struct Layer<'a> {
    root: OwnedFd,
    dir: &'a Path,
    budget: &'a mut Budget,
    /// Directories whose owner, mode and times are set at the end (later entries change them).
    dirs: Vec<(PathBuf, u32, u32, u32, u64)>,
    out: Unpacked,
}

fn own(fd: i32) -> OwnedFd {
    // SAFETY: a fresh descriptor returned by the kernel, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Layer<'_> {
    fn shown(&self, rel: &Path) -> String {
        format!("{:?}", rel.display().to_string())
    }

    fn err(&self, op: &'static str, rel: &Path, e: Errno) -> Error {
        match e {
            Errno::EXDEV | Errno::ELOOP => Error::user(format!(
                "refusing the archive: entry {} goes through a symlink that leads outside the layer",
                self.shown(rel)
            )),
            _ => Error::io(op, self.dir.join(rel), e.into()),
        }
    }

    /// Opens `rel` (a directory) beneath the layer.
    fn open_dir(&self, rel: &Path, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
        let p = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.root.as_raw_fd(), p, how).map(own)
    }

    /// The parent directory of `rel`, created (0755, root) where missing.
    fn parent(&self, rel: &Path) -> Result<OwnedFd> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        match self.open_dir(parent, OFlag::O_PATH) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.err("opening", parent, e)),
        }
        let mut cur = self
            .open_dir(Path::new(""), OFlag::O_PATH)
            .map_err(|e| self.err("opening", parent, e))?;
        let mut prefix = PathBuf::new();
        for c in parent.components() {
            prefix.push(c);
            match self.open_dir(&prefix, OFlag::O_PATH) {
                Ok(fd) => cur = fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(Some(cur.as_raw_fd()), c.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.err("creating", &prefix, e)),
                    }
                    cur = self
                        .open_dir(&prefix, OFlag::O_PATH)
                        .map_err(|e| self.err("opening", &prefix, e))?;
                }
                Err(e) => return Err(self.err("opening", &prefix, e)),
            }
        }
        Ok(cur)
    }

    /// Removes what is at `name` in `dir` (an earlier entry of this layer), unless it is a
    /// directory and `keep_dir`. Returns whether a directory was kept.
    fn clear(&self, dir: &OwnedFd, name: &OsStr, rel: &Path, keep_dir: bool) -> Result<bool> {
        use nix::unistd::{UnlinkatFlags, unlinkat};
        let st = match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(self.err("reading", rel, e)),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(true);
        }
        let flag = if is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(Some(dir.as_raw_fd()), name, flag) {
            Ok(()) => Ok(false),
            Err(Errno::ENOTEMPTY) => Err(Error::user(format!(
                "refusing the archive: entry {} replaces a non-empty directory of the same layer",
                self.shown(rel)
            ))),
            Err(e) => Err(self.err("removing", rel, e)),
        }
    }

    fn chown_at(&self, dir: &OwnedFd, name: &OsStr, rel: &Path, uid: u64, gid: u64) -> Result<()> {
        nix::unistd::fchownat(
            Some(dir.as_raw_fd()),
            name,
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err("chown", rel, e))
    }

    fn times_at(&self, dir: &OwnedFd, name: &OsStr, rel: &Path, mtime: u64) -> Result<()> {
        let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        nix::sys::stat::utimensat(
            Some(dir.as_raw_fd()),
            name,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.err("setting the times of", rel, e))
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<()> {
        use tar::EntryType as T;
        let raw = e
            .path()
            .map_err(|x| Error::user(format!("refusing the archive: an entry's name: {x}")))?;
        let Some(rel) = clean_path(&raw)? else {
            return Ok(());
        };
        let kind = e.header().entry_type();
        if matches!(kind, T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink) {
            return Ok(());
        }
        // The file's real size (PAX and sparse entries included).
        let size = e.size();
        self.budget.charge(
            &format!("entry {:?}", rel.display().to_string()),
            if kind.is_file() { size } else { 0 },
        )?;
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        let mtime = h.mtime().unwrap_or(0);
        self.out.entries += 1;
        let name = rel.file_name().expect("a cleaned path has a file name").to_os_string();
        match classify(&name) {
            Kind::Meta => return Ok(()),
            Kind::Opaque => {
                let parent = rel.parent().unwrap_or(Path::new(""));
                let pfd = self.parent(&rel)?;
                drop(pfd);
                let fd = self
                    .open_dir(parent, OFlag::O_RDONLY | OFlag::O_NOFOLLOW)
                    .map_err(|x| self.err("opening", parent, x))?;
                return set_opaque(&fd).map_err(|x| self.err("marking opaque", parent, x));
            }
            Kind::Whiteout(hidden) => {
                if hidden.is_empty() {
                    return Ok(());
                }
                let target = rel.with_file_name(hidden);
                let dir = self.parent(&target)?;
                self.clear(&dir, hidden, &target, false)?;
                return mknodat(
                    Some(dir.as_raw_fd()),
                    hidden,
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    nix::sys::stat::makedev(0, 0),
                )
                .map_err(|x| self.err("creating the whiteout", &target, x));
            }
            Kind::Plain => {}
        }
        if matches!(kind, T::Char | T::Block) {
            self.out.skipped_devices += 1;
            return Ok(());
        }
        let dir = self.parent(&rel)?;
        match kind {
            T::Directory => {
                if !self.clear(&dir, &name, &rel, true)? {
                    mkdirat(Some(dir.as_raw_fd()), name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|x| self.err("creating", &rel, x))?;
                }
                self.dirs.push((rel, mode, uid as u32, gid as u32, mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                self.clear(&dir, &name, &rel, false)?;
                let fd = nix::fcntl::openat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|x| self.err("creating", &rel, x))?;
                let mut f = std::fs::File::from(own(fd));
                let n = copy_exact(&mut e, &mut f).map_err(|x| Error::io("writing", self.dir.join(&rel), x))?;
                if n != size {
                    return Err(Error::user(format!(
                        "invalid layer: entry {} is truncated ({n} of {size} bytes)",
                        self.shown(&rel)
                    )));
                }
                self.out.size += n;
                nix::unistd::fchown(
                    f.as_raw_fd(),
                    Some(Uid::from_raw(uid as u32)),
                    Some(Gid::from_raw(gid as u32)),
                )
                .map_err(|x| self.err("chown", &rel, x))?;
                // After chown, which clears set-user-ID bits.
                nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode))
                    .map_err(|x| self.err("chmod", &rel, x))?;
                let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
                nix::sys::stat::futimens(f.as_raw_fd(), &t, &t)
                    .map_err(|x| self.err("setting the times of", &rel, x))?;
            }
            T::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|x| Error::user(format!("refusing the archive: a link's target: {x}")))?
                    .ok_or_else(|| Error::user(format!("invalid layer: symlink {} has no target", self.shown(&rel))))?
                    .into_owned();
                self.clear(&dir, &name, &rel, false)?;
                nix::unistd::symlinkat(&target, Some(dir.as_raw_fd()), name.as_os_str())
                    .map_err(|x| self.err("creating the symlink", &rel, x))?;
                self.chown_at(&dir, &name, &rel, uid, gid)?;
                self.times_at(&dir, &name, &rel, mtime)?;
            }
            T::Link => {
                let target = e
                    .link_name()
                    .map_err(|x| Error::user(format!("refusing the archive: a link's target: {x}")))?
                    .ok_or_else(|| Error::user(format!("invalid layer: hard link {} has no target", self.shown(&rel))))?
                    .into_owned();
                let Some(trel) = clean_path(&target)? else {
                    return Err(Error::user(format!(
                        "invalid layer: hard link {} to the layer's root",
                        self.shown(&rel)
                    )));
                };
                let tdir = self.parent_existing(&trel)?;
                let tname = trel.file_name().expect("a cleaned path has a file name");
                self.clear(&dir, &name, &rel, false)?;
                nix::unistd::linkat(
                    Some(tdir.as_raw_fd()),
                    tname,
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|x| match x {
                    Errno::ENOENT => Error::user(format!(
                        "invalid layer: hard link {} to {}, which is not in the layer",
                        self.shown(&rel),
                        self.shown(&trel)
                    )),
                    x => self.err("linking", &rel, x),
                })?;
            }
            T::Fifo => {
                self.clear(&dir, &name, &rel, false)?;
                mknodat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(mode),
                    0,
                )
                .map_err(|x| self.err("creating", &rel, x))?;
                self.chown_at(&dir, &name, &rel, uid, gid)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The parent of `rel`, which must exist (a hard link's target).
    fn parent_existing(&self, rel: &Path) -> Result<OwnedFd> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        self.open_dir(parent, OFlag::O_PATH).map_err(|e| match e {
            Errno::ENOENT | Errno::ENOTDIR => Error::user(format!(
                "invalid layer: hard link target {} is not in the layer",
                self.shown(rel)
            )),
            e => self.err("opening", parent, e),
        })
    }

    /// Sets the directories' metadata, deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mode, uid, gid, mtime) in dirs.into_iter().rev() {
            let fd = match self.open_dir(&rel, OFlag::O_RDONLY | OFlag::O_NOFOLLOW) {
                Ok(fd) => fd,
                // Replaced by a later entry (a whiteout or a file).
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(self.err("opening", &rel, e)),
            };
            nix::unistd::fchown(fd.as_raw_fd(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|x| self.err("chown", &rel, x))?;
            nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(|x| self.err("chmod", &rel, x))?;
            let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
            nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t).map_err(|x| self.err("setting the times of", &rel, x))?;
        }
        Ok(())
    }
}

/// Copies an entry's data, returning how much there was.
fn copy_exact(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<u64> {
    std::io::copy(r, w)
}

fn set_opaque(fd: &OwnedFd) -> std::result::Result<(), Errno> {
    let name = c"trusted.overlay.opaque";
    // SAFETY: a valid descriptor, a NUL-terminated name and a 1-byte value.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if r == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Unpacks the tar stream `r` into the (existing, empty) directory `dir`.
pub fn unpack(r: impl Read, dir: &Path, budget: &mut Budget) -> Result<Unpacked> {
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening", dir, e.into()))?;
    let mut l = Layer {
        root: own(fd),
        dir,
        budget,
        dirs: Vec::new(),
        out: Unpacked::default(),
    };
    let mut ar = tar::Archive::new(r);
    let entries = ar.entries().map_err(|e| Error::user(format!("invalid layer: {e}")))?;
    for e in entries {
        let e = e.map_err(|e| Error::user(format!("invalid layer (a truncated or corrupt tar?): {e}")))?;
        l.entry(e)?;
    }
    l.finish_dirs()?;
    Ok(l.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Kind::Opaque);
        assert_eq!(classify(OsStr::new(".wh..wh.plnk")), Kind::Meta);
        assert_eq!(classify(OsStr::new(".wh.foo")), Kind::Whiteout(OsStr::new("foo")));
        assert_eq!(classify(OsStr::new("foo.wh.")), Kind::Plain);
        assert_eq!(classify(OsStr::new("wh.foo")), Kind::Plain);
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(clean_path(Path::new("./a/./b")).unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(clean_path(Path::new("./")).unwrap(), None);
        assert!(clean_path(Path::new("../../etc/x")).is_err());
        assert!(clean_path(Path::new("a/../../x")).is_err());
        assert!(clean_path(Path::new("/etc/x")).is_err());
    }

    fn tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, ty, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(if *ty == tar::EntryType::Directory { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if !link.is_empty() {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "linkrt-unpack-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Needs root (chown, mknod, trusted xattrs), as `cargo xtask test` runs it.
    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        use std::os::unix::fs::FileTypeExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: run it with `cargo xtask test`"
        );
        let d = tmp();
        let t = tar(&[
            ("a/", tar::EntryType::Directory, b"", ""),
            ("a/.wh.gone", tar::EntryType::Regular, b"", ""),
            ("a/.wh..wh..opq", tar::EntryType::Regular, b"", ""),
            ("a/new", tar::EntryType::Regular, b"new", ""),
            ("a/dup", tar::EntryType::Regular, b"first", ""),
            ("a/dup", tar::EntryType::Regular, b"second", ""),
            ("a/hl", tar::EntryType::Link, b"", "a/new"),
            ("dev/null", tar::EntryType::Char, b"", ""),
            ("deep/er/file", tar::EntryType::Regular, b"x", ""),
        ]);
        let u = unpack(&t[..], &d, &mut Budget::fixed(1 << 30, &d)).unwrap();
        assert_eq!(u.skipped_devices, 1);
        assert_eq!(u.size, 3 + 5 + 6 + 1);
        let gone = std::fs::symlink_metadata(d.join("a/gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(std::os::unix::fs::MetadataExt::rdev(&gone), 0);
        let mut v = [0u8; 4];
        let path = std::ffi::CString::new(d.join("a").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C strings and buffer.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                v.as_mut_ptr().cast(),
                4,
            )
        };
        assert_eq!(&v[..n as usize], b"y");
        assert_eq!(std::fs::read(d.join("a/dup")).unwrap(), b"second");
        assert_eq!(std::fs::read(d.join("a/hl")).unwrap(), b"new");
        assert!(!d.join("dev/null").exists());
        assert!(!d.join("a/.wh.gone").exists() && !d.join("a/.wh..wh..opq").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn escapes_are_refused() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: run it with `cargo xtask test`"
        );
        let outside = tmp();
        let o = outside.display().to_string();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar(&[("../x", tar::EntryType::Regular, b"x", "")]), "'..' component"),
            (tar(&[("/x", tar::EntryType::Regular, b"x", "")]), "absolute path"),
            (
                tar(&[
                    ("l", tar::EntryType::Symlink, b"", &o),
                    ("l/x", tar::EntryType::Regular, b"x", ""),
                ]),
                "leads outside the layer",
            ),
            (
                tar(&[
                    ("l", tar::EntryType::Symlink, b"", "../../../../../../.."),
                    ("l/x", tar::EntryType::Regular, b"x", ""),
                ]),
                "leads outside the layer",
            ),
            (
                tar(&[("h", tar::EntryType::Link, b"", "../../etc/passwd")]),
                "'..' component",
            ),
            (tar(&[("h", tar::EntryType::Link, b"", "nothere")]), "not in the layer"),
        ];
        for (t, msg) in cases {
            let d = tmp();
            let e = unpack(&t[..], &d, &mut Budget::fixed(1 << 30, &d))
                .unwrap_err()
                .to_string();
            assert!(e.contains(msg), "{msg}: {e}");
            std::fs::remove_dir_all(&d).unwrap();
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn budget_refuses_bombs() {
        let mut b = Budget::fixed(10_000, Path::new("/x"));
        b.charge("a", 5000).unwrap();
        let e = b.charge("entry \"big\"", 1 << 50).unwrap_err().to_string();
        assert!(e.contains("tar bomb"), "{e}");
        b.charge("b", 3000).unwrap();
        assert!(b.charge("c", 3000).is_err());
    }
}
