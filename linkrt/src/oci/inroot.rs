//! Files that linkrt creates inside a root filesystem it does not control (`--rootfs`): every
//! path is resolved with `openat2(RESOLVE_IN_ROOT)`, so a symlink such as `etc -> /etc` in the
//! image resolves to the image's own `/etc`, never the host's (the CVE-2021-30465 class).
use std::{
    ffi::OsStr,
    io::{Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2},
    sys::stat::{Mode, mkdirat},
};

use crate::error::{Error, Result};

enum Walk {
    Done(OwnedFd),
    Restart(PathBuf),
}

/// A directory treated as `/` for every path resolved through it.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn io(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(op, path, e.into())
}

/// `rel` without its leading `/` and without `.`/`..` tricks being trusted (the kernel
/// confines them anyway); empty means the root itself.
fn relative(rel: &str) -> PathBuf {
    Path::new(rel)
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("opening", path, e))?;
        // SAFETY: a fresh descriptor we own.
        Ok(Root {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    fn resolve(&self, rel: &Path, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
        let p = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = openat2(self.fd.as_raw_fd(), p, how)?;
        // SAFETY: a fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn shown(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates `rel` and its parents as directories (inside the root); returns the directory.
    /// A dangling symlink on the way is followed inside the root and its target created, as
    /// securejoin's `MkdirAll` does.
    pub fn mkdir_all(&self, rel: &str, mode: u32) -> Result<OwnedFd> {
        let mut todo = relative(rel);
        for _ in 0..40 {
            match self.mkdir_walk(&todo, mode)? {
                Walk::Done(fd) => return Ok(fd),
                Walk::Restart(p) => todo = p,
            }
        }
        Err(Error::sys(format!(
            "{}: too many levels of symbolic links",
            self.shown(&relative(rel)).display()
        )))
    }

    fn mkdir_walk(&self, rel: &Path, mode: u32) -> Result<Walk> {
        let mut prefix = PathBuf::new();
        let mut cur = self
            .resolve(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| io("opening", &self.path, e))?;
        let comps: Vec<Component> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            let parent = prefix.clone();
            prefix.push(c);
            match self.resolve(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => cur = fd,
                Err(Errno::ENOENT) => {
                    let name = c.as_os_str();
                    match mkdirat(Some(cur.as_raw_fd()), name, Mode::from_bits_truncate(mode)) {
                        Ok(()) => {}
                        Err(Errno::EEXIST) => {
                            // A dangling symlink: continue from its target, inside the root.
                            let t = nix::fcntl::readlinkat(Some(cur.as_raw_fd()), name)
                                .map_err(|e| io("reading the link", &self.shown(&prefix), e))?;
                            let t = Path::new(&t);
                            let mut next = if t.is_absolute() {
                                relative(&t.to_string_lossy())
                            } else {
                                parent.join(t)
                            };
                            for rest in &comps[i + 1..] {
                                next.push(rest);
                            }
                            return Ok(Walk::Restart(next));
                        }
                        Err(e) => return Err(io("creating directory", &self.shown(&prefix), e)),
                    }
                    cur = self
                        .resolve(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| io("opening", &self.shown(&prefix), e))?;
                }
                Err(e) => return Err(io("opening", &self.shown(&prefix), e)),
            }
        }
        Ok(Walk::Done(cur))
    }

    fn parent_and_name<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        let name = rel
            .file_name()
            .ok_or_else(|| Error::sys(format!("{}: not a file path", rel.display())))?;
        let parent = rel
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok((self.mkdir_all(&parent, 0o755)?, name))
    }

    /// Writes a new file `rel` (inside the root). With `only_if_missing`, an existing entry
    /// (of any type, a symlink included) is left alone; otherwise it is an error.
    pub fn create_file(&self, rel: &str, content: &[u8], mode: u32, only_if_missing: bool) -> Result<bool> {
        let rel = relative(rel);
        let (dir, name) = self.parent_and_name(&rel)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(Some(dir.as_raw_fd()), name, flags, Mode::from_bits_truncate(mode)) {
            Ok(fd) => {
                // SAFETY: a fresh descriptor we own.
                let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
                f.write_all(content)
                    .map_err(|e| Error::io("writing", self.shown(&rel), e))?;
                Ok(true)
            }
            Err(Errno::EEXIST) if only_if_missing => Ok(false),
            Err(e) => Err(io("creating", &self.shown(&rel), e)),
        }
    }

    /// Creates the symlink `rel` → `target` unless something is already there.
    pub fn symlink(&self, rel: &str, target: &str) -> Result<bool> {
        let rel = relative(rel);
        let (dir, name) = self.parent_and_name(&rel)?;
        match nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(io("creating symlink", &self.shown(&rel), e)),
        }
    }

    /// Reads the file `rel` (inside the root), at most `limit` bytes; `None` if it is missing.
    pub fn read_file(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let rel = relative(rel);
        match self.resolve(&rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
            Ok(fd) => {
                let f = std::fs::File::from(fd);
                let md = f.metadata().map_err(|e| Error::io("reading", self.shown(&rel), e))?;
                if !md.is_file() {
                    return Err(Error::user(format!(
                        "{}: not a regular file",
                        self.shown(&rel).display()
                    )));
                }
                let mut v = Vec::new();
                f.take(limit)
                    .read_to_end(&mut v)
                    .map_err(|e| Error::io("reading", self.shown(&rel), e))?;
                Ok(Some(v))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io("opening", &self.shown(&rel), e)),
        }
    }

    /// Whether `rel` exists inside the root (following symlinks inside it).
    pub fn exists(&self, rel: &str) -> bool {
        self.resolve(&relative(rel), OFlag::O_PATH).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "linkrt-inroot-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_never_leave_the_root() {
        let base = tmp();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // The image's etc points at a host directory, and a file points at a host file.
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../../outside", root.join("up")).unwrap();
        let r = Root::open(&root).unwrap();
        assert!(r.create_file("/etc/hosts", b"x", 0o644, false).unwrap());
        assert!(r.create_file("up/evil", b"x", 0o644, false).unwrap());
        r.mkdir_all("/etc/deep/er", 0o755).unwrap();
        assert!(r.symlink("/etc/link", "/etc/passwd").unwrap());
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing outside the root"
        );
        // What the symlinks meant inside the root.
        assert!(root.join(outside.strip_prefix("/").unwrap()).join("hosts").exists());
        assert!(root.join("outside/evil").exists());
        assert_eq!(r.read_file("/etc/hosts", 10).unwrap().unwrap(), b"x");
        assert!(r.read_file("/nope", 10).unwrap().is_none());
        assert!(!r.create_file("/etc/hosts", b"y", 0o644, true).unwrap(), "kept");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
