//! `kill [-s SIG]` and `wait`: Docker's signal names and numbers; SIGKILL waits for the exit,
//! another signal is only sent. `wait` blocks (without the lock) until the container is not
//! running and returns its exit code.
use std::time::Duration;

use super::stop;
use crate::{
    config::Config,
    error::{Error, Result},
    state::{Lock, Status, Store},
};

/// moby's `signal.ParseSignal`: a number (not 0), or a name with or without `SIG`, any case.
pub fn parse_signal(raw: &str) -> Result<i32> {
    let bad = || Error::user(format!("Invalid signal: {raw}"));
    if let Ok(n) = raw.parse::<i64>() {
        // Linux's signals are 1..=64 (ValidSignalForPlatform refuses the rest).
        return match n {
            0 => Err(bad()),
            1..=64 => Ok(n as i32),
            _ => Err(Error::user(format!("the linux daemon does not support signal {n}"))),
        };
    }
    let up = raw.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let rt = |off: &str, base: i32, sign: i32| -> Option<i32> {
        if off.is_empty() {
            return Some(base);
        }
        let n: i32 = off.strip_prefix(if sign > 0 { '+' } else { '-' })?.parse().ok()?;
        let s = base + sign * n;
        (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&s).then_some(s)
    };
    let n = match name {
        "CLD" => Some(libc::SIGCHLD),
        "IOT" => Some(libc::SIGABRT),
        "POLL" => Some(libc::SIGIO),
        n if n.starts_with("RTMIN") => rt(&n[5..], libc::SIGRTMIN(), 1),
        n if n.starts_with("RTMAX") => rt(&n[5..], libc::SIGRTMAX(), -1),
        n => format!("SIG{n}")
            .parse::<nix::sys::signal::Signal>()
            .ok()
            .map(|s| s as i32),
    };
    n.ok_or_else(bad)
}

/// `docker kill [-s SIG] NAME`: the signal (default SIGKILL) to PID 1. SIGKILL waits until the
/// exit is recorded. A container that is not running is refused in Docker's words.
pub fn kill(cfg: &Config, what: &str, signal: Option<&str>) -> Result<()> {
    let sig = match signal {
        Some(s) if !s.is_empty() => parse_signal(s)?,
        _ => libc::SIGKILL,
    };
    let store = Store::new(cfg);
    let c = {
        let lock = Lock::acquire(cfg)?;
        let snap = super::reconcile::reconcile(&store, &lock)?;
        let mut c = snap.find(what)?.clone();
        if !c.can_stop() {
            return Err(Error::user(format!("container {} is not running", c.id)));
        }
        // Docker's HasBeenManuallyStopped: `unless-stopped` is not restarted after a kill
        // (`always` is; `on-failure` follows the exit code).
        if !c.state.manually_stopped {
            c.state.manually_stopped = true;
            // Best effort: on a full state disk `kill` must still work.
            if let Err(e) = store.save(&lock, &c) {
                log::warn!("recording the kill of {}: {e}", c.short_id());
            }
        }
        stop::signal_raw(&c, sig)?;
        c
    };
    if sig == libc::SIGKILL && !stop::wait_stopped(&store, &c.id, Duration::from_secs(30)) {
        return Err(Error::sys(format!("container {} did not stop", c.short_id())));
    }
    Ok(())
}

/// `docker wait NAME`: blocks until the container is not running (Docker's default
/// condition, `not-running`), then returns its exit code. A container removed meanwhile
/// (`--rm`) gives the code its supervisor recorded.
pub fn wait(cfg: &Config, what: &str) -> Result<i32> {
    let store = Store::new(cfg);
    let c = super::read_snapshot(cfg)?.find(what)?.clone();
    loop {
        match store.load(&c.id) {
            Ok(r) if r.state.status == Status::Running || r.state.restarting => {}
            Ok(r) => return Ok(r.state.exit_code),
            Err(_) if !store.dir(&c.id).exists() => {
                return Ok(crate::state::exit::read(cfg, &c.id).map_or(0, |e| e.code));
            }
            Err(e) => return Err(e),
        }
        // An exit the supervisor saw but could not record yet counts (a full state disk).
        if let Some(e) = crate::state::exit::read(cfg, &c.id) {
            return Ok(e.code);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers_as_moby() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert_eq!(parse_signal("CLD").unwrap(), libc::SIGCHLD);
        assert_eq!(parse_signal("0").unwrap_err().to_string(), "Invalid signal: 0");
        assert_eq!(parse_signal("FOO").unwrap_err().to_string(), "Invalid signal: FOO");
        assert_eq!(
            parse_signal("99").unwrap_err().to_string(),
            "the linux daemon does not support signal 99"
        );
    }
}
