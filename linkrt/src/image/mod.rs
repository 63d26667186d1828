//! Images. There is no registry: an image is either loaded from a file into the store
//! ([`store`]: `load`, `import`) or one of the seed's built-in definitions ([`builtin`]). Both
//! are looked up, listed, inspected and removed through this module, the same way:
//!
//! - a reference (`name[:tag]`, [`Reference`]) is looked up in the store's tags first, then
//!   among the built-ins (`NAME:latest`): a loaded image with a built-in's name replaces it;
//! - then as an image ID or a unique prefix of one;
//! - a built-in's ID is the digest of an image config generated from its definition, so it
//!   changes when the definition does.
pub mod archive;
pub mod builtin;
pub mod reference;
pub mod remove;
pub mod store;
pub mod unpack;

use std::path::PathBuf;

pub use builtin::Image;
use oci_spec::image::ImageConfiguration;
pub use reference::Reference;
use serde_json::{Value, json};

use crate::{
    config::Config,
    error::{Error, Result},
    ports::{self, PortKey},
};

/// What an image gives a container; `create` merges the options over it as Docker does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `/` when the image sets none.
    pub workdir: String,
    /// Empty: root.
    pub user: String,
    pub exposed: Vec<PortKey>,
}

/// Where a container's root comes from.
#[derive(Clone, Debug)]
pub enum Root {
    /// A built-in definition: a generated layer over the host's `/usr`.
    Builtin(Box<Image>),
    /// Unpacked layers of the store, bottom first.
    Layers(Vec<PathBuf>),
}

/// An image found by [`lookup`].
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `sha256:<hex>`.
    pub id: String,
    pub tags: Vec<String>,
    pub config: RunConfig,
    pub root: Root,
    /// The store's record (none for a built-in).
    pub record: Option<store::Record>,
    /// The config blob.
    pub config_json: Vec<u8>,
}

impl Resolved {
    pub fn builtin(&self) -> Option<&Image> {
        match &self.root {
            Root::Builtin(i) => Some(i),
            Root::Layers(_) => None,
        }
    }

    pub fn short_id(&self) -> &str {
        let h = store::hex(&self.id);
        &h[..h.len().min(12)]
    }
}

/// Go's GOARCH of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    }
}

/// The image config of a built-in, generated from its definition (canonical JSON).
fn builtin_config(img: &Image) -> Vec<u8> {
    let exposed: serde_json::Map<String, Value> = img
        .exposed()
        .unwrap_or_default()
        .iter()
        .map(|p| (p.to_string(), json!({})))
        .collect();
    let doc = json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {
            "Env": img.env,
            "Cmd": img.cmd,
            "WorkingDir": img.workdir,
            "ExposedPorts": exposed,
            "Labels": {
                "org.linkrt.builtin": img.name,
                "org.linkrt.definition": store::sha256_hex(img.source.as_bytes()),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created_by": "linkrt built-in image (a generated root over the host's /usr)"}],
    });
    serde_json::to_vec(&doc).expect("serializable")
}

fn builtin_resolved(img: Image) -> Resolved {
    let config_json = builtin_config(&img);
    Resolved {
        id: store::sha256_hex(&config_json),
        tags: vec![format!("{}:latest", img.name)],
        config: RunConfig {
            env: img.env.clone(),
            entrypoint: Vec::new(),
            cmd: img.cmd.clone(),
            workdir: img.workdir.clone(),
            user: String::new(),
            exposed: img.exposed().unwrap_or_default(),
        },
        root: Root::Builtin(Box::new(img)),
        record: None,
        config_json,
    }
}

/// The settings of an image config (Docker's `ExposedPorts` keys: `80/tcp`, `53/udp`, `80`).
pub fn run_config(c: &ImageConfiguration) -> Result<RunConfig> {
    let Some(cc) = c.config() else {
        return Ok(RunConfig {
            workdir: "/".into(),
            ..RunConfig::default()
        });
    };
    let mut exposed = Vec::new();
    for p in cc.exposed_ports().iter().flatten() {
        exposed.extend(
            ports::parse_expose(p)
                .map_err(|e| Error::user(format!("invalid image config: ExposedPorts {p:?}: {e}")))?,
        );
    }
    exposed.sort();
    exposed.dedup();
    let workdir = cc
        .working_dir()
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok(RunConfig {
        env: cc.env().clone().unwrap_or_default(),
        entrypoint: cc.entrypoint().clone().unwrap_or_default(),
        cmd: cc.cmd().clone().unwrap_or_default(),
        workdir,
        user: cc.user().clone().unwrap_or_default(),
        exposed,
    })
}

fn stored_resolved(cfg: &Config, rec: &store::Record) -> Result<Resolved> {
    let p = store::blob_path(cfg, &rec.id);
    let data = crate::state::read_limited(&p, store::MAX_JSON).map_err(|e| Error::io("reading", &p, e))?;
    let c = ImageConfiguration::from_reader(&data[..]).map_err(|e| Error::Corrupt {
        path: p.clone(),
        why: e.to_string(),
    })?;
    Ok(Resolved {
        id: rec.id.clone(),
        tags: rec.tags.clone(),
        config: run_config(&c)?,
        root: Root::Layers(rec.layers.iter().map(|l| store::diff_path(cfg, &l.diff_id)).collect()),
        record: Some(rec.clone()),
        config_json: data,
    })
}

/// The reference as Docker shows it in messages (`x` → `x:latest`).
pub fn familiar(s: &str) -> String {
    match Reference::parse(s) {
        Ok(r) => match &r.digest {
            Some(d) if !s.contains(':') || s.rfind(':') < s.find('@') => format!("{}@{d}", r.repo),
            Some(d) => format!("{r}@{d}"),
            None => r.to_string(),
        },
        Err(_) => s.to_string(),
    }
}

/// Docker's text for an image that is not here, and the registry's answer: there is none.
pub fn not_found(s: &str) -> Error {
    let repo = Reference::parse(s).map(|r| r.repo).unwrap_or_else(|_| s.to_string());
    Error::user(format!(
        "Unable to find image '{}' locally\nError response from daemon: pull access denied for {repo}, repository does not exist: linkrt has no registry to pull from. Load the image from a file (`linkrt load -i FILE`, `linkrt import FILE`); `linkrt images` lists what is here",
        familiar(s)
    ))
}

fn looks_like_id(s: &str) -> bool {
    let h = s.strip_prefix("sha256:").unwrap_or(s);
    !h.is_empty() && h.len() <= 64 && h.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Looks `s` up (a reference, an ID, a unique ID prefix); `None` when no image matches.
pub fn lookup(cfg: &Config, s: &str) -> Result<Option<Resolved>> {
    let db = store::Db::load(cfg)?;
    let full_id = s.starts_with("sha256:");
    if !full_id {
        let r = Reference::parse(s)?;
        if let Some(d) = &r.digest {
            if let Some(rec) = db.images.iter().find(|x| !x.hidden && &x.manifest == d) {
                return stored_resolved(cfg, rec).map(Some);
            }
        } else {
            let tag = r.to_string();
            if let Some(rec) = db.by_tag(&tag) {
                return stored_resolved(cfg, rec).map(Some);
            }
            if r.tag == "latest"
                && let Some(img) = builtin::find(&r.repo)
            {
                return Ok(Some(builtin_resolved(img)));
            }
        }
    }
    if !looks_like_id(s) {
        return Ok(None);
    }
    let h = store::hex(s);
    let mut found: Vec<Resolved> = Vec::new();
    for rec in db.by_id_prefix(h).into_iter().filter(|r| !r.hidden) {
        found.push(stored_resolved(cfg, rec)?);
    }
    for img in builtin::all() {
        let b = builtin_resolved(img);
        if store::hex(&b.id).starts_with(h) && !found.iter().any(|f| f.id == b.id) {
            found.push(b);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::user(format!("multiple IDs found with provided prefix: {h}"))),
    }
}

/// The image `run`/`create` uses: Docker's messages when it is not here.
pub fn resolve(cfg: &Config, s: &str) -> Result<Resolved> {
    lookup(cfg, s)?.ok_or_else(|| not_found(s))
}

/// The image of an existing container: its recorded ID (even if untagged or removed with
/// `rmi -f` since), else its reference (records made before images had IDs).
pub fn for_container(cfg: &Config, image: &str, image_id: &str) -> Result<Resolved> {
    if image_id.is_empty() {
        return resolve(cfg, image);
    }
    let db = store::Db::load(cfg)?;
    if let Some(rec) = db.get(image_id) {
        return stored_resolved(cfg, rec);
    }
    for img in builtin::all() {
        let b = builtin_resolved(img);
        if b.id == image_id {
            return Ok(b);
        }
    }
    // A built-in whose definition changed since: the same name.
    if let Ok(Some(r)) = lookup(cfg, image)
        && r.builtin().is_some()
    {
        return Ok(r);
    }
    Err(Error::user(format!(
        "the image of this container ({image}, {image_id}) is no longer in the store"
    )))
}

/// One row of `linkrt images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub repository: String,
    pub tag: String,
    pub id: String,
    pub created: Option<String>,
    pub size: u64,
    pub builtin: bool,
}

/// Every visible image, one row per tag (`<none>` for untagged ones), newest first, then the
/// built-ins that no loaded image replaces.
pub fn list(cfg: &Config) -> Result<Vec<Summary>> {
    let db = store::Db::load(cfg)?;
    let mut rows = Vec::new();
    for r in db.images.iter().filter(|r| !r.hidden) {
        let tags: Vec<(String, String)> = if r.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            r.tags
                .iter()
                .map(|t| {
                    let (repo, tag) = t.rsplit_once(':').unwrap_or((t, ""));
                    (repo.to_string(), tag.to_string())
                })
                .collect()
        };
        for (repository, tag) in tags {
            rows.push(Summary {
                repository,
                tag,
                id: r.id.clone(),
                created: r.created.clone(),
                size: r.size(),
                builtin: false,
            });
        }
    }
    let created = |s: &Summary| {
        s.created
            .as_deref()
            .and_then(crate::state::parse_rfc3339)
            .unwrap_or(0.0)
    };
    rows.sort_by(|a, b| {
        created(b)
            .total_cmp(&created(a))
            .then_with(|| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)))
    });
    for img in builtin::all() {
        let tag = format!("{}:latest", img.name);
        if db.by_tag(&tag).is_some() {
            continue;
        }
        let size = img
            .files
            .iter()
            .filter_map(|f| f.source.as_deref().and_then(builtin::file_content))
            .map(|c| c.len() as u64)
            .sum();
        let b = builtin_resolved(img);
        rows.push(Summary {
            repository: b.builtin().map(|i| i.name.clone()).unwrap_or_default(),
            tag: "latest".into(),
            id: b.id,
            created: None,
            size,
            builtin: true,
        });
    }
    Ok(rows)
}

/// Docker's `image inspect` document.
pub fn inspect_json(r: &Resolved) -> Value {
    let cfg: Value = serde_json::from_slice(&r.config_json).unwrap_or(Value::Null);
    let zero = "0001-01-01T00:00:00Z";
    let (size, graph, layers, loaded, comment) = match (&r.root, &r.record) {
        (Root::Layers(dirs), Some(rec)) => {
            let lower: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
            (
                rec.size(),
                json!({"Name": "overlay2", "Data": {"LowerDir": lower.join(":")}}),
                json!(rec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()),
                rec.loaded.clone(),
                "",
            )
        }
        _ => (
            0,
            json!({"Name": "linkrt-builtin", "Data": Value::Null}),
            json!([]),
            zero.to_string(),
            "built into linkrt: a generated root over the host's /usr (see images/*.toml)",
        ),
    };
    json!({
        "Id": r.id,
        "RepoTags": r.tags,
        "RepoDigests": [],
        "Parent": "",
        "Comment": comment,
        "Created": cfg.get("created").cloned().unwrap_or(json!(zero)),
        "DockerVersion": "",
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("")),
        "Os": cfg.get("os").cloned().unwrap_or(json!("")),
        "Size": size,
        "GraphDriver": graph,
        "RootFS": {"Type": "layers", "Layers": layers},
        "Metadata": {"LastTagTime": loaded},
    })
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, as `docker images` prints SIZE.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size as f64;
    let mut i = 0;
    while s >= 1000.0 && i < UNITS.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g3(s), UNITS[i])
}

/// Go's `%.3g` for 0 <= v < 1000.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    // %g drops trailing zeros; rounding may also reach the next magnitude (999.5 -> "1e+03").
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "1000" { "1e+03".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_261_550), "4.26MB");
        assert_eq!(human_size(77_800_000), "77.8MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn builtins_have_stable_ids() {
        let a = builtin_resolved(builtin::find("redis").unwrap());
        let b = builtin_resolved(builtin::find("redis").unwrap());
        assert_eq!(a.id, b.id);
        assert!(store::valid_digest(&a.id));
        let c: ImageConfiguration = ImageConfiguration::from_reader(&a.config_json[..]).unwrap();
        let rc = run_config(&c).unwrap();
        assert_eq!(rc.exposed[0].to_string(), "6379/tcp");
        assert_eq!(rc.workdir, "/data");
        assert_eq!(rc.cmd[0], "redis-server");
    }

    #[test]
    fn unknown_image_text() {
        let e = not_found("nosuch").to_string();
        assert!(e.starts_with("Unable to find image 'nosuch:latest' locally\n"), "{e}");
        assert!(e.contains("no registry"), "{e}");
        assert_eq!(familiar("a/b:v1"), "a/b:v1");
    }
}
