//! Starting a task: what to run (`TaskSpec`), and the hand-off to a new
//! `lanco-monitor`, which detaches, claims the name, gets admitted and
//! starts the command. The caller is never forked.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use lanco_proto::TaskName;

use crate::error::{Error, Result};
use crate::handoff::{self, Report, Spec};
use crate::namespace::Namespace;
use crate::record::Exit;

/// Default time a task gets between SIGTERM and cgroup.kill (as in Dinit).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the package installs the monitor; the config's `monitor` overrides it.
const MONITOR_INSTALLED: &str = "/usr/libexec/lanco/lanco-monitor";

/// What to run. Environment and working directory default to the caller's,
/// as with nohup.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub name: TaskName,
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// Instead of `{log_dir}/lanco-NS/task-NAME.log`.
    pub log: Option<PathBuf>,
    /// Run with /bin/sh after the task ends.
    pub on_exit: Option<String>,
    pub stop_timeout: Duration,
}

impl TaskSpec {
    pub fn new(name: TaskName, argv: Vec<OsString>) -> Result<Self> {
        Ok(Self {
            name,
            argv,
            env: std::env::vars_os().collect(),
            cwd: std::env::current_dir()
                .map_err(|e| Error::system("cannot read the current directory", e))?,
            log: None,
            on_exit: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        })
    }
}

/// A started task. Keep it to wait for the end (`lanco run -f`).
pub struct Started {
    pub pid: i32,
    pub monitor_pid: i32,
    report: ChildStdout,
}

impl Started {
    /// Blocks until the task and its on-exit command are over.
    pub fn wait(mut self) -> Result<Exit> {
        match handoff::recv::<Report>(&mut self.report) {
            Ok(Report::Finished(exit)) => Ok(exit),
            // The pipe closed without a report: the monitor was killed, and
            // with it the only record of the main process's status.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Exit::Lost),
            Ok(other) => Err(Error::System(format!(
                "unexpected report from the monitor: {other:?}"
            ))),
            Err(e) => Err(Error::system("cannot read the monitor's report", e)),
        }
    }
}

impl Namespace {
    /// The monitor of this installation: the config's `monitor`, else the
    /// package's path. Never looked up beside the running executable, which
    /// for a daemon linking this library is the daemon's own directory.
    fn monitor_path(&self) -> Result<PathBuf> {
        let configured = &self.config().monitor;
        let path = if configured.as_os_str().is_empty() {
            PathBuf::from(MONITOR_INSTALLED)
        } else {
            configured.clone()
        };
        if !path.is_absolute() {
            return Err(Error::Usage(format!(
                "the config key `monitor` must be an absolute path, not {}",
                path.display()
            )));
        }
        if !path.is_file() {
            return Err(Error::System(format!(
                "the task monitor {} does not exist; set the config key `monitor` to where lanco-monitor is installed",
                path.display()
            )));
        }
        Ok(path)
    }

    /// Starts a task; returns once its command has been exec'd inside the
    /// task's cgroup, or with the reason it could not be.
    pub fn run(&self, spec: &TaskSpec) -> Result<Started> {
        if spec.argv.is_empty() {
            return Err(Error::Usage("no command given".into()));
        }
        if nix::unistd::geteuid().is_root() {
            return Err(Error::Denied(
                "root runs no tasks in a namespace (its directories are its members'); run as a member, e.g. with sudo -u".into(),
            ));
        }
        let env = spec
            .env
            .iter()
            .map(|(k, v)| {
                let mut e = k.as_bytes().to_vec();
                e.push(b'=');
                e.extend_from_slice(v.as_bytes());
                e
            })
            .collect();
        let mspec = Spec {
            config: self.config().clone(),
            cgroup_root: self.layout().cgroup_root.clone(),
            ns: self.name().clone(),
            task: spec.name.clone(),
            argv: spec.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env,
            cwd: spec.cwd.as_os_str().as_bytes().to_vec(),
            log: spec.log.clone(),
            on_exit: spec.on_exit.clone(),
            stop_timeout_ms: spec.stop_timeout.as_millis() as u64,
        };
        let monitor = self.monitor_path()?;
        let mut child = Command::new(&monitor)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::system(format!("cannot start the monitor {}", monitor.display()), e)
            })?;
        let sent = child
            .stdin
            .take()
            .map(|mut w| handoff::send(&mut w, &mspec));
        let mut report = child
            .stdout
            .take()
            .ok_or_else(|| Error::System("monitor has no stdout".into()))?;
        // The first process forks the real monitor and exits at once.
        let status = child
            .wait()
            .map_err(|e| Error::system("wait for the monitor", e))?;
        if !matches!(sent, Some(Ok(()))) || !status.success() {
            return Err(Error::System(format!(
                "the monitor {} failed to start ({status})",
                monitor.display()
            )));
        }
        match handoff::recv::<Report>(&mut report) {
            Ok(Report::Started { pid, monitor_pid }) => Ok(Started {
                pid,
                monitor_pid,
                report,
            }),
            Ok(Report::Failed(e)) => Err(e),
            Ok(Report::Finished(_)) => Err(Error::System(
                "the monitor reported an end before a start".into(),
            )),
            Err(e) => Err(Error::System(format!(
                "the monitor died before starting the task: {e}"
            ))),
        }
    }
}
