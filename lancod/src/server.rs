//! The socket side of lancod: take the listening socket (socket activation or
//! bind), accept, identify each peer from the kernel, bound and decode one
//! request, answer it, and exit when idle.

use std::fs;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanco_proto::wire::{self, ErrorCode, FrameError, Request, Response, HEADER_LEN};
use lanco_proto::{Config, Layout, NamespaceName};
use nix::sys::socket::{getsockopt, sockopt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn, Instrument};

use crate::auth::{self, Action, Peer, Verdict};
use crate::namespace::{self, NsError};
use crate::sys;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered `Busy`.
const MAX_CONNECTIONS: usize = 64;

pub struct Context {
    pub layout: Layout,
    pub admin_gid: Option<u32>,
    pub user_max_cgroups: u64,
}

impl Context {
    pub fn from_config(cfg: &Config) -> Result<Self, String> {
        let cgroup_root =
            lanco_proto::cgroupfs::resolve_root(&cfg.cgroup_root).map_err(|e| e.to_string())?;
        let admin_gid = if cfg.admin_group.is_empty() {
            None
        } else {
            let g = uzers::get_group_by_name(&cfg.admin_group)
                .ok_or_else(|| format!("admin_group {:?} does not exist", cfg.admin_group))?;
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
pub fn listener(socket: &Path) -> Result<StdListener, String> {
    if let Some(l) = activated_listener()? {
        return Ok(l);
    }
    if let Some(dir) = socket.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(format!(
                "another lancod is already serving {}",
                socket.display()
            ));
        }
        fs::remove_file(socket)
            .map_err(|e| format!("cannot remove stale {}: {e}", socket.display()))?;
    }
    let l =
        StdListener::bind(socket).map_err(|e| format!("cannot bind {}: {e}", socket.display()))?;
    // World-connectable: who may do what is decided from SO_PEERCRED.
    fs::set_permissions(socket, fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("cannot chmod {}: {e}", socket.display()))?;
    Ok(l)
}

fn activated_listener() -> Result<Option<StdListener>, String> {
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
            return Err(format!(
                "expected exactly one socket from socket activation, got LISTEN_FDS={n}"
            ))
        }
    }
    let fd = sys::take_activation_fd();
    let listening = getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false);
    let stream =
        getsockopt(&fd, sockopt::SockType).ok() == Some(nix::sys::socket::SockType::Stream);
    let unix = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd.as_raw_fd()).is_ok();
    if !(listening && stream && unix) {
        return Err(
            "the socket passed by socket activation is not a listening AF_UNIX stream socket"
                .into(),
        );
    }
    let l = StdListener::from(fd);
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(Some(l))
}

struct Activity {
    active: AtomicUsize,
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
        active: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let deadline = activity.last() + idle;
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = match r {
                    Ok(s) => s,
                    Err(e) => { warn!("accept failed: {e}"); continue; }
                };
                activity.touch();
                if activity.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    activity.active.fetch_sub(1, Ordering::SeqCst);
                    tokio::spawn(refuse_busy(stream));
                    continue;
                }
                let (ctx, activity) = (ctx.clone(), activity.clone());
                tokio::spawn(async move {
                    connection(stream, ctx).await;
                    activity.touch();
                    activity.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            _ = tokio::time::sleep_until(deadline.into()), if !idle.is_zero() => {
                if activity.active.load(Ordering::SeqCst) == 0 && activity.last().elapsed() >= idle {
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

async fn refuse_busy(mut stream: UnixStream) {
    let resp = Response::Error {
        code: ErrorCode::Busy,
        message: "lancod is busy, try again".into(),
    };
    if let Ok(b) = wire::encode(&resp) {
        let _ = tokio::time::timeout(READ_TIMEOUT, stream.write_all(&b)).await;
    }
}

/// The kernel's record of who connected, pinned by a pidfd where the kernel
/// offers SO_PEERPIDFD.
fn identify(fd: BorrowedFd<'_>) -> std::io::Result<(Peer, Option<OwnedFd>)> {
    let cred = getsockopt(&fd, sockopt::PeerCredentials)?;
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

async fn connection(mut stream: UnixStream, ctx: Arc<Context>) {
    let (peer, pidfd) = match identify(stream.as_fd()) {
        Ok(p) => p,
        Err(e) => {
            warn!("cannot identify peer: {e}");
            return;
        }
    };
    let span = tracing::info_span!("conn", uid = peer.uid, pid = peer.pid);
    async move {
        let resp = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
            Err(_) => {
                warn!("request not received within {}s", READ_TIMEOUT.as_secs());
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
            let _ = tokio::time::timeout(READ_TIMEOUT, stream.write_all(&bytes)).await;
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
        NsError::OwnedByOther { .. } | NsError::Unexpected { .. } => ErrorCode::AlreadyExists,
        NsError::NotFound(_) => ErrorCode::NotFound,
        NsError::Busy { .. } => ErrorCode::Busy,
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
    let pidfd = match pidfd.map(Ok).unwrap_or_else(|| sys::pidfd_open(peer.pid)) {
        Ok(fd) => fd,
        Err(e) => {
            return err(
                ErrorCode::InvalidRequest,
                &format!("cannot pin the calling process: {e}"),
            )
        }
    };
    // The process that connected must still be the caller, with the caller's
    // identity (not, say, a set-uid program it exec'd since), before and after
    // the move: a pid cannot be reused while its pidfd shows it alive.
    let same_caller = || alive(pidfd.as_fd()) && uids_are(peer.pid, peer.uid);
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

/// Real, effective, saved and filesystem uids of `pid` all equal `uid`.
fn uids_are(pid: i32, uid: u32) -> bool {
    let mut s = String::new();
    let ok = fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|mut f| f.read_to_string(&mut s))
        .is_ok();
    ok && s
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().all(|i| i.parse() == Ok(uid)))
}
