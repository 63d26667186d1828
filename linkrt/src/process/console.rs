//! Terminals: the pty master that the OCI runtime hands over a console socket, terminal
//! sizes, and raw mode for an interactive client. The one place linkrt deals with ptys.
use std::{
    io::IoSliceMut,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixListener,
    },
    path::Path,
    time::Duration,
};

use nix::sys::{
    socket::{ControlMessageOwned, MsgFlags, recvmsg},
    termios::{self, SetArg, Termios},
};

use crate::error::{Error, Result};

/// A terminal's size (rows, columns).
pub fn winsize(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sets a pty's size (the container's process gets SIGWINCH).
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(Error::io(
            "setting the terminal size of",
            "the container's pty",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Puts a terminal in raw mode and restores it on drop.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on `fd` if it is a terminal.
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: the caller keeps `fd` open for the guard's lifetime (0, 1 or 2).
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = termios::tcgetattr(b).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(b, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: see `enter`.
        let b = unsafe { BorrowedFd::borrow_raw(self.fd) };
        if let Err(e) = termios::tcsetattr(b, SetArg::TCSANOW, &self.saved) {
            log::warn!("restoring the terminal mode: {e}");
        }
    }
}

/// Receives the pty master that the runtime sends on the console socket `listener`
/// (SCM_RIGHTS, as runc's `--console-socket` does), waiting up to `timeout`.
pub fn receive_master(listener: &UnixListener, timeout: Duration) -> Result<OwnedFd> {
    let io = |e: std::io::Error| Error::io("receiving the pty from", "the console socket", e);
    listener.set_nonblocking(true).map_err(io)?;
    let start = std::time::Instant::now();
    let (conn, _) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(io(e)),
        }
    };
    conn.set_nonblocking(false).map_err(io)?;
    conn.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| io(e.into()))?;
    for c in msg.cmsgs().map_err(|e| io(e.into()))? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just gave us this descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(Error::sys("the OCI runtime sent no pty on the console socket"))
}

/// Binds the console socket at `path` (replacing a stale one).
pub fn console_socket(path: &Path) -> Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("removing", path, e)),
    }
    UnixListener::bind(path).map_err(|e| Error::io("binding", path, e))
}

/// A pty master bridged to this process's own terminal (`exec -t`): its output to our stdout,
/// our stdin to it (with `-i`, in raw mode), and our terminal's size to it.
pub struct LocalBridge {
    output: std::thread::JoinHandle<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _raw: Option<RawMode>,
}

/// Starts bridging `master` to our stdio.
pub fn bridge_local(master: OwnedFd, interactive: bool) -> Result<LocalBridge> {
    use std::{
        io::{Read, Write},
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
    };
    let raw = if interactive { RawMode::enter(0) } else { None };
    let size = || winsize(0).or_else(|| winsize(1));
    if let Some((r, c)) = size() {
        set_winsize(master.as_raw_fd(), r, c)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dup = |f: &OwnedFd| f.try_clone().map_err(|e| Error::io("duplicating", "the pty", e));
    if interactive {
        let w = dup(&master)?;
        // Not joined: it blocks on our stdin until the user types or it closes.
        std::thread::spawn(move || {
            let mut w = std::fs::File::from(w);
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    {
        // Terminal size changes, looked up a few times a second (no signal handler needed).
        let m = dup(&master)?;
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut last = size();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let now = size();
                if now != last
                    && let Some((r, c)) = now
                    && set_winsize(m.as_raw_fd(), r, c).is_ok()
                {
                    last = now;
                }
            }
        });
    }
    let output = std::thread::spawn(move || {
        let mut m = std::fs::File::from(master);
        let mut out = std::io::stdout();
        let mut buf = [0u8; 8192];
        // EIO once every slave side is closed.
        while let Ok(n) = m.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                break;
            }
        }
    });
    Ok(LocalBridge {
        output,
        stop,
        _raw: raw,
    })
}

impl LocalBridge {
    /// Waits for the last output (after the process exited) and restores the terminal.
    pub fn finish(self) {
        if self.output.join().is_err() {
            log::warn!("the terminal output thread panicked");
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
