//! Image references as Docker writes them: `[registry/]name[:tag][@digest]`, lowercase path
//! components, with Docker Hub's `docker.io/library/` left out (`redis:latest`).
use crate::error::{Error, Result};

/// A repository and tag (the digest part, if any, is kept apart).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// The familiar repository name: `redis`, `training/webapp`, `quay.io/x/y`.
    pub repo: String,
    pub tag: String,
    /// `sha256:...` when the reference named a manifest digest.
    pub digest: Option<String>,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

fn invalid(s: &str, why: &str) -> Error {
    if why.is_empty() {
        Error::user(format!("invalid reference format: {s:?}"))
    } else {
        Error::user(format!("invalid reference format: {why}"))
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`: a path component of a repository name.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-', between alphanumerics.
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || i >= b.len() || !b[i].is_ascii_alphanumeric() {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
}

/// Docker Hub's prefixes, dropped from the familiar name.
fn familiar(name: &str) -> &str {
    for p in [
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ] {
        if let Some(rest) = name.strip_prefix(p) {
            return rest;
        }
    }
    name
}

impl Reference {
    /// Parses `name[:tag][@digest]`; the tag defaults to `latest`.
    pub fn parse(s: &str) -> Result<Reference> {
        if s.is_empty() || s.len() > 255 + 129 + 72 {
            return Err(invalid(s, ""));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(invalid(s, ""));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag (before it, it is a registry's port).
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(invalid(s, ""));
        }
        let mut comps: Vec<&str> = name.split('/').collect();
        // The first component is a registry when it has a '.', a ':' or is localhost.
        if comps.len() > 1 && (comps[0].contains(['.', ':']) || comps[0] == "localhost") {
            let host = comps.remove(0);
            let (h, port) = host.split_once(':').unwrap_or((host, "0"));
            let ok = !h.is_empty()
                && h.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
                && !port.is_empty()
                && port.bytes().all(|c| c.is_ascii_digit());
            if !ok {
                return Err(invalid(s, ""));
            }
        }
        if comps.iter().any(|c| c.bytes().any(|b| b.is_ascii_uppercase())) {
            return Err(invalid(s, &format!("repository name ({name}) must be lowercase")));
        }
        if !comps.iter().all(|c| valid_component(c)) {
            return Err(invalid(s, ""));
        }
        let repo = familiar(name).to_string();
        Ok(Reference {
            repo,
            tag: tag.unwrap_or("latest").to_string(),
            digest,
        })
    }

    /// The full name Docker writes in an archive's `io.containerd.image.name`.
    pub fn full_name(&self) -> String {
        let first = self.repo.split('/').next().unwrap_or("");
        let has_registry = self.repo.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        if has_registry {
            format!("{}:{}", self.repo, self.tag)
        } else if self.repo.contains('/') {
            format!("docker.io/{}:{}", self.repo, self.tag)
        } else {
            format!("docker.io/library/{}:{}", self.repo, self.tag)
        }
    }

    /// Whether `s` names a repository and tag explicitly (`name:tag`, or a name with a '/').
    pub fn is_named(s: &str) -> bool {
        s.contains('/') || s.contains(':')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_references() {
        let r = Reference::parse("redis").unwrap();
        assert_eq!((r.repo.as_str(), r.tag.as_str()), ("redis", "latest"));
        assert_eq!(r.to_string(), "redis:latest");
        assert_eq!(r.full_name(), "docker.io/library/redis:latest");
        let r = Reference::parse("docker.io/library/busybox:1.36").unwrap();
        assert_eq!(r.to_string(), "busybox:1.36");
        let r = Reference::parse("localhost:5000/a/b-c:v1.0_x").unwrap();
        assert_eq!(r.repo, "localhost:5000/a/b-c");
        assert_eq!(r.full_name(), "localhost:5000/a/b-c:v1.0_x");
        assert_eq!(
            Reference::parse("training/webapp").unwrap().full_name(),
            "docker.io/training/webapp:latest"
        );
        let d = format!("x@sha256:{}", "a".repeat(64));
        assert!(Reference::parse(&d).unwrap().digest.is_some());
        for bad in [
            "",
            "Redis",
            "a:",
            "a::b",
            "-a",
            "a/-b",
            "a//b",
            "a:b/c",
            "a@sha256:12",
            "a b",
            "a..b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(
            Reference::parse("Foo/bar")
                .unwrap_err()
                .to_string()
                .contains("must be lowercase")
        );
        assert!(Reference::parse("a__b.c-d---e").is_ok());
    }
}
