//! Starting a task: the hand-off of a `TaskSpec` to a new monitor, which
//! claims the name and starts the command. Warm: the member's spawner forks
//! the monitor inside the member's monitors cgroup. Cold: a new
//! `lanco-monitor` detaches and is admitted there by lancod. The caller is
//! never forked.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lanco_proto::files::Dir;
use lanco_proto::{layout, Config};
use nix::sys::socket::{self, sockopt::PeerCredentials};

use crate::error::{Error, Result};
use crate::handoff::{self, Report, Spec};
use crate::helper::NoSigpipe;
use crate::namespace::Namespace;
use crate::record::Exit;

use crate::spec::TaskSpec;
use crate::sys;

/// Where the package installs the monitor; the config's `monitor` overrides it.
const MONITOR_INSTALLED: &str = "/usr/libexec/lanco/lanco-monitor";
/// How long a caller waits for a spawner to take its connection before it
/// takes the cold path instead (an idle spawner answers in microseconds).
const WARM_ACCEPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The monitor of an installation: the config's `monitor`, else the
/// package's path. Never looked up beside the running executable, which for
/// a daemon linking this library is the daemon's own directory.
pub(crate) fn configured_monitor(config: &Config) -> PathBuf {
    if config.monitor.as_os_str().is_empty() {
        PathBuf::from(MONITOR_INSTALLED)
    } else {
        config.monitor.clone()
    }
}

/// A started task ([`Namespace::run`]). Keep it to wait for the end of
/// this run (`lanco run -f`); dropping it leaves the task running, and
/// [`Namespace::wait`] finds it again by name, from any process.
#[derive(Debug)]
pub struct Started {
    /// The pid of the task's main process (the command, exec'd).
    pub pid: i32,
    /// The pid of the run's monitor.
    pub monitor_pid: i32,
    /// This run among all runs of the name: in its state file, exit record
    /// and accounting line.
    pub run_id: String,
    /// The task's name, for the errors of [`Started::wait_ready`].
    task: lanco_proto::TaskName,
    /// Whether a readiness report is still to come (a readiness other than
    /// exec, not yet read).
    ready_pending: bool,
    /// The monitor's report channel: its stdout pipe (cold start) or the
    /// connection the spawner handed it (warm start).
    report: File,
}

impl Started {
    /// Blocks until the task is ready: at once for a task ready when
    /// exec'd; otherwise until it says so (`READY=1`, its readiness fd),
    /// or with [`Error::NotReady`] once its monitor gave up on it (it ended
    /// first, it was not ready within its start timeout, its restarts gave
    /// up), by when nothing of it runs. A task that restarts under its
    /// policy before it was ever ready is waited for across the restarts.
    pub fn wait_ready(&mut self) -> Result<()> {
        if !self.ready_pending {
            return Ok(());
        }
        let got = handoff::recv::<Report>(&mut self.report);
        self.ready_pending = false;
        match got {
            Ok(Report::Ready) => Ok(()),
            Ok(Report::NotReady(reason)) => Err(Error::NotReady {
                task: self.task.clone(),
                reason,
            }),
            Ok(Report::Finished(exit)) => Err(Error::NotReady {
                task: self.task.clone(),
                reason: format!("{exit} before it was ready"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::NotReady {
                task: self.task.clone(),
                reason: "lost its monitor before it was ready".into(),
            }),
            Ok(other) => Err(Error::failed(format!(
                "unexpected report from the monitor: {other:?}"
            ))),
            Err(e) => Err(Error::system("cannot read the monitor's report", e)),
        }
    }

    /// Blocks until the task and its on-exit command are over.
    pub fn wait(mut self) -> Result<Exit> {
        self.wait_timeout(None)?
            .ok_or_else(|| Error::failed("the monitor's report never came"))
    }

    /// As [`Started::wait`], giving up after `timeout` (`Ok(None)`); may be
    /// called again.
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<Exit>> {
        use std::os::fd::AsFd;
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        match crate::sys::readable_by(self.report.as_fd(), deadline) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(Error::system("cannot wait for the monitor's report", e)),
        }
        self.read_report().map(Some)
    }

    fn read_report(&mut self) -> Result<Exit> {
        let mut got = handoff::recv::<Report>(&mut self.report);
        if self.ready_pending {
            self.ready_pending = false;
            if let Ok(Report::Ready | Report::NotReady(_)) = got {
                got = handoff::recv::<Report>(&mut self.report);
            }
        }
        match got {
            Ok(Report::Finished(exit)) => Ok(exit),
            // The pipe closed without a report: the monitor was killed, and
            // with it the only record of the main process's status.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Exit::Lost),
            Ok(other) => Err(Error::failed(format!(
                "unexpected report from the monitor: {other:?}"
            ))),
            Err(e) => Err(Error::system("cannot read the monitor's report", e)),
        }
    }
}

impl Namespace {
    /// The monitor of this installation (see [`configured_monitor`]),
    /// checked to be there.
    fn monitor_path(&self) -> Result<(PathBuf, (u64, u64))> {
        let path = configured_monitor(self.config());
        if !path.is_absolute() {
            return Err(Error::InvalidInput(format!(
                "the config key `monitor` must be an absolute path, not {}",
                path.display()
            )));
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok((path, (m.st_dev(), m.st_ino()))),
            _ => Err(Error::failed(format!(
                "the task monitor {} does not exist; set the config key `monitor` to where lanco-monitor is installed",
                path.display()
            ))),
        }
    }

    /// Starts a task; returns once its command has been exec'd inside the
    /// task's cgroup, or with the reason it could not be
    /// ([`Error::StartFailed`], [`Error::AlreadyRunning`],
    /// [`Error::NameTaken`], …).
    ///
    /// The caller is never forked: a new monitor claims the name and starts
    /// the command. It is forked by the member's warm spawner when one
    /// serves this caller (no cgroup migration: the fast path), else it is
    /// a new `lanco-monitor` (the config's `monitor`), admitted into the
    /// namespace by lancod, which then leaves a spawner for the next start.
    /// Either way the task gets the caller's environment as the spec says,
    /// working directory, resource limits, nice value and CPU affinity. The
    /// task then lives on its own, whatever becomes of the caller. Root runs no task in a namespace
    /// ([`Error::PermissionDenied`]): run as a member. A cold start also
    /// runs a short-lived thread in the caller, with every signal blocked,
    /// that lets the kernel's wait for the admission start early (see
    /// docs/DESIGN.md, "The start path"); it ends within a grace period
    /// (milliseconds), before this returns a started task.
    pub fn run(&self, spec: &TaskSpec) -> Result<Started> {
        if spec.argv.is_empty() {
            return Err(Error::InvalidInput("no command given".into()));
        }
        if nix::unistd::geteuid().is_root() {
            return Err(Error::PermissionDenied(
                "root runs no tasks in a namespace (its directories are its members'); run as a member, e.g. with sudo -u".into(),
            ));
        }
        let mspec = spec.handoff(self)?;
        let (monitor, binary) = self.monitor_path()?;
        let (report, first) = match self.start_warm(&mspec, binary) {
            Some(warm) => warm,
            None => {
                self.hasten_admission();
                start_cold(&monitor, &mspec)?
            }
        };
        match first {
            Report::Started {
                pid,
                monitor_pid,
                run_id,
            } => Ok(Started {
                pid,
                monitor_pid,
                run_id,
                task: spec.name.clone(),
                ready_pending: spec.supervision.ready != crate::Ready::Exec,
                report,
            }),
            Report::Failed(f) => Err(f.into_error(self.name(), &spec.name)),
            Report::Declined(_) | Report::Finished(_) | Report::Ready | Report::NotReady(_) => {
                Err(Error::failed("the monitor reported an end before a start"))
            }
        }
    }

    /// Starts, on a short-lived thread, the RCU grace period that lancod's
    /// admission of the cold monitor would otherwise start and wait for
    /// (docs/DESIGN.md, "The start path"): the first `cgroup.procs` write
    /// after a quiet spell waits for one (~8–20 ms on a stock cgroup2
    /// mount), and one that comes while another write waits for it, or
    /// soon after, does not wait again. So the grace period runs while the
    /// monitor starts and reaches lancod, not after.
    ///
    /// The thread writes its own thread id to the member's own
    /// `cgroup.threads` (delegated to it), a write the kernel locks for
    /// before it checks it. It can move nothing: a thread may only move
    /// within its process's domain cgroup, and the member's subtree root
    /// holds no process (lanco puts none there), so the write is refused
    /// (EACCES from outside the subtree, EOPNOTSUPP from a task inside it)
    /// or, for a process the member itself put there, a no-op. Its file is
    /// close-on-exec; its signals are blocked, so none is delivered to it
    /// while it waits. Nothing depends on it: a member without a subtree
    /// yet (its first start in the namespace), or any error, just leaves
    /// the wait to lancod. By the time the start has been reported, the
    /// admission has passed the grace period, so the thread is done.
    fn hasten_admission(&self) {
        use lanco_proto::cgroupfs::{Cgroup, CGROUP_THREADS};
        let me = nix::unistd::geteuid().as_raw();
        let subtree = Cgroup::new(self.layout().user_cgroup(self.name(), me));
        let _ = std::thread::Builder::new()
            .name("lanco-admission".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
                let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
                let _ = subtree.write(CGROUP_THREADS, &nix::unistd::gettid().to_string());
            });
    }

    /// The warm start: the member's spawner in this namespace, if one
    /// lives and serves this caller, forks a monitor that is already in
    /// the member's monitors cgroup (no migration). `None` sends the caller
    /// down the cold path: no spawner, one that closed the connection (it
    /// serves only callers like itself, and is gone when idle or
    /// upgraded), or a monitor that declined before claiming anything (it
    /// could not take on the caller's limits) or died before its first
    /// report (which a cold start then reports on, e.g. as "already
    /// running" had it started the task). A spawner running another monitor
    /// binary than this caller's configuration names (another installation,
    /// an upgrade) is not used either.
    fn start_warm(&self, mspec: &Spec, binary: (u64, u64)) -> Option<(File, Report)> {
        if self.config().spawner_idle_secs == 0 {
            return None;
        }
        // Restrictions no other process can see: only a monitor exec'd by
        // this caller keeps them.
        if sys::own_secure_flags() != (0, 0) {
            return None;
        }
        let me = nix::unistd::geteuid().as_raw();
        let dir = Dir::open(&self.layout().user_state_dir(self.name(), me)).ok()?;
        let path = dir.open_socket(layout::SPAWNER_SOCKET, me).ok()??;
        // Non-blocking: a spawner whose queue is full (stopped, swamped)
        // answers EAGAIN at once instead of holding the caller in connect.
        let sock = socket::socket(
            socket::AddressFamily::Unix,
            socket::SockType::Stream,
            socket::SockFlag::SOCK_CLOEXEC | socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .ok()?;
        let addr =
            socket::UnixAddr::new(format!("/proc/self/fd/{}", path.as_raw_fd()).as_str()).ok()?;
        socket::connect(sock.as_raw_fd(), &addr).ok()?;
        let conn = UnixStream::from(sock);
        conn.set_nonblocking(false).ok()?;
        let peer = socket::getsockopt(&conn, PeerCredentials).ok()?;
        if peer.uid() != me {
            return None;
        }
        // A spawner that is stopped or swamped: not worth waiting for.
        conn.set_write_timeout(Some(WARM_ACCEPT_TIMEOUT)).ok()?;
        conn.set_read_timeout(Some(WARM_ACCEPT_TIMEOUT)).ok()?;
        // The spec goes at once, after the answer this caller expects: the
        // standby checks this caller meanwhile, then answers, and starts
        // nothing unless the expected answer is its own (an older one
        // reads no spec that begins so, and starts nothing either).
        let expected = handoff::spawner_answer(binary);
        let mut hello = expected.to_vec();
        hello.extend(handoff::encode(mspec).ok()?);
        NoSigpipe(&conn).write_all(&hello).ok()?;
        let mut answer = [0u8; 17];
        (&conn).read_exact(&mut answer).ok()?;
        if answer != expected {
            return None;
        }
        conn.set_read_timeout(None).ok()?;
        let mut report = File::from(OwnedFd::from(conn));
        match handoff::recv::<Report>(&mut report) {
            Ok(Report::Declined(_)) | Err(_) => None,
            Ok(first) => Some((report, first)),
        }
    }
}

/// The cold start: a new `lanco-monitor`, exec'd by the caller (so it has
/// the caller's limits), detaches and is admitted into the namespace by
/// lancod. Returns its report pipe and first report.
fn start_cold(monitor: &Path, mspec: &Spec) -> Result<(File, Report)> {
    // The spec goes over a socket, not a pipe: a monitor that dies before
    // reading it (or a bad `monitor` setting) must be an error here, not a
    // SIGPIPE that ends a caller which, like `lanco`, keeps SIGPIPE's
    // default (a write with MSG_NOSIGNAL never raises it).
    let (ours, theirs) = UnixStream::pair()
        .map_err(|e| Error::system("cannot make the monitor's spec socket", e))?;
    let mut child = Command::new(monitor)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::system(format!("cannot start the monitor {}", monitor.display()), e))?;
    let sent = handoff::send(&mut NoSigpipe(&ours), mspec);
    drop(ours);
    let report = child
        .stdout
        .take()
        .ok_or_else(|| Error::failed("monitor has no stdout"))?;
    let mut report = File::from(OwnedFd::from(report));
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
    if sent.is_err() || status.is_some_and(|s| !s.success()) {
        let status = status.map_or("status unknown".to_owned(), |s| s.to_string());
        return Err(Error::failed(format!(
            "the monitor {} failed to start ({status})",
            monitor.display()
        )));
    }
    let first = handoff::recv::<Report>(&mut report)
        .map_err(|e| Error::system("the monitor died before starting the task", e))?;
    Ok((report, first))
}
