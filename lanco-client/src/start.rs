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
const MONITOR_NAME: &str = "lanco-monitor";
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
    /// This run among all runs of the name: in its state file, exit record
    /// and accounting line.
    pub run_id: String,
    report: ChildStdout,
}

impl Started {
    /// Blocks until the task and its on-exit command are over.
    pub fn wait(mut self) -> Result<Exit> {
        self.wait_timeout(None)?
            .ok_or_else(|| Error::System("the monitor's report never came".into()))
    }

    /// As [`Started::wait`], giving up after `timeout` (`Ok(None)`); may be
    /// called again.
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<Exit>> {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            self.report.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = match timeout {
            None => nix::poll::PollTimeout::NONE,
            Some(t) => nix::poll::PollTimeout::try_from(t).unwrap_or(nix::poll::PollTimeout::MAX),
        };
        loop {
            match nix::poll::poll(&mut fds, ms) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::system("cannot wait for the monitor's report", e)),
            }
        }
        self.read_report().map(Some)
    }

    fn read_report(&mut self) -> Result<Exit> {
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
    fn monitor_path(&self) -> PathBuf {
        if !self.config().monitor.as_os_str().is_empty() {
            return self.config().monitor.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(MONITOR_NAME)))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| MONITOR_INSTALLED.into())
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
        let monitor = self.monitor_path();
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
        // The first process forks the real monitor and exits at once. A
        // caller that ignores SIGCHLD (or sets SA_NOCLDWAIT) has it reaped
        // by the kernel, and so may another thread's waitpid(-1): waitpid
        // then fails with ECHILD once it is gone, its status lost, and the
        // report pipe alone says whether the monitor started.
        //
        // The real monitor, orphaned, goes where the kernel sends every
        // orphan: to the nearest living ancestor that is a child subreaper,
        // else to its pid namespace's init. A caller that is either adopts
        // it (and the task's processes, should the monitor be killed) and
        // reaps it when it exits, as it must every orphan below it. Nothing
        // sound avoids that. Only clone(CLONE_PARENT) in the caller leaves
        // its subtree: a fork of the caller, and the zombie handed to the
        // caller's parent instead (an init may not use it at all). Clearing
        // PR_SET_CHILD_SUBREAPER while this first process exits would send
        // any other orphan made below the caller in that moment past it,
        // silently, which is what a subreaper exists to prevent; another
        // thread may set or clear the flag meanwhile; and a caller that is
        // its namespace's init would adopt the monitor anyway.
        let status = match child.wait() {
            Ok(status) => Some(status),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => None,
            Err(e) => return Err(Error::system("wait for the monitor", e)),
        };
        if !matches!(sent, Some(Ok(()))) || status.is_some_and(|s| !s.success()) {
            let status = status.map_or("status unknown".to_owned(), |s| s.to_string());
            return Err(Error::System(format!(
                "the monitor {} failed to start ({status})",
                monitor.display()
            )));
        }
        match handoff::recv::<Report>(&mut report) {
            Ok(Report::Started {
                pid,
                monitor_pid,
                run_id,
            }) => Ok(Started {
                pid,
                monitor_pid,
                run_id,
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
