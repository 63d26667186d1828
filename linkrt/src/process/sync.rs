//! The supervisor's one report to the command that started it, over a pipe (fd 3 of the
//! supervisor): a JSON line, [`Report::Started`] or [`Report::Failed`]; and the command's one
//! word to the supervisor, over a socket (fd 5): [`send_go`] once the container's network is
//! ready, so that the runtime creates the container meanwhile and starts its process only then.
use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    os::{fd::AsRawFd, unix::net::UnixStream},
};

/// The supervisor's end of the go socket.
pub const GO_FD: i32 = 5;

/// Tells the supervisor to start the created container's process. The supervisor may be gone
/// (it failed and reported, or was killed): no SIGPIPE, the report says what happened.
pub fn send_go(s: &UnixStream) -> std::io::Result<()> {
    nix::sys::socket::send(s.as_raw_fd(), b"g", nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
        .map(drop)
        .map_err(std::io::Error::from)
}

/// Waits for the go; `false` when the starting command closed the socket without one (it
/// failed to set up the network, or was killed): the container must not start.
pub fn wait_go(mut s: UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1) if b[0] == b'g')
}

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

    #[test]
    fn go_or_not() {
        let (cli, sup) = UnixStream::pair().unwrap();
        send_go(&cli).unwrap();
        assert!(wait_go(sup));
        let (cli, sup) = UnixStream::pair().unwrap();
        drop(cli);
        assert!(!wait_go(sup), "a closed socket is no go");
        let (cli, sup) = UnixStream::pair().unwrap();
        drop(sup);
        assert!(send_go(&cli).is_err(), "a gone supervisor is an error, not a SIGPIPE");
    }
}
