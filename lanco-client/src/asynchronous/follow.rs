//! `follow`, awaited: the follower's wake-up sources (its inotify fd and
//! the monitor's pidfd) in one epoll set, watched by tokio's reactor.

use std::time::Duration;

use lanco_proto::TaskName;

use crate::error::{Error, Result};
use crate::follow::{Followed, LogFollower};
use crate::namespace::Namespace;

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
