//! The monitor's life while the task runs: one poll(2) on a signalfd
//! (SIGCHLD, SIGTERM), `cgroup.events` and the control socket; reaping;
//! stop requests, with the SIGTERM sweeps and the kill at the deadline.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::EventsFile;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::{Monitor, Phase, Stopping, LOG_CHECK, RESWEEP};
use crate::control::{self, ControlReply, ControlRequest};
use crate::error::Result;
use crate::record::Exit;

impl Monitor {
    pub(super) fn run(mut self, report: File) -> ! {
        self.report = Some(report);
        let mut next_log_check = Instant::now() + LOG_CHECK;
        loop {
            self.reap();
            // Reading also re-arms the poll notification.
            let populated = self.events.read().map(|e| e.populated).unwrap_or(false);
            if !populated && self.main_exit.is_none() && !matches!(self.phase, Phase::Waiting) {
                self.main_exit_elsewhere();
            }
            if self.main_exit.is_some() && !populated {
                match self.phase {
                    Phase::Task => {
                        self.task_ended();
                        if self.phase_on_exit() {
                            continue;
                        }
                    }
                    Phase::OnExit | Phase::Waiting => {}
                }
                if !self.after_run() {
                    self.finish();
                }
            }
            let now = Instant::now();
            if matches!(self.phase, Phase::Waiting) {
                if self.stopping.is_some() {
                    // A stop during the restart delay: nothing runs; done.
                    self.finish();
                }
                if self.sup.next_start.is_some_and(|t| now >= t) {
                    self.restart();
                    continue;
                }
                if self.resume_if_needs_ready(now) {
                    continue;
                }
            }
            if self.sup.ready_deadline.is_some_and(|t| now >= t) {
                self.start_timed_out();
            }
            if self.sup.state_due.is_some_and(|t| now >= t) {
                self.write_state();
            }
            let due = |t: Option<Instant>| populated && t.is_some_and(|t| now >= t);
            let (sweep, kill) = match &self.stopping {
                Some(s) => (due(Some(s.next_sweep)), due(s.deadline)),
                None => (false, false),
            };
            if sweep {
                self.sweep_term();
            }
            if kill {
                self.note(&"stop timeout reached: killing every remaining process (cgroup.kill)");
                self.killed_after_timeout = true;
                let _ = self.claim.cgroup.kill();
                if let Some(s) = &mut self.stopping {
                    s.deadline = None;
                }
            }
            let logs = self.spec.config.log_max_bytes > 0;
            if logs && now >= next_log_check {
                if let Err(e) = self.log.rotate_if_larger(self.spec.config.log_max_bytes) {
                    self.note(&e.one_line());
                }
                next_log_check = now + LOG_CHECK;
            }
            let mut wake = logs.then_some(next_log_check);
            let mut sooner = |t: Option<Instant>| {
                if let Some(t) = t {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            };
            if let Some(s) = &self.stopping {
                sooner(Some(s.next_sweep));
                sooner(s.deadline);
            }
            sooner(self.sup.next_start);
            sooner(self.sup.ready_deadline);
            sooner(self.sup.state_due);
            sooner(self.needs.as_ref().and_then(|n| n.next_check));
            let timeout = match wake {
                Some(w) => PollTimeout::from(
                    w.saturating_duration_since(Instant::now())
                        .as_millis()
                        .clamp(1, 60_000) as u16,
                ),
                None => PollTimeout::NONE,
            };
            let (control_ready, heard) = {
                let mut fds = vec![
                    PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.events.as_fd(), EventsFile::POLL),
                    PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                ];
                let heard_at = fds.len();
                if let Some(fd) = self.sup.channel.fd() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
                if let Some(n) = &self.needs {
                    fds.extend(n.fds().map(|fd| PollFd::new(fd, EventsFile::POLL)));
                }
                let _ = nix::poll::poll(&mut fds, timeout);
                let ready = |i: usize| {
                    fds.get(i)
                        .and_then(PollFd::revents)
                        .is_some_and(|r| !r.is_empty())
                };
                (ready(2), self.sup.channel.fd().is_some() && ready(heard_at))
            };
            let mut term = false;
            while let Ok(Some(si)) = self.sigfd.read_signal() {
                term |= si.ssi_signo == Signal::SIGTERM as u32;
            }
            if term {
                self.begin_stop(None, "SIGTERM to the monitor", true);
            }
            if control_ready {
                self.accept_controls();
            }
            if heard {
                self.hear();
            }
            self.check_needs();
        }
    }

    /// The cgroup is empty but the main process's status was not reaped:
    /// it is ending (the kernel takes an exiting process out of its cgroup
    /// before it makes it a zombie), or it is no child of the monitor (a
    /// MAINPID whose parent reaped it). The latter's status is lost.
    fn main_exit_elsewhere(&mut self) {
        self.reap();
        if self.main_exit.is_none() {
            match crate::sys::wait_child(self.main_pid, false) {
                // It became a zombie just now.
                Ok(Some((_, status))) => self.main_exit = Some(status.into()),
                Err(nix::errno::Errno::ECHILD) => self.main_exit = Some(Exit::Lost),
                _ => {}
            }
        }
    }

    pub(super) fn reap(&mut self) {
        while let Ok(Some((pid, status))) = crate::sys::wait_child(-1, false) {
            if pid == self.main_pid {
                self.main_exit = Some(status.into());
            }
        }
    }

    fn accept_controls(&mut self) {
        while let Ok((conn, _)) = self.listener.accept() {
            let _ = conn.set_nonblocking(false);
            match control::recv::<ControlRequest>(&conn, Some(Duration::from_secs(1))) {
                Ok(ControlRequest::Stop { timeout_ms }) => self.stop(conn, timeout_ms),
                // Between two runs, the run waited for is over.
                Ok(ControlRequest::Wait) if matches!(self.phase, Phase::Waiting) => {
                    self.waiters.push(conn);
                    self.answer_waiters();
                }
                Ok(ControlRequest::Wait) => self.add_waiter(conn),
                Ok(ControlRequest::Mark { explicit }) => {
                    self.state.explicit = explicit;
                    self.set_mark(true);
                    self.write_state();
                    let mut conn = conn;
                    let _ = control::send(
                        &mut conn,
                        &ControlReply::Done {
                            killed_after_timeout: false,
                            record: None,
                        },
                    );
                }
                Ok(ControlRequest::KillMain { signal }) => self.answer_kill(conn, signal, true),
                Ok(ControlRequest::Kill { signal }) => self.answer_kill(conn, signal, false),
                Err(_) => {}
            }
        }
    }

    /// `kill`: `signal` to every process of the task, or (`main`) to its
    /// main process only, which may be gone (`MainGone`).
    fn answer_kill(&mut self, mut conn: UnixStream, signal: i32, main: bool) {
        let sent = match Signal::try_from(signal) {
            Ok(sig) if main => self.kill_main(sig),
            Ok(sig) => self.kill(sig).map(|()| true),
            Err(_) => {
                let message = format!("invalid signal {signal}");
                let _ = control::send(&mut conn, &ControlReply::Error { message });
                return;
            }
        };
        let reply = match sent {
            Ok(true) => ControlReply::Done {
                killed_after_timeout: false,
                record: None,
            },
            Ok(false) => ControlReply::MainGone,
            Err(e) => ControlReply::Error {
                message: e.one_line(),
            },
        };
        let _ = control::send(&mut conn, &reply);
    }

    fn stop(&mut self, conn: UnixStream, timeout_ms: Option<u64>) {
        self.begin_stop(timeout_ms, "lanco stop", true);
        self.add_waiter(conn);
    }

    /// Keeps `conn` to answer at the end. Waiters whose peer has gone (a
    /// wait given up under a timeout) are dropped first, and at most
    /// [`MAX_WAITERS`] are kept: a member looping on timed-out waits, or
    /// opening connections on purpose, must not run the monitor out of fds.
    fn add_waiter(&mut self, conn: UnixStream) {
        self.waiters.retain(peer_is_there);
        if self.waiters.len() < MAX_WAITERS {
            self.waiters.push(conn);
        } else {
            let mut conn = conn;
            let _ = control::send(
                &mut conn,
                &ControlReply::Error {
                    message: format!("the monitor already has {MAX_WAITERS} waiters"),
                },
            );
        }
    }

    /// SIGTERM to every process now, cgroup.kill at the deadline. A second
    /// request can only bring the deadline closer. `on_purpose`: a stop
    /// through lanco, after which the task is not restarted (a start
    /// timeout's stop is a failure, which may be).
    pub(super) fn begin_stop(&mut self, timeout_ms: Option<u64>, by: &str, on_purpose: bool) {
        self.sup.inhibited |= on_purpose;
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(self.spec.stop_timeout_ms));
        let deadline = Instant::now() + timeout;
        match &mut self.stopping {
            Some(s) => {
                if s.deadline.is_some_and(|d| deadline < d) {
                    s.deadline = Some(deadline);
                }
            }
            None => {
                self.note(&format_args!(
                    "stop ({by}): SIGTERM to every process, cgroup.kill after {}s",
                    timeout.as_secs_f64()
                ));
                self.stopping = Some(Stopping {
                    deadline: Some(deadline),
                    termed: HashSet::new(),
                    next_sweep: Instant::now(),
                });
                self.sweep_term();
            }
        }
    }

    /// `lanco kill`. A signal that ends a process by default (TERM, INT,
    /// QUIT, KILL) sent through lanco ends the run on purpose: it is not
    /// restarted, as after `stop`. Others (HUP, USR1, …) are messages.
    fn kill(&mut self, sig: Signal) -> Result<()> {
        if matches!(
            sig,
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGKILL
        ) {
            self.sup.inhibited = true;
        }
        Ok(self.claim.cgroup.signal_frozen(sig, &mut HashSet::new())?)
    }

    /// `lanco kill --main`: the signal to the task's main process only (as
    /// `systemctl kill --kill-whom=main`); `false` if it has exited. The
    /// main process is this monitor's child, which nothing reaps but
    /// `reap` on this one thread, so its pid cannot be reused under the
    /// signal; a MAINPID that is not a child (a daemon that forked) is
    /// pinned by a pidfd and must still be alive and in the task's cgroup
    /// once pinned. Ending signals end the run on purpose, as in `kill`.
    fn kill_main(&mut self, sig: Signal) -> Result<bool> {
        use lanco_proto::sys::{pidfd_alive, pidfd_open, pidfd_send_signal};
        self.reap();
        if self.main_pid <= 0 || self.main_exit.is_some() {
            return Ok(false);
        }
        let Ok(pidfd) = pidfd_open(self.main_pid) else {
            return Ok(false);
        };
        let inside = self
            .claim
            .cgroup
            .procs_recursive()?
            .contains(&self.main_pid);
        if !inside || !pidfd_alive(pidfd.as_fd()) {
            return Ok(false);
        }
        if matches!(
            sig,
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGKILL
        ) {
            self.sup.inhibited = true;
        }
        match pidfd_send_signal(pidfd.as_fd(), sig as i32) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ESRCH) => Ok(false),
            Err(e) => Err(crate::error::Error::system(
                format_args!("cannot send {sig} to the main process {}", self.main_pid),
                e,
            )),
        }
    }

    /// SIGTERM to every process of the task not yet sent one. Repeated while
    /// a stop waits: when a freeze cannot complete in time (a machine too
    /// loaded to schedule a thousand forking processes), a late fork can miss
    /// a sweep; it gets the next one rather than only cgroup.kill.
    fn sweep_term(&mut self) {
        let Some(s) = &mut self.stopping else {
            return;
        };
        let r = self
            .claim
            .cgroup
            .signal_frozen(Signal::SIGTERM, &mut s.termed);
        s.next_sweep = Instant::now() + RESWEEP;
        if let Err(e) = r {
            self.note(&e);
        }
    }
}

/// Most connections a monitor keeps waiting for the end of its run.
const MAX_WAITERS: usize = 64;

/// Has the peer of a waiting connection not hung up? (It sends nothing
/// after its request: a readable socket with nothing to read is closed.)
fn peer_is_there(conn: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut b = [0u8; 1];
    let r = recv(
        std::os::fd::AsRawFd::as_raw_fd(conn),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    );
    matches!(r, Err(nix::errno::Errno::EAGAIN)) || matches!(r, Ok(n) if n > 0)
}
