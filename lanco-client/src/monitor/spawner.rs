//! The warm spawner: the start path without a cgroup migration.
//!
//! Moving a process into a cgroup (what lancod's admission does for every
//! cold start) waits for an RCU grace period on a stock cgroup2 mount, 6 to
//! 19 ms when starts are spaced; a fork stays in its parent's cgroup and
//! waits for nothing. So the first monitor a member starts in a namespace,
//! once admitted into the member's monitors cgroup, also starts a spawner
//! there: `lanco-monitor` exec'd afresh as `lanco-spawner` (nothing of the
//! monitor's memory, fds or signal state), holding `spawner.lock` in the
//! member's state directory (one per member and namespace) and listening on
//! `spawner.sock` (0600) beside it. It keeps one fork of itself ready, the
//! standby (`lanco-standby` in ps; CLONE_PARENT: the spawner is nobody's
//! parent), so that no caller waits for a fork: the standby accepts the
//! next caller on the spawner's socket itself, and the spawner forks the
//! next standby once that start is over (at once for a caller who comes
//! meanwhile). While it waits, the standby makes the files a start creates
//! (prepared.rs). The standby checks the caller is
//! itself in all that a fork passes on and reads its limits (peer.rs),
//! answers, takes on those limits, reads the spec from the connection and
//! reports on it: it is the caller's monitor. The spawner never reads what
//! a caller sends, holds no task and no privilege, and exits after
//! `spawner_idle_secs` without a start, or when a standby finds the monitor
//! binary replaced (an upgrade). It is a cache: killing it loses nothing, and
//! the next `run` takes the cold path and starts a new one.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::fs::MetadataExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanco_proto::files::Dir;
use lanco_proto::layout;
use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::peer::Context;
use super::prepared::{self, Places};
use super::{Monitor, Prelude};
use crate::control;
use crate::error::{Error, Result};
use crate::handoff::{recv, send, spawner_answer, Failure, Report, Spec};
use crate::inherit::Inherited;
use crate::sys;

/// The fd the spawner's lock is handed on, across execve.
const LOCK_FD: i32 = 3;
/// How long a forked monitor waits for the spec.
const SPEC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a start the next standby is forked: just past the start
/// itself (the caller reading its report). Sooner is better for a caller
/// that runs again soon: at 20 ms, the benchmark's run/check/stop loop
/// found no standby ready (nor its files made, prepared.rs): `run` 4.88 ms
/// median against 2.33 ms at 1 ms, 4.73 against 4.06 ms back to back
/// (bench/NOTES.md, fifth session).
const STANDBY_DELAY: Duration = Duration::from_millis(1);
/// How long a standby waits for its caller's spec before it lets the
/// spawner serve the next caller meanwhile.
const SPEC_PROMPT: Duration = Duration::from_millis(50);
/// What a standby may tell the spawner once it has accepted a caller: that
/// caller is slow to send its spec, or the monitor binary was replaced.
const TAKEN: u8 = b'T';
const REPLACED: u8 = b'R';

/// Called by a monitor that was admitted (a cold start), once its task runs:
/// starts the member's spawner unless one lives, or the monitor was adopted
/// by a subreaper (its parent is not its pid namespace's init: the spawner,
/// and each monitor it forks, would be that subreaper's children, whoever
/// starts them later). `first` is the monitor's first process, which exits
/// at once; on a loaded machine it may not have yet. Failures only cost the
/// next `run` the cold path.
pub(super) fn ensure(m: &Monitor, first: nix::unistd::Pid) {
    let idle = m.spec.config.spawner_idle_secs;
    if idle == 0 {
        return;
    }
    let t0 = Instant::now();
    while nix::unistd::getppid() == first && t0.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(1));
    }
    if nix::unistd::getppid().as_raw() != 1 {
        return;
    }
    let _ = try_start(
        &m.dir,
        &m.spec.layout().ns_log_dir(&m.spec.ns),
        &crate::start::configured_monitor(&m.spec.config),
        idle,
    );
}

#[allow(unsafe_code)] // the fork and the fd move: see the SAFETY comments
fn try_start(dir: &Dir, logs: &Path, monitor: &Path, idle: u64) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let lock = match dir.open_read(layout::SPAWNER_LOCK, me)? {
        Some(f) => f,
        None => match dir.create_new(layout::SPAWNER_LOCK, 0o600) {
            Ok(f) => f,
            // Another monitor made it just now: it starts the spawner.
            Err(e) if e.io_kind() == Some(ErrorKind::AlreadyExists) => return Ok(()),
            Err(e) => return Err(e.into()),
        },
    };
    // A spawner holds it: nothing to do.
    if !sys::try_lock(lock.as_fd()).map_err(|e| Error::system("flock spawner.lock", e))? {
        return Ok(());
    }
    // The same argv as a cold monitor's, which every monitor it forks
    // shows in ps: they are monitors like any other. Its parameters go in
    // its environment (no task ever gets it: tasks get the spec's).
    let cstr = |b: &[u8]| {
        CString::new(b).map_err(|_| Error::failed("a NUL byte in the spawner's arguments"))
    };
    let path = cstr(monitor.as_os_str().as_bytes())?;
    let var = |name: &str, path: &Path| {
        let mut v = format!("{name}=").into_bytes();
        v.extend_from_slice(path.as_os_str().as_bytes());
        cstr(&v)
    };
    let env = [
        var(ENV_DIR, dir.path())?,
        var(ENV_LOGS, logs)?,
        cstr(format!("{ENV_IDLE}={idle}").as_bytes())?,
    ];
    // SAFETY: the monitor is single-threaded; the child only moves an fd,
    // resets its signals and execs (or exits).
    match unsafe { sys::fork_sibling() } {
        Ok(sys::Forked::Parent) => Ok(()),
        Ok(sys::Forked::Child) => {
            // The lock on LOCK_FD without close-on-exec; every other fd of
            // the monitor's has it. The lock's open file is shared: it stays
            // held by the spawner after the monitor closes its own fd.
            // SAFETY: LOCK_FD is owned by nothing in this child (any file
            // there is the monitor's, which this process never uses again).
            // dup2 onto itself would keep close-on-exec: clear it anyway.
            let ok = unsafe { nix::unistd::dup2_raw(lock.as_fd(), LOCK_FD) }
                .and_then(|fd| {
                    nix::fcntl::fcntl(
                        &fd,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )
                    .map(|_| std::mem::forget(fd))
                })
                .is_ok()
                && sys::reset_signals().is_ok();
            if ok {
                let _ = nix::unistd::execve(&path, &[&path], &env);
            }
            std::process::exit(127)
        }
        Err(e) => Err(Error::system("cannot start the spawner", e)),
    }
}

/// Set in a spawner's environment: the member's state directory, the
/// namespace's log directory, and the seconds it lingers without a start.
pub(super) const ENV_DIR: &str = "LANCO_SPAWNER_DIR";
const ENV_LOGS: &str = "LANCO_SPAWNER_LOGS";
const ENV_IDLE: &str = "LANCO_SPAWNER_IDLE";

/// The spawner's entry (lanco-monitor with `LANCO_SPAWNER_DIR` set), with
/// the lock on fd 3 and /dev/null on 0-2 (as the monitor that exec'd it
/// left them). Named `lanco-spawner` (comm) in ps and top.
#[allow(unsafe_code)] // taking fd 3: see the SAFETY comment
pub(super) fn main(dir: &OsString) -> u8 {
    let monitor = std::env::args_os().next().unwrap_or_default();
    let places = Places {
        logs: std::env::var_os(ENV_LOGS).unwrap_or_default().into(),
        state: dir.into(),
    };
    let idle = std::env::var_os(ENV_IDLE).unwrap_or_default();
    let idle = Duration::from_secs(idle.to_str().and_then(|s| s.parse().ok()).unwrap_or(0));
    // SAFETY: first act of the process: nothing owns an fd yet; fd 3 is the
    // lock the monitor handed on (checked below to be a regular file).
    let lock = unsafe {
        if sys::reset_signals().is_err() || sys::close_fds_from(LOCK_FD + 1).is_err() {
            return 2;
        }
        File::from_raw_fd(LOCK_FD)
    };
    if !lock.metadata().is_ok_and(|m| m.is_file()) {
        eprintln!("lanco-monitor: {ENV_DIR} is set by a monitor starting a spawner, never by hand");
        return 2;
    }
    match Spawner::new(Path::new(&monitor), places, idle, lock) {
        Ok(s) => s.serve(),
        Err(_) => 1,
    }
}

struct Spawner {
    own: Context,
    /// The monitor binary's path, and the device and inode this process
    /// runs: a start after they differ (an upgrade) ends the spawner.
    monitor: PathBuf,
    exe: (u64, u64),
    /// What it answers each caller it serves (handoff::spawner_answer).
    answer: [u8; 17],
    dir: Dir,
    /// Where its standbys make a start's files ahead (prepared.rs).
    places: Places,
    listener: UnixListener,
    idle: Duration,
    _lock: File,
}

impl Spawner {
    fn new(monitor: &Path, places: Places, idle: Duration, lock: File) -> Result<Self> {
        nix::unistd::setsid().map_err(|e| Error::system("setsid", e))?;
        let _ = nix::sys::prctl::set_name(c"lanco-spawner");
        sys::ignore_signals(&[Signal::SIGPIPE, Signal::SIGHUP])
            .map_err(|e| Error::system("sigaction", e))?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
        let own = Context::own().map_err(|e| Error::system("the spawner's own context", e))?;
        let exe = std::fs::metadata("/proc/self/exe")
            .map(|m| (m.st_dev(), m.st_ino()))
            .map_err(|e| Error::system("/proc/self/exe", e))?;
        let dir = Dir::open(&places.state)?;
        prepared::sweep(&dir);
        let listener = control::bind(&dir, layout::SPAWNER_SOCKET, 0o600)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| Error::system("cannot bind the spawner's socket", e))?;
        Ok(Spawner {
            own,
            monitor: monitor.to_owned(),
            exe,
            answer: spawner_answer(exe),
            dir,
            places,
            listener,
            idle,
            _lock: lock,
        })
    }

    /// Keeps a standby ready: a fork of the spawner made ahead of time that
    /// accepts the next caller itself, so that no caller waits for a fork
    /// nor for the spawner to wake. While one is ready, the spawner waits on
    /// their channel: closed, the standby's start is over (the next standby
    /// is forked STANDBY_DELAY later, so the fork takes no CPU from that
    /// start); TAKEN, its caller is slow to send the spec,
    /// and the spawner watches the listener again meanwhile (a caller who
    /// comes gets a standby forked for it at once); REPLACED, an upgrade:
    /// exit. Callers who come while a standby starts a task wait for that
    /// start (a few milliseconds).
    fn serve(self) -> u8 {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut last = Instant::now();
        let mut standby: Option<UnixStream> = None;
        // The channel of the standby serving the last caller, until it
        // closes: its start is over.
        let mut busy: Option<UnixStream> = None;
        // When the next standby is due, if none is ready and none busy.
        let mut due = Instant::now();
        loop {
            let left = self.idle.saturating_sub(last.elapsed());
            if left.is_zero() {
                break;
            }
            let mut wait = left;
            if standby.is_none() && busy.is_none() {
                let until_due = due.saturating_duration_since(Instant::now());
                if until_due.is_zero() {
                    match self.fork_standby() {
                        Some(chan) => standby = Some(chan),
                        None => break,
                    }
                } else {
                    wait = wait.min(until_due);
                }
            }
            // One process waits on the listener at a time: the standby,
            // else the spawner.
            let first = match &standby {
                Some(chan) => chan.as_fd(),
                None => self.listener.as_fd(),
            };
            let mut fds = vec![PollFd::new(first, PollFlags::POLLIN)];
            if let Some(b) = &busy {
                fds.push(PollFd::new(b.as_fd(), PollFlags::POLLIN));
            }
            // In whole milliseconds, rounded up: a timeout that ended early
            // would spin until due.
            let ms = u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
            let t = PollTimeout::try_from(Duration::from_millis(ms)).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, t) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(_) => break,
            }
            let first = fds[0].any().unwrap_or(false);
            let over = fds.get(1).is_some_and(|f| f.any().unwrap_or(false));
            drop(fds);
            if over {
                busy = None;
                due = Instant::now() + STANDBY_DELAY;
            }
            if !first {
                continue;
            }
            match standby.take() {
                Some(chan) => {
                    let mut byte = [0u8; 1];
                    last = Instant::now();
                    match (&chan).read(&mut byte) {
                        Ok(1) if byte[0] == TAKEN => busy = Some(chan),
                        Ok(1) => break,
                        // Its start is over (or it died): the next later.
                        _ => due = last + STANDBY_DELAY,
                    }
                }
                // A caller and no standby: one for it, at once.
                None => match self.fork_standby() {
                    Some(chan) => standby = Some(chan),
                    None => break,
                },
            }
        }
        // Whoever connects from now on finds no socket (or, connecting
        // through a path opened before, a refused connection) and goes cold.
        // A standby sees its channel close and exits.
        let _ = self.dir.remove_socket(layout::SPAWNER_SOCKET);
        0
    }

    /// Forks the standby; returns the spawner's end of its channel.
    #[allow(unsafe_code)] // the fork: see the SAFETY comment
    fn fork_standby(&self) -> Option<UnixStream> {
        let (ours, theirs) = UnixStream::pair().ok()?;
        // SAFETY: the spawner is single-threaded.
        match unsafe { sys::fork_sibling() } {
            Ok(sys::Forked::Child) => {
                // Named first: until then ps shows a second lanco-spawner.
                let _ = nix::sys::prctl::set_name(c"lanco-standby");
                drop(ours);
                self.wait_for_caller(theirs)
            }
            Ok(sys::Forked::Parent) => Some(ours),
            Err(_) => None,
        }
    }

    /// The monitor binary at the configured path is no longer this one.
    fn replaced(&self) -> bool {
        std::fs::metadata(&self.monitor).map_or(true, |m| (m.st_dev(), m.st_ino()) != self.exe)
    }

    /// The standby: a fork of the spawner (`lanco-standby` in ps) that
    /// accepts the next caller on the spawner's listener, serves it as the
    /// spawner would (same checks: it has the spawner's context), and
    /// becomes its monitor. Exits when the spawner's end of its channel
    /// closes before a caller comes.
    fn wait_for_caller(&self, chan: UnixStream) -> ! {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // The lock and the directory are the spawner's alone (a standby or
        // monitor holding the lock would keep the next spawner from
        // starting once this one is gone).
        close_unowned(self._lock.as_raw_fd());
        close_unowned(self.dir.as_fd().as_raw_fd());
        // Made now, not once a caller waits: its signals are blocked from
        // here (a SIGTERM ends the standby through the poll below). So are
        // a start's files, and the pages the caller's check writes and the
        // code it runs are taken into this process (peer.rs, `rehearse`),
        // unless a caller already waits (the spawner forked this standby
        // for it).
        let mut prelude = Prelude::new().ok();
        if let Some(p) = &mut prelude {
            let mut waiting = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            if poll(&mut waiting, PollTimeout::ZERO) == Ok(0) {
                p.prepare(&self.places);
                self.own.rehearse();
            }
        }
        let conn = loop {
            let signalled = prelude.as_ref().map_or(chan.as_fd(), Prelude::signalled);
            let mut fds = [
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(chan.as_fd(), PollFlags::POLLIN),
                PollFd::new(signalled, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) if fds[1..].iter().any(|f| f.any().unwrap_or(true)) => leave(prelude),
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => leave(prelude),
            }
            // Non-blocking: a caller that gave up in between leaves nothing.
            if let Ok((conn, _)) = self.listener.accept() {
                break conn;
            }
        };
        // The listener is the spawner's alone from here.
        close_unowned(self.listener.as_raw_fd());
        if self.replaced() {
            // The caller sees its connection closed and goes cold; the
            // spawner, told so, exits.
            let _ = (&chan).write_all(&[REPLACED]);
            leave(prelude)
        }
        let Ok(inherited) = self.own.admit(&conn) else {
            leave(prelude)
        };
        if (&conn).write_all(&self.answer).is_err() {
            leave(prelude)
        }
        // A caller sends its spec as it connects. One that has not within
        // SPEC_PROMPT (a process of this user's that connected and waits)
        // may keep this standby until SPEC_TIMEOUT, but not the next
        // caller: the spawner, told so, watches the listener again.
        if !sys::readable_by(conn.as_fd(), Some(Instant::now() + SPEC_PROMPT)).unwrap_or(true) {
            let _ = (&chan).write_all(&[TAKEN]);
        }
        let started = start_warm(conn, &inherited, &self.answer, prelude);
        // The start is over: the spawner may fork the next standby now.
        drop(chan);
        match started {
            Some((monitor, report)) => monitor.run(report),
            None => std::process::exit(1),
        }
    }
}

/// A standby's exit without a caller served: what it made ahead is given
/// back first (a prepared socket's name; exit runs no destructor).
fn leave(prelude: Option<Prelude>) -> ! {
    drop(prelude);
    std::process::exit(0)
}

/// Closes an fd of the spawner's in the standby, which never returns to
/// the spawner's code: the fd's owner is never used or dropped in it.
fn close_unowned(fd: std::os::fd::RawFd) {
    // SAFETY: as said above; the owner's later drop never runs here.
    #[allow(unsafe_code)]
    unsafe {
        libc::close(fd);
    }
}

/// The monitor a standby becomes for one caller, on its connection: takes
/// on the caller's limits as the standby read them (or declines: the caller
/// goes cold), reads the spec, and from there is the monitor a cold start
/// makes.
fn start_warm(
    conn: UnixStream,
    inherited: &Inherited,
    answer: &[u8; 17],
    prelude: Option<Prelude>,
) -> Option<(Monitor, File)> {
    nix::unistd::setsid().ok()?;
    let _ = nix::sys::prctl::set_name(c"lanco-monitor");
    conn.set_read_timeout(Some(SPEC_TIMEOUT)).ok()?;
    // The caller sends the answer it expects, then the spec: a caller
    // expecting another monitor binary gets nothing started here.
    let mut expected = [0u8; 17];
    (&conn).read_exact(&mut expected).ok()?;
    if expected != *answer {
        return None;
    }
    let spec: Spec = recv(&mut &conn).ok()?;
    conn.set_read_timeout(None).ok()?;
    let mut report = File::from(OwnedFd::from(conn));
    if let Err(why) = inherited.apply() {
        let _ = send(&mut report, &Report::Declined(why));
        return None;
    }
    let prelude = prelude.map_or_else(Prelude::new, Ok);
    match prelude.and_then(|p| Monitor::start(spec, &mut report, p)) {
        Ok(m) => Some((m, report)),
        Err(e) => {
            let _ = send(&mut report, &Report::Failed(Failure::from(&e)));
            None
        }
    }
}
