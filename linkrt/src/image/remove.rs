//! `rmi`, with Docker's rules (moby `ImageService.ImageDelete`) and texts:
//!
//! - by tag: the tag goes ("Untagged: ..."); the image goes with its last tag unless a
//!   container uses it: without `-f` that is a conflict ("unable to remove repository
//!   reference"), with `-f` the image stays untagged while a running container uses it;
//! - by ID: refused while a running container uses it ("cannot be forced"), or a stopped one
//!   ("must be forced"), or when it has tags in several repositories ("must be forced");
//! - with `-f` and only stopped containers using it, the image is deleted as far as `images` and
//!   lookups go, but its layers stay until no container uses it (they can still start);
//! - a built-in image is part of the binary: after the same conflict checks, `rmi` refuses it
//!   (a loaded image with the same name replaces it instead).
use std::collections::BTreeSet;

use super::{Reference, Resolved, familiar, lookup, store};
use crate::{
    config::Config,
    error::{Error, Result},
    state::{self, Lock, Status},
};

fn short(id: &str) -> &str {
    let h = store::hex(id);
    &h[..h.len().min(12)]
}

/// Removes one image; returns Docker's lines (`Untagged: ...`, `Deleted: ...`).
pub fn remove(cfg: &Config, lock: &Lock, name: &str, force: bool) -> Result<Vec<String>> {
    let img: Resolved = lookup(cfg, name)?.ok_or_else(|| Error::user(format!("No such image: {}", familiar(name))))?;
    let snap = state::Store::new(cfg).snapshot()?;
    let users: Vec<&state::Container> = snap
        .containers
        .iter()
        .filter(|c| {
            c.spec.image_id == img.id || (c.spec.image_id.is_empty() && img.tags.contains(&familiar(&c.spec.image)))
        })
        .collect();
    let running = users.iter().find(|c| c.state.status == Status::Running);
    let stopped = users.iter().find(|c| c.state.status != Status::Running);
    let tag = familiar(name);
    let by_ref = !name.starts_with("sha256:") && img.tags.contains(&tag);
    let conflict = |hard: bool, why: String| {
        Error::user(format!(
            "conflict: unable to delete {} ({}) - {why}",
            short(&img.id),
            if hard { "cannot be forced" } else { "must be forced" }
        ))
    };

    // A container that uses the image: a running one always stops the removal, a stopped one
    // unless forced.
    let in_use = || match (running, stopped) {
        (Some(c), _) => Err(conflict(
            true,
            format!("image is being used by running container {}", c.short_id()),
        )),
        (None, Some(c)) if !force => Err(conflict(
            false,
            format!("image is being used by stopped container {}", c.short_id()),
        )),
        _ => Ok(()),
    };

    if let Some(b) = img.builtin() {
        in_use()?;
        return Err(conflict(
            true,
            format!(
                "{}:latest is built into linkrt (its definition is part of the binary); loading an image tagged {}:latest replaces it",
                b.name, b.name
            ),
        ));
    }

    let mut db = store::Db::load(cfg)?;
    let mut out = Vec::new();
    let Some(rec) = db.images.iter_mut().find(|r| r.id == img.id) else {
        return Err(Error::user(format!("No such image: {}", familiar(name))));
    };
    if by_ref {
        if !force
            && rec.tags.len() == 1
            && let Some(c) = users.first()
        {
            return Err(Error::user(format!(
                "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                c.short_id(),
                short(&img.id)
            )));
        }
        rec.tags.retain(|t| *t != tag);
        out.push(format!("Untagged: {tag}"));
        if !rec.tags.is_empty() || running.is_some() {
            // Still tagged, or used by a running container: it stays (untagged).
            db.save(cfg, lock)?;
            return Ok(out);
        }
    } else {
        let repos: BTreeSet<String> = rec
            .tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok().map(|r| r.repo))
            .collect();
        if repos.len() > 1 && !force {
            return Err(conflict(false, "image is referenced in multiple repositories".into()));
        }
        in_use()?;
        for t in std::mem::take(&mut rec.tags) {
            out.push(format!("Untagged: {t}"));
        }
    }
    if stopped.is_some() {
        rec.hidden = true;
    } else {
        db.images.retain(|r| r.id != img.id);
    }
    out.push(format!("Deleted: {}", img.id));
    db.save(cfg, lock)?;
    let in_use: BTreeSet<String> = snap.containers.iter().map(|c| c.spec.image_id.clone()).collect();
    store::collect(cfg, lock, &mut db, &in_use)?;
    Ok(out)
}
