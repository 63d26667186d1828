//! A container's output files, size-capped as Docker's json-file driver does with `max-size`
//! and `max-file`: `stdout.log` is the newest, `stdout.log.1` the one before, and so on.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use crate::state::LogOpts;

pub struct RotatingLog {
    path: PathBuf,
    opts: LogOpts,
    file: File,
    size: u64,
    /// Set after a failed write (a full disk), so that it is logged once, not per line.
    failing: bool,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The log files of a stream, oldest first.
pub fn files_in_order(path: &Path, opts: &LogOpts) -> Vec<PathBuf> {
    (0..opts.max_file)
        .rev()
        .map(|n| rotated(path, n))
        .filter(|p| p.exists())
        .collect()
}

impl RotatingLog {
    pub fn open(path: &Path, opts: LogOpts) -> std::io::Result<RotatingLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            opts,
            file,
            size,
            failing: false,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.opts.max_file <= 1 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.opts.max_file).rev() {
                let from = rotated(&self.path, n - 1);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n))?;
                }
            }
            self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends `data`, rotating first when it would pass `max-size`. A failure (a full disk)
    /// drops the data, is logged once, and never stops the container.
    pub fn write(&mut self, data: &[u8]) {
        let r = (|| {
            let mut rest = data;
            while !rest.is_empty() {
                let room = self.opts.max_size.saturating_sub(self.size) as usize;
                if room == 0 || (self.size > 0 && rest.len() > room && !rest[..room].contains(&b'\n')) {
                    // Full, or the next line would not fit: a new file.
                    self.rotate()?;
                    continue;
                }
                // As much as fits, cut after a line when one ends in it.
                let take = if rest.len() <= room {
                    rest.len()
                } else {
                    rest[..room]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map(|i| i + 1)
                        .unwrap_or(room)
                };
                self.file.write_all(&rest[..take])?;
                self.size += take as u64;
                rest = &rest[take..];
            }
            Ok::<(), std::io::Error>(())
        })();
        match r {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                log::error!(
                    "writing {}: {e} (output dropped until writes succeed again)",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_max_file_files_of_max_size() {
        let d = std::env::temp_dir().join(format!("linkrt-log-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("stdout.log");
        let opts = LogOpts {
            max_size: 100,
            max_file: 3,
        };
        let mut l = RotatingLog::open(&p, opts).unwrap();
        for i in 0..40 {
            l.write(format!("line {i:03} of the log\n").as_bytes());
        }
        // One read of much output at once is split over the files too.
        let burst: String = (40..50).map(|i| format!("line {i:03} of the log\n")).collect();
        l.write(burst.as_bytes());
        let files = files_in_order(&p, &opts);
        assert_eq!(files.len(), 3);
        let all: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
        assert!(all.ends_with("line 049 of the log\n"));
        assert!(!all.contains("line 000"), "the oldest lines were rotated away");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 100);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Which stream a chunk of log output belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Reads one stream's files, oldest first, then follows the newest (when `follow`) across
/// rotations: the open file is read to its end before the new one is opened.
struct Follower {
    path: PathBuf,
    file: Option<(File, u64)>,
}

impl Follower {
    fn new(path: &Path) -> Follower {
        Follower {
            path: path.to_path_buf(),
            file: None,
        }
    }

    fn ino(p: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).ok().map(|m| m.ino())
    }

    /// What the newest file gained since the last call.
    fn poll(&mut self) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        if let Some((f, _)) = &mut self.file
            && let Err(e) = f.read_to_end(&mut out)
        {
            log::warn!("reading {}: {e}", self.path.display());
        }
        let current = Follower::ino(&self.path);
        if current.is_some() && self.file.as_ref().map(|(_, i)| Some(*i)) != Some(current) {
            // Rotated (or created): the new file from its start.
            if let Ok(mut f) = File::open(&self.path) {
                if let Err(e) = f.read_to_end(&mut out) {
                    log::warn!("reading {}: {e}", self.path.display());
                }
                self.file = current.map(|i| (f, i));
            }
        }
        out
    }
}

/// `logs [-f]`: every stored line of both streams, then (with `follow`) new output until
/// `running()` turns false (and the last output is read).
pub async fn read_logs(
    out_path: &Path,
    err_path: &Path,
    opts: &LogOpts,
    follow: bool,
    running: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(Stream, &[u8]),
) {
    use std::io::Read;
    for (stream, path) in [(Stream::Stdout, out_path), (Stream::Stderr, err_path)] {
        // The older, rotated files are complete: read them once.
        let files = files_in_order(path, opts);
        for f in files.iter().filter(|f| f.as_path() != path) {
            let mut v = Vec::new();
            if let Err(e) = File::open(f).and_then(|mut h| h.read_to_end(&mut v)) {
                log::warn!("reading {}: {e}", f.display());
            }
            sink(stream, &v);
        }
    }
    let mut followers = [
        (Stream::Stdout, Follower::new(out_path)),
        (Stream::Stderr, Follower::new(err_path)),
    ];
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        let alive = running();
        for (stream, f) in followers.iter_mut() {
            let data = f.poll();
            if !data.is_empty() {
                sink(*stream, &data);
            }
        }
        if !follow || !alive {
            return;
        }
        tick.tick().await;
    }
}
