//! The per-task monitor (the `lanco-monitor` binary). One small process per
//! task, no async runtime: it claims the task's name, gets itself admitted to
//! the namespace by lancod, starts the payload straight into the task's cgroup
//! with clone3(CLONE_INTO_CGROUP), reports the exec result to `lanco run`, and
//! then sleeps in poll(2) until the task's cgroup is empty. As a child
//! subreaper it reaps every orphan of the task. It does the stop sweep itself,
//! writes the exit record and the accounting line, runs the on-exit command,
//! removes the cgroup and exits. If it is killed, the task runs on: the cgroup,
//! not the monitor, is the task.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::{self, Cgroup, EventsFile};
use lanco_proto::wire::{Request, Response};
use lanco_proto::{Config, Layout, NamespaceName, TaskName};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid};
use serde::{Deserialize, Serialize};

use crate::control::{self, ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::record::{self, Exit, ExitRecord, TaskState};
use crate::sys;

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
    // Group members share the task's files (state, socket).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
    // A `lanco run` that stopped listening must not kill us with SIGPIPE.
    sys::ignore_signals(&[Signal::SIGPIPE, Signal::SIGHUP])
        .map_err(|e| Error::system("sigaction", e))?;
    Ok(report)
}

/// What the name is held by: the lock (released when the monitor exits) and
/// the cgroup.
struct Claim {
    lock: Flock<File>,
    cgroup: Cgroup,
    cgroup_dir: OwnedFd,
}

enum Phase {
    /// The payload and everything it started.
    Task,
    /// The on-exit command, still inside the task's cgroup.
    OnExit,
}

struct Monitor {
    spec: Spec,
    layout: Layout,
    claim: Claim,
    state: TaskState,
    log_path: PathBuf,
    log: File,
    main_pid: i32,
    main_exit: Option<Exit>,
    phase: Phase,
    record: Option<ExitRecord>,
    /// Synced to disk once `stop` has been answered.
    accounting: Option<File>,
    listener: UnixListener,
    stop_deadline: Option<Instant>,
    /// When a stop is under way: pids already sent SIGTERM, and when to look
    /// for new ones.
    termed: HashSet<i32>,
    next_sweep: Option<Instant>,
    stopped: bool,
    killed_after_timeout: bool,
    waiters: Vec<UnixStream>,
    sigfd: SignalFd,
    events: EventsFile,
}

impl Monitor {
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

        let claim = claim(&layout, &ns, &task)?;
        let ns_gid = Gid::from_raw(
            fs::metadata(layout.ns_state_dir(&ns))
                .map_err(|e| Error::system("namespace state", e))?
                .gid(),
        );
        Self::start_claimed(spec, layout, claim, ns_gid, sigfd, report)
    }

    /// Everything after the name is ours. On failure, gives the name back:
    /// nothing runs in the cgroup yet, so it can be removed.
    fn start_claimed(
        spec: Spec,
        layout: Layout,
        claim: Claim,
        ns_gid: Gid,
        sigfd: SignalFd,
        report: &mut File,
    ) -> Result<Self> {
        let (ns, task) = (spec.ns.clone(), spec.task.clone());
        let undo = |claim: &Claim| {
            let _ = claim.cgroup.remove();
            let _ = fs::remove_file(
                layout
                    .ns_state_dir(&ns)
                    .join(lanco_proto::layout::task_socket_name(&task)),
            );
        };
        let r = (|| {
            // Other members must be able to freeze, kill and list it.
            let files = [
                cgroupfs::CGROUP_PROCS,
                cgroupfs::CGROUP_FREEZE,
                cgroupfs::CGROUP_KILL,
            ];
            match claim.cgroup.delegate(None, ns_gid, &files) {
                // The owner need not be in the namespace group; then only
                // the monitor (via the control socket) can act on the task.
                Err(e) if e.io_kind() == Some(ErrorKind::PermissionDenied) => {}
                r => r?,
            }
            let log_path = spec
                .log
                .clone()
                .unwrap_or_else(|| layout.task_log(&ns, &task));
            rotate(&log_path, spec.config.log_keep)?;
            let log = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o660)
                .custom_flags(libc::O_CLOEXEC)
                .open(&log_path)
                .map_err(|e| Error::system(format!("cannot open log {}", log_path.display()), e))?;
            admit(&spec.config.socket, &ns)?;
            let listener = control::bind(&layout.ns_state_dir(&ns), &task)
                .map_err(|e| Error::system("cannot create the task's control socket", e))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| Error::system("control socket", e))?;
            let events = claim.cgroup.open_events()?;
            let pid = start_process(&claim.cgroup_dir, &spec.argv, &spec.env, &spec.cwd, &log)?;
            let start = crate::time::now_secs();
            let state = TaskState {
                namespace: ns.to_string(),
                task: task.to_string(),
                uid: nix::unistd::getuid().as_raw(),
                command: spec
                    .argv
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
                pid,
                monitor_pid: std::process::id() as i32,
                start,
                start_time: crate::time::utc(start),
                log: log_path.display().to_string(),
                cwd: String::from_utf8_lossy(&spec.cwd).into_owned(),
            };
            Ok((log_path, log, listener, events, pid, state))
        })();
        let (log_path, log, listener, events, pid, state) = match r {
            Ok(v) => v,
            Err(e) => {
                undo(&claim);
                return Err(e);
            }
        };
        // From here the task runs: failures are logged, never undone.
        let m = Monitor {
            layout,
            claim,
            state,
            log_path,
            log,
            main_pid: pid,
            main_exit: None,
            phase: Phase::Task,
            record: None,
            accounting: None,
            listener,
            stop_deadline: None,
            termed: HashSet::new(),
            next_sweep: None,
            stopped: false,
            killed_after_timeout: false,
            waiters: Vec::new(),
            sigfd,
            events,
            spec,
        };
        if let Err(e) = record::write_json(&m.layout.task_state(&m.spec.ns, &m.spec.task), &m.state)
        {
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
        let _ = (&self.log).write_all(line.as_bytes());
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
            if self.next_sweep.is_some_and(|t| now >= t)
                && populated
                && self.stop_deadline.is_some()
            {
                self.sweep_term();
            }
            if let Some(d) = self.stop_deadline {
                if now >= d && populated {
                    self.note(
                        &"stop timeout reached: killing every remaining process (cgroup.kill)",
                    );
                    self.killed_after_timeout = true;
                    let _ = self.claim.cgroup.kill();
                    self.stop_deadline = None;
                }
            }
            if self.spec.config.log_max_bytes > 0 && now >= next_log_check {
                self.check_log_size();
                next_log_check = now + LOG_CHECK;
            }
            let mut wake = next_log_check;
            if let Some(d) = self.stop_deadline {
                wake = wake.min(d).min(self.next_sweep.unwrap_or(d));
            }
            let ms = wake
                .saturating_duration_since(Instant::now())
                .as_millis()
                .clamp(1, 60_000) as u16;
            let timeout = if self.spec.config.log_max_bytes > 0 || self.stop_deadline.is_some() {
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
        if !self.stopped {
            self.stopped = true;
            self.note(&format_args!(
                "stop ({by}): SIGTERM to every process, cgroup.kill after {}s",
                timeout.as_secs_f64()
            ));
            self.sweep_term();
        }
        if self.stop_deadline.is_none_or(|d| deadline < d) && !self.killed_after_timeout {
            self.stop_deadline = Some(deadline);
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
        if let Err(e) = self
            .claim
            .cgroup
            .signal_frozen(Signal::SIGTERM, &mut self.termed)
        {
            self.note(&e);
        }
        self.next_sweep = Some(Instant::now() + RESWEEP);
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
            self.stopped,
            self.killed_after_timeout,
            max_rss,
        );
        let (ns, task) = (&self.spec.ns, &self.spec.task);
        let accounting = record::append_accounting(&self.layout.accounting_file(ns), &rec);
        for r in [
            record::write_json(&self.layout.task_exit(ns, task), &rec),
            accounting.as_ref().map(|_| ()).map_err(Clone::clone),
            record::remove_if_exists(&self.layout.task_state(ns, task)),
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
            &self.claim.cgroup_dir,
            &argv,
            &env,
            &self.spec.cwd,
            &self.log,
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
        let sock = self
            .layout
            .ns_state_dir(&self.spec.ns)
            .join(lanco_proto::layout::task_socket_name(&self.spec.task));
        let _ = fs::remove_file(sock);
        // Release the name before answering, so a `run` right after a
        // returned `stop` finds it free.
        let _ = self.claim.lock.unlock();
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
                &self.log,
                "[lanco-monitor] cannot sync the accounting journal: {e}"
            );
        }
        std::process::exit(0)
    }

    /// copytruncate: the payload holds the log open with O_APPEND, so it
    /// keeps writing at the (new) end. Output written between the copy and
    /// the truncate is lost; the window is one copy of `log_max_bytes`.
    fn check_log_size(&self) {
        let Ok(meta) = self.log.metadata() else {
            return;
        };
        if meta.len() < self.spec.config.log_max_bytes {
            return;
        }
        let r = shift_rotations(&self.log_path, self.spec.config.log_keep).and_then(|first| {
            let Some(first) = first else { return Ok(()) };
            fs::copy(&self.log_path, &first).map_err(|e| Error::system("copy log", e))?;
            self.log
                .set_len(0)
                .map_err(|e| Error::system("truncate log", e))
        });
        if let Err(e) = r {
            self.note(&e);
        }
    }
}

/// Takes the task's name: the lock first (one starter at a time, held by the
/// monitor for life), then the cgroup. An existing cgroup that still holds
/// processes is a running task whose monitor died; an empty one is a leftover
/// and is made anew.
fn claim(layout: &Layout, ns: &NamespaceName, task: &TaskName) -> Result<Claim> {
    if !layout.ns_cgroup(ns).is_dir() {
        return Err(Error::NoNamespace(ns.clone()));
    }
    let lock_path = layout.task_lock(ns, task);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o660)
        .custom_flags(libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(|e| match e.kind() {
            ErrorKind::PermissionDenied => crate::task::not_member(ns),
            ErrorKind::NotFound => Error::NoNamespace(ns.clone()),
            _ => Error::system(format!("cannot open {}", lock_path.display()), e),
        })?;
    let lock = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, Errno::EWOULDBLOCK)) => return Err(Error::AlreadyRunning(task.clone())),
        Err((_, e)) => return Err(Error::system("flock", e)),
    };
    let cgroup = Cgroup::new(layout.task_cgroup(ns, task));
    if !cgroup.create()? {
        if cgroup.populated()? {
            return Err(Error::AlreadyRunning(task.clone()));
        }
        // A leftover of a run whose monitor died. Made anew rather than
        // reused: if it was killed (cgroup.kill), the kernel would kill
        // every process born into it from the monitors' cgroup.
        cgroup.remove_tree()?;
        cgroup.create()?;
    }
    // A previous run whose monitor died left a state file: close its record.
    crate::task::finalize_lost(layout, ns, task)?;
    let cgroup_dir = nix::fcntl::open(
        cgroup.path(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::system(format!("cannot open {}", cgroup.path().display()), e))?;
    Ok(Claim {
        lock,
        cgroup,
        cgroup_dir,
    })
}

fn admit(socket: &Path, ns: &NamespaceName) -> Result<()> {
    match crate::helper::request(socket, &Request::Admit { ns: ns.clone() })? {
        Response::Admitted => Ok(()),
        other => Err(Error::Helper(format!(
            "unexpected answer from lancod: {other:?}"
        ))),
    }
}

/// Moves `path.N-1` to `path.N` … and `path` to `path.1`, dropping the oldest.
/// Returns where the newest rotation goes (`path.1`), or None if `keep` is 0.
fn shift_rotations(path: &Path, keep: u32) -> Result<Option<PathBuf>> {
    let nth = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    if keep == 0 {
        return Ok(None);
    }
    for n in (1..keep).rev() {
        match fs::rename(nth(n), nth(n + 1)) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(Error::system("rotate log", e))
            }
            _ => {}
        }
    }
    Ok(Some(nth(1)))
}

/// A new run starts a new log; the previous ones are kept as `.1` … `.keep`.
fn rotate(path: &Path, keep: u32) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.len() > 0 => {}
        _ => return Ok(()),
    }
    match shift_rotations(path, keep)? {
        Some(first) => fs::rename(path, first).map_err(|e| Error::system("rotate log", e)),
        None => fs::remove_file(path).map_err(|e| Error::system("remove old log", e)),
    }
}

/// Finds `argv[0]` the way execvp would, in the task's own PATH.
fn resolve_program(argv0: &[u8], env: &[Vec<u8>], cwd: &[u8]) -> Option<PathBuf> {
    let prog = Path::new(OsStr::from_bytes(argv0));
    let executable = |p: &Path| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
            && fs::metadata(p).is_ok_and(|m| m.is_file())
    };
    if argv0.contains(&b'/') {
        let full = if prog.is_absolute() {
            prog.to_owned()
        } else {
            Path::new(OsStr::from_bytes(cwd)).join(prog)
        };
        return Some(full);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(b"/usr/local/bin:/usr/bin:/bin");
    path.split(|b| *b == b':')
        .map(|dir| Path::new(OsStr::from_bytes(if dir.is_empty() { b"." } else { dir })).join(prog))
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                Path::new(OsStr::from_bytes(cwd)).join(p)
            }
        })
        .find(|p| executable(p))
}

/// clone3 into the task's cgroup, then exec; returns once the exec has
/// happened (the status pipe closes on exec) or with the reason it did not.
fn start_process(
    cgroup_dir: &OwnedFd,
    argv: &[Vec<u8>],
    env: &[Vec<u8>],
    cwd: &[u8],
    log: &File,
) -> Result<i32> {
    let shown =
        String::from_utf8_lossy(argv.first().map(Vec::as_slice).unwrap_or_default()).into_owned();
    let unable =
        |e: &dyn std::fmt::Display| Error::StartFailed(format!("unable to run {shown}: {e}"));
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| unable(&"argument contains a NUL byte"));
    let Some(path) = resolve_program(
        argv.first().ok_or_else(|| unable(&"empty command"))?,
        env,
        cwd,
    ) else {
        return Err(unable(&Errno::ENOENT.desc()));
    };
    let path = cstr(path.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let cwd = cstr(cwd)?;
    let stdin = File::open("/dev/null").map_err(|e| Error::system("/dev/null", e))?;
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::system("pipe", e))?;
    let plan = sys::ExecPlan {
        path: &path,
        argv: &argv,
        envp: &envp,
        cwd: &cwd,
        stdin: stdin.as_fd(),
        stdout: log.as_fd(),
        report: wr.as_fd(),
    };
    let (pid, _pidfd) = sys::spawn_into_cgroup(cgroup_dir.as_fd(), &plan).map_err(|e| match e {
        Errno::EACCES | Errno::EPERM => Error::Denied(format!(
            "cannot start a process in the task's cgroup: {}",
            e.desc()
        )),
        e => Error::system("clone3(CLONE_INTO_CGROUP)", e),
    })?;
    drop(wr);
    // Until EOF: the ALIVE byte, then an errno if chdir or exec failed.
    let mut buf = [0u8; 5];
    let mut n = 0;
    let mut rd = File::from(rd);
    while n < buf.len() {
        match rd.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    match (n, buf[0]) {
        (1, sys::ALIVE) => Ok(pid),
        (5, sys::ALIVE) => {
            let _ = waitpid(Pid::from_raw(pid), None);
            let errno = Errno::from_raw(i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]));
            Err(unable(&errno.desc()))
        }
        // It never ran. Seen after someone wrote cgroup.kill of the
        // namespace's cgroup: the kernel (6.18 here) compares the kill
        // count of the forking process's cgroup (monitors/, bumped) with the
        // new task cgroup's (fresh: 0) and kills every child born into it.
        _ => {
            let how = match waitpid(Pid::from_raw(pid), None) {
                Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig} before it ran"),
                _ => "it ended before it ran".to_owned(),
            };
            Err(unable(&format!(
                "{how}; if the namespace's cgroup was killed (cgroup.kill), \
                 the kernel kills every new task of it until the namespace \
                 is destroyed and initialised again"
            )))
        }
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
