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

use lanco_proto::cgroupfs::{self, Cgroup};
use lanco_proto::layout;
use lanco_proto::TaskName;
use nix::sys::signal::Signal;
use tokio::net::UnixStream;

use crate::control::{ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::journal::Rotation;
use crate::namespace::{Found, Namespace};
use crate::record::{self, ExitRecord};
use crate::spec::{TaskSpec, DEFAULT_STOP_TIMEOUT};
use crate::start::Started;
use crate::wait::Waiting;

/// Largest control reply (as `control::MAX_FRAME`): it carries an exit
/// record, whose command line can be long.
const MAX_FRAME: u64 = 1 << 20;

mod follow;
mod io;

pub use follow::AsyncLogFollower;
use io::{legacy_recv, legacy_send, recv, send, wait_events};

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
            Waiting::Over(rec) => return Ok(*rec),
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
        blocking(move || ns.record_of(&t, &found, &dir, state.as_deref()))
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
            Ok(other) => Err(other.into_error()),
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
            let rot = Rotation::accounting(self.config());
            blocking(move || {
                record::finalize(&dir, &task, &cg, true, killed, rot)?;
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
}
