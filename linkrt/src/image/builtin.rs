//! Built-in images: definitions (TOML, in the repo's `images/`) embedded in the binary, so that
//! the seed's images work on a fresh machine with nothing loaded. A container of such an image
//! sees a generated root over the host's `/usr` ([`crate::oci::rootfs`]). The store presents
//! them like loaded images ([`super::Resolved`]), with an ID derived from the definition.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    error::{Error, Result},
    ports::{self, PortKey},
};

/// (definition, [(source name, content)]) of every embedded image.
const DEFINITIONS: &[&str] = &[
    include_str!("../../../images/redis.toml"),
    include_str!("../../../images/alpine.toml"),
    include_str!("../../../images/webapp.toml"),
    include_str!("../../../images/postgres.toml"),
    include_str!("../../../images/trainingwheels.toml"),
];

const FILES: &[(&str, &str)] = &[
    ("webapp.py", include_str!("../../../images/files/webapp.py")),
    (
        "trainingwheels.py",
        include_str!("../../../images/files/trainingwheels.py"),
    ),
    (
        "postgres-stub.py",
        include_str!("../../../images/files/postgres-stub.py"),
    ),
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub bin: String,
    pub package: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: String,
    /// Name of an embedded file (`images/files/<source>`).
    pub source: Option<String>,
    /// Or: make `path` a symlink to this target.
    pub symlink: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub cmd: Vec<String>,
    #[serde(default = "root_dir")]
    pub workdir: String,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub requires: Vec<Requirement>,
    #[serde(default)]
    pub files: Vec<File>,
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Entries of the host's `/etc` the image's programs need, copied into its generated
    /// `/etc` (besides [`crate::oci::rootfs::BASE_ETC`]).
    #[serde(default)]
    pub etc: Vec<String>,
    /// Extra `/etc/passwd` and `/etc/group` lines (the image's own users).
    #[serde(default)]
    pub passwd: Vec<String>,
    #[serde(default)]
    pub group: Vec<String>,
    /// The definition's text (what its generated layer is keyed by).
    #[serde(skip)]
    pub source: String,
}

fn root_dir() -> String {
    "/".into()
}

impl Image {
    /// Parses and validates an image definition.
    pub fn parse(text: &str) -> Result<Image> {
        let mut img: Image = toml::from_str(text).map_err(|e| Error::user(format!("invalid image definition: {e}")))?;
        img.source = text.to_string();
        for e in &img.etc {
            let p = std::path::Path::new(e);
            let bad = e.is_empty()
                || p.is_absolute()
                || p.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
                || crate::oci::rootfs::FORBIDDEN_ETC.iter().any(|f| p.starts_with(f));
            if bad {
                return Err(Error::user(format!(
                    "invalid image definition: etc entry {e:?} (a relative path under /etc that is neither secret nor generated)"
                )));
            }
        }
        for l in img.passwd.iter().chain(&img.group) {
            if l.contains('\n') || l.split(':').count() < 4 {
                return Err(Error::user(format!(
                    "invalid image definition: passwd/group line {l:?}"
                )));
            }
        }
        if img.name.is_empty() || img.cmd.is_empty() {
            return Err(Error::user("invalid image definition: name and cmd must not be empty"));
        }
        for f in &img.files {
            if !f.path.starts_with('/') || f.source.is_some() == f.symlink.is_some() {
                return Err(Error::user(format!(
                    "invalid image definition: file {} needs an absolute path and exactly one of source, symlink",
                    f.path
                )));
            }
            if let Some(s) = &f.source
                && file_content(s).is_none()
            {
                return Err(Error::user(format!(
                    "invalid image definition: unknown source file {s}"
                )));
            }
        }
        img.exposed()?;
        Ok(img)
    }

    pub fn exposed(&self) -> Result<Vec<PortKey>> {
        let mut v = Vec::new();
        for e in &self.expose {
            v.extend(ports::parse_expose(e)?);
        }
        Ok(v)
    }

    /// Checks that the binaries the image runs exist on the host, naming the package if not.
    pub fn check_requirements(&self) -> Result<()> {
        for r in &self.requires {
            if find_in_path(&r.bin).is_none() {
                return Err(Error::user(format!(
                    "image {}: {} not found on this host: install the Debian package {} (apt-get install {})",
                    self.name, r.bin, r.package, r.package
                )));
            }
        }
        Ok(())
    }
}

pub fn file_content(name: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// All embedded images, sorted by name.
pub fn all() -> Vec<Image> {
    let mut v: Vec<Image> = DEFINITIONS
        .iter()
        .map(|d| Image::parse(d).expect("embedded image definitions are valid"))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The built-in image named `name` (a familiar repository name; built-ins have only `latest`).
pub fn find(name: &str) -> Option<Image> {
    all().into_iter().find(|i| i.name == name)
}

fn find_in_path(bin: &str) -> Option<PathBuf> {
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    path.split(':').map(|d| Path::new(d).join(bin)).find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_images_parse() {
        let names: Vec<String> = all().into_iter().map(|i| i.name).collect();
        assert_eq!(
            names,
            [
                "alpine",
                "jpetazzo/trainingwheels",
                "redis",
                "training/postgres",
                "training/webapp"
            ]
        );
        assert_eq!(find("redis").unwrap().exposed().unwrap()[0].to_string(), "6379/tcp");
        assert!(find("nosuch").is_none());
    }

    #[test]
    fn bad_definitions_are_refused() {
        assert!(Image::parse("name = 'x'").is_err());
        assert!(Image::parse("name = 'x'\ncmd = []").is_err());
        assert!(Image::parse("name = 'x'\ncmd = ['a']\nexpose = ['abc']").is_err());
        assert!(Image::parse("name = 'x'\ncmd = ['a']\nfiles = [{ path = 'rel' , source = 'webapp.py'}]").is_err());
        assert!(Image::parse("name = 'x'\ncmd = ['a']\nbogus = 1").is_err());
        for secret in ["shadow", "ssh/ssh_host_rsa_key", "../root", "/etc/x", "ssl/private"] {
            let def = format!("name = 'x'\ncmd = ['a']\netc = ['{secret}']");
            assert!(Image::parse(&def).is_err(), "{secret} must not be copied");
        }
        assert!(Image::parse("name = 'x'\ncmd = ['a']\netc = ['python3.11']").is_ok());
    }
}
