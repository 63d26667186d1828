//! Restart policies (`--restart`), as Docker's restart manager applies them: after an exit
//! the supervisor asks [`after_exit`] (under the lock, with the exit recorded) whether to
//! restart and after which delay (100 ms, doubled after each restart, at most a minute, back
//! to 100 ms after a run of 10 s or more); the container shows `restarting` meanwhile. Then
//! [`restart_now`] starts it through the normal start path, unless a command changed it in
//! between (`stop`, `rm`, `start`). `start --restartable` ([`restartable`]) is the boot hook:
//! Docker's daemon start, restarting `always` and not manually stopped `unless-stopped`
//! containers.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::start::{Attach, start, upsert};
use crate::{
    config::Config,
    error::{Error, Result},
    state::{self, Container, Lock, Snapshot, Status, Store},
};

/// Docker's `RestartPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure {
        /// 0: no limit.
        max_retries: u32,
    },
}

impl RestartPolicy {
    /// `runconfig.ParseRestartPolicy` then the daemon's `ValidateRestartPolicy`.
    pub fn parse(raw: &str) -> Result<RestartPolicy> {
        let (k, v) = match raw.split_once(':') {
            Some(("", _)) => {
                return Err(Error::user(
                    "invalid restart policy format: no policy provided before colon",
                ));
            }
            Some((k, v)) => (k, v),
            None => (raw, ""),
        };
        let count: i64 = if v.is_empty() {
            0
        } else {
            v.parse()
                .map_err(|_| Error::user("invalid restart policy format: maximum retry count must be an integer"))?
        };
        let only_on_failure = |count: i64| {
            let mut msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'".to_string();
            if count < 0 {
                msg += " and cannot be negative";
            }
            Error::user(msg)
        };
        let p = match k {
            "no" | "" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                if count < 0 {
                    return Err(Error::user(
                        "invalid restart policy: maximum retry count cannot be negative",
                    ));
                }
                return Ok(RestartPolicy::OnFailure {
                    max_retries: u32::try_from(count).unwrap_or(u32::MAX),
                });
            }
            other => {
                return Err(Error::user(format!(
                    "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )));
            }
        };
        if count != 0 {
            return Err(only_on_failure(count));
        }
        Ok(p)
    }

    /// Docker's `Name` and `MaximumRetryCount`.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure { .. } => "on-failure",
        }
    }

    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max_retries } => *max_retries,
            _ => 0,
        }
    }

    pub fn is_none(&self) -> bool {
        *self == RestartPolicy::No
    }
}

const FIRST_DELAY_MS: u64 = 100;
const MAX_DELAY_MS: u64 = 60_000;

/// The restart manager's decision for an exit with `code` after a run of `ran`: the delay
/// before the restart (and the new back-off state), or `None`.
pub fn decide(
    policy: RestartPolicy,
    code: i32,
    manually_stopped: bool,
    restart_count: u32,
    backoff_ms: u64,
    ran: Duration,
) -> Option<u64> {
    if policy.is_none() {
        return None;
    }
    let prev = if ran >= Duration::from_secs(10) { 0 } else { backoff_ms };
    let delay = if prev == 0 {
        FIRST_DELAY_MS
    } else {
        (prev * 2).min(MAX_DELAY_MS)
    };
    let restart = match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::UnlessStopped => !manually_stopped,
        RestartPolicy::OnFailure { max_retries } => (max_retries == 0 || restart_count < max_retries) && code != 0,
    };
    restart.then_some(delay)
}

/// Called when an exit was just recorded in `c` (caller holds the lock): when the policy says
/// so, marks the container restarting (RestartCount + 1) and returns the delay.
pub fn after_exit(store: &Store, lock: &Lock, snap: &mut Snapshot, c: &mut Container) -> Result<Option<Duration>> {
    if c.state.restart_canceled {
        return Ok(None);
    }
    let ran = match (
        c.state.started_at.as_deref().and_then(state::parse_rfc3339),
        c.state.finished_at.as_deref().and_then(state::parse_rfc3339),
    ) {
        (Some(a), Some(b)) if b >= a => Duration::from_secs_f64(b - a),
        _ => Duration::ZERO,
    };
    let Some(delay) = decide(
        c.spec.restart,
        c.state.exit_code,
        c.state.manually_stopped,
        c.restart_count,
        c.restart_backoff_ms,
        ran,
    ) else {
        return Ok(None);
    };
    c.restart_count += 1;
    c.restart_backoff_ms = delay;
    c.state.restarting = true;
    store.save(lock, c)?;
    upsert(snap, c);
    Ok(Some(Duration::from_millis(delay)))
}

/// The restart itself, after the delay: through the normal start path, unless a command
/// changed the container meanwhile (stopped, removed, started). A failed restart leaves it
/// stopped, with the error, as Docker does.
pub fn restart_now(cfg: &Config, id: &str) -> Result<()> {
    let store = Store::new(cfg);
    let lock = Lock::wait(cfg)?;
    let mut snap = super::reconcile::reconcile(&store, &lock)?;
    let Some(mut c) = snap.get(id).cloned() else {
        return Ok(());
    };
    if !c.state.restarting || c.state.status != Status::Exited {
        return Ok(());
    }
    // Still `restarting` until it runs (the start clears it) or the start fails (recorded,
    // status and error, by `start` itself).
    start(&store, lock, &mut snap, &mut c, Attach::Detached).map(|_| ())
}

/// Whether the boot hook starts `c`: Docker's daemon start restarts `always` containers and
/// `unless-stopped` ones that were not stopped by hand.
pub fn restart_at_boot(c: &Container) -> bool {
    c.can_start()
        && match c.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !c.state.manually_stopped,
            _ => false,
        }
}

/// The containers `start --restartable` starts, oldest first: a link source (created before
/// its recipients) starts before them. A recipient whose source does not restart fails to
/// start in Docker's words, as it would in Docker.
pub fn restartable(cfg: &Config) -> Result<Vec<String>> {
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    let snap = super::reconcile::reconcile(&store, &lock)?;
    Ok(snap
        .containers
        .iter()
        .filter(|c| restart_at_boot(c))
        .map(|c| c.name.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_docker() {
        let p = |s: &str| RestartPolicy::parse(s).map_err(|e| e.to_string());
        assert_eq!(p("no"), Ok(RestartPolicy::No));
        assert_eq!(p("always"), Ok(RestartPolicy::Always));
        assert_eq!(p("unless-stopped"), Ok(RestartPolicy::UnlessStopped));
        assert_eq!(p("on-failure"), Ok(RestartPolicy::OnFailure { max_retries: 0 }));
        assert_eq!(p("on-failure:3"), Ok(RestartPolicy::OnFailure { max_retries: 3 }));
        assert_eq!(
            p("sometimes").unwrap_err(),
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        );
        assert_eq!(
            p("always:3").unwrap_err(),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert_eq!(
            p("always:-1").unwrap_err(),
            "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"
        );
        assert_eq!(
            p("on-failure:-1").unwrap_err(),
            "invalid restart policy: maximum retry count cannot be negative"
        );
        assert_eq!(
            p("on-failure:x").unwrap_err(),
            "invalid restart policy format: maximum retry count must be an integer"
        );
        assert_eq!(
            p(":3").unwrap_err(),
            "invalid restart policy format: no policy provided before colon"
        );
    }

    #[test]
    fn the_restart_managers_rule_and_back_off() {
        let short = Duration::from_secs(1);
        let d = |p, code, stopped, count, backoff| decide(p, code, stopped, count, backoff, short);
        assert_eq!(d(RestartPolicy::No, 1, false, 0, 0), None);
        assert_eq!(
            d(RestartPolicy::Always, 0, true, 0, 0),
            Some(100),
            "kill does not stop `always`"
        );
        assert_eq!(d(RestartPolicy::UnlessStopped, 0, true, 0, 0), None);
        assert_eq!(d(RestartPolicy::UnlessStopped, 0, false, 0, 0), Some(100));
        let of = RestartPolicy::OnFailure { max_retries: 2 };
        assert_eq!(d(of, 0, false, 0, 0), None);
        assert_eq!(d(of, 3, false, 1, 100), Some(200));
        assert_eq!(d(of, 3, false, 2, 200), None, "max retries reached");
        assert_eq!(
            d(RestartPolicy::OnFailure { max_retries: 0 }, 1, false, 1000, 0),
            Some(100)
        );
        // Doubling, capped at a minute; a run of 10 s or more starts over.
        let mut b = 0;
        let mut seen = Vec::new();
        for _ in 0..12 {
            b = d(RestartPolicy::Always, 1, false, 0, b).unwrap();
            seen.push(b);
        }
        assert_eq!(&seen[..4], [100, 200, 400, 800]);
        assert_eq!(seen[11], 60_000);
        assert_eq!(
            decide(RestartPolicy::Always, 1, false, 0, 60_000, Duration::from_secs(10)),
            Some(100)
        );
    }
}
