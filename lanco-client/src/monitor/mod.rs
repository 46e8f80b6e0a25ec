//! The per-task monitor (the `lanco-monitor` binary). One small process per
//! task, no async runtime: it claims the task's name, gets itself admitted to
//! the namespace by lancod, starts the payload straight into the task's cgroup
//! with clone3(CLONE_INTO_CGROUP), reports the exec result to `lanco run`, and
//! then sleeps in poll(2) until the task's cgroup is empty. As a child
//! subreaper it reaps every orphan of the task. It does the stop sweep itself,
//! writes the exit record and the accounting line, runs the on-exit command,
//! removes the cgroup and exits. If it is killed, the task runs on: the cgroup,
//! not the monitor, is the task.

mod claim;
mod logs;
mod spawn;

use std::collections::HashSet;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::EventsFile;
use lanco_proto::files::Dir;
use lanco_proto::layout;
use lanco_proto::wire::{Request, Response};
use lanco_proto::{Config, Layout, NamespaceName, TaskName};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::control::{self, ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::record::{self, Exit, ExitRecord, TaskState};
use crate::sys;
use claim::Claim;
use logs::Log;
use spawn::start_process;

/// Largest spec `lanco run` may hand over (argv + environment).
const MAX_SPEC: u64 = 16 << 20;
/// How often a running task's log size is checked against `log_max_bytes`.
const LOG_CHECK: Duration = Duration::from_secs(10);
/// How often a stop looks for processes that escaped its SIGTERM sweep.
const RESWEEP: Duration = Duration::from_secs(1);

/// Everything the monitor needs, sent by `lanco run` on the monitor's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub config: Config,
    pub cgroup_root: PathBuf,
    pub ns: NamespaceName,
    pub task: TaskName,
    /// Raw bytes: arguments and environment need not be UTF-8.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub log: Option<PathBuf>,
    pub on_exit: Option<String>,
    pub stop_timeout_ms: u64,
}

/// What the monitor tells `lanco run` on its stdout pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Report {
    Started {
        pid: i32,
        monitor_pid: i32,
    },
    Failed(Error),
    /// Exit code, or the signal that killed the main process.
    Finished {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

impl Report {
    pub fn finished(exit: Exit) -> Self {
        match exit {
            Exit::Code(c) => Report::Finished {
                code: Some(c),
                signal: None,
            },
            Exit::Signal(s) => Report::Finished {
                code: None,
                signal: Some(s),
            },
            Exit::Lost => Report::Finished {
                code: None,
                signal: None,
            },
        }
    }
}

pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let body = postcard::to_allocvec(msg).map_err(std::io::Error::other)?;
    let mut buf = (body.len() as u32).to_le_bytes().to_vec();
    buf.extend_from_slice(&body);
    w.write_all(&buf)
}

pub fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl Read, max: u64) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as u64;
    if len > max {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    postcard::from_bytes(&body).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// Entry point of `lanco-monitor`. Returns only in the short-lived first
/// process; the detached monitor ends with `exit`.
pub fn main() -> u8 {
    let spec: Spec = match recv(&mut std::io::stdin().lock(), MAX_SPEC) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lanco-monitor: cannot read the task spec on stdin: {e}");
            return 2;
        }
    };
    // Detach: `lanco run` reaps this first process at once, so a daemon that
    // links the library never collects zombies, and the monitor lives on
    // re-parented to init (or the nearest subreaper).
    match sys::fork_single_threaded() {
        Ok(sys::Forked::Parent) => return 0,
        Ok(sys::Forked::Child) => {}
        Err(e) => {
            eprintln!("lanco-monitor: fork: {e}");
            return 2;
        }
    }
    let report = match detach() {
        Ok(r) => r,
        Err(e) => std::process::exit(i32::from(e.exit_code())),
    };
    let mut report = File::from(report);
    let monitor = match Monitor::start(spec, &mut report) {
        Ok(m) => m,
        Err(e) => {
            let _ = send(&mut report, &Report::Failed(e));
            std::process::exit(1);
        }
    };
    monitor.run(report)
}

/// New session (no controlling terminal, so no SIGHUP at hang-up), stdio on
/// /dev/null, the report pipe kept on a close-on-exec fd.
fn detach() -> Result<OwnedFd> {
    nix::unistd::setsid().map_err(|e| Error::system("setsid", e))?;
    let report = nix::fcntl::fcntl(std::io::stdout(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(|e| Error::system("dup report pipe", e))?;
    let report = sys::owned_fd(report);
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::system("/dev/null", e))?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .map_err(|e| Error::system("dup2 /dev/null", e))?;
    std::env::set_current_dir("/").map_err(|e| Error::system("chdir /", e))?;
    // Members read the task's files; nobody but this user writes them.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    // A `lanco run` that stopped listening must not kill us with SIGPIPE.
    sys::ignore_signals(&[Signal::SIGPIPE, Signal::SIGHUP])
        .map_err(|e| Error::system("sigaction", e))?;
    Ok(report)
}

enum Phase {
    /// The payload and everything it started.
    Task,
    /// The on-exit command, still inside the task's cgroup.
    OnExit,
}

/// A stop under way.
struct Stopping {
    /// When the remaining processes get cgroup.kill (`None` once done).
    deadline: Option<Instant>,
    /// Pids already sent SIGTERM, and when to look for new ones.
    termed: HashSet<i32>,
    next_sweep: Instant,
}

struct Monitor {
    spec: Spec,
    claim: Claim,
    cgroup_dir: OwnedFd,
    /// This member's state directory in the namespace.
    dir: Dir,
    state: TaskState,
    log: Log,
    main_pid: i32,
    main_exit: Option<Exit>,
    phase: Phase,
    record: Option<ExitRecord>,
    /// Synced to disk once `stop` has been answered.
    accounting: Option<File>,
    listener: UnixListener,
    stopping: Option<Stopping>,
    killed_after_timeout: bool,
    waiters: Vec<UnixStream>,
    sigfd: SignalFd,
    events: EventsFile,
}

impl Monitor {
    /// Claims the name, gets admitted, makes the cgroup, opens the new log
    /// and the control socket, and starts the payload. On failure, all of
    /// it is given back (the claim's and the log's Drop, the socket here):
    /// nothing runs in the cgroup yet.
    fn start(spec: Spec, report: &mut File) -> Result<Self> {
        let (ns, task) = (spec.ns.clone(), spec.task.clone());
        let layout = Layout {
            cgroup_root: spec.cgroup_root.clone(),
            state_dir: spec.config.state_dir.clone(),
            log_dir: spec.config.log_dir.clone(),
        };
        // SIGCHLD and SIGTERM arrive through a signalfd; block them first so
        // none is lost. SIGTERM to the monitor means "stop the task" (it is
        // what systemd sends every process when the task root is stopped), so
        // the exit record still gets the task's real status.
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        chld.add(Signal::SIGTERM);
        chld.thread_block()
            .map_err(|e| Error::system("sigprocmask", e))?;
        let sigfd = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| Error::system("signalfd", e))?;
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::system("PR_SET_CHILD_SUBREAPER", e))?;

        let mut claim = claim::claim(&layout, &ns, &task)?;
        admit(&spec.config.socket, &ns)?;
        let cgroup_dir = claim.make_cgroup(&task)?;
        let me = nix::unistd::geteuid().as_raw();
        let dir = Dir::open(&layout.user_state_dir(&ns, me))?;
        // A previous run whose monitor died left a state file: close its record.
        crate::task::finalize_lost(&dir, &task, &claim.cgroup)?;
        let log_path = spec
            .log
            .clone()
            .unwrap_or_else(|| layout.task_log(&ns, &task));
        let mut log = Log::create(&log_path, spec.config.log_keep)?;
        let sock = layout::socket_name(&task);
        let listener = control::bind(&dir, &sock)
            .map_err(|e| Error::system("cannot create the task's control socket", e))?;
        let started = listener
            .set_nonblocking(true)
            .map_err(|e| Error::system("control socket", e))
            .and_then(|()| Ok(claim.cgroup.open_events()?))
            .and_then(|events| {
                let pid = start_process(&cgroup_dir, &spec.argv, &spec.env, &spec.cwd, &log.file)?;
                Ok((events, pid))
            });
        let (events, pid) = match started {
            Ok(v) => v,
            Err(e) => {
                let _ = dir.remove_socket(&sock);
                return Err(e);
            }
        };
        // From here the task runs: failures are noted, never undone.
        claim.keep();
        let installed = log.install();
        let start = crate::time::now_secs();
        let state = TaskState {
            namespace: ns.to_string(),
            task: task.to_string(),
            uid: me,
            command: spec
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
            pid,
            monitor_pid: std::process::id() as i32,
            start,
            start_time: crate::time::utc(start),
            log: log.path().display().to_string(),
            cwd: String::from_utf8_lossy(&spec.cwd).into_owned(),
        };
        let m = Monitor {
            claim,
            cgroup_dir,
            dir,
            state,
            log,
            main_pid: pid,
            main_exit: None,
            phase: Phase::Task,
            record: None,
            accounting: None,
            listener,
            stopping: None,
            killed_after_timeout: false,
            waiters: Vec::new(),
            sigfd,
            events,
            spec,
        };
        if let Err(e) = installed {
            m.note(&format_args!("the new log keeps its temporary name: {e}"));
        }
        if let Err(e) = record::write_json(&m.dir, &layout::state_name(&m.spec.task), &m.state) {
            m.note(&e);
        }
        let _ = send(
            report,
            &Report::Started {
                pid,
                monitor_pid: m.state.monitor_pid,
            },
        );
        Ok(m)
    }

    /// A line in the task's log from lanco itself.
    fn note(&self, text: &dyn std::fmt::Display) {
        let line = format!(
            "{} [lanco-monitor] {text}\n",
            crate::time::utc(crate::time::now_secs())
        );
        let _ = (&self.log.file).write_all(line.as_bytes());
    }

    fn run(mut self, mut report: File) -> ! {
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
                    self.note(&e);
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
            match control::read_line::<ControlRequest>(&conn, Some(Duration::from_secs(1))) {
                Ok(ControlRequest::Stop { timeout_ms }) => self.stop(conn, timeout_ms),
                Ok(ControlRequest::Kill { signal }) => {
                    let reply = match Signal::try_from(signal) {
                        Ok(sig) => match self.signal_all(sig) {
                            Ok(()) => ControlReply::Done {
                                killed_after_timeout: false,
                            },
                            Err(e) => ControlReply::Error {
                                message: e.to_string(),
                            },
                        },
                        Err(_) => ControlReply::Error {
                            message: format!("invalid signal {signal}"),
                        },
                    };
                    let mut conn = conn;
                    let _ = control::send_line(&mut conn, &reply);
                }
                Err(_) => {}
            }
        }
    }

    fn stop(&mut self, conn: UnixStream, timeout_ms: Option<u64>) {
        self.begin_stop(timeout_ms, "lanco stop");
        self.waiters.push(conn);
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

    /// The payload and all its processes are gone: record it.
    fn task_ended(&mut self) {
        // RUSAGE_CHILDREN covers every descendant that was waited for: the
        // payload and the orphans this subreaper reaped.
        let max_rss = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
            .ok()
            .map(|u| u.max_rss() as u64 * 1024);
        let rec = ExitRecord::ended(
            &self.state,
            &self.claim.cgroup,
            self.main_exit.unwrap_or(Exit::Lost),
            self.stopping.is_some(),
            self.killed_after_timeout,
            max_rss,
        );
        let task = &self.spec.task;
        let accounting = record::append_accounting(&self.dir, &rec);
        for r in [
            record::write_json(&self.dir, &layout::exit_name(task), &rec),
            accounting.as_ref().map(|_| ()).map_err(Clone::clone),
            self.dir
                .remove(&layout::state_name(task))
                .map_err(Error::from),
        ] {
            if let Err(e) = r {
                self.note(&e);
            }
        }
        self.accounting = accounting.ok();
        self.record = Some(rec);
    }

    /// Starts the on-exit command, if any, in the (empty) task cgroup so it
    /// is limited, listed and stoppable like the task. Returns whether it runs.
    fn phase_on_exit(&mut self) -> bool {
        let (Some(cmd), Some(rec)) = (self.spec.on_exit.clone(), self.record.as_ref()) else {
            return false;
        };
        let mut env = self.spec.env.clone();
        env.retain(|e| !e.starts_with(b"LANCO_"));
        let status = rec
            .exit
            .shell_status()
            .map(|s| s.to_string())
            .unwrap_or_default();
        for (k, v) in [
            ("LANCO_NAMESPACE", self.spec.ns.to_string()),
            ("LANCO_TASK", self.spec.task.to_string()),
            ("LANCO_EXIT_STATUS", status),
            ("LANCO_EXIT", rec.exit.to_string()),
        ] {
            env.push(format!("{k}={v}").into_bytes());
        }
        let argv = vec![b"/bin/sh".to_vec(), b"-c".to_vec(), cmd.into_bytes()];
        match start_process(
            &self.cgroup_dir,
            &argv,
            &env,
            &self.spec.cwd,
            &self.log.file,
        ) {
            Ok(pid) => {
                self.main_pid = pid;
                self.main_exit = None;
                self.phase = Phase::OnExit;
                true
            }
            Err(e) => {
                self.note(&format_args!("on-exit command: {e}"));
                false
            }
        }
    }

    fn finish(mut self, report: &mut File) -> ! {
        // The task may have made cgroups of its own inside its cgroup.
        if let Err(e) = self.claim.cgroup.remove_tree() {
            self.note(&e);
        }
        let _ = self
            .dir
            .remove_socket(&layout::socket_name(&self.spec.task));
        // Release the name before answering, so a `run` right after a
        // returned `stop` finds it free.
        self.claim.release();
        let reply = ControlReply::Done {
            killed_after_timeout: self.killed_after_timeout,
        };
        for w in &mut self.waiters {
            let _ = control::send_line(w, &reply);
        }
        if let Some(rec) = &self.record {
            let _ = send(report, &Report::finished(rec.exit));
        }
        if let Some(Err(e)) = self.accounting.as_ref().map(File::sync_data) {
            // (self.note needs all of self; the lock is already given back.)
            let _ = writeln!(
                &self.log.file,
                "[lanco-monitor] cannot sync the accounting journal: {e}"
            );
        }
        std::process::exit(0)
    }
}

fn admit(socket: &Path, ns: &NamespaceName) -> Result<()> {
    match crate::helper::request(socket, &Request::Admit { ns: ns.clone() })? {
        Response::Admitted => Ok(()),
        other => Err(Error::Helper(format!(
            "unexpected answer from lancod: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_roundtrip() {
        for r in [
            Report::Started {
                pid: 1,
                monitor_pid: 2,
            },
            Report::finished(Exit::Code(7)),
            Report::finished(Exit::Signal(10)),
            Report::finished(Exit::Lost),
            Report::Failed(Error::StartFailed("x".into())),
        ] {
            let mut buf = Vec::new();
            send(&mut buf, &r).unwrap();
            let back: Report = recv(&mut &buf[..], 1 << 20).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }
}
