//! Root filesystems. A container sees its image and nothing else of the host:
//!
//! - An embedded image is a generated layer: a root with the host's top-level symlinks into
//!   `/usr` (`bin -> usr/bin` ...), an empty `/usr` where the host's `/usr` is mounted
//!   read-only under the image's own `/usr` files (an overlay whose writes go to the
//!   container), a generated `/etc` (passwd, group, shadow, nsswitch.conf, plus the files
//!   its definition lists, copied from the host's `/etc`), and the image's other files. Nothing
//!   from the host's `/root`, `/home`, `/var`, `/tmp`, `/run`, `/etc/shadow` or linkrt's state.
//! - An image of the store ([`crate::image::store`]): its unpacked layers are the overlay's
//!   lower directories, shared by every container of every image that has them (no copy).
//! - `--rootfs DIR` is the whole root.
//!
//! In every case the container's root is an overlay with an upper layer of its own (on tmpfs under
//! the run directory: it survives stop/start, not a reboot), mounted in the host's mount
//! namespace before the runtime starts, as containerd does. Files linkrt adds to a root it does
//! not control are created through [`super::inroot::Root`].
use std::{
    io::Write,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{inroot::Root, spec::UsrOverlay};
use crate::{
    config::Config,
    error::{Error, Result},
    image::{self, Image, Resolved, Root as ImageRoot},
};

/// Bump when the generated layout changes, so that cached layers are rebuilt.
const LAYER_FORMAT: &str = "linkrt-layer-v1";

/// Files of the host's `/etc` that every embedded image gets: what the dynamic loader, name
/// resolution and Debian's alternatives need. Nothing secret.
pub const BASE_ETC: &[&str] = &[
    "alternatives",
    "debian_version",
    "gai.conf",
    "host.conf",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "networks",
    "os-release",
    "protocols",
    "services",
    "ssl/certs",
];

/// Files of `/etc` an image may never copy from the host (secrets, or generated here).
pub const FORBIDDEN_ETC: &[&str] = &[
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "passwd",
    "passwd-",
    "group",
    "group-",
    "sudoers",
    "sudoers.d",
    "ssh",
    "ssl/private",
    "security",
    "machine-id",
    "hosts",
    "hostname",
    "resolv.conf",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";

const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
mail:x:8:
kmem:x:15:
dialout:x:20:
audio:x:29:
www-data:x:33:
staff:x:50:
users:x:100:
nogroup:x:65534:
";

const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";

/// The host's top-level directories that hold programs and libraries.
const TOP_DIRS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The root of a container, ready for the runtime.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The mounted overlay (the spec's `root.path`).
    pub rootfs: PathBuf,
    pub usr: Option<UsrOverlay>,
    /// Host top-level directories that are real directories (no merged `/usr`): bound
    /// read-only.
    pub host_dirs: Vec<PathBuf>,
}

fn io<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, p, e)
}

/// Where the container's overlay layers live.
pub fn overlay_dir(cfg: &Config, id: &str) -> PathBuf {
    cfg.run_root.join("overlay").join(id)
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The overlay base on a tmpfs (an upper layer may not live on an overlay itself, and the
/// writes of containers stay off the state disk).
fn overlay_base(cfg: &Config) -> Result<PathBuf> {
    let base = cfg.run_root.join("overlay");
    crate::state::create_private_dir(&base)?;
    let on_tmpfs = nix::sys::statfs::statfs(&base)
        .map(|s| s.filesystem_type().0 == TMPFS_MAGIC)
        .map_err(|e| Error::io("statfs", &base, e.into()))?;
    if !on_tmpfs {
        nix::mount::mount(
            Some("tmpfs"),
            &base,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(|e| Error::io("mounting tmpfs on", &base, e.into()))?;
    }
    Ok(base)
}

fn hash_file_meta(h: &mut Sha256, p: &Path) {
    h.update(p.as_os_str().as_encoded_bytes());
    if let Ok(md) = std::fs::symlink_metadata(p) {
        h.update(md.size().to_le_bytes());
        h.update(md.mtime().to_le_bytes());
        h.update(md.mtime_nsec().to_le_bytes());
        h.update(md.ino().to_le_bytes());
    }
}

/// The `/etc` entries an image copies from the host: the base list and its own.
fn etc_list(img: &Image) -> Vec<String> {
    let mut v: Vec<String> = BASE_ETC.iter().map(|s| s.to_string()).collect();
    v.extend(img.etc.iter().cloned());
    v.sort();
    v.dedup();
    v
}

fn layer_key(img: &Image) -> String {
    let mut h = Sha256::new();
    h.update(LAYER_FORMAT);
    h.update(img.source.as_bytes());
    for f in &img.files {
        if let Some(s) = &f.source {
            h.update(image::builtin::file_content(s).unwrap_or("").as_bytes());
        }
    }
    for e in etc_list(img) {
        hash_file_meta(&mut h, &Path::new("/etc").join(&e));
    }
    for d in TOP_DIRS {
        hash_file_meta(&mut h, &Path::new("/").join(d));
    }
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Copies `src` (a file, symlink or directory tree of the host's `/etc`) to `dst`, keeping
/// symlinks as they are (they point into the container's own tree).
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let md = match std::fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", src, e)),
    };
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let ft = md.file_type();
    if ft.is_symlink() {
        let t = std::fs::read_link(src).map_err(io("reading", src))?;
        std::os::unix::fs::symlink(t, dst).map_err(io("creating", dst))?;
    } else if ft.is_dir() {
        std::fs::create_dir_all(dst).map_err(io("creating", dst))?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777)).map_err(io("chmod", dst))?;
        for e in std::fs::read_dir(src).map_err(io("reading", src))? {
            let e = e.map_err(io("reading", src))?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else if ft.is_file() {
        std::fs::copy(src, dst).map_err(io("copying", src))?;
    }
    Ok(())
}

fn write(p: &Path, content: &str, mode: u32) -> Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let mut f = std::fs::File::create(p).map_err(io("creating", p))?;
    f.write_all(content.as_bytes()).map_err(io("writing", p))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", p))
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(p).map_err(io("creating", p))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", p))
}

/// Builds the layer of an embedded image in `dir` (`rootfs/` and `usr/`).
fn build_layer(img: &Image, dir: &Path) -> Result<()> {
    let root = dir.join("rootfs");
    let usr = dir.join("usr");
    for (d, mode) in [
        ("", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
        ("var/lib", 0o755),
        ("var/cache", 0o755),
        ("root", 0o700),
        ("home", 0o755),
        ("mnt", 0o755),
        ("media", 0o755),
        ("opt", 0o755),
        ("srv", 0o755),
        ("usr", 0o755),
    ] {
        mkdir(&root.join(d), mode)?;
    }
    mkdir(&usr, 0o755)?;
    for d in TOP_DIRS {
        let host = Path::new("/").join(d);
        match std::fs::read_link(&host) {
            Ok(t) => std::os::unix::fs::symlink(&t, root.join(d)).map_err(io("creating", &root.join(d)))?,
            Err(_) if host.is_dir() => mkdir(&root.join(d), 0o755)?,
            Err(_) => {}
        }
    }
    let etc = root.join("etc");
    for e in etc_list(img) {
        copy_tree(&Path::new("/etc").join(&e), &etc.join(&e))?;
    }
    let mut passwd = PASSWD.to_string();
    for l in &img.passwd {
        passwd.push_str(l);
        passwd.push('\n');
    }
    let mut group = GROUP.to_string();
    for l in &img.group {
        group.push_str(l);
        group.push('\n');
    }
    let shadow: String = passwd
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(|u| format!("{u}:*:20000:0:99999:7:::\n"))
        .collect();
    write(&etc.join("passwd"), &passwd, 0o644)?;
    write(&etc.join("group"), &group, 0o644)?;
    write(&etc.join("shadow"), &shadow, 0o640)?;
    write(&etc.join("nsswitch.conf"), NSSWITCH, 0o644)?;
    for name in ["hosts", "hostname", "resolv.conf"] {
        write(&etc.join(name), "", 0o644)?;
    }
    std::os::unix::fs::symlink("/proc/mounts", etc.join("mtab")).map_err(io("creating", &etc.join("mtab")))?;
    // The image's own directories and files; those under /usr go to the /usr layer.
    let place = |path: &str| -> PathBuf {
        let rel = path.trim_start_matches('/');
        match rel.strip_prefix("usr/") {
            Some(r) => usr.join(r),
            None => root.join(rel),
        }
    };
    for d in &img.dirs {
        mkdir(&place(d), 0o755)?;
    }
    for f in &img.files {
        let p = place(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        match (&f.source, &f.symlink) {
            (Some(s), _) => write(&p, image::builtin::file_content(s).unwrap_or(""), 0o755)?,
            (None, Some(t)) => std::os::unix::fs::symlink(t, &p).map_err(io("creating", &p))?,
            (None, None) => {}
        }
    }
    Ok(())
}

/// The layer of an embedded image, built once per definition and host `/etc` state.
pub fn image_layer(cfg: &Config, img: &Image) -> Result<PathBuf> {
    let layers = cfg.root.join("images").join("layers");
    let dir = layers.join(layer_key(img));
    if dir.join("rootfs").is_dir() {
        return Ok(dir);
    }
    crate::state::create_private_dir(&layers)?;
    let tmp = layers.join(format!(".tmp-{}-{}", std::process::id(), rand::random::<u32>()));
    let r = build_layer(img, &tmp).and_then(|()| {
        // The layer must be readable by the container's users (not only root).
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(io("chmod", &tmp))?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => Ok(()),
            // Another command built the same layer meanwhile.
            Err(_) if dir.join("rootfs").is_dir() => Ok(()),
            Err(e) => Err(Error::io("renaming", &tmp, e)),
        }
    });
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
    }
    r.map(|()| dir)
}

fn is_mounted(p: &Path) -> bool {
    let want = p.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(&want)))
        .unwrap_or(false)
}

/// The lower directories of an image of the store, top first, as overlayfs takes them.
fn store_lowers(cfg: &Config, layers: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if layers.is_empty() {
        // An image without layers (an empty import) is an empty root.
        let empty = image::store::dir(cfg).join("empty");
        crate::state::create_private_dir(&empty)?;
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).map_err(io("chmod", &empty))?;
        return Ok(vec![empty]);
    }
    for l in layers {
        if !l.is_dir() {
            return Err(Error::user(format!(
                "the image's layer {} is missing from the store: load the image again",
                l.display()
            )));
        }
    }
    Ok(layers.iter().rev().cloned().collect())
}

/// Mounts the container's root (an overlay of its image over its own upper layer) and makes
/// sure the files the runtime mounts over and the working directory exist inside it.
pub fn prepare(cfg: &Config, id: &str, img: &Resolved, user_rootfs: Option<&Path>, workdir: &str) -> Result<Prepared> {
    let base = overlay_base(cfg)?;
    let d = base.join(id);
    for sub in ["upper", "work", "merged", "usr-upper", "usr-work"] {
        crate::state::create_private_dir(&d.join(sub))?;
    }
    // The upper layers are the roots of `/` and `/usr` as the container sees them: 0755, like
    // any root (their host parent stays root-only).
    for sub in ["upper", "usr-upper"] {
        std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o755)).map_err(io("chmod", &d))?;
    }
    let (lower, usr, host_dirs) = match (user_rootfs, &img.root) {
        (Some(r), _) => (vec![r.to_path_buf()], None, Vec::new()),
        (None, ImageRoot::Layers(layers)) => (store_lowers(cfg, layers)?, None, Vec::new()),
        (None, ImageRoot::Builtin(b)) => {
            let layer = image_layer(cfg, b)?;
            let host_dirs = TOP_DIRS
                .iter()
                .map(|t| Path::new("/").join(t))
                .filter(|p| std::fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false))
                .collect();
            let usr = UsrOverlay {
                lower: vec![layer.join("usr"), PathBuf::from("/usr")],
                upper: d.join("usr-upper"),
                work: d.join("usr-work"),
            };
            (vec![layer.join("rootfs")], Some(usr), host_dirs)
        }
    };
    let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    if let Some(p) = lower.iter().find(|p| p.contains([':', ','])) {
        return Err(Error::user(format!(
            "{p}: a path with ':' or ',' cannot be an overlay layer"
        )));
    }
    let lower = lower.join(":");
    let merged = d.join("merged");
    if !is_mounted(&merged) {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower,
            d.join("upper").display(),
            d.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| match e {
            // The mount data is limited to a page.
            nix::errno::Errno::EINVAL if opts.len() >= 4000 => Error::user(format!(
                "the image has too many layers for one overlay mount ({} bytes of mount options)",
                opts.len()
            )),
            e => Error::io("mounting the container's root on", &merged, e.into()),
        })?;
    }
    let r = (|| {
        let root = Root::open(&merged)?;
        if user_rootfs.is_some() || img.builtin().is_none() {
            // A root linkrt does not control: everything it adds is resolved inside it.
            let (dirs, files) = match img.builtin() {
                Some(b) => (&b.dirs[..], &b.files[..]),
                None => (&[][..], &[][..]),
            };
            for dir in dirs {
                root.mkdir_all(dir, 0o755)?;
            }
            for f in files {
                match (&f.source, &f.symlink) {
                    (Some(s), _) => {
                        root.create_file(
                            &f.path,
                            image::builtin::file_content(s).unwrap_or("").as_bytes(),
                            0o755,
                            true,
                        )?;
                    }
                    (None, Some(t)) => {
                        root.symlink(&f.path, t)?;
                    }
                    (None, None) => {}
                }
            }
            for name in ["hosts", "hostname", "resolv.conf"] {
                root.create_file(&format!("/etc/{name}"), b"", 0o644, true)?;
            }
        }
        // Docker creates a missing working directory.
        root.mkdir_all(workdir, 0o755)?;
        Ok(())
    })();
    if let Err(e) = r {
        let _ = unmount(cfg, id);
        return Err(e);
    }
    Ok(Prepared {
        rootfs: merged,
        usr,
        host_dirs,
    })
}

/// Unmounts the container's root (its layers stay, for the next start).
pub fn unmount(cfg: &Config, id: &str) -> Result<()> {
    let merged = overlay_dir(cfg, id).join("merged");
    if !is_mounted(&merged) {
        return Ok(());
    }
    nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| Error::io("unmounting the container's root", &merged, e.into()))
}

/// Removes the container's root and layers.
pub fn remove(cfg: &Config, id: &str) -> Result<()> {
    unmount(cfg, id)?;
    let d = overlay_dir(cfg, id);
    match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", d, e)),
    }
}
