//! Image archives in and out of the store:
//!
//! - `load`: an OCI image layout (a directory, or a tar of one: what `docker save` writes since
//!   Engine 25, with a `manifest.json` beside it), or the legacy `docker save` tar
//!   (`manifest.json`, `<id>.json`, `<id>/layer.tar`); the tar itself may be gzip or zstd
//!   compressed, and so may each layer. Tags come from `index.json`'s annotations
//!   (`io.containerd.image.name`, or a full `org.opencontainers.image.ref.name`) or from
//!   `manifest.json`'s `RepoTags`.
//! - `import`: a root filesystem tarball as a one-layer image (`docker import`).
//! - `save`: an OCI layout tar with Docker's `manifest.json`, which `docker load` accepts.
//!
//! Every blob is verified (sha256 and size; layers also against the config's diff IDs) before
//! it is used, everything is staged in the store's `tmp/`, and only a fully verified import is
//! committed ([`store::Stage::commit`]).
use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    str::FromStr,
};

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder,
    MediaType,
};
use serde::{Deserialize, Serialize};

use super::{
    Reference, host_arch,
    store::{self, Db, Hashing, Layer, Record, Stage, hex, read_small, valid_digest},
    unpack::{self, Budget, clean_path},
};
use crate::{
    config::Config,
    error::{Error, Result},
    state::{self, Lock},
};

const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::user(format!("invalid image archive: {msg}"))
}

/// Where an archive comes from.
#[derive(Clone, Debug)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }

    /// A decompressing reader over `r`.
    pub fn reader<'a, R: Read + 'a>(self, r: R) -> std::io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }
}

fn read_magic(p: &Path) -> Result<Compression> {
    let mut f = File::open(p).map_err(|e| Error::io("opening", p, e))?;
    let mut m = [0u8; 4];
    let mut n = 0;
    while n < m.len() {
        match f.read(&mut m[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::io("reading", p, e)),
        }
    }
    Ok(Compression::detect(&m[..n]))
}

/// The files of an archive.
enum Source {
    /// An OCI layout directory given by the user.
    Dir(PathBuf),
    /// An extracted tar: name → staged file, and names that are links to other names.
    Tar {
        files: HashMap<String, PathBuf>,
        links: HashMap<String, String>,
    },
}

/// `name` as a key: relative, `./` dropped, no `..`.
fn key(name: &str) -> Result<String> {
    match clean_path(Path::new(name)) {
        Ok(Some(p)) => Ok(p.to_string_lossy().into_owned()),
        Ok(None) => Err(bad(format!("empty name {name:?}"))),
        Err(e) => Err(bad(e.to_string().trim_start_matches("refusing the archive: "))),
    }
}

impl Source {
    /// The file behind `name`, if the archive has it.
    fn path(&self, name: &str) -> Result<Option<PathBuf>> {
        let mut k = key(name)?;
        match self {
            Source::Dir(d) => {
                let p = d.join(&k);
                Ok(p.is_file().then_some(p))
            }
            Source::Tar { files, links } => {
                for _ in 0..16 {
                    if let Some(p) = files.get(&k) {
                        return Ok(Some(p.clone()));
                    }
                    match links.get(&k) {
                        Some(t) => k = t.clone(),
                        None => return Ok(None),
                    }
                }
                Err(bad(format!("{name}: too many levels of links")))
            }
        }
    }

    fn read_json(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.path(name)? {
            Some(p) => {
                let f = File::open(&p).map_err(|e| Error::io("opening", &p, e))?;
                read_small(f, name).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// Reads the first bytes of a stream and gives them back in front of the rest.
fn peek(mut r: impl Read) -> Result<(Compression, impl Read)> {
    let mut m = [0u8; 4];
    let mut n = 0;
    while n < m.len() {
        match r.read(&mut m[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::sys(format!("reading the archive: {e}"))),
        }
    }
    let c = Compression::detect(&m[..n]);
    Ok((c, std::io::Cursor::new(m[..n].to_vec()).chain(r)))
}

/// Checks the declared sizes of a seekable tar before anything is written.
fn prescan(f: &mut File, budget: &Budget) -> Result<()> {
    let mut b = budget.clone();
    {
        let mut ar = tar::Archive::new(&mut *f);
        let entries = ar
            .entries_with_seek()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        for e in entries {
            // A corrupt header is reported by the extraction itself, with its context.
            let Ok(e) = e else { break };
            let size = e.size();
            let name = e.path().map(|p| p.display().to_string()).unwrap_or_default();
            b.charge(&format!("entry {name:?}"), size)?;
        }
    }
    f.rewind()
        .map_err(|e| Error::sys(format!("rewinding the archive: {e}")))
}

/// Extracts an archive's entries as flat files of the stage (names never touch the
/// filesystem); `blobs/sha256/<hex>` entries are verified as they are written.
fn extract(r: impl Read, stage: &Stage, budget: &mut Budget) -> Result<Source> {
    let mut files = HashMap::new();
    let mut links = HashMap::new();
    let mut ar = tar::Archive::new(r);
    let entries = ar.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for (i, e) in entries.enumerate() {
        let mut e = e.map_err(|e| bad(format!("a truncated or corrupt tar: {e}")))?;
        let raw = e.path().map_err(bad)?.to_string_lossy().into_owned();
        let ty = e.header().entry_type();
        let Some(rel) = clean_path(Path::new(&raw))? else {
            continue;
        };
        let name = rel.to_string_lossy().into_owned();
        match ty {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = e.size();
                budget.charge(&format!("entry {name:?}"), size)?;
                let dst = stage.dir.join("in").join(i.to_string());
                let mut out = File::create(&dst).map_err(|x| Error::io("creating", &dst, x))?;
                let mut h = Hashing::new(&mut e);
                std::io::copy(&mut h, &mut out).map_err(|x| bad(format!("{name}: {x} (a truncated tar?)")))?;
                let (digest, n) = h.finish().map_err(|x| bad(format!("{name}: {x}")))?;
                if n != size {
                    return Err(bad(format!("{name} is truncated ({n} of {size} bytes)")));
                }
                if let Some(h) = name.strip_prefix("blobs/sha256/")
                    && hex(&digest) != h
                {
                    return Err(bad(format!(
                        "blob sha256:{h} does not match its digest (its content hashes to {digest})"
                    )));
                }
                files.insert(name, dst);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let t = e
                    .link_name()
                    .map_err(bad)?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = if ty == tar::EntryType::Symlink {
                    // Relative to the link's directory, and never above the archive's top.
                    let base = rel.parent().map(|p| p.to_path_buf()).unwrap_or_default();
                    let mut out: Vec<String> = base.iter().map(|c| c.to_string_lossy().into_owned()).collect();
                    if t.starts_with('/') {
                        return Err(bad(format!("{name} links to the absolute path {t:?}")));
                    }
                    for c in Path::new(&t).components() {
                        match c {
                            std::path::Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
                            // The guard pops the parent; above the top, refused.
                            std::path::Component::ParentDir if out.pop().is_none() => {
                                return Err(bad(format!("{name} links outside the archive ({t:?})")));
                            }
                            _ => {}
                        }
                    }
                    out.join("/")
                } else {
                    key(&t)?
                };
                links.insert(name, target);
            }
            _ => {}
        }
    }
    Ok(Source::Tar { files, links })
}

/// One import in progress: the stage, the archive, what is already staged.
struct Loader<'a> {
    cfg: &'a Config,
    stage: &'a Stage,
    src: &'a Source,
    budget: Budget,
    db: Db,
    /// Unpacked sizes of the layers staged or stored (by diff ID).
    unpacked: HashMap<String, u64>,
}

impl Loader<'_> {
    fn new<'a>(cfg: &'a Config, stage: &'a Stage, src: &'a Source, budget: Budget) -> Result<Loader<'a>> {
        let db = Db::load(cfg)?;
        let mut unpacked = HashMap::new();
        for r in &db.images {
            for l in &r.layers {
                if store::diff_path(cfg, &l.diff_id).is_dir() {
                    unpacked.insert(l.diff_id.clone(), l.unpacked);
                }
            }
        }
        Ok(Loader {
            cfg,
            stage,
            src,
            budget,
            db,
            unpacked,
        })
    }

    /// A blob by digest, verified: the stored copy, the staged one, or the archive's.
    fn blob(&mut self, digest: &str, size: Option<u64>) -> Result<PathBuf> {
        if !valid_digest(digest) {
            return Err(bad(format!("unsupported digest {digest:?} (only sha256)")));
        }
        let stored = store::blob_path(self.cfg, digest);
        if stored.is_file()
            && self
                .db
                .images
                .iter()
                .any(|r| r.id == digest || r.manifest == digest || r.layers.iter().any(|l| l.digest == digest))
        {
            return Ok(stored);
        }
        let staged = self.stage.blob(digest);
        if !staged.is_file() {
            let name = format!("blobs/sha256/{}", hex(digest));
            let src = self
                .src
                .path(&name)?
                .ok_or_else(|| bad(format!("blob {digest} is missing (a truncated archive?)")))?;
            match self.src {
                // Verified when extracted.
                Source::Tar { .. } => std::fs::rename(&src, &staged).map_err(|e| Error::io("renaming", &src, e))?,
                Source::Dir(_) => {
                    self.copy_verified(&src, &staged, Some(digest))?;
                }
            }
        }
        if let Some(want) = size {
            let got = std::fs::metadata(&staged)
                .map_err(|e| Error::io("reading", &staged, e))?
                .len();
            if got != want {
                return Err(bad(format!(
                    "blob {digest} has {got} bytes, its descriptor says {want}"
                )));
            }
        }
        Ok(staged)
    }

    /// Copies `src` into the stage, checking its digest; returns the digest.
    fn copy_verified(&mut self, src: &Path, dst: &Path, want: Option<&str>) -> Result<String> {
        let f = File::open(src).map_err(|e| Error::io("opening", src, e))?;
        let len = f.metadata().map_err(|e| Error::io("reading", src, e))?.len();
        self.budget.charge(&format!("{}", src.display()), len)?;
        let mut h = Hashing::new(f.take(len));
        let mut out = File::create(dst).map_err(|e| Error::io("creating", dst, e))?;
        std::io::copy(&mut h, &mut out).map_err(|e| Error::io("copying", src, e))?;
        let (digest, _) = h.finish().map_err(|e| Error::io("reading", src, e))?;
        if let Some(w) = want
            && w != digest
        {
            return Err(bad(format!(
                "blob {w} does not match its digest (its content hashes to {digest})"
            )));
        }
        Ok(digest)
    }

    /// Unpacks the layer blob at `blob` into the stage (unless the store has it), checking its
    /// uncompressed digest against `diff_id` when given. Returns (blob digest, diff ID, size).
    fn layer(&mut self, blob: &Path, diff_id: Option<&str>) -> Result<(String, String, u64)> {
        if let Some(d) = diff_id {
            if !valid_digest(d) {
                return Err(bad(format!("unsupported diff ID {d:?}")));
            }
            if let Some(n) = self.unpacked.get(d) {
                let (digest, _) = Hashing::new(File::open(blob).map_err(|e| Error::io("opening", blob, e))?)
                    .finish()
                    .map_err(|e| Error::io("reading", blob, e))?;
                return Ok((digest, d.to_string(), *n));
            }
        }
        let comp = read_magic(blob)?;
        let tmp = self
            .stage
            .dir
            .join("diffs")
            .join(format!("tmp-{}", rand::random::<u64>()));
        std::fs::create_dir(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &tmp, e))?;
        let f = File::open(blob).map_err(|e| Error::io("opening", blob, e))?;
        let mut outer = Hashing::new(std::io::BufReader::new(f));
        let (diff, u) = {
            let dec = comp.reader(&mut outer).map_err(|e| bad(format!("layer: {e}")))?;
            let mut inner = Hashing::new(dec);
            let u = unpack::unpack(&mut inner, &tmp, &mut self.budget)?;
            let (diff, _) = inner
                .finish()
                .map_err(|e| bad(format!("layer (corrupt compression?): {e}")))?;
            (diff, u)
        };
        let (digest, _) = outer.finish().map_err(|e| Error::io("reading", blob, e))?;
        if let Some(want) = diff_id
            && want != diff
        {
            return Err(bad(format!(
                "layer {digest} unpacks to {diff}, but the image config says {want}"
            )));
        }
        let dest = self.stage.diff(&diff);
        if dest.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("removing", &tmp, e))?;
        } else {
            std::fs::rename(&tmp, &dest).map_err(|e| Error::io("renaming", &tmp, e))?;
        }
        self.unpacked.insert(diff.clone(), u.size);
        Ok((digest, diff, u.size))
    }

    fn put_blob(&self, data: &[u8]) -> Result<String> {
        let d = store::sha256_hex(data);
        let p = self.stage.blob(&d);
        if !p.exists() && !store::blob_path(self.cfg, &d).exists() {
            std::fs::write(&p, data).map_err(|e| Error::io("writing", &p, e))?;
        }
        Ok(d)
    }

    /// One image from its manifest (`mdigest`, `mbytes`, already verified).
    fn image(&mut self, mdigest: &str, mbytes: &[u8], tags: Vec<String>) -> Result<Record> {
        let m = ImageManifest::from_reader(mbytes).map_err(|e| bad(format!("manifest {mdigest}: {e}")))?;
        let cdesc = m.config();
        let cdigest = cdesc.digest().to_string();
        let cpath = self.blob(&cdigest, Some(cdesc.size()))?;
        let cbytes = read_small(
            File::open(&cpath).map_err(|e| Error::io("opening", &cpath, e))?,
            "the image config",
        )?;
        let config = ImageConfiguration::from_reader(&cbytes[..]).map_err(|e| bad(format!("config {cdigest}: {e}")))?;
        super::run_config(&config)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != m.layers().len() {
            return Err(bad(format!(
                "manifest {mdigest} has {} layers, its config {} diff IDs",
                m.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (d, diff_id) in m.layers().iter().zip(diff_ids) {
            let mt = d.media_type().to_string();
            let known = [
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.layer.v1.tar+zstd",
                "application/vnd.docker.image.rootfs.diff.tar",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
            ];
            if !known.contains(&mt.as_str()) {
                return Err(bad(format!("layer {} has the unsupported media type {mt}", d.digest())));
            }
            let digest = d.digest().to_string();
            let path = self.blob(&digest, Some(d.size()))?;
            let (_, diff, unpacked) = self.layer(&path, Some(diff_id))?;
            layers.push(Layer {
                digest,
                diff_id: diff,
                media_type: mt,
                size: d.size(),
                unpacked,
            });
        }
        let md = self.put_blob(mbytes)?;
        debug_assert_eq!(md, mdigest);
        Ok(Record {
            id: cdigest,
            manifest: mdigest.to_string(),
            layers,
            tags,
            created: config.created().clone(),
            loaded: state::now_rfc3339(),
            hidden: false,
        })
    }

    /// A manifest descriptor of an index: the manifest itself, or (a nested index) the one for
    /// this platform.
    fn manifest_of(&mut self, d: &Descriptor, depth: u32) -> Result<(String, Vec<u8>)> {
        let digest = d.digest().to_string();
        let p = self.blob(&digest, Some(d.size()))?;
        let bytes = read_small(File::open(&p).map_err(|e| Error::io("opening", &p, e))?, "a manifest")?;
        let is_index = matches!(d.media_type(), MediaType::ImageIndex)
            || d.media_type().to_string() == "application/vnd.docker.distribution.manifest.list.v2+json";
        if !is_index {
            return Ok((digest, bytes));
        }
        if depth > 4 {
            return Err(bad("indexes nested too deeply"));
        }
        let idx = ImageIndex::from_reader(&bytes[..]).map_err(|e| bad(format!("index {digest}: {e}")))?;
        let pick = idx
            .manifests()
            .iter()
            .find(|m| {
                m.platform()
                    .as_ref()
                    .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == host_arch())
            })
            .or_else(|| (idx.manifests().len() == 1).then(|| &idx.manifests()[0]))
            .cloned()
            .ok_or_else(|| bad(format!("index {digest} has no image for linux/{}", host_arch())))?;
        self.manifest_of(&pick, depth + 1)
    }
}

/// `manifest.json` of `docker save`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn norm_tag(t: &str) -> Result<String> {
    let r = Reference::parse(t).map_err(|e| bad(format!("tag {t:?}: {e}")))?;
    Ok(r.to_string())
}

fn oci_tags(d: &Descriptor) -> Result<Vec<String>> {
    let Some(a) = d.annotations() else {
        return Ok(Vec::new());
    };
    if let Some(n) = a.get(CONTAINERD_NAME) {
        return Ok(vec![norm_tag(n)?]);
    }
    match a.get(ANNOTATION_REF_NAME) {
        // A full reference; a bare tag names no repository, so the image stays untagged.
        Some(r) if r.contains('/') || r.contains(':') => Ok(vec![norm_tag(r)?]),
        _ => Ok(Vec::new()),
    }
}

fn load_oci(l: &mut Loader, legacy: &[LegacyEntry]) -> Result<Vec<Record>> {
    let data = l.src.read_json("index.json")?.expect("checked by the caller");
    let idx = ImageIndex::from_reader(&data[..]).map_err(|e| bad(format!("index.json: {e}")))?;
    if let Some(layout) = l.src.read_json("oci-layout")? {
        let v: serde_json::Value = serde_json::from_slice(&layout).map_err(|e| bad(format!("oci-layout: {e}")))?;
        if v.get("imageLayoutVersion").and_then(|x| x.as_str()).is_none() {
            return Err(bad("oci-layout has no imageLayoutVersion"));
        }
    }
    if idx.manifests().is_empty() {
        return Err(bad("index.json lists no image"));
    }
    let mut out: Vec<Record> = Vec::new();
    for d in idx.manifests() {
        let mut tags = oci_tags(d)?;
        let (mdigest, mbytes) = l.manifest_of(d, 0)?;
        let rec = l.image(&mdigest, &mbytes, Vec::new())?;
        if tags.is_empty() {
            // Docker's manifest.json beside the layout names the same config.
            for e in legacy {
                if e.config.ends_with(hex(&rec.id)) {
                    for t in e.repo_tags.iter().flatten() {
                        tags.push(norm_tag(t)?);
                    }
                }
            }
        }
        match out.iter_mut().find(|r| r.id == rec.id) {
            Some(r) => r.tags.extend(tags),
            None => out.push(Record { tags, ..rec }),
        }
    }
    Ok(out)
}

fn load_legacy(l: &mut Loader, entries: &[LegacyEntry]) -> Result<Vec<Record>> {
    if entries.is_empty() {
        return Err(bad("manifest.json lists no image"));
    }
    let mut out = Vec::new();
    for e in entries {
        let cpath = l
            .src
            .path(&e.config)?
            .ok_or_else(|| bad(format!("{} is missing (a truncated archive?)", e.config)))?;
        let cbytes = read_small(
            File::open(&cpath).map_err(|x| Error::io("opening", &cpath, x))?,
            &e.config,
        )?;
        let id = store::sha256_hex(&cbytes);
        // `<hex>.json` (legacy) or `blobs/sha256/<hex>` names the config's digest.
        let named = e.config.rsplit('/').next().unwrap_or("").trim_end_matches(".json");
        if named.len() == 64 && named != hex(&id) {
            return Err(bad(format!(
                "config {} does not match its digest (its content hashes to {id})",
                e.config
            )));
        }
        let config = ImageConfiguration::from_reader(&cbytes[..]).map_err(|x| bad(format!("{}: {x}", e.config)))?;
        super::run_config(&config)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != e.layers.len() {
            return Err(bad(format!(
                "manifest.json lists {} layers, the config {} diff IDs",
                e.layers.len(),
                diff_ids.len()
            )));
        }
        l.put_blob(&cbytes)?;
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for (name, diff_id) in e.layers.iter().zip(&diff_ids) {
            let p = l
                .src
                .path(name)?
                .ok_or_else(|| bad(format!("layer {name} is missing (a truncated archive?)")))?;
            let comp = read_magic(&p)?;
            let (digest, diff, unpacked) = l.layer(&p, Some(diff_id))?;
            if let Some(h) = name.strip_prefix("blobs/sha256/")
                && h != hex(&digest)
            {
                return Err(bad(format!(
                    "blob {name} does not match its digest (its content hashes to {digest})"
                )));
            }
            let staged = l.stage.blob(&digest);
            if !staged.exists() && !store::blob_path(l.cfg, &digest).exists() {
                match l.src {
                    Source::Tar { .. } => std::fs::copy(&p, &staged).map(|_| ()),
                    Source::Dir(_) => std::fs::copy(&p, &staged).map(|_| ()),
                }
                .map_err(|x| Error::io("copying", &p, x))?;
            }
            let size = std::fs::metadata(&staged)
                .or_else(|_| std::fs::metadata(store::blob_path(l.cfg, &digest)))
                .map_err(|x| Error::io("reading", &staged, x))?
                .len();
            let mt = comp.media_type();
            descs.push(descriptor(mt.clone(), size, &digest)?);
            layers.push(Layer {
                digest,
                diff_id: diff,
                media_type: mt.to_string(),
                size,
                unpacked,
            });
        }
        let manifest = build_manifest(descriptor(MediaType::ImageConfig, cbytes.len() as u64, &id)?, descs)?;
        let mdigest = l.put_blob(&manifest)?;
        let mut tags = Vec::new();
        for t in e.repo_tags.iter().flatten() {
            tags.push(norm_tag(t)?);
        }
        out.push(Record {
            id,
            manifest: mdigest,
            layers,
            tags,
            created: config.created().clone(),
            loaded: state::now_rfc3339(),
            hidden: false,
        });
    }
    Ok(out)
}

fn descriptor(mt: MediaType, size: u64, digest: &str) -> Result<Descriptor> {
    let d = Digest::from_str(digest).map_err(|e| Error::sys(format!("digest {digest}: {e}")))?;
    Ok(Descriptor::new(mt, size, d))
}

fn build_manifest(config: Descriptor, layers: Vec<Descriptor>) -> Result<Vec<u8>> {
    let m = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| Error::sys(format!("building a manifest: {e}")))?;
    serde_json::to_vec(&m).map_err(|e| Error::sys(format!("serializing a manifest: {e}")))
}

/// Opens the input and stages its files (a directory is read in place).
fn open_source(input: &Input, stage: &Stage, budget: &mut Budget) -> Result<Source> {
    match input {
        Input::Path(p) if p.is_dir() => Ok(Source::Dir(p.clone())),
        Input::Path(p) => {
            let mut f = File::open(p).map_err(|e| Error::io("opening", p, e))?;
            let mut m = [0u8; 4];
            let n = f.read(&mut m).map_err(|e| Error::io("reading", p, e))?;
            f.rewind().map_err(|e| Error::io("reading", p, e))?;
            let comp = Compression::detect(&m[..n]);
            if comp == Compression::None {
                prescan(&mut f, budget)?;
            }
            let r = comp.reader(std::io::BufReader::new(f)).map_err(bad)?;
            extract(r, stage, budget)
        }
        Input::Stdin => {
            let (comp, r) = peek(std::io::stdin().lock())?;
            let r = comp.reader(r).map_err(bad)?;
            extract(r, stage, budget)
        }
    }
}

/// What `load` did, as Docker prints it.
pub fn messages(records: &[Record], moved: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, old) in moved {
        out.push(format!(
            "The image {tag} already exists, renaming the old one with ID {old} to empty string"
        ));
    }
    for r in records {
        if r.tags.is_empty() {
            out.push(format!("Loaded image ID: {}", r.id));
        }
        for t in &r.tags {
            out.push(format!("Loaded image: {t}"));
        }
    }
    out
}

/// Commits staged records under the lock, then collects garbage.
fn commit(cfg: &Config, stage: &Stage, records: Vec<Record>) -> Result<Vec<String>> {
    let lock = Lock::acquire(cfg)?;
    let moved = stage.commit(cfg, &lock, records.clone())?;
    let mut db = Db::load(cfg)?;
    store::collect(cfg, &lock, &mut db, &store::ids_in_use(cfg)?)?;
    Ok(messages(&records, &moved))
}

fn new_stage(cfg: &Config) -> Result<(Stage, Budget)> {
    let stage = Stage::new(cfg)?;
    let budget = Budget::for_dir(&stage.dir)?;
    Ok((stage, budget))
}

/// `linkrt load`: every image of the archive, verified, then committed at once.
pub fn load(cfg: &Config, input: &Input) -> Result<Vec<String>> {
    let (stage, mut budget) = new_stage(cfg)?;
    let src = open_source(input, &stage, &mut budget)?;
    let legacy: Vec<LegacyEntry> = match src.read_json("manifest.json")? {
        Some(d) => serde_json::from_slice(&d).map_err(|e| bad(format!("manifest.json: {e}")))?,
        None => Vec::new(),
    };
    let has_index = src.path("index.json")?.is_some();
    if !has_index && src.path("manifest.json")?.is_none() {
        return Err(bad(
            "it has neither index.json (an OCI image layout) nor manifest.json (docker save); for a root filesystem tarball, use `linkrt import`",
        ));
    }
    let mut l = Loader::new(cfg, &stage, &src, budget)?;
    let records = if has_index {
        load_oci(&mut l, &legacy)?
    } else {
        load_legacy(&mut l, &legacy)?
    };
    drop(l);
    commit(cfg, &stage, records)
}

/// `linkrt import`: a root filesystem tarball (plain, gzip or zstd) as a one-layer image.
/// Returns the new image's ID.
pub fn import(cfg: &Config, input: &Input, reference: Option<&str>) -> Result<String> {
    let tag = reference
        .map(|r| Reference::parse(r).map(|r| r.to_string()))
        .transpose()?;
    let (stage, budget) = new_stage(cfg)?;
    let raw = stage.dir.join("in").join("rootfs");
    let src = Source::Tar {
        files: HashMap::new(),
        links: HashMap::new(),
    };
    let mut l = Loader::new(cfg, &stage, &src, budget)?;
    let what = match input {
        Input::Path(p) => {
            if p.is_dir() {
                return Err(Error::user(format!(
                    "{}: a directory; import takes a tarball",
                    p.display()
                )));
            }
            l.copy_verified(p, &raw, None)?;
            p.display().to_string()
        }
        Input::Stdin => {
            let mut out = File::create(&raw).map_err(|e| Error::io("creating", &raw, e))?;
            let max = l.budget.remaining();
            let n = std::io::copy(&mut std::io::stdin().lock().take(max + 1), &mut out)
                .map_err(|e| Error::sys(format!("reading standard input: {e}")))?;
            l.budget.charge("standard input", n)?;
            "-".to_string()
        }
    };
    let comp = read_magic(&raw)?;
    let (digest, diff, unpacked) = l.layer(&raw, None)?;
    let staged = stage.blob(&digest);
    if !staged.exists() && !store::blob_path(cfg, &digest).exists() {
        std::fs::rename(&raw, &staged).map_err(|e| Error::io("renaming", &raw, e))?;
    }
    let size = std::fs::metadata(&staged)
        .or_else(|_| std::fs::metadata(store::blob_path(cfg, &digest)))
        .map_err(|e| Error::io("reading", &staged, e))?
        .len();
    let now = state::now_rfc3339();
    let config = serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "created": now,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
        "history": [{"created": now, "comment": format!("Imported from {what}")}],
    });
    let cbytes = serde_json::to_vec(&config).map_err(|e| Error::sys(e.to_string()))?;
    let id = l.put_blob(&cbytes)?;
    let mt = comp.media_type();
    let manifest = build_manifest(
        descriptor(MediaType::ImageConfig, cbytes.len() as u64, &id)?,
        vec![descriptor(mt.clone(), size, &digest)?],
    )?;
    let mdigest = l.put_blob(&manifest)?;
    drop(l);
    let rec = Record {
        id: id.clone(),
        manifest: mdigest,
        layers: vec![Layer {
            digest,
            diff_id: diff,
            media_type: mt.to_string(),
            size,
            unpacked,
        }],
        tags: tag.into_iter().collect(),
        created: Some(now),
        loaded: state::now_rfc3339(),
        hidden: false,
    };
    commit(cfg, &stage, vec![rec])?;
    Ok(id)
}

/// `linkrt save`: the images (by reference or ID) as an OCI layout tar with Docker's
/// `manifest.json`, written to `out`.
pub fn save(cfg: &Config, names: &[String], out: impl Write) -> Result<()> {
    let mut images: Vec<(store::Record, Vec<String>)> = Vec::new();
    for n in names {
        let r = super::lookup(cfg, n)?.ok_or_else(|| Error::user(format!("No such image: {}", super::familiar(n))))?;
        let Some(rec) = r.record.clone() else {
            return Err(Error::user(format!(
                "{n} is built into linkrt (a generated root over this host's /usr), not an image of the store: it cannot be saved"
            )));
        };
        let tag = (!n.starts_with("sha256:") && rec.tags.contains(&super::familiar(n))).then(|| super::familiar(n));
        match images.iter_mut().find(|(x, _)| x.id == rec.id) {
            Some((_, tags)) => tags.extend(tag),
            None => images.push((rec, tag.into_iter().collect())),
        }
    }
    let mut b = tar::Builder::new(out);
    let mut done = BTreeSet::new();
    let mut index = Vec::new();
    let mut manifest_json = Vec::new();
    let io = |e: std::io::Error| Error::sys(format!("writing the archive: {e}"));
    for (rec, tags) in &images {
        let mut blobs = vec![rec.manifest.clone(), rec.id.clone()];
        blobs.extend(rec.layers.iter().map(|l| l.digest.clone()));
        for d in blobs {
            if !done.insert(d.clone()) {
                continue;
            }
            let p = store::blob_path(cfg, &d);
            let mut f = File::open(&p).map_err(|e| Error::io("opening", &p, e))?;
            let len = f.metadata().map_err(|e| Error::io("reading", &p, e))?.len();
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, format!("blobs/sha256/{}", hex(&d)), &mut f)
                .map_err(io)?;
        }
        let msize = std::fs::metadata(store::blob_path(cfg, &rec.manifest))
            .map_err(|e| Error::io("reading", store::blob_path(cfg, &rec.manifest), e))?
            .len();
        let base = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": rec.manifest,
            "size": msize,
        });
        if tags.is_empty() {
            index.push(base.clone());
        }
        for t in tags {
            let r = Reference::parse(t)?;
            let mut d = base.clone();
            d["annotations"] = serde_json::json!({CONTAINERD_NAME: r.full_name(), ANNOTATION_REF_NAME: r.tag});
            index.push(d);
        }
        manifest_json.push(LegacyEntry {
            config: format!("blobs/sha256/{}", hex(&rec.id)),
            repo_tags: Some(tags.clone()),
            layers: rec
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", hex(&l.digest)))
                .collect(),
        });
    }
    let idx = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    });
    let files: [(&str, Vec<u8>); 3] = [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", serde_json::to_vec(&idx).expect("serializable")),
        (
            "manifest.json",
            serde_json::to_vec(&manifest_json).expect("serializable"),
        ),
    ];
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &data[..]).map_err(io)?;
    }
    b.into_inner().map_err(io)?.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn archive_names() {
        assert_eq!(key("./blobs/sha256/ab").unwrap(), "blobs/sha256/ab");
        assert!(key("../x").is_err());
        assert!(key("/etc/passwd").is_err());
    }

    #[test]
    fn legacy_manifest_parses() {
        let m: Vec<LegacyEntry> =
            serde_json::from_str(r#"[{"Config":"abc.json","RepoTags":["busybox:latest"],"Layers":["x/layer.tar"]}]"#)
                .unwrap();
        assert_eq!(m[0].repo_tags.as_ref().unwrap()[0], "busybox:latest");
        assert_eq!(norm_tag("docker.io/library/busybox:latest").unwrap(), "busybox:latest");
    }
}
