//! The one configuration file both binaries read: `/etc/lanco/lanco.toml`, or
//! the file named by `$LANCO_CONFIG`. Unknown keys are an error so a typo never
//! silently falls back to a default path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "/etc/lanco/lanco.toml";
pub const ENV_VAR: &str = "LANCO_CONFIG";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// lancod's socket.
    pub socket: PathBuf,
    /// `"auto"` or an absolute directory inside the cgroup2 mount.
    pub cgroup_root: String,
    pub state_dir: PathBuf,
    /// Task logs go to `{log_dir}/lanco-{NS}/task-{TASK}.log`.
    pub log_dir: PathBuf,
    /// Members of this group may init and destroy namespaces; empty = root only.
    pub admin_group: String,
    /// Seconds lancod lingers after its last request; 0 = never exits.
    pub idle_timeout: u64,
    /// Rotated logs kept per task name (`task-T.log.1` … `.N`).
    pub log_keep: u32,
    /// Largest a task log may grow before the monitor rotates it while the task
    /// runs, in bytes; 0 = never rotate a running task's log.
    pub log_max_bytes: u64,
    /// Rotated parts of a member's accounting journal kept
    /// (`accounting.jsonl.1` … `.N`); older ones are removed. 0 = never
    /// rotate.
    pub accounting_keep: u32,
    /// Size in bytes past which the monitor appending to a member's
    /// accounting journal rotates it first; 0 = never rotate.
    pub accounting_max_bytes: u64,
    /// Most cgroups one member's subtree of a namespace may hold (its
    /// tasks, the cgroups they make, and its monitors' leaf): a bound on the
    /// kernel memory a tenant can pin (`cgroup.max.descendants`).
    pub user_max_cgroups: u64,
    /// The per-task monitor binary (absolute); empty =
    /// `/usr/libexec/lanco/lanco-monitor`. Never looked up beside the running
    /// binary, which for a daemon linking the library is the daemon's.
    pub monitor: PathBuf,
    /// The `lanco` command (absolute) that `lancod restore` runs, as each
    /// member, to start the member's enabled definitions at boot
    /// (`lanco NS start --enabled`); empty = `/usr/bin/lanco`.
    pub lanco: PathBuf,
    /// Seconds a member's warm spawner (the fast start path: it forks new
    /// monitors inside the member's monitors cgroup, so a `run` needs no
    /// cgroup migration) lingers after its last start; 0 = no spawner,
    /// every `run` is admitted by lancod.
    pub spawner_idle_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: "/run/lanco/lancod.sock".into(),
            cgroup_root: "auto".into(),
            state_dir: "/var/lib/lanco".into(),
            log_dir: "/var/log".into(),
            admin_group: String::new(),
            idle_timeout: 30,
            log_keep: 5,
            log_max_bytes: 64 << 20,
            accounting_keep: 8,
            accounting_max_bytes: 16 << 20,
            user_max_cgroups: 10_000,
            monitor: PathBuf::new(),
            lanco: PathBuf::new(),
            spawner_idle_secs: 120,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("bad config {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// The file `load` reads: `$LANCO_CONFIG` (which must exist: `true`) or
    /// the default path (which may be absent: `false`).
    pub fn source() -> (PathBuf, bool) {
        match std::env::var_os(ENV_VAR) {
            Some(p) if !p.is_empty() => (PathBuf::from(p), true),
            _ => (PathBuf::from(DEFAULT_PATH), false),
        }
    }

    /// Loads `$LANCO_CONFIG` (which must exist) or the default path (which may
    /// be absent: then every key has its default).
    pub fn load() -> Result<Self, ConfigError> {
        let (path, required) = Self::source();
        Self::load_from(&path, required)
    }

    /// Loads `path`; an absent file gives the defaults unless `required`.
    pub fn load_from(path: &Path, required: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            r => Self::parse(
                &r.map_err(|error| ConfigError::Read {
                    path: path.into(),
                    error,
                })?,
                path,
            ),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.into(),
            error,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let bad = |message: String| ConfigError::Parse {
            path: path.into(),
            message,
        };
        let c: Config = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
        for (key, p) in [
            ("socket", &c.socket),
            ("state_dir", &c.state_dir),
            ("log_dir", &c.log_dir),
        ] {
            if !p.is_absolute() {
                return Err(bad(format!(
                    "{key} must be an absolute path, not {}",
                    p.display()
                )));
            }
        }
        if c.cgroup_root != "auto" && !Path::new(&c.cgroup_root).is_absolute() {
            return Err(bad(format!(
                "cgroup_root must be \"auto\" or absolute, not {:?}",
                c.cgroup_root
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(
            Config::parse("", Path::new("x")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn keys_override_defaults() {
        let c = Config::parse(
            "socket = \"/tmp/s\"\nidle_timeout = 0\nadmin_group = \"wheel\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.socket, Path::new("/tmp/s"));
        assert_eq!(c.idle_timeout, 0);
        assert_eq!(c.admin_group, "wheel");
        assert_eq!(c.log_dir, Path::new("/var/log"));
    }

    #[test]
    fn unknown_keys_and_relative_paths_are_errors() {
        let e = Config::parse("sokcet = \"/x\"", Path::new("/etc/l.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/l.toml") && e.contains("sokcet"), "{e}");
        assert!(Config::parse("state_dir = \"rel\"", Path::new("x")).is_err());
        assert!(Config::parse("cgroup_root = \"rel\"", Path::new("x")).is_err());
    }
}
