//! The content-addressed image store, under `<root>/images/`:
//!
//! - `blobs/sha256/<hex>`: manifests, configs and layer blobs as they came (verified on import);
//! - `diffs/<hex>`: each layer unpacked once, keyed by its diff ID (the digest of the
//!   uncompressed tar), shared by every image that has it; overlayfs lower directories;
//! - `db.json`: the images (ID = digest of the config, manifest, layers, tags), written
//!   atomically under the state's write lock;
//! - `tmp/<pid>-<n>/`: an import being staged. Nothing enters `blobs/` or `diffs/` before it
//!   is verified, and a stage left by a killed import is removed by the next image command.
//!
//! Unreferenced blobs and diffs (an interrupted commit, a removed image) are collected under the
//! lock by every command that changes the store.
use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    config::Config,
    error::{Error, Result},
    state::{self, Lock},
};

const DB_KIND: &str = "linkrt-images-v1";
/// Manifests, configs and indexes are small: anything larger is refused, not read.
pub const MAX_JSON: u64 = 4 << 20;

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The blob's digest (`sha256:...`), as in the manifest.
    pub digest: String,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// Bytes of regular files once unpacked.
    pub unpacked: u64,
}

/// One image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `sha256:<hex>`: the digest of the config blob.
    pub id: String,
    /// The digest of the manifest blob.
    pub manifest: String,
    pub layers: Vec<Layer>,
    /// `repo:tag`, familiar form.
    pub tags: Vec<String>,
    /// The config's `created`.
    pub created: Option<String>,
    /// When it entered the store (`Metadata.LastTagTime`).
    pub loaded: String,
    /// Removed with `rmi -f` while stopped containers still use it: kept (hidden, by ID only)
    /// until none does, so that they can start again, as with Docker.
    #[serde(default)]
    pub hidden: bool,
}

impl Record {
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked).sum()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Db {
    #[serde(default)]
    pub kind: String,
    pub images: Vec<Record>,
}

pub fn dir(cfg: &Config) -> PathBuf {
    cfg.root.join("images")
}

fn db_path(cfg: &Config) -> PathBuf {
    dir(cfg).join("db.json")
}

pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The path of a stored blob.
pub fn blob_path(cfg: &Config, digest: &str) -> PathBuf {
    dir(cfg).join("blobs/sha256").join(hex(digest))
}

/// The unpacked directory of a layer.
pub fn diff_path(cfg: &Config, diff_id: &str) -> PathBuf {
    dir(cfg).join("diffs").join(hex(diff_id))
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits (the only algorithm accepted).
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
}

pub fn sha256_hex(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

impl Db {
    /// Reads the store's database (empty when there is none yet). Lock-free: it is only ever
    /// replaced by a rename.
    pub fn load(cfg: &Config) -> Result<Db> {
        let p = db_path(cfg);
        let data = match state::read_limited(&p, 64 << 20) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Db::default()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(Error::NotRoot),
            Err(e) => return Err(Error::io("reading", &p, e)),
        };
        let db: Db = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            path: p.clone(),
            why: e.to_string(),
        })?;
        if db.kind != DB_KIND {
            return Err(Error::Corrupt {
                path: p,
                why: format!("unknown kind {:?}", db.kind),
            });
        }
        Ok(db)
    }

    /// Writes the database (the caller holds the lock).
    pub fn save(&mut self, cfg: &Config, _lock: &Lock) -> Result<()> {
        self.kind = DB_KIND.into();
        state::create_private_dir(&dir(cfg))?;
        let data =
            serde_json::to_vec_pretty(self).map_err(|e| Error::sys(format!("serializing the image store: {e}")))?;
        state::write_atomic(&db_path(cfg), &data)
    }

    /// The visible image holding `tag` (`repo:tag`).
    pub fn by_tag(&self, tag: &str) -> Option<&Record> {
        self.images
            .iter()
            .find(|r| !r.hidden && r.tags.iter().any(|t| t == tag))
    }

    /// Images whose ID is `id` or starts with the hex prefix `id` (hidden ones included).
    pub fn by_id_prefix(&self, id: &str) -> Vec<&Record> {
        let h = hex(id);
        if h.is_empty() || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Vec::new();
        }
        self.images.iter().filter(|r| hex(&r.id).starts_with(h)).collect()
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.images.iter().find(|r| r.id == id)
    }

    /// Adds (or merges) `rec`, moving its tags from any other image. Returns the IDs that lost
    /// a tag, as `(tag, old id)`.
    pub fn add(&mut self, rec: Record) -> Vec<(String, String)> {
        let mut moved = Vec::new();
        for other in self.images.iter_mut().filter(|r| r.id != rec.id) {
            let before = other.tags.len();
            let lost: Vec<String> = other.tags.iter().filter(|t| rec.tags.contains(t)).cloned().collect();
            other.tags.retain(|t| !rec.tags.contains(t));
            if other.tags.len() != before {
                moved.extend(lost.into_iter().map(|t| (t, other.id.clone())));
            }
        }
        match self.images.iter_mut().find(|r| r.id == rec.id) {
            Some(r) => {
                for t in rec.tags {
                    if !r.tags.contains(&t) {
                        r.tags.push(t);
                    }
                }
                r.hidden = false;
                r.loaded = rec.loaded;
            }
            None => self.images.push(rec),
        }
        moved
    }

    /// The blobs and diffs the records use.
    fn referenced(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut blobs = BTreeSet::new();
        let mut diffs = BTreeSet::new();
        for r in &self.images {
            blobs.insert(hex(&r.id).to_string());
            blobs.insert(hex(&r.manifest).to_string());
            for l in &r.layers {
                blobs.insert(hex(&l.digest).to_string());
                diffs.insert(hex(&l.diff_id).to_string());
            }
        }
        (blobs, diffs)
    }
}

fn remove_tree(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map_err(|e| Error::io("removing", p, e)),
        Ok(_) => std::fs::remove_file(p).map_err(|e| Error::io("removing", p, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("reading", p, e)),
    }
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Removes what no record references (blobs, diffs) and the stages of dead imports; drops the
/// hidden records no container uses (`in_use`: image IDs of existing containers).
pub fn collect(cfg: &Config, lock: &Lock, db: &mut Db, in_use: &BTreeSet<String>) -> Result<()> {
    let before = db.images.len();
    db.images.retain(|r| !r.hidden || in_use.contains(&r.id));
    if db.images.len() != before {
        db.save(cfg, lock)?;
    }
    let (blobs, diffs) = db.referenced();
    let root = dir(cfg);
    for (sub, keep) in [("blobs/sha256", &blobs), ("diffs", &diffs)] {
        let d = root.join(sub);
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading", &d, e)),
        };
        for e in rd {
            let e = e.map_err(|e| Error::io("reading", &d, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                remove_tree(&e.path())?;
            }
        }
    }
    let tmp = root.join("tmp");
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok()).unwrap_or(0);
            if !pid_alive(pid) {
                remove_tree(&e.path())?;
            }
        }
    }
    Ok(())
}

/// The image IDs that containers of this state directory use.
pub fn ids_in_use(cfg: &Config) -> Result<BTreeSet<String>> {
    let snap = state::Store::new(cfg).snapshot()?;
    Ok(snap
        .containers
        .iter()
        .map(|c| c.spec.image_id.clone())
        .filter(|i| !i.is_empty())
        .collect())
}

/// A staging directory for one import, removed when dropped (whatever happened).
pub struct Stage {
    pub dir: PathBuf,
}

impl Stage {
    pub fn new(cfg: &Config) -> Result<Stage> {
        let tmp = dir(cfg).join("tmp");
        state::create_private_dir(&tmp)?;
        let d = tmp.join(format!("{}-{}", std::process::id(), rand::random::<u64>()));
        state::create_private_dir(&d)?;
        for sub in ["in", "blobs", "diffs"] {
            state::create_private_dir(&d.join(sub))?;
        }
        Ok(Stage { dir: d })
    }

    pub fn blob(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs").join(hex(digest))
    }

    pub fn diff(&self, diff_id: &str) -> PathBuf {
        self.dir.join("diffs").join(hex(diff_id))
    }

    /// Moves the staged blobs and diffs into the store and adds the records. Under the lock;
    /// what the records reference must exist once done, or nothing is recorded. On any failure
    /// what was moved in is taken out again: the store is as it was before the import.
    pub fn commit(&self, cfg: &Config, lock: &Lock, records: Vec<Record>) -> Result<Vec<(String, String)>> {
        let mut moved_in = Vec::new();
        let r = self.commit_inner(cfg, lock, records, &mut moved_in);
        if r.is_err() {
            for p in moved_in.iter().rev() {
                if let Err(e) = remove_tree(p) {
                    // Unreferenced: the next change of the store collects it.
                    log::warn!("rolling back an import: {e}");
                }
            }
        }
        r
    }

    fn commit_inner(
        &self,
        cfg: &Config,
        lock: &Lock,
        records: Vec<Record>,
        moved_in: &mut Vec<PathBuf>,
    ) -> Result<Vec<(String, String)>> {
        let root = dir(cfg);
        for sub in ["blobs/sha256", "diffs"] {
            state::create_private_dir(&root.join(sub))?;
        }
        for (sub, dest) in [("blobs", root.join("blobs/sha256")), ("diffs", root.join("diffs"))] {
            let src = self.dir.join(sub);
            for e in std::fs::read_dir(&src).map_err(|e| Error::io("reading", &src, e))? {
                let e = e.map_err(|e| Error::io("reading", &src, e))?;
                let to = dest.join(e.file_name());
                if to.exists() {
                    continue;
                }
                std::fs::rename(e.path(), &to).map_err(|x| Error::io("renaming", e.path(), x))?;
                moved_in.push(to);
            }
        }
        for r in &records {
            let mut need = vec![blob_path(cfg, &r.id), blob_path(cfg, &r.manifest)];
            for l in &r.layers {
                need.push(blob_path(cfg, &l.digest));
                need.push(diff_path(cfg, &l.diff_id));
            }
            if let Some(p) = need.iter().find(|p| !p.exists()) {
                return Err(Error::sys(format!(
                    "{} vanished while the import was staged (an image was removed meanwhile): load again",
                    p.display()
                )));
            }
        }
        let mut db = Db::load(cfg)?;
        let mut moved = Vec::new();
        for r in records {
            moved.extend(db.add(r));
        }
        db.save(cfg, lock)?;
        Ok(moved)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            log::warn!("removing the import stage: {e}");
        }
    }
}

/// A reader that hashes (sha256) and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    hash: Sha256,
    pub count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left (so the digest covers everything), then returns `sha256:<hex>`.
    pub fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((format!("sha256:{:x}", self.hash.finalize()), self.count))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads a small JSON blob whole, refusing more than [`MAX_JSON`] bytes.
pub fn read_small(mut r: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    (&mut r)
        .take(MAX_JSON + 1)
        .read_to_end(&mut v)
        .map_err(|e| Error::user(format!("invalid image archive: reading {what}: {e}")))?;
    if v.len() as u64 > MAX_JSON {
        return Err(Error::user(format!(
            "invalid image archive: {what} is larger than {} MiB",
            MAX_JSON >> 20
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tag: &str) -> Config {
        let d = std::env::temp_dir().join(format!("linkrt-store-{tag}-{}", std::process::id()));
        if d.exists() {
            std::fs::remove_dir_all(&d).unwrap();
        }
        Config {
            root: d.join("lib"),
            run_root: d.join("run"),
            bpffs: d.join("bpf"),
            cgroup: None,
            cgroup_parent: "linkrt".into(),
        }
    }

    fn listing(cfg: &Config) -> Vec<String> {
        let mut v = Vec::new();
        for sub in ["blobs/sha256", "diffs", "tmp"] {
            if let Ok(rd) = std::fs::read_dir(dir(cfg).join(sub)) {
                v.extend(rd.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy())));
            }
        }
        v.sort();
        v
    }

    fn staged(stage: &Stage, data: &[u8]) -> String {
        let d = sha256_hex(data);
        std::fs::write(stage.blob(&d), data).unwrap();
        d
    }

    /// A commit that fails after some blobs were moved in takes them out again, keeps what
    /// the store already had, and records nothing; a complete one records the image.
    #[test]
    fn a_failed_commit_leaves_the_store_as_it_was() {
        let cfg = cfg("commit");
        state::create_private_dir(&cfg.root).unwrap();
        // An image already in the store, sharing its config blob with the new one.
        let shared = b"{\"shared\":true}".to_vec();
        let before = {
            let stage = Stage::new(&cfg).unwrap();
            let id = staged(&stage, &shared);
            let m = staged(&stage, b"manifest-1");
            let lock = Lock::acquire(&cfg).unwrap();
            let rec = Record {
                id,
                manifest: m,
                layers: Vec::new(),
                tags: vec!["old:v1".into()],
                created: None,
                loaded: String::new(),
                hidden: false,
            };
            stage.commit(&cfg, &lock, vec![rec]).unwrap();
            drop(stage);
            listing(&cfg)
        };
        assert_eq!(before.len(), 2, "{before:?}");

        let stage = Stage::new(&cfg).unwrap();
        let id = staged(&stage, &shared);
        let m = staged(&stage, b"manifest-2");
        let layer = staged(&stage, b"layer blob");
        std::fs::create_dir(stage.diff(&layer)).unwrap();
        let rec = Record {
            id,
            manifest: m,
            layers: vec![Layer {
                digest: layer.clone(),
                // Its unpacked tree is not in the stage: the commit must fail after moving.
                diff_id: sha256_hex(b"another tree"),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                size: 10,
                unpacked: 0,
            }],
            tags: vec!["new:v1".into()],
            created: None,
            loaded: String::new(),
            hidden: false,
        };
        let lock = Lock::acquire(&cfg).unwrap();
        let e = stage.commit(&cfg, &lock, vec![rec.clone()]).unwrap_err();
        assert!(e.to_string().contains("vanished"), "{e}");
        drop(stage);
        let mut after = listing(&cfg);
        after.retain(|p| !p.starts_with("tmp/"));
        assert_eq!(after, before, "the failed commit left something in the store");
        let db = Db::load(&cfg).unwrap();
        assert_eq!(db.images.len(), 1);
        assert!(db.by_tag("new:v1").is_none() && db.by_tag("old:v1").is_some());
        // The shared config blob, already there, stayed.
        assert!(blob_path(&cfg, &rec.id).is_file());
        drop(lock);
        std::fs::remove_dir_all(cfg.root.parent().unwrap()).unwrap();
    }
}
