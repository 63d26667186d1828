//! A small libcni: reads a conflist, derives each plugin's configuration the way libcni does
//! (the list's `name` and `cniVersion`, `runtimeConfig` for the capabilities a plugin
//! declares, the previous plugin's result as `prevResult`), runs ADD in order and DEL in
//! reverse with the `CNI_*` environment and stdin, and caches results for DEL, CHECK and GC.
//!
//! Plugins run in a [`crate::Host`]'s network namespace (`nsenter --net`), found in a private
//! `CNI_PATH` holding Debian's plugins and `linkrt-cni`.
use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use crate::{Host, TempDir, exit_code};

/// Where Debian's containernetworking-plugins are.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// The `linkrt-cni` binary under test (`LINKRT_CNI_BIN`, set by `cargo xtask test`).
pub fn plugin_bin() -> PathBuf {
    std::env::var_os("LINKRT_CNI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/linkrt-cni"))
}

/// What one plugin call gave.
#[derive(Debug, Clone)]
pub struct PluginOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl PluginOut {
    /// The stdout document (a result, an error result, or `null` when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {self:?}"))
    }

    /// The CNI error code of a failed call (panics unless it failed with an error result).
    pub fn error_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected a failure: {self:?}");
        self.json()["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code in {self:?}"))
    }
}

/// One attachment: a container's interface on a network.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// Runtime capability arguments (`portMappings`, ...), given to plugins that declare them.
    pub capability_args: BTreeMap<String, Value>,
}

/// The runtime: a CNI_PATH, a conflist, a result cache.
pub struct Runtime<'h> {
    pub host: &'h Host,
    pub conflist: Value,
    path_dir: TempDir,
    /// (container ID, ifname) → the list's ADD result.
    pub cache: BTreeMap<(String, String), Value>,
}

impl<'h> Runtime<'h> {
    pub fn new(host: &'h Host, conflist: Value) -> Self {
        let path_dir = TempDir::new("linkrt-cni-path");
        for p in ["bridge", "host-local", "portmap", "loopback"] {
            let src = Path::new(DEBIAN_CNI_DIR).join(p);
            assert!(
                src.exists(),
                "{} missing: install containernetworking-plugins (`cargo xtask setup`)",
                src.display()
            );
            std::os::unix::fs::symlink(&src, path_dir.path.join(p)).unwrap();
        }
        let bin = plugin_bin();
        assert!(bin.exists(), "{} missing: run `cargo xtask test`", bin.display());
        std::os::unix::fs::symlink(&bin, path_dir.path.join("linkrt-cni")).unwrap();
        Runtime {
            host,
            conflist,
            path_dir,
            cache: BTreeMap::new(),
        }
    }

    pub fn cni_path(&self) -> &Path {
        &self.path_dir.path
    }

    pub fn name(&self) -> &str {
        self.conflist["name"].as_str().expect("conflist name")
    }

    fn version(&self) -> &str {
        self.conflist["cniVersion"].as_str().expect("conflist cniVersion")
    }

    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"].as_array().expect("conflist plugins").clone()
    }

    /// libcni's buildOneConfig: name and cniVersion from the list, `runtimeConfig` from the
    /// capabilities the plugin declares, `prevResult` when there is one.
    pub fn plugin_config(&self, plugin: &Value, at: &Attachment, prev: Option<&Value>) -> Value {
        let mut c = plugin.clone();
        let o = c.as_object_mut().expect("plugin object");
        o.insert("name".into(), json!(self.name()));
        o.insert("cniVersion".into(), json!(self.version()));
        let mut rc = serde_json::Map::new();
        if let Some(caps) = plugin["capabilities"].as_object() {
            for (cap, on) in caps {
                if on.as_bool() == Some(true)
                    && let Some(v) = at.capability_args.get(cap)
                {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
        if !rc.is_empty() {
            o.insert("runtimeConfig".into(), Value::Object(rc));
        }
        if let Some(p) = prev {
            o.insert("prevResult".into(), p.clone());
        }
        c
    }

    /// Runs one plugin binary with `env` and `stdin`, as libcni's invoke package does.
    pub fn exec(&self, plugin_type: &str, env: &[(&str, &str)], stdin: &[u8]) -> PluginOut {
        let bin = self.path_dir.path.join(plugin_type);
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.host.ns.path().display()))
            .arg(&bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_PATH", &self.path_dir.path)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut si = child.stdin.take().unwrap();
        // A plugin may exit without reading stdin (VERSION, an early error): not the runtime's error.
        if let Err(e) = si.write_all(stdin)
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            panic!("writing the config to {}: {e}", bin.display());
        }
        drop(si);
        let o = child.wait_with_output().unwrap();
        PluginOut {
            code: exit_code(&o.status),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn env<'a>(cmd: &'a str, at: &'a Attachment, netns: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", at.container_id.as_str()),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", at.ifname.as_str()),
            ("CNI_ARGS", ""),
        ]
    }

    /// Runs one plugin of the list for `at`.
    pub fn run_plugin(&self, cmd: &str, plugin: &Value, at: &Attachment, prev: Option<&Value>) -> PluginOut {
        let conf = self.plugin_config(plugin, at, prev);
        let netns = at.netns.to_string_lossy().into_owned();
        let ty = plugin["type"].as_str().expect("plugin type");
        self.exec(ty, &Self::env(cmd, at, &netns), conf.to_string().as_bytes())
    }

    /// ADD through the list in order; the last result is cached and returned. On a failure,
    /// the failing plugin's output (nothing is cached; the caller DELs, as runtimes do).
    pub fn add(&mut self, at: &Attachment) -> Result<Value, PluginOut> {
        let mut prev: Option<Value> = None;
        for p in self.plugins() {
            let o = self.run_plugin("ADD", &p, at, prev.as_ref());
            if o.code != 0 {
                return Err(o);
            }
            prev = Some(o.json());
        }
        let r = prev.unwrap_or(Value::Null);
        self.cache
            .insert((at.container_id.clone(), at.ifname.clone()), r.clone());
        Ok(r)
    }

    /// DEL through the list in reverse, with the cached result as `prevResult` (none when
    /// nothing is cached); the cache entry goes once every plugin succeeded.
    pub fn del(&mut self, at: &Attachment) -> Result<(), PluginOut> {
        let key = (at.container_id.clone(), at.ifname.clone());
        let cached = self.cache.get(&key).cloned();
        for p in self.plugins().iter().rev() {
            let o = self.run_plugin("DEL", p, at, cached.as_ref());
            if o.code != 0 {
                return Err(o);
            }
        }
        self.cache.remove(&key);
        Ok(())
    }

    /// CHECK through the list in order, with the cached result as `prevResult`.
    pub fn check(&self, at: &Attachment) -> Result<(), PluginOut> {
        let cached = self
            .cache
            .get(&(at.container_id.clone(), at.ifname.clone()))
            .cloned()
            .expect("CHECK needs a cached result");
        for p in self.plugins() {
            let o = self.run_plugin("CHECK", &p, at, Some(&cached));
            if o.code != 0 {
                return Err(o);
            }
        }
        Ok(())
    }

    /// The configuration libcni gives GC and STATUS: the plugin's with the list's name and
    /// version (GC adds `cni.dev/valid-attachments`).
    fn list_level_config(&self, plugin: &Value, version: &str) -> Value {
        let mut c = plugin.clone();
        let o = c.as_object_mut().unwrap();
        o.insert("name".into(), json!(self.name()));
        o.insert("cniVersion".into(), json!(version));
        c
    }

    /// GC of one plugin of the list, at `version` (Debian's plugins predate 1.1.0, so GC is
    /// exercised on `linkrt-cni` alone), with the cached attachments as the valid ones.
    pub fn gc_plugin(&self, plugin: &Value, version: &str) -> PluginOut {
        let valid: Vec<Value> = self
            .cache
            .keys()
            .map(|(c, i)| json!({"containerID": c, "ifname": i}))
            .collect();
        let mut conf = self.list_level_config(plugin, version);
        conf["cni.dev/valid-attachments"] = Value::Array(valid);
        self.exec(
            plugin["type"].as_str().unwrap(),
            &[("CNI_COMMAND", "GC")],
            conf.to_string().as_bytes(),
        )
    }

    /// STATUS of one plugin of the list, at `version`.
    pub fn status_plugin(&self, plugin: &Value, version: &str) -> PluginOut {
        let conf = self.list_level_config(plugin, version);
        self.exec(
            plugin["type"].as_str().unwrap(),
            &[("CNI_COMMAND", "STATUS")],
            conf.to_string().as_bytes(),
        )
    }

    /// The plugin object of type `ty` in the list.
    pub fn plugin(&self, ty: &str) -> Value {
        self.plugins()
            .into_iter()
            .find(|p| p["type"] == ty)
            .unwrap_or_else(|| panic!("no plugin {ty} in the list"))
    }
}
