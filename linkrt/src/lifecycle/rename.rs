//! `rename OLD NEW`: the record's name changes; links follow (they hold the source's ID, and
//! the recipient's link names are under its own name), as in Docker.
use crate::{
    config::Config,
    error::{Error, Result},
    names,
    state::{Lock, Store},
};

/// `docker rename`, with moby's words for each refusal.
pub fn rename(cfg: &Config, old: &str, new: &str) -> Result<()> {
    let (old, new) = (old.trim(), new.trim());
    if old.trim_start_matches('/').is_empty() || new.trim_start_matches('/').is_empty() {
        return Err(Error::user("Neither old nor new names may be empty"));
    }
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    let mut snap = super::reconcile::reconcile(&store, &lock)?;
    let c = snap.find(old)?.clone();
    let want = new.strip_prefix('/').unwrap_or(new);
    if c.name == want {
        return Err(Error::user(
            "Renaming a container with the same name as its current name",
        ));
    }
    let alloc = |e: Error| Error::user(format!("Error when allocating new name: {e}"));
    let want = names::validate(want).map_err(alloc)?;
    if let Some(o) = snap.containers.iter().find(|o| o.name == want) {
        return Err(alloc(Error::user(format!(
            "Conflict. The container name \"/{want}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
            o.id
        ))));
    }
    if c.state.status == crate::state::Status::Dead {
        return Err(Error::user(format!(
            "container {} is dead: its record cannot be written",
            c.id
        )));
    }
    let mut c = c;
    c.name = want.clone();
    store.save(&lock, &c)?;
    super::start::upsert(&mut snap, &c);
    // The recipients' record of the source's name (shown for a link whose source is gone).
    let recipients: Vec<_> = snap
        .containers
        .iter()
        .filter(|r| {
            r.spec
                .links
                .iter()
                .any(|l| l.source_id == c.id && l.source_name != want)
        })
        .cloned()
        .collect();
    for mut r in recipients {
        for l in r.spec.links.iter_mut().filter(|l| l.source_id == c.id) {
            l.source_name = want.clone();
        }
        if r.state.status != crate::state::Status::Dead {
            store.save(&lock, &r)?;
        }
    }
    Ok(())
}
