//! Following a task's log as it grows (`Namespace::follow`, `lanco logs
//! -f`). A follower follows one run: the one running when it is made (or
//! none, and then it gives what the last run wrote and ends). It ends once
//! that run has ended and its log is read to the end, and does not go on to
//! a later run of the name: a restart is a new run, with its own exit, that
//! the caller follows anew. It survives the monitor's copytruncate of a
//! running task's log (it starts again at the beginning of the file) and the
//! log's name being given a new file while its run lives (it moves to the
//! new file, once the old one is read to its end).
//!
//! It sleeps until something happens, never longer than its caller allows:
//! inotify on the log and its directory (through the fds opened and checked
//! by `lanco_proto::files`, so never on a planted link), on the run's
//! `cgroup.events` and on the cgroup's parent (its removal), and a pidfd of
//! the run's monitor, whose exit ends the run whatever `cgroup.events`
//! reported (the kernel rate-limits those notifications and drops a
//! postponed one when the cgroup goes away).

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::{Cgroup, CGROUP_EVENTS};
use lanco_proto::TaskName;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::socket::sockopt;
use nix::sys::time::TimeSpec;

use crate::error::{Error, Result};
use crate::namespace::{Found, Namespace, OpenLog};
use crate::tail::tail_lines;

/// The most `next_chunk` returns at once.
const CHUNK: usize = 64 * 1024;
/// How many of the bytes last read are kept to notice a truncation that was
/// written past the follower's position before it looked.
const SEEN: usize = 64;

/// What [`LogFollower::next_chunk`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// Bytes the log gained (never empty).
    Data(Vec<u8>),
    /// Nothing new within the timeout; the run goes on.
    TimedOut,
    /// The run has ended and everything it wrote was returned.
    Ended,
}

/// A task's log, read as it grows (see [`Namespace::follow`]). Also a
/// blocking [`Read`]: `read` waits for bytes and returns 0 once the run has
/// ended and its log is read to the end.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    log: OpenLog,
    owner: u32,
    /// How far the current file has been read.
    pos: u64,
    /// The last bytes read before `pos`.
    seen: Vec<u8>,
    inotify: Inotify,
    /// Watches the log's directory: events name a file in it.
    dir_watch: Option<WatchDescriptor>,
    /// The log's name got a new file.
    renamed: bool,
    /// The run followed, while it may still run.
    run: Option<Run>,
}

/// The run a follower follows.
#[derive(Debug)]
struct Run {
    cgroup: Cgroup,
    /// The cgroup directory's inode: a new run's cgroup is made anew, so
    /// another inode at the path is another run.
    ino: u64,
    /// The run's monitor while it lives. It removes the cgroup after the
    /// task and the on-exit command, then exits: its exit ends the run.
    monitor: Option<OwnedFd>,
}

impl Namespace {
    /// Follows `task`'s log: the run running now (or, if none is, the last
    /// run's log, to its end). `None` if the name was never used or its log
    /// is not there. The follower starts at the beginning of the file (see
    /// [`LogFollower::start_at_last_lines`]).
    pub fn follow(&self, task: &TaskName) -> Result<Option<LogFollower>> {
        let Some(found) = self.find(task)? else {
            return Ok(None);
        };
        // The run first, then its log: a state file read after the run was
        // seen is this run's (or a later one's, and then this run is over).
        let run = self.current_run(task, &found)?;
        let path = self.log_path_of(task, &found)?;
        let Some(log) = self.open_log_at(&path, found.owner)? else {
            return Ok(None);
        };
        LogFollower::new(path, log, found.owner, run).map(Some)
    }

    /// The run of `found` now, if one runs (or its monitor still lives).
    fn current_run(&self, task: &TaskName, found: &Found) -> Result<Option<Run>> {
        let cgroup = found.cgroup.clone();
        let ino = match fs::metadata(cgroup.path()) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::system(cgroup.path().display(), e)),
        };
        let monitor = self
            .connect_monitor(task, found)?
            .and_then(|conn| monitor_pidfd(&conn));
        if monitor.is_none() && !cgroup.populated().unwrap_or(false) {
            return Ok(None);
        }
        Ok(Some(Run {
            cgroup,
            ino,
            monitor,
        }))
    }
}

/// A pidfd of the process at the other end of the monitor's control
/// socket: the monitor that listens on it. Straight from the socket where
/// the kernel can (6.5), else by pid, right after the connection proved it
/// alive.
fn monitor_pidfd(conn: &std::os::unix::net::UnixStream) -> Option<OwnedFd> {
    if let Ok(fd) = nix::sys::socket::getsockopt(conn, sockopt::PeerPidfd) {
        return Some(fd);
    }
    let cred = nix::sys::socket::getsockopt(conn, sockopt::PeerCredentials).ok()?;
    lanco_proto::sys::pidfd_open(cred.pid()).ok()
}

impl LogFollower {
    fn new(path: PathBuf, log: OpenLog, owner: u32, run: Option<Run>) -> Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| Error::system("inotify", e))?;
        let mut f = LogFollower {
            path,
            log,
            owner,
            pos: 0,
            seen: Vec::new(),
            inotify,
            dir_watch: None,
            renamed: false,
            run,
        };
        f.watch_file()?;
        if let Some(run) = &f.run {
            // Only wake-ups: what they report is checked on the files.
            f.dir_watch = Some(
                f.inotify
                    .add_watch(
                        &fd_path(&f.log.dir.as_fd()),
                        AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
                    )
                    .map_err(|e| Error::system("inotify on the log's directory", e))?,
            );
            // Gone already: the run has ended, which the next look sees.
            let _ = f.inotify.add_watch(
                &run.cgroup.file(CGROUP_EVENTS),
                AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_DONT_FOLLOW,
            );
            // Its removal: when the monitor is gone, the only sign of the
            // end may be that (see the module's comment).
            if let Some(parent) = run.cgroup.path().parent() {
                let _ = f.inotify.add_watch(
                    parent,
                    AddWatchFlags::IN_DELETE
                        | AddWatchFlags::IN_DONT_FOLLOW
                        | AddWatchFlags::IN_ONLYDIR,
                );
            }
        }
        Ok(f)
    }

    /// Writes and truncations of the file the follower reads. Through
    /// /proc/self/fd: the watch is on the very file that was opened and
    /// checked, not on whatever the path names by now.
    fn watch_file(&self) -> Result<()> {
        self.inotify
            .add_watch(&fd_path(&self.log.file.as_fd()), AddWatchFlags::IN_MODIFY)
            .map(drop)
            .map_err(|e| Error::system(format!("inotify on {}", self.path.display()), e))
    }

    /// The log file being followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Skips what the log holds now except its last `n` lines, which the
    /// follower returns first (what `tail -n N -f` shows).
    pub fn start_at_last_lines(&mut self, n: usize) -> Result<()> {
        let tail = tail_lines(&self.log.file, n).map_err(|e| self.io_error(e))?;
        let len = self.log_len()?;
        self.pos = len.saturating_sub(tail.len() as u64);
        let keep = self.pos.min(SEEN as u64);
        self.seen = vec![0; keep as usize];
        self.log
            .file
            .read_exact_at(&mut self.seen, self.pos - keep)
            .map_err(|e| self.io_error(e))
    }

    /// The next bytes of the log, waiting for them at most `timeout` (None:
    /// until there are some or the run ends).
    pub fn next_chunk(&mut self, timeout: Option<Duration>) -> Result<Followed> {
        let mut buf = vec![0; CHUNK];
        Ok(match self.read_within(&mut buf, timeout)? {
            Some(0) => Followed::Ended,
            Some(n) => {
                buf.truncate(n);
                Followed::Data(buf)
            }
            None => Followed::TimedOut,
        })
    }

    /// Reads into `buf`: `Some(n)` bytes, `Some(0)` at the end of the run's
    /// log, `None` when `timeout` passed first.
    fn read_within(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<Option<usize>> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.take_events()?;
            let n = self.read_more(buf)?;
            if n > 0 {
                return Ok(Some(n));
            }
            let ended = self.run_ended()?;
            if self.renamed && !ended {
                self.renamed = false;
                if self.reopen()? {
                    continue;
                }
            }
            if ended {
                // Everything the run wrote was written before it ended.
                return Ok(Some(self.read_more(buf)?));
            }
            let wait = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(TimeSpec::from_duration(left)),
                    _ => return Ok(None),
                },
            };
            self.sleep(wait)?;
        }
    }

    /// What `sleep` waits on (the inotify fd, and the monitor's pidfd while
    /// the run has one), for a caller that waits elsewhere (the `tokio`
    /// feature's follower). They stay open as long as the follower does.
    #[cfg(feature = "tokio")]
    pub(crate) fn wake_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        let mut fds = vec![self.inotify.as_fd()];
        if let Some(m) = self.run.as_ref().and_then(|r| r.monitor.as_ref()) {
            fds.push(m.as_fd());
        }
        fds
    }

    /// Until an inotify event, the monitor's exit, or `wait`.
    fn sleep(&self, wait: Option<TimeSpec>) -> Result<()> {
        let mut fds = vec![PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = self.run.as_ref().and_then(|r| r.monitor.as_ref()) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::ppoll(&mut fds, wait, None) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(Error::system("poll", e)),
        }
    }

    /// Drains the inotify queue; notes whether the log's name got a new file.
    fn take_events(&mut self) -> Result<()> {
        loop {
            let events = match self.inotify.read_events() {
                Ok(ev) => ev,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(e) => return Err(Error::system("inotify", e)),
            };
            // The other events (writes, the cgroup's changes or removal,
            // other files in the log's directory) only wake the follower.
            let name = self.log.name.as_str();
            self.renamed |= events.iter().any(|ev| {
                Some(ev.wd) == self.dir_watch && ev.name.as_deref() == Some(name.as_ref())
            });
        }
    }

    /// The followed file's length now.
    fn log_len(&self) -> Result<u64> {
        Ok(self
            .log
            .file
            .metadata()
            .map_err(|e| self.io_error(e))?
            .len())
    }

    /// Reads what the file gained since `pos` (from the start again if it
    /// was truncated).
    fn read_more(&mut self, buf: &mut [u8]) -> Result<usize> {
        let len = self.log_len()?;
        if len < self.pos || !self.seen_still_there()? {
            // copytruncate. What was not read before it is in the rotated
            // copy (`.1`), not here.
            self.pos = 0;
            self.seen.clear();
        }
        if len == self.pos {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(len - self.pos).unwrap_or(usize::MAX));
        let n = self
            .log
            .file
            .read_at(&mut buf[..want], self.pos)
            .map_err(|e| self.io_error(e))?;
        self.pos += n as u64;
        let got = &buf[..n];
        if got.len() >= SEEN {
            self.seen = got[got.len() - SEEN..].to_vec();
        } else {
            self.seen.extend_from_slice(got);
            let extra = self.seen.len().saturating_sub(SEEN);
            self.seen.drain(..extra);
        }
        Ok(n)
    }

    /// Are the bytes last read still just before `pos`? A truncated file
    /// that was written past `pos` before the follower looked has others.
    fn seen_still_there(&self) -> Result<bool> {
        if self.seen.is_empty() {
            return Ok(true);
        }
        let mut now = vec![0; self.seen.len()];
        let at = self.pos - self.seen.len() as u64;
        match self.log.file.read_exact_at(&mut now, at) {
            Ok(()) => Ok(now == self.seen),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// Has the run followed ended? Its monitor's exit, or its cgroup gone,
    /// made anew (another run), or empty once no monitor is left to run an
    /// on-exit command in it.
    fn run_ended(&mut self) -> Result<bool> {
        let Some(run) = &mut self.run else {
            return Ok(true);
        };
        let ended = match fs::metadata(run.cgroup.path()) {
            Ok(m) if m.ino() == run.ino => match &run.monitor {
                Some(m) if !exited(m) => false,
                _ => {
                    run.monitor = None;
                    match run.cgroup.populated() {
                        Ok(p) => !p,
                        Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => true,
                        Err(e) => return Err(e.into()),
                    }
                }
            },
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => true,
            Err(e) => return Err(Error::system(run.cgroup.path().display(), e)),
        };
        if ended {
            self.run = None;
        }
        Ok(ended)
    }

    /// The log's name has a new file while the run lives: it is the run's
    /// (only a run holding the name installs a log under it), so the
    /// follower moves to it, once the old one is read to its end (it is, when
    /// this is called). Returns whether it moved.
    fn reopen(&mut self) -> Result<bool> {
        let Some(file) = self.log.dir.open_read(&self.log.name, self.owner)? else {
            return Ok(false);
        };
        let ino = |f: &File| f.metadata().map(|m| (m.dev(), m.ino()));
        if ino(&file).ok() == ino(&self.log.file).ok() {
            return Ok(false);
        }
        self.log.file = file;
        self.pos = 0;
        self.seen.clear();
        self.watch_file()?;
        Ok(true)
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::system(self.path.display(), e)
    }
}

impl Read for LogFollower {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(n) = self.read_within(buf, None).map_err(std::io::Error::other)? {
                return Ok(n);
            }
        }
    }
}

/// Has the process of `pidfd` exited (the pidfd is readable)?
fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
