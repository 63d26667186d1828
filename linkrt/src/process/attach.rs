//! The attach stream between a foreground `linkrt run`/`start -a` and the container's
//! supervisor: length-prefixed frames over a Unix socket pair.
//!
//! Frame: kind (1 byte), length (4 bytes, big endian), payload. The supervisor sends output
//! and, last, the exit code; the client sends input, terminal sizes and signals.
use bytes::{Buf, BufMut, Bytes, BytesMut};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Stdout(Bytes),
    Stderr(Bytes),
    Stdin(Bytes),
    /// The client's standard input ended.
    StdinEof,
    Resize {
        rows: u16,
        cols: u16,
    },
    Signal(i32),
    /// The container exited with this code (and its exit is recorded).
    Exit(i32),
}

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STDIN: u8 = 3;
const STDIN_EOF: u8 = 4;
const RESIZE: u8 = 5;
const SIGNAL: u8 = 6;
const EXIT: u8 = 7;

/// Payloads larger than this are refused (a corrupt or hostile peer).
const MAX_PAYLOAD: usize = 1 << 20;

impl Frame {
    pub fn encode(&self, out: &mut BytesMut) {
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Stdout(b) => (STDOUT, b),
            Frame::Stderr(b) => (STDERR, b),
            Frame::Stdin(b) => (STDIN, b),
            Frame::StdinEof => (STDIN_EOF, &[]),
            Frame::Resize { rows, cols } => {
                out.put_u8(RESIZE);
                out.put_u32(4);
                out.put_u16(*rows);
                out.put_u16(*cols);
                return;
            }
            Frame::Signal(s) => {
                out.put_u8(SIGNAL);
                out.put_u32(4);
                out.put_i32(*s);
                return;
            }
            Frame::Exit(c) => {
                out.put_u8(EXIT);
                out.put_u32(4);
                out.put_i32(*c);
                return;
            }
        };
        out.put_u8(kind);
        out.put_u32(payload.len() as u32);
        out.put_slice(payload);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// Takes one whole frame from the front of `buf`; `Ok(None)` until one is complete.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let kind = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!("attach frame of {len} bytes"));
        }
        if buf.len() < 5 + len {
            return Ok(None);
        }
        buf.advance(5);
        let mut p = buf.split_to(len);
        let four = |p: &mut BytesMut| -> Result<(), String> {
            if p.len() == 4 {
                Ok(())
            } else {
                Err(format!("attach frame {kind} of {} bytes", p.len()))
            }
        };
        Ok(Some(match kind {
            STDOUT => Frame::Stdout(p.freeze()),
            STDERR => Frame::Stderr(p.freeze()),
            STDIN => Frame::Stdin(p.freeze()),
            STDIN_EOF => Frame::StdinEof,
            RESIZE => {
                four(&mut p)?;
                Frame::Resize {
                    rows: p.get_u16(),
                    cols: p.get_u16(),
                }
            }
            SIGNAL => {
                four(&mut p)?;
                Frame::Signal(p.get_i32())
            }
            EXIT => {
                four(&mut p)?;
                Frame::Exit(p.get_i32())
            }
            k => return Err(format!("unknown attach frame kind {k}")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let frames = vec![
            Frame::Stdout(Bytes::from_static(b"hello")),
            Frame::Stderr(Bytes::new()),
            Frame::Stdin(Bytes::from_static(b"\x03")),
            Frame::StdinEof,
            Frame::Resize { rows: 40, cols: 120 },
            Frame::Signal(15),
            Frame::Exit(137),
        ];
        let mut all = BytesMut::new();
        for f in &frames {
            f.encode(&mut all);
        }
        // Fed one byte at a time, the decoder yields each frame exactly once.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            buf.put_u8(*b);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        let mut bad = BytesMut::from(&[9u8, 0, 0, 0, 0][..]);
        assert!(Frame::decode(&mut bad).is_err());
        let mut huge = BytesMut::from(&[1u8, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(Frame::decode(&mut huge).is_err());
    }
}
