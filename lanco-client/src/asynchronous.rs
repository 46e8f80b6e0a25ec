//! Awaitable `run`, `wait` and `stop` for daemons on tokio (feature
//! `tokio`, off by default): [`Namespace::run_async`],
//! [`Namespace::wait_async`], [`Namespace::stop_async`]. They answer what the
//! blocking methods answer; what differs is that the runtime's thread never
//! waits for a task, and no thread is left blocked behind a dropped future
//! (`run`'s, on the blocking pool, only finishes the start).
//!
//! - The monitor's control socket is spoken to through tokio's `UnixStream`
//!   (the framing of `control`), and `cgroup.events` — the fallback when no
//!   monitor is there — is watched through `AsyncFd` with
//!   `Interest::PRIORITY` (the POLLPRI the kernel raises on a change),
//!   re-read at least every second as the blocking wait does (a postponed
//!   notification is lost when the cgroup is removed).
//! - Finding the task, its owner and its socket are the blocking library's
//!   own lookups: a few `openat`s and small reads on cgroupfs and the state
//!   directory, nothing that waits.
//! - Writing a lost run's record ends with an fsync of the accounting
//!   journal: that one step runs on tokio's blocking pool, and finishes (in
//!   milliseconds) even if the future is dropped.
//! - `run` is the blocking [`Namespace::run`] on the blocking pool; see
//!   [`Namespace::run_async`] for why.
//!
//! Waiting never uses a thread, so cancelling is dropping the future: to
//! give up after a while, wrap it in `tokio::time::timeout`. The runtime
//! needs its I/O and time drivers (`Builder::enable_all`); a current-thread
//! runtime is enough.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::time::Duration;

use lanco_proto::cgroupfs::{self, Cgroup, Events};
use lanco_proto::layout;
use lanco_proto::wire;
use lanco_proto::TaskName;
use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::control::{ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::follow::{Followed, LogFollower};
use crate::namespace::{Found, Namespace};
use crate::record::{self, ExitRecord};
use crate::start::{Started, TaskSpec, DEFAULT_STOP_TIMEOUT};
use crate::wait::Waiting;

/// Largest control reply (as `control::MAX_FRAME`): it carries an exit
/// record, whose command line can be long.
const MAX_FRAME: u64 = 1 << 20;

impl Namespace {
    /// Starts a task, as [`Namespace::run`], without blocking the runtime:
    /// the blocking `run` runs on tokio's blocking pool.
    ///
    /// Not a second implementation: `run` is where the monitor is spawned
    /// so that it starts clean and never becomes the caller's child or
    /// zombie, and where the spec is handed over; a copy here would drift
    /// from those rules. A `tokio::process` child would also install a
    /// SIGCHLD handler in the daemon and reap through it, which is exactly
    /// the caller state the monitor must not depend on. `run` returns once
    /// the command has been exec'd (milliseconds; its waits on lancod are
    /// bounded), so dropping this future holds a pool thread only that
    /// long — and does not cancel the start: the task runs.
    ///
    /// The end of the run is awaited with [`Namespace::wait_async`] (its
    /// record's `run_id` is the returned `run_id`). The returned
    /// [`Started`]'s own `wait` blocks: not for the runtime's threads.
    pub async fn run_async(&self, spec: &TaskSpec) -> Result<Started> {
        let (config, ns, spec) = (self.config().clone(), self.name().clone(), spec.clone());
        // `run` needs a 'static namespace on the pool: the same one, opened
        // again (a stat and the cgroup mount's resolution).
        match tokio::task::spawn_blocking(move || Namespace::open(config, ns)?.run(&spec)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::failed(format!("the start was cancelled: {e}"))),
        }
    }

    /// Waits until `task`'s current run is over (its on-exit command
    /// included) and returns that run's exit record, as
    /// [`Namespace::wait`]; a task that is not running answers at once with
    /// its last record. Asked of the task's monitor over its control socket;
    /// when no monitor is there, the task's `cgroup.events` is watched.
    ///
    /// Cancel-safe: dropping the future (e.g. under `tokio::time::timeout`)
    /// closes the connection and leaves nothing running.
    pub async fn wait_async(&self, task: &TaskName) -> Result<ExitRecord> {
        let (found, dir, state) = match self.waiting(task)? {
            Waiting::Over(rec) => return Ok(rec),
            Waiting::Current { found, dir, state } => (found, dir, state),
        };
        // 0.1's monitors do not understand `Wait`.
        if !found.legacy {
            if let Some(mut conn) = self.connect_async(task, &found).await? {
                let asked = match send(&mut conn, &ControlRequest::Wait).await {
                    Ok(()) => recv::<ControlReply>(&mut conn).await,
                    Err(e) => Err(e),
                };
                if let Ok(ControlReply::Done {
                    record: Some(json), ..
                }) = asked
                {
                    if let Ok(rec) = serde_json::from_str(&json) {
                        return Ok(rec);
                    }
                }
                // The monitor died while we waited: watch the cgroup.
            }
        }
        wait_events(&found.cgroup, None, |e| !e.populated).await?;
        // On the blocking pool: recording a lost run ends with an fsync.
        let (ns, t) = (self.clone(), task.clone());
        blocking(move || ns.record_of(&t, &found, &dir, state.as_ref()))
            .await?
            .ok_or_else(|| Error::NotRunning(task.clone()))
    }

    /// Stops a task, as [`Namespace::stop`]: SIGTERM to every process,
    /// cgroup.kill after `timeout` (None: the task's own stop timeout).
    /// Returns once every process is gone, with whether it had to be killed.
    ///
    /// Dropping the future before the monitor got the request thaws the
    /// task again and stops nothing; once the monitor has it, the stop goes
    /// on without the caller.
    pub async fn stop_async(&self, task: &TaskName, timeout: Option<Duration>) -> Result<bool> {
        let found = match self.find(task)? {
            Some(f) if f.cgroup.populated()? => f,
            _ => return Err(Error::NotRunning(task.clone())),
        };
        let req = ControlRequest::Stop {
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        };
        // As `stop`: frozen at once, so a fork bomb stops eating CPU before
        // the monitor is scheduled; the monitor's sweep thaws it.
        let cg = &found.cgroup;
        let _ = cg.write(cgroupfs::CGROUP_FREEZE, "1");
        let mut frozen = ThawOnDrop(Some(cg));
        let sent = match self.connect_async(task, &found).await? {
            Some(mut conn) => {
                let sent = if found.legacy {
                    legacy_send(&mut conn, &req).await
                } else {
                    send(&mut conn, &req).await
                };
                sent.ok().map(|()| conn)
            }
            None => None,
        };
        let Some(mut conn) = sent else {
            return self
                .stop_orphan_async(task, &found, timeout.unwrap_or(DEFAULT_STOP_TIMEOUT))
                .await;
        };
        // The monitor has the request: from here its sweep thaws the task,
        // unless it answers with an error.
        frozen.0 = None;
        // It answers once the cgroup is empty; give it the task's full stop
        // timeout (unknown here when not given) plus a margin, as `stop`.
        let wait = timeout.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(30);
        let reply = tokio::time::timeout(wait, async {
            if found.legacy {
                legacy_recv(&mut conn).await
            } else {
                recv(&mut conn).await
            }
        })
        .await
        .unwrap_or_else(|_| Err(ErrorKind::TimedOut.into()));
        let r = match reply {
            Ok(ControlReply::Done {
                killed_after_timeout,
                ..
            }) => return Ok(killed_after_timeout),
            Ok(ControlReply::Error { message }) => Err(Error::failed(message)),
            Err(e) => Err(Error::system(
                format_args!("no answer from the monitor of task {task}"),
                e,
            )),
        };
        let _ = cg.thaw();
        r
    }

    /// The task's monitor's control socket, connected; `None` if no monitor
    /// listens. As `connect_monitor` (signal.rs), with tokio's connect: the
    /// socket is opened `O_PATH` through `Dir::open_socket`, which refuses
    /// any socket but the name owner's, and connected through
    /// `/proc/self/fd/N`.
    async fn connect_async(&self, task: &TaskName, found: &Found) -> Result<Option<UnixStream>> {
        let dir = self.state_dir_of(found)?;
        let Some(fd) = dir.open_socket(&layout::socket_name(task), found.owner)? else {
            return Ok(None);
        };
        match UnixStream::connect(format!("/proc/self/fd/{}", fd.as_raw_fd())).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                Err(Error::NotMember(self.name().clone()))
            }
            Err(_) => Ok(None),
        }
    }

    /// As `stop_orphan` (signal.rs) for a task whose monitor was killed:
    /// SIGTERM to each process through the cgroup's shared files, pinned by
    /// pidfds while frozen (another member cannot signal the owner's
    /// processes: cgroup.kill at once), cgroup.kill after `timeout`; the
    /// owner records the lost run.
    async fn stop_orphan_async(
        &self,
        task: &TaskName,
        found: &Found,
        timeout: Duration,
    ) -> Result<bool> {
        let cg = &found.cgroup;
        // `signal_frozen` waits (up to 5 s) for the freeze to complete; that
        // wait is done here, so its own finds the cgroup frozen at once. A
        // freeze that does not complete (a process in uninterruptible
        // sleep) leaves the sweep to the blocking pool.
        let _ = cg.write(cgroupfs::CGROUP_FREEZE, "1");
        let frozen = wait_events(cg, Some(Duration::from_secs(5)), |e| {
            e.frozen || !e.populated
        })
        .await?;
        let sweep = |cg: &Cgroup| match cg.signal_frozen(Signal::SIGTERM, &mut Default::default()) {
            Err(e) if e.io_kind() == Some(ErrorKind::PermissionDenied) => Ok(false),
            r => r.map(|()| true),
        };
        let graceful = if frozen {
            sweep(cg)?
        } else {
            let cg = cg.clone();
            blocking(move || Ok(sweep(&cg)?)).await?
        };
        let mut killed = false;
        if !graceful || !wait_events(cg, Some(timeout), |e| !e.populated).await? {
            cg.kill()?;
            killed = true;
            wait_events(cg, Some(Duration::from_secs(10)), |e| !e.populated).await?;
        }
        if self.is_mine(found) {
            let (dir, task, cg) = (self.state_dir_of(found)?, task.clone(), cg.clone());
            blocking(move || {
                record::finalize(&dir, &task, &cg, true, killed)?;
                let _ = cg.remove_tree();
                Ok(())
            })
            .await?;
        }
        Ok(killed)
    }
}

/// Thaws the cgroup when dropped, unless disarmed (set to `None`): a stop
/// that is dropped or fails before the monitor has it leaves nothing
/// frozen.
struct ThawOnDrop<'a>(Option<&'a Cgroup>);

impl Drop for ThawOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(cg) = self.0 {
            let _ = cg.thaw();
        }
    }
}

/// Runs `f` on tokio's blocking pool: for short steps that must not run on
/// the runtime's thread (an fsync) and finish even if the caller is
/// dropped.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::failed(format!("cancelled: {e}"))),
    }
}

impl Namespace {
    /// As [`Namespace::follow`], awaited: the follower's reads wait on the
    /// reactor, not on a thread.
    pub async fn follow_async(&self, task: &TaskName) -> Result<Option<AsyncLogFollower>> {
        self.follow(task)?.map(AsyncLogFollower::new).transpose()
    }
}

/// A [`LogFollower`] whose waits are awaited: dropping a pending
/// [`AsyncLogFollower::next_chunk`] leaves no thread behind.
#[derive(Debug)]
pub struct AsyncLogFollower {
    inner: LogFollower,
    ready: tokio::io::unix::AsyncFd<wake::EpollFd>,
}

impl AsyncLogFollower {
    fn new(inner: LogFollower) -> Result<Self> {
        let ready = wake::watch(&inner.wake_fds()).map_err(|e| Error::system("epoll", e))?;
        Ok(Self { inner, ready })
    }

    /// The next bytes of the run's log; `None` once the run has ended and
    /// everything it wrote was read.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.inner.next_chunk(Some(Duration::ZERO))? {
                Followed::Data(d) => return Ok(Some(d)),
                Followed::Ended => return Ok(None),
                Followed::TimedOut => {}
            }
            // Level-triggered: ready while an inotify event waits (the read
            // above drains them) or once the monitor has exited.
            let mut guard = self
                .ready
                .readable()
                .await
                .map_err(|e| Error::system("epoll", e))?;
            guard.clear_ready();
        }
    }

    /// The file being followed.
    pub fn path(&self) -> &std::path::Path {
        self.inner.path()
    }
}

/// One fd tokio can watch for a follower's several wake-up sources: an
/// epoll set of them.
mod wake {
    #![allow(unsafe_code)]

    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// An epoll instance, owned.
    #[derive(Debug)]
    pub(super) struct EpollFd(Epoll);

    impl AsRawFd for EpollFd {
        fn as_raw_fd(&self) -> RawFd {
            self.0 .0.as_fd().as_raw_fd()
        }
    }

    /// An epoll set of `fds`, registered with tokio's reactor.
    pub(super) fn watch(fds: &[BorrowedFd<'_>]) -> std::io::Result<AsyncFd<EpollFd>> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        for fd in fds {
            ep.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        }
        // SAFETY: `EpollFd` owns the epoll fd it returns and gives no way to
        // close or replace it: it stays open and the same for the whole life
        // of the `AsyncFd`, which owns it. (The fds in the set belong to the
        // follower beside it; epoll drops a closed one by itself.)
        Ok(unsafe { AsyncFd::register_with_interest(EpollFd(ep), Interest::READABLE) }?)
    }
}

/// `cgroup.events` registered with tokio's reactor for POLLPRI. The one
/// `unsafe` of the module: `AsyncFd`'s safe constructors are deprecated
/// (tokio 1.53.3) for lack of I/O safety.
mod events {
    #![allow(unsafe_code)]

    use std::os::fd::{AsFd, AsRawFd, RawFd};

    use lanco_proto::cgroupfs::EventsFile;
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// An open `cgroup.events`, owned: its fd lives as long as it does.
    pub(super) struct EventsFd(EventsFile);

    impl EventsFd {
        /// The open file, to read (and re-arm).
        pub(super) fn file(&self) -> &EventsFile {
            &self.0
        }
    }

    impl AsRawFd for EventsFd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    /// Registers `file` for `Interest::PRIORITY` (EPOLLPRI: the kernel's
    /// notification of a change).
    pub(super) fn watch(file: EventsFile) -> std::io::Result<AsyncFd<EventsFd>> {
        // SAFETY: `EventsFd` owns the `File` whose fd it returns, never
        // replaces it, and gives no way to close it: the fd stays open and
        // the same for the whole life of the `AsyncFd`, which owns it.
        Ok(unsafe { AsyncFd::register_with_interest(EventsFd(file), Interest::PRIORITY) }?)
    }
}

/// As `Cgroup::wait_events`, awaited: until `done` holds (`true`) or
/// `timeout` passes (`false`; None: no timeout). A cgroup that does not
/// exist counts as empty.
async fn wait_events(
    cg: &Cgroup,
    timeout: Option<Duration>,
    done: impl Fn(&Events) -> bool,
) -> Result<bool> {
    let ev = match cg.open_events() {
        Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => return Ok(done(&Events::default())),
        r => r?,
    };
    let fd = events::watch(ev)
        .map_err(|e| Error::system(format!("cannot watch {}", cg.path().display()), e))?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        // Reading re-arms the notification: a change after this read wakes
        // the wait below.
        if done(&fd.get_ref().file().read()?) {
            return Ok(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        // The kernel sends at most one notification per file every 20 ms
        // and postpones the rest to a timer, whose notification is lost if
        // the cgroup is removed meanwhile: re-read every second, never past
        // the deadline.
        let next = now + Duration::from_secs(1);
        let next = deadline.map_or(next, |d| d.min(next));
        match tokio::time::timeout_at(next, fd.ready(Interest::PRIORITY)).await {
            Ok(Ok(mut guard)) => guard.clear_ready(),
            Ok(Err(e)) => {
                return Err(Error::system(
                    format!("cannot watch {}", cg.path().display()),
                    e,
                ))
            }
            Err(_elapsed) => {}
        }
    }
}

/// One request in `control`'s framing.
async fn send(conn: &mut UnixStream, req: &ControlRequest) -> std::io::Result<()> {
    let frame = wire::encode_max(req, MAX_FRAME).map_err(std::io::Error::other)?;
    conn.write_all(&frame).await
}

/// One reply in `control`'s framing: magic, version and length are checked
/// before the body is allocated, then the whole frame is decoded by
/// `wire` (magic, version, length, no trailing bytes).
async fn recv<T: DeserializeOwned>(conn: &mut UnixStream) -> std::io::Result<T> {
    let mut frame = vec![0u8; wire::HEADER_LEN];
    conn.read_exact(&mut frame).await?;
    if frame[..3] != wire::MAGIC || frame[3] != wire::VERSION {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "not a lanco frame",
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&frame[4..wire::HEADER_LEN]);
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            wire::FrameError::TooLarge(len),
        ));
    }
    frame.resize(wire::HEADER_LEN + len as usize, 0);
    conn.read_exact(&mut frame[wire::HEADER_LEN..]).await?;
    wire::read_frame_max(&mut &frame[..], MAX_FRAME)
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// A request to a 0.1 monitor (still running a task started before an
/// upgrade): one JSON line, as `control::legacy`.
async fn legacy_send(conn: &mut UnixStream, req: &ControlRequest) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write_all(&line).await
}

/// A 0.1 monitor's reply: one JSON line of at most 4 KiB.
async fn legacy_recv(conn: &mut UnixStream) -> std::io::Result<ControlReply> {
    let mut reply = Vec::new();
    tokio::io::BufReader::new(conn.take(4096))
        .read_until(b'\n', &mut reply)
        .await?;
    serde_json::from_slice(&reply).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon spawns these on a multi-threaded runtime: they must be Send.
    #[allow(dead_code, clippy::diverging_sub_expression)]
    fn futures_are_send(ns: &Namespace, spec: &TaskSpec, task: &TaskName) {
        fn send<T: Send>(_: T) {}
        send(ns.run_async(spec));
        send(ns.wait_async(task));
        send(ns.stop_async(task, None));
    }

    #[tokio::test]
    async fn frames_roundtrip_and_are_bounded() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        send(&mut a, &ControlRequest::Wait).await.unwrap();
        let r: ControlRequest = recv(&mut b).await.unwrap();
        assert_eq!(r, ControlRequest::Wait);
        // What the blocking side sends, the async side reads, and back.
        let reply = ControlReply::Done {
            killed_after_timeout: true,
            record: Some("x".repeat(100_000)),
        };
        let bytes = wire::encode_max(&reply, MAX_FRAME).unwrap();
        a.write_all(&bytes).await.unwrap();
        assert_eq!(recv::<ControlReply>(&mut b).await.unwrap(), reply);
        // A peer that claims a huge frame is refused before allocating.
        a.write_all(b"LNC\x01\xff\xff\xff\xff\xff\xff\xff\x7f")
            .await
            .unwrap();
        let e = recv::<ControlReply>(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        // A monitor that hangs up mid-wait is an error, not a record.
        drop(a);
        assert!(recv::<ControlReply>(&mut b).await.is_err());
    }
}
