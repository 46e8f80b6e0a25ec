//! Connection slots: a bound per uid and one in all, so that one user's
//! flood never makes another user's request fail. The uid is the kernel's
//! (SO_PEERCRED at accept), taken before anything is read.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lanco_proto::wire::{self, ErrorCode, Response};
use tokio::net::UnixStream;
use tokio::task::AbortHandle;

/// Connections one uid may hold at once; more are answered `Busy` at accept,
/// and the client retries with backoff. A user's requests are its monitors'
/// admissions (a start that finds no warm monitor), rarely more than a few at
/// a time; so a flood from one uid delays that uid only.
const PER_UID: usize = 8;
/// Connections held at once by all uids together: a bound on lancod's file
/// descriptors (a socket and a pidfd each; systemd's default soft limit is
/// 1024) and memory. 256 is 32 uids at their own bound at the same moment;
/// a host rarely has more than a handful of users starting tasks at once.
/// Distinct uids are cheap for some users, though (useradd hands each 65536
/// subordinate uids in /etc/subuid, which newuidmap lets them use), so a full
/// table does not simply turn newcomers away, or anyone holding 32 uids could
/// lock everyone out: a newcomer displaces the oldest connection still
/// waiting for its request. An honest client has sent its request before
/// lancod even accepts it, so only a dawdler is ever the oldest one waiting.
const MAX_CONNECTIONS: usize = 256;
/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its uid holds [`PER_UID`] connections already.
    Uid,
    /// [`MAX_CONNECTIONS`] are held and none is still waiting for its request.
    Full,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Uid => write!(f, "this user has {PER_UID} requests in flight already"),
            Refusal::Full => write!(f, "it is serving as many requests as it can"),
        }
    }
}

/// Connection slots: how many each uid holds, and which connections are
/// still waiting for their request (and may be displaced).
#[derive(Default)]
pub(crate) struct Slots {
    table: Mutex<SlotTable>,
}

#[derive(Default)]
struct SlotTable {
    total: usize,
    per_uid: HashMap<u32, usize>,
    /// Connections still receiving their request, oldest first, with the
    /// handle that ends their task (set right after it is spawned).
    receiving: BTreeMap<u64, Option<AbortHandle>>,
    next_id: u64,
}

impl Slots {
    fn table(&self) -> MutexGuard<'_, SlotTable> {
        // Poisoned would mean a panic while the lock was held, which nothing
        // here can do; carry on with the counts rather than panic in turn.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn total(&self) -> usize {
        self.table().total
    }

    /// A slot for a new connection from `uid`, displacing the oldest
    /// connection still waiting for its request if every slot is taken.
    pub(crate) fn take(self: &Arc<Self>, uid: u32) -> Result<Slot, Refusal> {
        let mut t = self.table();
        if t.per_uid.get(&uid).copied().unwrap_or(0) >= PER_UID {
            return Err(Refusal::Uid);
        }
        let mut displaced = None;
        if t.total >= MAX_CONNECTIONS {
            match t.receiving.pop_first() {
                Some((_, handle)) => displaced = handle,
                None => return Err(Refusal::Full),
            }
        }
        // The displaced connection gives its slot back when its task is
        // dropped, moments later; until then the total is over the bound by
        // the connections on their way out.
        t.total += 1;
        *t.per_uid.entry(uid).or_default() += 1;
        let id = t.next_id;
        t.next_id += 1;
        t.receiving.insert(id, None);
        drop(t);
        if let Some(h) = displaced {
            // Its task was still waiting for the request (it leaves
            // `receiving` under this lock once the request is in), and on
            // lancod's one-thread runtime it cannot move on before the abort
            // drops it there: the peer sees the connection closed, with
            // nothing done.
            h.abort();
        }
        Ok(Slot {
            slots: self.clone(),
            uid,
            id,
        })
    }

    pub(crate) fn set_abort(&self, id: u64, handle: AbortHandle) {
        if let Some(h) = self.table().receiving.get_mut(&id) {
            *h = Some(handle);
        }
    }
}

/// One connection's slot, given back when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    uid: u32,
    pub(crate) id: u64,
}

impl Slot {
    /// The request has arrived (or will not): the connection is no longer
    /// one a newcomer may displace.
    pub(crate) fn received(&self) {
        self.slots.table().receiving.remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.table();
        t.total = t.total.saturating_sub(1);
        t.receiving.remove(&self.id);
        if let Some(n) = t.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                t.per_uid.remove(&self.uid);
            }
        }
    }
}

/// Answers `Busy` at once, without a task of its own: the answer fits in the
/// new connection's empty socket buffer. A non-blocking send(2) on the fd, so
/// the answer goes out whatever tokio's reactor knows yet of the new socket.
pub(crate) fn refuse_busy(stream: &UnixStream, why: Refusal) {
    use nix::sys::socket::{send, MsgFlags};
    if let Ok(b) = wire::encode(&Response::Error {
        code: ErrorCode::Busy,
        message: format!("lancod is busy: {why}"),
    }) {
        let _ = send(
            stream.as_raw_fd(),
            &b,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
    }
}
