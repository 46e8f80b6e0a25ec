//! What to run: `TaskSpec`, with an explicit environment (nothing of the
//! caller's unless asked for) and absolute paths.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lanco_proto::{Limits, TaskName};

use crate::error::{Error, Result};
use crate::graph::Deps;
use crate::handoff::Spec;
use crate::namespace::Namespace;
use crate::supervision::Supervision;

/// Default time a task gets between SIGTERM and cgroup.kill (as in Dinit).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run.
///
/// The environment is explicit, as with `env -i`: a new spec gives the task
/// no variables at all, so nothing of the caller's (a daemon's tokens and
/// keys) reaches the task unless asked for. [`TaskSpec::inherit_env`] starts
/// from the caller's environment instead (as `env` or `nohup` do; `lanco
/// run` does this). No variable is added behind the caller's back — not even
/// PATH or HOME, whose right values are the caller's to know; a command
/// without a slash is looked up in the task's PATH, or in
/// `/usr/local/bin:/usr/bin:/bin` if it has none, and shells set their own
/// defaults. Each name appears at most once in what the task gets.
///
/// `cwd` and `log` must be absolute paths ([`Namespace::run`] refuses
/// relative ones, which the monitor, whose cwd is `/`, would read
/// differently from the caller). A relative `argv[0]` with a slash is taken
/// from `cwd`, as execvp does after the chdir.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The task's name in the namespace.
    pub name: TaskName,
    /// The command and its arguments; `argv[0]` without a slash is looked
    /// up in the task's PATH.
    pub argv: Vec<OsString>,
    /// The working directory; the caller's at [`TaskSpec::new`].
    pub cwd: PathBuf,
    /// Where the task's output goes (stdout and stderr, appended), instead
    /// of `{log_dir}/lanco-NS/task-NAME.log`.
    pub log: Option<PathBuf>,
    /// Run with /bin/sh after the task ends (in `cwd`, with the task's
    /// environment and LANCO_NAMESPACE, LANCO_TASK, LANCO_EXIT_STATUS and
    /// LANCO_EXIT).
    pub on_exit: Option<String>,
    /// How long a stop waits after SIGTERM before cgroup.kill, unless the
    /// stop names its own timeout ([`DEFAULT_STOP_TIMEOUT`] at
    /// [`TaskSpec::new`]).
    pub stop_timeout: Duration,
    /// Restarts and readiness ([`Supervision::default`]: none; ready when
    /// exec'd).
    pub supervision: Supervision,
    /// The definition this run is started from (its digest, as
    /// `lanco NS start` sets it): kept in the task's state, so `status` can
    /// tell a run that predates a redefinition. `None` for ad-hoc runs.
    pub definition: Option<String>,
    /// What it depends on. [`Namespace::run`] records them (and the task's
    /// monitor stops it while a `needs` is down, and starts it again when
    /// that is ready) but starts none of them: `lanco NS start` does.
    pub deps: Deps,
    /// Its own resource limits, written in its cgroup before the command
    /// is started there (none at [`TaskSpec::new`]). The namespace's
    /// ceilings bind as well.
    pub limits: Limits,
    /// Pulled in by a task that depends on it, rather than started on
    /// purpose: it stops once nothing that runs holds it.
    pub(crate) pulled_in: bool,
    env: Env,
}

/// The environment as asked for: a base (empty or the caller's, read when
/// the task is started) and the changes to it, by name.
#[derive(Clone, Default)]
struct Env {
    inherit: bool,
    /// `None`: removed. One entry per name, in the order first set.
    changes: Vec<(OsString, Option<OsString>)>,
}

/// Names only: values may be secrets, and a spec ends up in logs.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Env");
        d.field("inherit", &self.inherit);
        let names = |set: bool| {
            self.changes
                .iter()
                .filter(move |(_, v)| v.is_some() == set)
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        d.field("set", &names(true))
            .field("removed", &names(false))
            .finish()
    }
}

impl TaskSpec {
    /// A spec with an empty environment, the caller's working directory, the
    /// default log and stop timeout, and no on-exit command.
    pub fn new(name: TaskName, argv: Vec<OsString>) -> Result<Self> {
        Ok(Self {
            name,
            argv,
            cwd: std::env::current_dir()
                .map_err(|e| Error::system("cannot read the current directory", e))?,
            log: None,
            on_exit: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            supervision: Supervision::default(),
            definition: None,
            deps: Deps::default(),
            limits: Limits::default(),
            pulled_in: false,
            env: Env::default(),
        })
    }

    /// Starts the task's environment from the caller's (as it is when the
    /// task is started) rather than from nothing; [`TaskSpec::env`] and
    /// [`TaskSpec::env_remove`] still apply on top, whatever the order of
    /// the calls.
    pub fn inherit_env(&mut self) -> &mut Self {
        self.env.inherit = true;
        self
    }

    /// Sets `key` to `value`, replacing any value it had (inherited or set).
    /// The name must be non-empty and hold neither `=` nor NUL, and the value
    /// no NUL: [`Namespace::run`] refuses the spec otherwise.
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        self.change(key.into(), Some(value.into()))
    }

    /// Unsets `key`, inherited or set.
    pub fn env_remove(&mut self, key: impl Into<OsString>) -> &mut Self {
        self.change(key.into(), None)
    }

    /// Back to an empty environment: no inheriting, no variables set.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env = Env::default();
        self
    }

    fn change(&mut self, key: OsString, value: Option<OsString>) -> &mut Self {
        match self.env.changes.iter_mut().find(|(k, _)| *k == key) {
            Some(c) => c.1 = value,
            None => self.env.changes.push((key, value)),
        }
        self
    }

    /// The environment the task would get if started now: each name once,
    /// the inherited ones in the caller's order, then the ones set here.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut vars: Vec<(OsString, OsString)> = Vec::new();
        let mut put = |k: OsString, v: Option<OsString>| {
            let at = vars.iter().position(|(ek, _)| *ek == k);
            match (at, v) {
                (Some(i), Some(v)) => vars[i].1 = v,
                (None, Some(v)) => vars.push((k, v)),
                (Some(i), None) => {
                    vars.remove(i);
                }
                (None, None) => {}
            }
        };
        if self.env.inherit {
            for (k, v) in std::env::vars_os() {
                put(k, Some(v));
            }
        }
        for (k, v) in &self.env.changes {
            put(k.clone(), v.clone());
        }
        vars
    }

    /// The spec as the monitor gets it; refuses what the task could not be
    /// given as asked (relative paths, unrepresentable variables).
    pub(crate) fn handoff(&self, ns: &Namespace) -> Result<Spec> {
        let absolute = |what: &str, p: &Path| {
            if p.is_absolute() {
                Ok(())
            } else {
                Err(Error::InvalidInput(format!(
                    "the {what} must be an absolute path, not {}",
                    p.display()
                )))
            }
        };
        absolute("working directory", &self.cwd)?;
        self.supervision.check().map_err(Error::InvalidInput)?;
        if let Some(log) = &self.log {
            absolute("log file", log)?;
        }
        // Where the host lacks a controller, say so before anything starts.
        if !self.limits.is_empty() {
            lanco_proto::cgroupfs::Cgroup::new(&ns.layout().cgroup_root)
                .check_controllers(self.limits.controllers())
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
        }
        for (k, v) in &self.env.changes {
            if let Some(why) = env_problem(k.as_bytes(), v.as_ref().map(|v| v.as_bytes())) {
                return Err(Error::InvalidInput(why));
            }
        }
        let env = self
            .environment()
            .into_iter()
            .map(|(k, v)| {
                let mut e = k.into_vec();
                e.push(b'=');
                e.extend_from_slice(v.as_bytes());
                e
            })
            .collect();
        Ok(Spec {
            config: ns.config().clone(),
            cgroup_root: ns.layout().cgroup_root.clone(),
            ns: ns.name().clone(),
            task: self.name.clone(),
            argv: self.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env,
            cwd: self.cwd.as_os_str().as_bytes().to_vec(),
            log: self.log.clone(),
            on_exit: self.on_exit.clone(),
            stop_timeout_ms: self.stop_timeout.as_millis() as u64,
            supervision: self.supervision,
            definition: self.definition.clone(),
            deps: self.deps.clone(),
            explicit: !self.pulled_in,
            limits: self.limits.clone(),
        })
    }
}

/// Why `name=value` cannot be in a task's environment, if it cannot: a
/// name that is empty or holds `=` or NUL, a value that holds NUL.
pub(crate) fn env_problem(name: &[u8], value: Option<&[u8]>) -> Option<String> {
    let shown = || String::from_utf8_lossy(name);
    if name.is_empty() || name.contains(&b'=') || name.contains(&0) {
        return Some(format!("bad environment variable name {:?}", shown()));
    }
    value
        .is_some_and(|v| v.contains(&0))
        .then(|| format!("the value of {} contains a NUL byte", shown()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec::new("t".parse().unwrap(), vec!["true".into()]).unwrap()
    }

    fn names(s: &TaskSpec) -> Vec<(String, String)> {
        s.environment()
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    #[test]
    fn environment_is_empty_set_replaces_unset_removes() {
        let mut s = spec();
        assert!(s.environment().is_empty(), "env -i by default");
        s.env("A", "1").env("B", "2").env("A", "3").env_remove("B");
        assert_eq!(names(&s), [("A".into(), "3".into())]);
        s.env("B", "4");
        assert_eq!(
            names(&s),
            [("A".into(), "3".into()), ("B".into(), "4".into())]
        );
        s.env_clear();
        assert!(s.environment().is_empty());
    }

    #[test]
    fn inherited_variables_are_overridden_once_whatever_the_order() {
        let (k, v) = std::env::vars_os()
            .next()
            .expect("a test has some environment");
        let mut s = spec();
        s.env(&k, "mine").inherit_env();
        let env = s.environment();
        let mine: Vec<_> = env.iter().filter(|(ek, _)| *ek == k).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].1, "mine");
        assert_ne!(v, "mine");
        assert_eq!(env.len(), std::env::vars_os().count());
        s.env_remove(&k);
        assert!(s.environment().iter().all(|(ek, _)| *ek != k));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let mut s = spec();
        s.env("TOKEN", "hunter2").env_remove("HOME");
        let d = format!("{s:?}");
        assert!(d.contains("TOKEN") && d.contains("HOME"), "{d}");
        assert!(!d.contains("hunter2"), "{d}");
    }
}
