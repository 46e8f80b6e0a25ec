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
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{Monitor, Phase, Stopping, LOG_CHECK, RESWEEP};
use crate::control::{self, ControlReply, ControlRequest};
use crate::error::Result;
use crate::record::Exit;

impl Monitor {
    pub(super) fn run(mut self, mut report: File) -> ! {
        let mut next_log_check = Instant::now() + LOG_CHECK;
        loop {
            self.reap();
            // Reading also re-arms the poll notification.
            let populated = self.events.read().map(|e| e.populated).unwrap_or(false);
            if self.main_exit.is_some() && !populated {
                match self.phase {
                    Phase::Task => {
                        self.task_ended();
                        if self.phase_on_exit() {
                            continue;
                        }
                    }
                    Phase::OnExit => {}
                }
                self.finish(&mut report);
            }
            let now = Instant::now();
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
            if self.spec.config.log_max_bytes > 0 && now >= next_log_check {
                if let Err(e) = self.log.rotate_if_larger(self.spec.config.log_max_bytes) {
                    self.note(&e.one_line());
                }
                next_log_check = now + LOG_CHECK;
            }
            let mut wake = next_log_check;
            if let Some(s) = &self.stopping {
                wake = wake.min(s.next_sweep);
                if let Some(d) = s.deadline {
                    wake = wake.min(d);
                }
            }
            let ms = wake
                .saturating_duration_since(Instant::now())
                .as_millis()
                .clamp(1, 60_000) as u16;
            let timeout = if self.spec.config.log_max_bytes > 0 || self.stopping.is_some() {
                PollTimeout::from(ms)
            } else {
                PollTimeout::NONE
            };
            let mut fds = [
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.events.as_fd(), EventsFile::POLL),
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            ];
            let _ = nix::poll::poll(&mut fds, timeout);
            let control_ready = fds[2]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            let mut term = false;
            while let Ok(Some(si)) = self.sigfd.read_signal() {
                term |= si.ssi_signo == Signal::SIGTERM as u32;
            }
            if term {
                self.begin_stop(None, "SIGTERM to the monitor");
            }
            if control_ready {
                self.accept_controls();
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == self.main_pid => {
                    self.main_exit = Some(Exit::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == self.main_pid => {
                    self.main_exit = Some(Exit::Signal(sig as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn accept_controls(&mut self) {
        while let Ok((conn, _)) = self.listener.accept() {
            let _ = conn.set_nonblocking(false);
            match control::recv::<ControlRequest>(&conn, Some(Duration::from_secs(1))) {
                Ok(ControlRequest::Stop { timeout_ms }) => self.stop(conn, timeout_ms),
                Ok(ControlRequest::Wait) => self.add_waiter(conn),
                Ok(ControlRequest::Kill { signal }) => {
                    let reply = match Signal::try_from(signal) {
                        Ok(sig) => match self.signal_all(sig) {
                            Ok(()) => ControlReply::Done {
                                killed_after_timeout: false,
                                record: None,
                            },
                            Err(e) => ControlReply::Error {
                                message: e.one_line(),
                            },
                        },
                        Err(_) => ControlReply::Error {
                            message: format!("invalid signal {signal}"),
                        },
                    };
                    let mut conn = conn;
                    let _ = control::send(&mut conn, &reply);
                }
                Err(_) => {}
            }
        }
    }

    fn stop(&mut self, conn: UnixStream, timeout_ms: Option<u64>) {
        self.begin_stop(timeout_ms, "lanco stop");
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
    /// request can only bring the deadline closer.
    fn begin_stop(&mut self, timeout_ms: Option<u64>, by: &str) {
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

    fn signal_all(&self, sig: Signal) -> Result<()> {
        Ok(self.claim.cgroup.signal_frozen(sig, &mut HashSet::new())?)
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
