//! The OCI runtime that starts containers: runc or crun, as Docker and Podman use them.
//!
//! Each linkrt instance keeps the runtime's state under its own run directory
//! (`<run_root>/runtime/<name>`), so instances never see each other's containers. Whether a
//! runtime can run containers on this host (crun 1.8 refuses hybrid cgroup hosts, for
//! instance) is found by running one real container once, and the answer is cached per
//! runtime binary and kernel.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::options::RUNTIMES;
use crate::{
    config::Config,
    error::{Error, Result},
};

/// A runtime binary and the state directory linkrt gives it.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub name: String,
    pub binary: PathBuf,
    pub state_root: PathBuf,
}

/// The result of probing a runtime on this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Usable {
    Yes,
    /// Why it cannot run containers here (the runtime's own words).
    No(String),
}

#[derive(Serialize, Deserialize)]
struct ProbeCache {
    key: String,
    usable: Usable,
}

fn find_in_path(bin: &str) -> Option<PathBuf> {
    let path =
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

impl Runtime {
    /// The runtime `name` (`runc`/`crun`); its binary is `LINKRT_RUNTIME_<NAME>` if set (like
    /// a `runtimes` path in Docker's daemon.json), else found in `PATH`.
    pub fn named(cfg: &Config, name: &str) -> Result<Runtime> {
        super::options::validate_runtime(name)?;
        let var = format!("LINKRT_RUNTIME_{}", name.to_ascii_uppercase());
        let binary = match std::env::var_os(&var) {
            Some(p) => PathBuf::from(p),
            None => find_in_path(name).unwrap_or_else(|| PathBuf::from(name)),
        };
        if !binary.is_file() {
            return Err(Error::user(format!(
                "OCI runtime {name}: exec: \"{}\": executable file not found in $PATH (install the Debian package {name}, or run `cargo xtask setup`)",
                binary.display()
            )));
        }
        Ok(Runtime {
            name: name.to_string(),
            binary,
            state_root: cfg.run_root.join("runtime").join(name),
        })
    }

    /// The runtime for a new container: `requested`, else `LINKRT_RUNTIME`, else the first of
    /// runc, crun that can run containers on this host. A runtime that cannot is refused with
    /// its own explanation.
    pub fn select(cfg: &Config, requested: Option<&str>) -> Result<Runtime> {
        let explicit = requested
            .map(str::to_owned)
            .or_else(|| std::env::var("LINKRT_RUNTIME").ok());
        if let Some(name) = explicit {
            let rt = Runtime::named(cfg, &name)?;
            return match rt.probe(cfg)? {
                Usable::Yes => Ok(rt),
                Usable::No(why) => Err(Error::user(format!(
                    "OCI runtime {name} cannot run containers on this host: {why}"
                ))),
            };
        }
        let mut reasons = Vec::new();
        for name in RUNTIMES {
            match Runtime::named(cfg, name) {
                Ok(rt) => match rt.probe(cfg)? {
                    Usable::Yes => return Ok(rt),
                    Usable::No(why) => reasons.push(format!("{name}: {why}")),
                },
                Err(e) => reasons.push(e.to_string()),
            }
        }
        Err(Error::user(format!(
            "no OCI runtime can run containers on this host ({})",
            reasons.join("; ")
        )))
    }

    /// Every runtime linkrt knows, and whether it can run containers on this host (for
    /// `linkrt status`): the default is the first usable one.
    pub fn survey(cfg: &Config) -> Vec<(String, std::result::Result<Usable, String>)> {
        RUNTIMES
            .iter()
            .map(|name| {
                let r = Runtime::named(cfg, name)
                    .and_then(|rt| rt.probe(cfg))
                    .map_err(|e| e.to_string());
                (name.to_string(), r)
            })
            .collect()
    }

    /// The runtime a container was created with.
    pub fn for_container(cfg: &Config, name: &str) -> Result<Runtime> {
        Runtime::named(cfg, if name.is_empty() { "runc" } else { name })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.state_root);
        c
    }

    fn cache_key(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&self.binary).ok();
        format!(
            "{} {} {} {:?}",
            self.binary.display(),
            md.as_ref().map(|m| m.size()).unwrap_or(0),
            md.as_ref().map(|m| m.mtime()).unwrap_or(0),
            super::seccomp::kernel_version()
        )
    }

    /// Whether this runtime can run a container on this host: found by running one (a bare
    /// `true` with the host's `/usr`), once per binary and kernel.
    pub fn probe(&self, cfg: &Config) -> Result<Usable> {
        let cache = cfg.run_root.join("runtime").join(format!("{}.probe.json", self.name));
        let key = self.cache_key();
        if let Ok(data) = std::fs::read(&cache)
            && let Ok(c) = serde_json::from_slice::<ProbeCache>(&data)
            && c.key == key
        {
            return Ok(c.usable);
        }
        let usable = self.probe_uncached(cfg)?;
        crate::state::create_private_dir(cache.parent().expect("has a parent"))?;
        crate::state::write_atomic(
            &cache,
            &serde_json::to_vec(&ProbeCache {
                key,
                usable: usable.clone(),
            })
            .expect("serializable"),
        )?;
        Ok(usable)
    }

    fn probe_uncached(&self, cfg: &Config) -> Result<Usable> {
        let id = format!("linkrt-probe-{}", std::process::id());
        let dir = cfg.run_root.join("runtime").join(&id);
        let rootfs = dir.join("rootfs");
        crate::state::create_private_dir(&rootfs)?;
        for d in ["proc", "dev", "sys", "usr", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).map_err(|e| Error::io("creating", rootfs.join(d), e))?;
        }
        for l in ["bin", "lib", "lib64", "sbin"] {
            if let Ok(t) = std::fs::read_link(Path::new("/").join(l)) {
                let _ = std::os::unix::fs::symlink(t, rootfs.join(l));
            }
        }
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/usr/bin/true"],
                        "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
            "root": {"path": rootfs},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}],
                "cgroupsPath": super::cgroup::container_path(&cfg.cgroup_parent, &id),
                "resources": {"devices": [{"allow": false, "access": "rwm"}]}
            }
        });
        std::fs::write(dir.join("config.json"), spec.to_string())
            .map_err(|e| Error::io("writing", dir.join("config.json"), e))?;
        let out = self
            .cmd()
            .arg("run")
            .arg("--bundle")
            .arg(&dir)
            .arg(&id)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running", &self.binary, e))?;
        // The probe container exited (or never started): remove what is left of it.
        let _ = self
            .cmd()
            .args(["delete", "--force", &id])
            .stderr(Stdio::null())
            .status();
        super::cgroup::remove(
            &super::cgroup::Layout::detect(),
            &super::cgroup::container_path(&cfg.cgroup_parent, &id),
        );
        let _ = std::fs::remove_dir_all(&dir);
        if out.status.success() {
            Ok(Usable::Yes)
        } else {
            Ok(Usable::No(runtime_error(&String::from_utf8_lossy(&out.stderr))))
        }
    }

    /// A runtime command with its errors logged (JSON) to `<bundle>/runtime.log`.
    fn logged(&self, bundle: &Path) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.state_root)
            .arg("--log")
            .arg(bundle.join("runtime.log"))
            .arg("--log-format")
            .arg("json");
        c
    }

    /// Waits for a runtime command (at most 60 s: a runtime that hangs must not hang linkrt);
    /// the runtime's error message when it failed.
    fn finish(&self, mut child: std::process::Child, bundle: &Path) -> Result<std::result::Result<(), String>> {
        let Some(st) = wait_bounded(&mut child, &self.binary)? else {
            return Ok(Err(format!("{} did not answer within 60 s", self.name)));
        };
        if st.success() {
            return Ok(Ok(()));
        }
        let log = bundle.join("runtime.log");
        Ok(Err(runtime_error(&std::fs::read_to_string(&log).unwrap_or_default())))
    }

    /// `create`: the container of `bundle` is made (namespaces, root, cgroup, seccomp,
    /// capabilities) with its PID 1 waiting to exec the process until [`Runtime::start`]. PID 1
    /// becomes a child of the nearest subreaper (the supervisor). The runtime hands its own
    /// standard input, output and error to the process (unused with a terminal: the pty master
    /// then arrives on `console_socket`). Returns PID 1, or the runtime's error message (a
    /// missing executable is one: runc and crun look it up at create).
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        console_socket: Option<&Path>,
        stdio: [Stdio; 3],
    ) -> Result<std::result::Result<i32, String>> {
        let pid_file = bundle.join("init.pid");
        let mut c = self.logged(bundle);
        c.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        if let Some(s) = console_socket {
            c.arg("--console-socket").arg(s);
        }
        c.arg(id);
        let [i, o, e] = stdio;
        c.stdin(i).stdout(o).stderr(e);
        let child = c.spawn().map_err(|e| Error::io("running", &self.binary, e))?;
        // Our copies of the container's stdio ends go with the command.
        drop(c);
        if let Err(msg) = self.finish(child, bundle)? {
            return Ok(Err(msg));
        }
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(|e| Error::io("reading", &pid_file, e))?
            .trim()
            .parse::<i32>()
            .map_err(|_| Error::sys(format!("{}: not a pid", pid_file.display())))?;
        Ok(Ok(pid))
    }

    /// `start`: a created container's PID 1 execs its process.
    pub fn start(&self, id: &str, bundle: &Path) -> Result<std::result::Result<(), String>> {
        let child = self
            .logged(bundle)
            .arg("start")
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("running", &self.binary, e))?;
        self.finish(child, bundle)
    }

    /// Sends `signal` to the container's init (`kill`), `--all` processes when `all`.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let mut c = self.cmd();
        c.arg("kill");
        if all {
            c.arg("--all");
        }
        let out = c
            .arg(id)
            .arg(signal.to_string())
            .output()
            .map_err(|e| Error::io("running", &self.binary, e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::sys(format!(
                "{} kill {id}: {}",
                self.name,
                runtime_error(&String::from_utf8_lossy(&out.stderr))
            )))
        }
    }

    /// Whether the runtime holds state for container `id` (runc and crun keep a directory per
    /// container under their `--root`): when not, there is nothing to delete.
    pub fn knows(&self, id: &str) -> bool {
        self.state_root.join(id).exists()
    }

    /// Removes the runtime's record (and cgroup) of a container; `force` kills it first.
    /// A container the runtime does not know is not an error.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.spawn_delete(id, force)?.wait()
    }

    /// [`Runtime::delete`] started in the background: [`Deleting::wait`] for its outcome.
    pub fn spawn_delete(&self, id: &str, force: bool) -> Result<Deleting> {
        let mut c = self.cmd();
        c.arg("delete");
        if force {
            c.arg("--force");
        }
        let child = c
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("running", &self.binary, e))?;
        Ok(Deleting {
            child: Some(child),
            what: format!("{} delete {id}", self.name),
            binary: self.binary.clone(),
        })
    }

    /// The runtime's view of a container: its status, if it knows it.
    pub fn state(&self, id: &str) -> Option<String> {
        let out = self.cmd().arg("state").arg(id).stderr(Stdio::null()).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["status"].as_str().map(str::to_owned)
    }

    /// `exec --detach --process FILE --pid-file P [--tty --console-socket S] ID`: a command
    /// that starts a process in the container and returns (the caller sets its stdio and
    /// waits for the process, which is reparented to the nearest subreaper). The runtime's
    /// own errors go to `log`.
    pub fn exec_command(
        &self,
        id: &str,
        process_json: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        log: &Path,
    ) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.state_root)
            .arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json");
        c.arg("exec")
            .arg("--detach")
            .arg("--process")
            .arg(process_json)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(s) = console_socket {
            c.arg("--tty").arg("--console-socket").arg(s);
        }
        c.arg(id);
        c
    }
}

/// Waits for a runtime command, at most 60 s: a runtime that hangs (on a frozen cgroup, say)
/// must not hang linkrt, nor the state lock its caller may hold. `None`: it did not end in time
/// and was killed.
fn wait_bounded(child: &mut std::process::Child, binary: &Path) -> Result<Option<std::process::ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| Error::io("waiting for", binary, e))? {
            return Ok(Some(st));
        }
        if start.elapsed() > Duration::from_secs(60) {
            if let Err(e) = child.kill() {
                log::warn!("killing {}: {e}", binary.display());
            }
            if let Err(e) = child.wait() {
                log::warn!("reaping {}: {e}", binary.display());
            }
            return Ok(None);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A runtime's `delete` under way, waited for on every path: dropped, it is settled (and its
/// error logged).
pub struct Deleting {
    child: Option<std::process::Child>,
    what: String,
    binary: PathBuf,
}

impl Deleting {
    pub fn wait(mut self) -> Result<()> {
        self.settle()
    }

    /// At most 60 s ([`wait_bounded`]): the caller may hold the state lock (`finish`).
    fn settle(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let Some(st) = wait_bounded(&mut child, &self.binary)? else {
            return Err(Error::sys(format!("{}: no answer within 60 s", self.what)));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take()
            && let Err(x) = std::io::Read::read_to_string(&mut e, &mut err)
        {
            log::warn!("reading the errors of {}: {x}", self.what);
        }
        if st.success() || err.contains("not exist") {
            Ok(())
        } else {
            Err(Error::sys(format!("{}: {}", self.what, runtime_error(&err))))
        }
    }
}

impl Drop for Deleting {
    fn drop(&mut self) {
        if let Err(e) = self.settle() {
            log::error!("{e}");
        }
    }
}

/// The meaningful part of a runtime's error output (runc logs JSON or `level=error msg=...`).
pub fn runtime_error(stderr: &str) -> String {
    let mut msgs = Vec::new();
    for line in stderr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let msg = if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["level"].as_str().is_some_and(|l| l != "error" && l != "fatal") {
                continue;
            }
            v["msg"].as_str().unwrap_or(line).to_string()
        } else if let Some(rest) = line.split_once("msg=").map(|(_, r)| r) {
            if line.contains("level=warning") || line.contains("level=info") || line.contains("level=debug") {
                continue;
            }
            rest.trim().trim_matches('"').replace("\\\"", "\"")
        } else {
            line.to_string()
        };
        msgs.push(msg);
    }
    let m = msgs
        .last()
        .cloned()
        .unwrap_or_else(|| "the OCI runtime failed without a message".into());
    // runc prefixes its own command ("runc run failed: ...").
    for p in ["runc run failed: ", "runc create failed: ", "runc exec failed: "] {
        if let Some(r) = m.strip_prefix(p) {
            return r.to_string();
        }
    }
    m
}

/// Docker's exit code and message for a runtime's start error: 127 when the command does
/// not exist, 126 when it cannot be executed, 125 otherwise.
pub fn start_error(msg: &str) -> (i32, String) {
    let m = msg.strip_prefix("exec failed: ").unwrap_or(msg);
    let m = m.strip_prefix("unable to start container process: ").unwrap_or(m);
    let code = if m.contains("executable file not found")
        || m.contains("no such file or directory") && m.starts_with("exec:")
    {
        127
    } else if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else {
        125
    };
    (code, m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_are_reduced_to_their_message() {
        let runc = "time=\"2026-12-01T19:00:00Z\" level=warning msg=\"x\"\ntime=\"2026-12-01T19:00:00Z\" level=error msg=\"runc run failed: unable to start container process: exec: \\\"nosuch\\\": executable file not found in $PATH\"\n";
        let m = runtime_error(runc);
        assert_eq!(
            m,
            "unable to start container process: exec: \"nosuch\": executable file not found in $PATH"
        );
        assert_eq!(
            start_error(&m),
            (127, "exec: \"nosuch\": executable file not found in $PATH".into())
        );
        assert_eq!(start_error("exec: \"/etc\": is a directory").0, 126);
        assert_eq!(
            start_error("unable to start container process: exec: \"/x\": permission denied").0,
            126
        );
        assert_eq!(start_error("cgroups: cannot create").0, 125);
        assert_eq!(
            runtime_error("cgroups in hybrid mode not supported, drop all controllers from cgroupv2\n"),
            "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
        );
        assert_eq!(runtime_error("{\"level\":\"error\",\"msg\":\"boom\"}"), "boom");
    }
}
