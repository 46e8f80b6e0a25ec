//! The socket side of lancod: take the listening socket (socket activation or
//! bind), accept, identify each peer from the kernel, bound and decode one
//! request, answer it, and exit when idle.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdListener;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lanco_proto::wire::{self, ErrorCode, FrameError, Request, Response, HEADER_LEN};
use lanco_proto::{Config, Layout, NamespaceName};
use nix::sys::socket::{getsockopt, sockopt, UnixCredentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn, Instrument};

use crate::auth::{self, Action, Peer, Verdict};
use crate::error::StartError;
use crate::namespace::{self, NsError};
use crate::sys;

/// A request must have arrived in full this long after accept. lanco's
/// clients send theirs (a few dozen bytes) the moment they connect; a peer
/// still sending after this is holding a connection, not talking. It is one
/// deadline for the whole request, not one per read, so a peer that trickles
/// a byte at a time is cut off too.
const RECEIVE_DEADLINE: Duration = Duration::from_secs(2);
/// Writing the answer (under 4 KiB, into the connection's still empty socket
/// buffer) does not wait for the peer; this bounds it should it ever have to.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
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
/// Pause after a failed accept(2) (EMFILE, ENOBUFS): the listener stays
/// readable, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct Context {
    pub layout: Layout,
    pub admin_gid: Option<u32>,
    pub user_max_cgroups: u64,
}

impl Context {
    pub fn from_config(cfg: &Config) -> Result<Self, StartError> {
        let cgroup_root = lanco_proto::cgroupfs::resolve_root(&cfg.cgroup_root)?;
        let admin_gid = if cfg.admin_group.is_empty() {
            None
        } else {
            let g = uzers::get_group_by_name(&cfg.admin_group)
                .ok_or_else(|| StartError::NoAdminGroup(cfg.admin_group.clone()))?;
            Some(g.gid())
        };
        Ok(Self {
            layout: Layout {
                cgroup_root,
                state_dir: cfg.state_dir.clone(),
                log_dir: cfg.log_dir.clone(),
            },
            admin_gid,
            user_max_cgroups: cfg.user_max_cgroups,
        })
    }
}

/// The listening socket: the one systemd (or systemd-socket-activate) passed,
/// checked to be a listening AF_UNIX stream socket, else `socket` bound here.
pub fn listener(socket: &Path) -> Result<StdListener, StartError> {
    if let Some(l) = activated_listener()? {
        return Ok(l);
    }
    let fail = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |error| StartError::Socket { op, path, error }
    };
    if let Some(dir) = socket.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(fail("create", dir))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(StartError::AlreadyServing(socket.to_owned()));
        }
        fs::remove_file(socket).map_err(fail("remove the stale", socket))?;
    }
    let l = StdListener::bind(socket).map_err(fail("bind", socket))?;
    // World-connectable: who may do what is decided from SO_PEERCRED.
    fs::set_permissions(socket, fs::Permissions::from_mode(0o666))
        .map_err(fail("chmod", socket))?;
    Ok(l)
}

#[allow(unsafe_code)] // taking fd 3: see its SAFETY comment
fn activated_listener() -> Result<Option<StdListener>, StartError> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS").ok();
    // Never pass them on.
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    match (ours, n.as_deref()) {
        (false, _) | (true, None) => return Ok(None),
        (true, Some("1")) => {}
        (true, Some(n)) => {
            return Err(StartError::Activation(format!(
                "expected exactly one socket, got LISTEN_FDS={n}"
            )))
        }
    }
    // SAFETY: LISTEN_PID names this process and LISTEN_FDS=1, so fd 3 was
    // handed to it; the variables are gone, so this runs once.
    let fd = unsafe { sys::take_activation_fd() };
    let listening = getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false);
    let stream =
        getsockopt(&fd, sockopt::SockType).ok() == Some(nix::sys::socket::SockType::Stream);
    let unix = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd.as_raw_fd()).is_ok();
    if !(listening && stream && unix) {
        return Err(StartError::Activation(
            "the socket passed is not a listening AF_UNIX stream socket".into(),
        ));
    }
    let l = StdListener::from(fd);
    l.set_nonblocking(true).map_err(StartError::Runtime)?;
    Ok(Some(l))
}

struct Activity {
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }
    fn last(&self) -> Instant {
        self.last
            .lock()
            .map(|l| *l)
            .unwrap_or_else(|_| Instant::now())
    }
}

/// Serves until `idle` passes with no connection (zero = forever) or SIGTERM.
pub async fn serve(listener: StdListener, ctx: Context, idle: Duration) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let ctx = Arc::new(ctx);
    let activity = Arc::new(Activity {
        last: Mutex::new(Instant::now()),
    });
    let slots = Arc::new(Slots::default());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let deadline = activity.last() + idle;
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = match r {
                    Ok(s) => s,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                activity.touch();
                let received_by = Instant::now() + RECEIVE_DEADLINE;
                // Identity first, from the kernel, before a byte is read: the
                // slot is counted against this uid.
                let cred = match getsockopt(&stream, sockopt::PeerCredentials) {
                    Ok(c) => c,
                    Err(e) => { warn!("cannot identify peer: {e}"); continue; }
                };
                let slot = match slots.take(cred.uid()) {
                    Ok(s) => s,
                    Err(why) => {
                        debug!(uid = cred.uid(), pid = cred.pid(), "answered Busy: {why}");
                        refuse_busy(&stream, why);
                        continue;
                    }
                };
                let id = slot.id;
                let (ctx, activity) = (ctx.clone(), activity.clone());
                let task = tokio::spawn(async move {
                    connection(stream, ctx, cred, &slot, received_by).await;
                    drop(slot);
                    activity.touch();
                });
                slots.set_abort(id, task.abort_handle());
            }
            _ = tokio::time::sleep_until(deadline.into()), if !idle.is_zero() => {
                if slots.total() == 0 && activity.last().elapsed() >= idle {
                    info!("idle for {}s, exiting", idle.as_secs());
                    return Ok(());
                }
            }
            _ = term.recv() => {
                info!("SIGTERM, exiting");
                return Ok(());
            }
        }
    }
}

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
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
struct Slots {
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

    fn total(&self) -> usize {
        self.table().total
    }

    /// A slot for a new connection from `uid`, displacing the oldest
    /// connection still waiting for its request if every slot is taken.
    fn take(self: &Arc<Self>, uid: u32) -> Result<Slot, Refusal> {
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

    fn set_abort(&self, id: u64, handle: AbortHandle) {
        if let Some(h) = self.table().receiving.get_mut(&id) {
            *h = Some(handle);
        }
    }
}

/// One connection's slot, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    uid: u32,
    id: u64,
}

impl Slot {
    /// The request has arrived (or will not): the connection is no longer
    /// one a newcomer may displace.
    fn received(&self) {
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
fn refuse_busy(stream: &UnixStream, why: Refusal) {
    use nix::sys::socket::{send, MsgFlags};
    if let Ok(b) = wire::encode(&err(ErrorCode::Busy, &format!("lancod is busy: {why}"))) {
        let _ = send(
            stream.as_raw_fd(),
            &b,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
    }
}

/// The kernel's record of who connected (SO_PEERCRED, taken at accept),
/// with its supplementary groups, pinned by a pidfd where the kernel offers
/// SO_PEERPIDFD.
fn identify(
    fd: BorrowedFd<'_>,
    cred: &UnixCredentials,
) -> std::io::Result<(Peer, Option<OwnedFd>)> {
    let groups = sys::peer_groups(fd)?;
    let pidfd = getsockopt(&fd, sockopt::PeerPidfd).ok();
    Ok((
        Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
            groups,
        },
        pidfd,
    ))
}

/// One connection, from its first read to its answer. The request must be in
/// by `received_by`; the handler, once started, runs to its end even past
/// it: its work cannot be cancelled (it runs on a blocking thread), and
/// abandoning it would give the uid's slot back while the work goes on, so
/// the per-uid bound would no longer bound it. Handlers bound themselves: a
/// member's admission is a few file reads and one cgroup write; only an
/// administrator's `destroy --force` waits, up to 10 s, for tasks to end.
async fn connection(
    mut stream: UnixStream,
    ctx: Arc<Context>,
    cred: UnixCredentials,
    slot: &Slot,
    received_by: Instant,
) {
    let (peer, pidfd) = match identify(stream.as_fd(), &cred) {
        Ok(p) => p,
        Err(e) => {
            warn!("cannot identify peer: {e}");
            return;
        }
    };
    let span = tracing::info_span!("conn", uid = peer.uid, pid = peer.pid);
    async move {
        let received = tokio::time::timeout_at(received_by.into(), read_request(&mut stream)).await;
        slot.received();
        let resp = match received {
            Err(_) => {
                warn!(
                    "request not received within {}s",
                    RECEIVE_DEADLINE.as_secs()
                );
                err(ErrorCode::InvalidRequest, "request timed out")
            }
            Ok(Err(FrameError::Closed)) => return,
            Ok(Err(e)) => {
                warn!("bad request: {e}");
                let code = if matches!(e, FrameError::Version(_)) {
                    ErrorCode::Unsupported
                } else {
                    ErrorCode::InvalidRequest
                };
                err(code, &e.to_string())
            }
            Ok(Ok(req)) => {
                let ctx = ctx.clone();
                let peer = peer.clone();
                let span = tracing::Span::current();
                tokio::task::spawn_blocking(move || {
                    span.in_scope(|| handle(&ctx, &peer, pidfd, req))
                })
                .await
                .unwrap_or_else(|e| err(ErrorCode::Internal, &format!("handler failed: {e}")))
            }
        };
        if let Ok(bytes) = wire::encode(&resp) {
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, stream.write_all(&bytes)).await;
        }
    }
    .instrument(span)
    .await
}

async fn read_request(stream: &mut UnixStream) -> Result<Request, FrameError> {
    let mut h = [0u8; HEADER_LEN];
    match stream.read_exact(&mut h).await {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        r => r?,
    };
    let len = wire::decode_header(&h)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    wire::decode_body(&body)
}

fn err(code: ErrorCode, message: &str) -> Response {
    Response::Error {
        code,
        message: message.to_owned(),
    }
}

fn ns_error(e: NsError) -> Response {
    let code = match &e {
        NsError::NoUser(_) | NsError::NoGroup(_) => ErrorCode::InvalidRequest,
        // `Busy` on the wire means "lancod is overloaded, try again", which
        // clients retry; a namespace still in use is a conflict of state,
        // answered like one.
        NsError::OwnedByOther { .. } | NsError::Unexpected { .. } | NsError::Busy { .. } => {
            ErrorCode::AlreadyExists
        }
        NsError::NotFound(_) => ErrorCode::NotFound,
        NsError::NotInGroup { .. } => ErrorCode::InvalidRequest,
        NsError::Cgroup(_)
        | NsError::TaskRoot(_)
        | NsError::File(_)
        | NsError::Several(_)
        | NsError::BadRecord { .. } => ErrorCode::Internal,
    };
    warn!("request failed: {e}");
    err(code, &e.to_string())
}

/// One request, already decoded. Each arm re-checks what it relies on.
pub fn handle(ctx: &Context, peer: &Peer, pidfd: Option<OwnedFd>, req: Request) -> Response {
    match req {
        Request::Init { ns, owner, group } => {
            if let Verdict::Deny(why) =
                auth::authorize(peer, Action::Administer, ctx.admin_gid, None)
            {
                info!(%ns, "init denied: {why}");
                return err(ErrorCode::PermissionDenied, why);
            }
            let too_long =
                |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > wire::MAX_ACCOUNT_NAME);
            if too_long(&owner) || too_long(&group) {
                return err(ErrorCode::InvalidRequest, "user or group name too long");
            }
            let rec = match namespace::resolve_owner(owner.as_deref(), group.as_deref(), peer.uid) {
                Ok(r) => r,
                Err(e) => return ns_error(e),
            };
            match namespace::init(&ctx.layout, &ns, &rec) {
                Ok(created) => {
                    info!(%ns, owner = rec.owner, group = rec.group, created, "init allowed");
                    Response::Initialized {
                        created,
                        uid: rec.uid,
                        gid: rec.gid,
                    }
                }
                Err(e) => ns_error(e),
            }
        }
        Request::Destroy { ns, force } => {
            if let Verdict::Deny(why) =
                auth::authorize(peer, Action::Administer, ctx.admin_gid, None)
            {
                info!(%ns, "destroy denied: {why}");
                return err(ErrorCode::PermissionDenied, why);
            }
            match namespace::destroy(&ctx.layout, &ns, force) {
                Ok(()) => {
                    info!(%ns, force, "destroyed");
                    Response::Destroyed
                }
                Err(e) => ns_error(e),
            }
        }
        Request::Admit { ns } => admit(ctx, peer, pidfd, &ns),
    }
}

fn admit(ctx: &Context, peer: &Peer, pidfd: Option<OwnedFd>, ns: &NamespaceName) -> Response {
    let rec = match namespace::load_record(&ctx.layout, ns) {
        Ok(r) => r,
        Err(e) => return ns_error(e),
    };
    if let Verdict::Deny(why) = auth::authorize(peer, Action::Enter, ctx.admin_gid, rec.as_ref()) {
        info!(%ns, "admission denied: {why}");
        return err(ErrorCode::PermissionDenied, why);
    }
    let pidfd = match pidfd
        .map(Ok)
        .unwrap_or_else(|| lanco_proto::sys::pidfd_open(peer.pid).map_err(std::io::Error::from))
    {
        Ok(fd) => fd,
        Err(e) => {
            return err(
                ErrorCode::InvalidRequest,
                &format!("cannot pin the calling process: {e}"),
            )
        }
    };
    // The process that connected must still be the caller, with the caller's
    // identity (not, say, a set-uid or set-gid program it exec'd since),
    // before and after the move: a pid cannot be reused while its pidfd shows
    // it alive.
    let same_caller = || alive(pidfd.as_fd()) && ids_are(peer.pid, peer.uid, peer.gid);
    if !same_caller() {
        info!(%ns, "admission denied: caller changed identity or exited");
        return err(
            ErrorCode::PermissionDenied,
            "the calling process exited or changed identity",
        );
    }
    // After a reboot the cgroups are gone until `lancod restore` (run by
    // lanco-tasks.service at boot); this then fails cleanly.
    let leaf = match rec
        .as_ref()
        .ok_or_else(|| NsError::NotFound(ns.clone()))
        .and_then(|rec| {
            namespace::ensure_member(&ctx.layout, ns, rec, peer.uid, ctx.user_max_cgroups)
        }) {
        Ok(leaf) => leaf,
        Err(e) => return ns_error(e),
    };
    if let Err(e) = leaf.attach(peer.pid) {
        warn!(%ns, "admission failed: {e}");
        return err(ErrorCode::Internal, &e.to_string());
    }
    if !same_caller() {
        warn!(%ns, "caller exited or changed identity during admission");
        return err(
            ErrorCode::PermissionDenied,
            "the calling process exited or changed identity",
        );
    }
    info!(%ns, "admitted");
    Response::Admitted
}

fn alive(pidfd: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    // A pidfd polls readable once its process has exited.
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

/// Real, effective, saved and filesystem uids of `pid` all equal `uid`, and
/// its four gids all equal `gid` (SO_PEERCRED's, from connect(2)). A set-gid
/// program exec'd since connecting changes the gids only: checking uids alone
/// let it through with a group the caller is not in.
fn ids_are(pid: i32, uid: u32, gid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let four_equal = |key: &str, want: u32| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .is_some_and(|ids| {
                let ids: Vec<_> = ids.split_whitespace().map(str::parse::<u32>).collect();
                ids.len() == 4 && ids.iter().all(|i| i.as_ref() == Ok(&want))
            })
    };
    four_equal("Uid:", uid) && four_equal("Gid:", gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_compares_all_uids_and_gids() {
        let pid = std::process::id() as i32;
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        assert!(ids_are(pid, uid, gid));
        assert!(!ids_are(pid, uid, gid.wrapping_add(1)));
        assert!(!ids_are(pid, uid.wrapping_add(1), gid));
        assert!(!ids_are(i32::MAX, uid, gid), "no such process");
    }
}
