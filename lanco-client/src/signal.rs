//! Stopping and signalling a task: through its monitor's control socket
//! (the monitor does the sweep, as it reaps the task's orphans), or, when
//! the monitor is gone, through the two cgroup files its owner shares with
//! the members (`cgroup.freeze`, `cgroup.kill`). And the signals a caller
//! may send (`Signal`), lanco's own type: none of nix's in the API.

use std::collections::HashSet;
use std::fmt;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::str::FromStr;
use std::time::Duration;

use lanco_proto::cgroupfs;
use lanco_proto::layout;
use lanco_proto::TaskName;
use nix::sys::signal::Signal as NixSignal;

use crate::control::{self, ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::namespace::{Found, Namespace};
use crate::spec::DEFAULT_STOP_TIMEOUT;

/// A signal for [`Namespace::kill`]: one of the system's standard signals
/// (not the real-time ones).
///
/// lanco's own type rather than nix's, so that a caller needs no nix, or
/// may use another version of it than lanco does, and lanco may change its
/// own without breaking callers. Made from a name (`TERM`, `SIGTERM`,
/// `term`) or a number (`"15"`, [`Signal::from_raw`]); shown as `SIGTERM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(NixSignal);

impl Signal {
    /// SIGHUP: hang-up; by convention, reload the configuration.
    pub const HUP: Signal = Signal(NixSignal::SIGHUP);
    /// SIGINT: interrupt, as Ctrl-C.
    pub const INT: Signal = Signal(NixSignal::SIGINT);
    /// SIGQUIT: quit, with a core dump.
    pub const QUIT: Signal = Signal(NixSignal::SIGQUIT);
    /// SIGKILL: the end, which cannot be caught.
    pub const KILL: Signal = Signal(NixSignal::SIGKILL);
    /// SIGUSR1: the program's own meaning.
    pub const USR1: Signal = Signal(NixSignal::SIGUSR1);
    /// SIGUSR2: the program's own meaning.
    pub const USR2: Signal = Signal(NixSignal::SIGUSR2);
    /// SIGTERM: please end (what a stop sends first).
    pub const TERM: Signal = Signal(NixSignal::SIGTERM);
    /// SIGCONT: go on after a stop.
    pub const CONT: Signal = Signal(NixSignal::SIGCONT);
    /// SIGSTOP: stop, which cannot be caught.
    pub const STOP: Signal = Signal(NixSignal::SIGSTOP);

    /// The signal numbered `n` on this system, if it is a standard one.
    pub fn from_raw(n: i32) -> Option<Signal> {
        NixSignal::try_from(n).ok().map(Signal)
    }

    /// Its number on this system.
    pub fn as_raw(self) -> i32 {
        self.0 as i32
    }

    /// Its name: `SIGTERM`.
    pub fn name(self) -> &'static str {
        self.0.as_str()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `TERM`, `SIGTERM`, `term` or `15`; anything else is
/// [`Error::InvalidInput`].
impl FromStr for Signal {
    type Err = Error;
    fn from_str(s: &str) -> Result<Signal> {
        let unknown = || Error::InvalidInput(format!("unknown signal {s:?}"));
        if let Ok(n) = s.parse::<i32>() {
            return Signal::from_raw(n).ok_or_else(unknown);
        }
        let up = s.to_ascii_uppercase();
        let full = if up.starts_with("SIG") {
            up
        } else {
            format!("SIG{up}")
        };
        NixSignal::from_str(&full)
            .map(Signal)
            .map_err(|_| unknown())
    }
}

impl Namespace {
    /// The running task, or `NotRunning`.
    fn running(&self, task: &TaskName) -> Result<Found> {
        match self.find(task)? {
            Some(f) if f.cgroup.populated()? => Ok(f),
            _ => Err(Error::NotRunning(task.clone())),
        }
    }

    /// The task's monitor's control socket, connected; `None` if no monitor
    /// listens (it was killed). The socket must be the name owner's: a
    /// planted one is an error, never connected to.
    pub(crate) fn connect_monitor(
        &self,
        task: &TaskName,
        found: &Found,
    ) -> Result<Option<UnixStream>> {
        let dir = self.state_dir_of(found)?;
        let Some(fd) = dir.open_socket(&layout::socket_name(task), found.owner)? else {
            return Ok(None);
        };
        match UnixStream::connect(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                Err(Error::NotMember(self.name().clone()))
            }
            Err(_) => Ok(None),
        }
    }

    pub(crate) fn ask_monitor(
        &self,
        task: &TaskName,
        found: &Found,
        req: &ControlRequest,
        wait: Option<Duration>,
    ) -> Result<Option<ControlReply>> {
        let Some(mut conn) = self.connect_monitor(task, found)? else {
            return Ok(None);
        };
        let reply = if found.legacy {
            control::legacy::ask(&mut conn, req, wait)
        } else {
            if control::send(&mut conn, req).is_err() {
                return Ok(None);
            }
            control::recv(&conn, wait)
        };
        reply.map(Some).map_err(|e| {
            Error::system(format_args!("no answer from the monitor of task {task}"), e)
        })
    }

    /// Graceful and race-free stop: SIGTERM to every process (frozen while
    /// the pids are read), cgroup.kill after `timeout` (`None`: the task's
    /// own [`TaskSpec::stop_timeout`](crate::TaskSpec::stop_timeout)).
    /// Returns once every process of the task is gone, with whether it had
    /// to be killed (it outlived the timeout); [`Error::NotRunning`] if no
    /// process of it lives. Any member may stop any task.
    pub fn stop(&self, task: &TaskName, timeout: Option<Duration>) -> Result<bool> {
        let req = ControlRequest::Stop {
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        };
        let Some(found) = self.find(task)? else {
            return Err(Error::NotRunning(task.clone()));
        };
        if !found.cgroup.populated()? {
            // Nothing of it runs, but a monitor that still listens may
            // start it again (a supervised task between two runs, or one
            // whose run just ended): tell it not to, and wait.
            return match self.ask_monitor(task, &found, &req, Some(Duration::from_secs(30))) {
                Ok(Some(ControlReply::Done { .. })) => Ok(false),
                _ => Err(Error::NotRunning(task.clone())),
            };
        }
        // The monitor answers once the cgroup is empty; give it the task's
        // full stop timeout (unknown here when not given) plus a margin.
        let wait = timeout.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(30);
        // Freeze at once (members may: cgroup.freeze is shared), so a task
        // that forks without end stops eating CPU before the monitor is even
        // scheduled; the monitor's sweep thaws it.
        let cg = &found.cgroup;
        let _ = cg.write(cgroupfs::CGROUP_FREEZE, "1");
        let r = match self.ask_monitor(task, &found, &req, Some(wait)) {
            Ok(Some(ControlReply::Done {
                killed_after_timeout,
                ..
            })) => return Ok(killed_after_timeout),
            Ok(Some(other)) => Err(other.into_error()),
            Err(e) => Err(e),
            Ok(None) => {
                return self.stop_orphan(task, &found, timeout.unwrap_or(DEFAULT_STOP_TIMEOUT))
            }
        };
        let _ = cg.thaw();
        r
    }

    /// Stop a task whose monitor was killed, through the cgroup's shared
    /// files: SIGTERM to each process (pinned by pidfds while frozen),
    /// cgroup.kill after the timeout. Another member cannot signal the
    /// owner's processes, only kill them: for it the stop is cgroup.kill at
    /// once. Only the name's owner writes the record of the lost run (in its
    /// own directory).
    fn stop_orphan(&self, task: &TaskName, found: &Found, timeout: Duration) -> Result<bool> {
        let cg = &found.cgroup;
        let graceful = match cg.signal_frozen(NixSignal::SIGTERM, &mut HashSet::new()) {
            Err(e) if e.io_kind() == Some(ErrorKind::PermissionDenied) => false,
            r => r.map(|()| true)?,
        };
        let mut killed = false;
        if !graceful || !cg.wait_events(timeout, |e| !e.populated)? {
            cg.kill()?;
            killed = true;
            cg.wait_events(Duration::from_secs(10), |e| !e.populated)?;
        }
        if self.is_mine(found) {
            self.finalize_lost_run(task, found, true, killed)?;
            let _ = cg.remove_tree();
        }
        Ok(killed)
    }

    /// Delivers `signal` to every process of the task, through its monitor
    /// (which reaps the task's orphans, so no pid is reused under the sweep).
    /// [`Error::NotRunning`] if no process of it lives. When the monitor is
    /// gone, only the member who ran the task may signal its processes
    /// ([`Error::PermissionDenied`] for the others, who may still
    /// [`stop`](Namespace::stop) it).
    pub fn kill(&self, task: &TaskName, signal: Signal) -> Result<()> {
        let found = self.running(task)?;
        match self.ask_monitor(
            task,
            &found,
            &ControlRequest::Kill {
                signal: signal.as_raw(),
            },
            Some(Duration::from_secs(30)),
        )? {
            Some(ControlReply::Done { .. }) => Ok(()),
            Some(other) => Err(other.into_error()),
            None => match found.cgroup.signal_frozen(signal.0, &mut HashSet::new()) {
                Err(e) if e.io_kind() == Some(ErrorKind::PermissionDenied) => {
                    Err(Error::PermissionDenied(format!(
                        "task {task}'s monitor is gone and its processes are {}'s: only they can signal them (any member can stop it)",
                        lanco_proto::files::user_name(found.owner)
                    )))
                }
                r => Ok(r?),
            },
        }
    }
}

impl Namespace {
    /// Delivers `signal` to the task's main process only, not to its other
    /// processes (as `systemctl kill --kill-whom=main`): a daemon asked to
    /// reload with SIGHUP, without its helpers, which may not handle it.
    /// The task's monitor sends it, through a pidfd of the process it
    /// started (or that took over as main with `MAINPID=`), so no other
    /// process that took its pid is signalled. [`Error::NotRunning`] if no
    /// process of the task lives; [`Error::Conflict`] if its main process
    /// has exited while others live, or its monitor is gone (then no one
    /// can tell the main process from one that took its pid).
    pub fn kill_main(&self, task: &TaskName, signal: Signal) -> Result<()> {
        let found = self.running(task)?;
        let no_monitor = || {
            Error::Conflict(format!(
                "task {task}'s monitor is gone (or too old to know its main process): kill without --main signals every process"
            ))
        };
        if found.legacy {
            return Err(no_monitor());
        }
        let req = ControlRequest::KillMain {
            signal: signal.as_raw(),
        };
        match self.ask_monitor(task, &found, &req, Some(Duration::from_secs(30))) {
            Ok(Some(ControlReply::Done { .. })) => Ok(()),
            Ok(Some(ControlReply::MainGone)) => Err(Error::Conflict(format!(
                "task {task}'s main process has exited; its other processes run on (kill without --main signals them)"
            ))),
            Ok(Some(other)) => Err(other.into_error()),
            // An older monitor drops the request unanswered.
            Ok(None) | Err(Error::System { .. }) => Err(no_monitor()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        let sig = |s: &str| s.parse::<Signal>().ok();
        assert_eq!(sig("TERM"), Some(Signal::TERM));
        assert_eq!(sig("sighup"), Some(Signal::HUP));
        assert_eq!(sig("9"), Some(Signal::KILL));
        assert_eq!(sig("SIGUSR1"), Signal::from_raw(libc::SIGUSR1));
        assert!(sig("NOPE").is_none() && sig("999").is_none() && sig("").is_none());
        let e = "NOPE".parse::<Signal>().unwrap_err();
        assert_eq!(e.to_string(), "unknown signal \"NOPE\"");
        assert_eq!(Signal::TERM.as_raw(), libc::SIGTERM);
        assert_eq!(Signal::KILL.to_string(), "SIGKILL");
    }
}
