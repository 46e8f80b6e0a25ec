//! The serving loop of lancod: accept, identify each peer from the kernel,
//! give it a slot (`slots`), read one bounded request within its deadline,
//! answer it (`request`), and exit when idle. Taking the listening socket is
//! in `socket`.

use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener as StdListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanco_proto::wire::{self, ErrorCode, FrameError, Request, HEADER_LEN};
use nix::sys::socket::{getsockopt, sockopt, UnixCredentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn, Instrument};

use crate::auth::Peer;
use crate::request::{err, handle};
use crate::slots::{refuse_busy, Slot, Slots};
use crate::sys;

pub use crate::reload::LiveContext;
pub use crate::request::Context;
pub use crate::socket::listener;

/// A request must have arrived in full this long after accept. lanco's
/// clients send theirs (a few dozen bytes) the moment they connect; a peer
/// still sending after this is holding a connection, not talking. It is one
/// deadline for the whole request, not one per read, so a peer that trickles
/// a byte at a time is cut off too.
const RECEIVE_DEADLINE: Duration = Duration::from_secs(2);
/// Writing the answer (under 4 KiB, into the connection's still empty socket
/// buffer) does not wait for the peer; this bounds it should it ever have to.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept(2) (EMFILE, ENOBUFS): the listener stays
/// readable, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
pub async fn serve(
    listener: StdListener,
    live: LiveContext,
    idle: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let ctx = Arc::new(live);
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
    ctx: Arc<LiveContext>,
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
                    // The configuration as it is now (one stat; re-read if
                    // it changed).
                    span.in_scope(|| handle(&ctx.get(), &peer, pidfd, req))
                })
                .await
                .unwrap_or_else(|e| err(ErrorCode::Internal, &format!("handler failed: {e}")))
            }
        };
        if let Ok(bytes) = wire::encode_max(&resp, wire::MAX_REPLY) {
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
