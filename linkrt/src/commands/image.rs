//! `images`, `image ls|inspect|load|import|save|rm`, `load`, `import`, `save`, `rmi`.
use std::{io::IsTerminal, path::PathBuf};

use linkrt::{
    Config, format,
    image::{self, archive},
    state::Lock,
};

use super::{CmdResult, Failure};
use crate::cli::{ImageCmd, ImageInspectArgs, ImagesArgs, ImportArgs, LoadArgs, RmiArgs, SaveArgs};

pub fn dispatch(cfg: &Config, cmd: ImageCmd) -> CmdResult {
    match cmd {
        ImageCmd::Ls(a) => ls(cfg, a),
        ImageCmd::Inspect(a) => inspect(cfg, a),
        ImageCmd::Load(a) => load(cfg, a),
        ImageCmd::Import(a) => import(cfg, a),
        ImageCmd::Save(a) => save(cfg, a),
        ImageCmd::Rm(a) => rmi(cfg, a),
    }
}

fn fail(msg: String) -> Failure {
    Failure { code: 1, msg }
}

/// REPOSITORY, TAG, IMAGE ID, CREATED, SIZE, as `docker images` prints them.
pub fn ls(cfg: &Config, a: ImagesArgs) -> CmdResult {
    let mut rows = image::list(cfg).map_err(Failure::cli)?;
    if let Some(r) = &a.reference {
        let (repo, tag) = match r.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((repo, tag)) => (repo.to_string(), Some(tag.to_string())),
            None => (r.clone(), None),
        };
        rows.retain(|s| s.repository == repo && tag.as_ref().is_none_or(|t| *t == s.tag));
    }
    let id = |s: &str| {
        if a.no_trunc {
            s.to_string()
        } else {
            s.trim_start_matches("sha256:").chars().take(12).collect()
        }
    };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for s in &rows {
            if seen.insert(s.id.clone()) {
                println!("{}", id(&s.id));
            }
        }
        return Ok(0);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut table = vec![
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
            .map(String::from)
            .to_vec(),
    ];
    for s in &rows {
        let created = match s.created.as_deref().and_then(linkrt::state::parse_rfc3339) {
            Some(t) if t > 0.0 => format!("{} ago", format::human_duration((now - t).max(0.0))),
            _ => "N/A".into(),
        };
        table.push(vec![
            s.repository.clone(),
            s.tag.clone(),
            id(&s.id),
            created,
            image::human_size(s.size),
        ]);
    }
    print!("{}", format::table(&table));
    Ok(0)
}

pub fn inspect(cfg: &Config, a: ImageInspectArgs) -> CmdResult {
    let mut docs = Vec::new();
    let mut missing = None;
    for n in &a.images {
        match image::lookup(cfg, n).map_err(Failure::cli)? {
            Some(r) => docs.push(image::inspect_json(&r)),
            None => {
                missing.get_or_insert_with(|| n.clone());
            }
        }
    }
    match &a.format {
        Some(t) => {
            for d in &docs {
                println!("{}", format::render_template(t, d).map_err(Failure::cli)?);
            }
        }
        None => println!("{}", format::to_json(&serde_json::Value::Array(docs))),
    }
    match missing {
        Some(m) => Err(fail(format!("No such image: {m}"))),
        None => Ok(0),
    }
}

pub fn load(cfg: &Config, a: LoadArgs) -> CmdResult {
    let input = match a.input {
        Some(p) => archive::Input::Path(p),
        None if std::io::stdin().is_terminal() => {
            return Err(fail("requested load from stdin, but stdin is empty".into()));
        }
        None => archive::Input::Stdin,
    };
    let lines = archive::load(cfg, &input).map_err(Failure::cli)?;
    if !a.quiet {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(0)
}

pub fn import(cfg: &Config, a: ImportArgs) -> CmdResult {
    let input = if a.file == "-" {
        archive::Input::Stdin
    } else {
        archive::Input::Path(PathBuf::from(&a.file))
    };
    let id = archive::import(cfg, &input, a.reference.as_deref()).map_err(Failure::cli)?;
    println!("{id}");
    Ok(0)
}

pub fn save(cfg: &Config, a: SaveArgs) -> CmdResult {
    match a.output {
        Some(p) => {
            // Written beside the target, then renamed: a failed save leaves no partial file.
            let tmp = p.with_file_name(format!(
                ".{}.tmp{}",
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            let r = std::fs::File::create(&tmp)
                .map_err(|e| linkrt::Error::io("creating", &tmp, e))
                .and_then(|f| {
                    let mut w = std::io::BufWriter::new(f);
                    archive::save(cfg, &a.images, &mut w)?;
                    let f = w
                        .into_inner()
                        .map_err(|e| linkrt::Error::io("writing", &tmp, e.into_error()))?;
                    f.sync_all().map_err(|e| linkrt::Error::io("writing", &tmp, e))?;
                    std::fs::rename(&tmp, &p).map_err(|e| linkrt::Error::io("renaming", &tmp, e))
                });
            if r.is_err()
                && let Err(e) = std::fs::remove_file(&tmp)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("linkrt: removing {}: {e}", tmp.display());
            }
            r.map_err(Failure::cli)?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(fail(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
                ));
            }
            let out = std::io::stdout().lock();
            archive::save(cfg, &a.images, std::io::BufWriter::new(out)).map_err(Failure::cli)?;
        }
    }
    Ok(0)
}

pub fn rmi(cfg: &Config, a: RmiArgs) -> CmdResult {
    let lock = Lock::acquire(cfg).map_err(Failure::cli)?;
    let mut code = 0;
    for n in &a.images {
        match image::remove::remove(cfg, &lock, n, a.force) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
