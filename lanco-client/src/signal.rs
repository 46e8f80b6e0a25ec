//! Stopping and signalling a task: through its monitor's control socket
//! (the monitor does the sweep, as it reaps the task's orphans), or, when
//! the monitor is gone, through the two cgroup files its owner shares with
//! the members (`cgroup.freeze`, `cgroup.kill`).

use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use lanco_proto::cgroupfs;
use lanco_proto::layout;
use lanco_proto::TaskName;
use nix::sys::signal::Signal;

use crate::control::{self, ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::namespace::{Found, Namespace};
use crate::start::DEFAULT_STOP_TIMEOUT;

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

    fn ask_monitor(
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
    /// the pids are read), cgroup.kill after `timeout`. Returns once every
    /// process of the task is gone, with whether it had to be killed (it
    /// outlived the timeout).
    pub fn stop(&self, task: &TaskName, timeout: Option<Duration>) -> Result<bool> {
        let found = self.running(task)?;
        let req = ControlRequest::Stop {
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        };
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
            Ok(Some(ControlReply::Error { message })) => Err(Error::failed(message)),
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
        let graceful = match cg.signal_frozen(Signal::SIGTERM, &mut HashSet::new()) {
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

    /// Delivers `signal` to every process of the task.
    pub fn kill(&self, task: &TaskName, signal: Signal) -> Result<()> {
        let found = self.running(task)?;
        match self.ask_monitor(
            task,
            &found,
            &ControlRequest::Kill {
                signal: signal as i32,
            },
            Some(Duration::from_secs(30)),
        )? {
            Some(ControlReply::Done { .. }) => Ok(()),
            Some(ControlReply::Error { message }) => Err(Error::failed(message)),
            None => match found.cgroup.signal_frozen(signal, &mut HashSet::new()) {
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
