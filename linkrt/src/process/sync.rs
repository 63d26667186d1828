//! The supervisor's one report to the command that started it, over a pipe (fd 3 of the
//! supervisor): a JSON line, [`Report::Started`] or [`Report::Failed`].
use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
};

use serde::{Deserialize, Serialize};

/// How a start went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// The container's PID 1 runs.
    Started { pid: i32 },
    /// It could not start: Docker's exit code (125, 126, 127) and the reason.
    Failed { code: i32, msg: String },
}

impl Report {
    pub fn write(&self, w: &mut File) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(self).expect("serializable");
        line.push(b'\n');
        w.write_all(&line)
    }

    /// Reads the report; `None` when the supervisor exited without one.
    pub fn read(r: File) -> Option<Report> {
        let mut line = String::new();
        BufReader::new(r).read_line(&mut line).ok()?;
        serde_json::from_str(line.trim_end()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = File::from(w);
        Report::Failed {
            code: 127,
            msg: "exec: \"x\": not found\nsecond".into(),
        }
        .write(&mut w)
        .unwrap();
        drop(w);
        assert_eq!(
            Report::read(File::from(r)),
            Some(Report::Failed {
                code: 127,
                msg: "exec: \"x\": not found\nsecond".into()
            })
        );
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(w);
        assert_eq!(Report::read(File::from(r)), None);
    }
}
