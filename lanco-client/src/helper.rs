//! Talking to lancod: one request per connection, retried with backoff while
//! lancod answers `Busy`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use lanco_proto::wire::{self, ErrorCode, Request, Response};
use lanco_proto::NamespaceName;
use nix::sys::socket::{send, MsgFlags};

use crate::error::{Error, Result};

/// Longest lancod may take to answer (a forced destroy waits up to 10 s for
/// the kernel to empty the namespace).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// `Busy` means lancod holds as many connections as it serves (for this uid,
/// or in all). Its connections last milliseconds, so one frees soon: retry
/// after 10 ms, then twice as long each time up to half a second apart, for
/// 3 s in all. Longer than that someone is flooding lancod, and the caller
/// should hear so rather than hang.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
const BUSY_RETRY_FOR: Duration = Duration::from_secs(3);

/// Asks lancod to move the calling process into the caller's `monitors`
/// cgroup of namespace `ns` (made on first use).
pub fn admit(socket: &Path, ns: &NamespaceName) -> Result<()> {
    match request(socket, &Request::Admit { ns: ns.clone() })? {
        Response::Admitted => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Asks lancod to make `controllers` available to the caller's subtree of
/// namespace `ns`, for its tasks' own limits.
pub fn enable(
    socket: &Path,
    ns: &NamespaceName,
    controllers: &std::collections::BTreeSet<&str>,
) -> Result<()> {
    let req = Request::Enable {
        ns: ns.clone(),
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
    };
    match request(socket, &req)? {
        Response::Enabled => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Asks lancod to make the caller's state directory (and cgroup subtree)
/// in namespace `ns`, as at its first admission, moving no process.
#[cfg(feature = "cli")]
pub fn join(socket: &Path, ns: &NamespaceName) -> Result<()> {
    match request(socket, &Request::Join { ns: ns.clone() })? {
        Response::Joined => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Asks lancod to create (or re-apply) namespace `ns` for `owner`:`group`;
/// returns whether it was created, and the owner's uid and gid.
#[cfg(feature = "cli")]
pub fn init(
    socket: &Path,
    ns: &NamespaceName,
    owner: Option<String>,
    group: Option<String>,
    limits: lanco_proto::Limits,
) -> Result<(bool, u32, u32)> {
    // Plain Init without ceilings: what lancod of every version reads.
    let req = if limits.is_empty() {
        Request::Init {
            ns: ns.clone(),
            owner,
            group,
        }
    } else {
        Request::InitLimited {
            ns: ns.clone(),
            owner,
            group,
            limits,
        }
    };
    match request(socket, &req)? {
        Response::Initialized { created, uid, gid } => Ok((created, uid, gid)),
        other => Err(unexpected(other)),
    }
}

/// Asks lancod to change namespace `ns`'s ceilings; returns them as they
/// now are.
#[cfg(feature = "cli")]
pub fn limit(
    socket: &Path,
    ns: &NamespaceName,
    set: lanco_proto::Limits,
    clear: Vec<lanco_proto::limits::Key>,
) -> Result<lanco_proto::Limits> {
    let req = Request::Limit {
        ns: ns.clone(),
        set,
        clear,
    };
    match request(socket, &req)? {
        Response::Limited { limits } => Ok(limits),
        other => Err(unexpected(other)),
    }
}

/// The namespaces the caller may use (all, for root and the admin group).
#[cfg(feature = "cli")]
pub fn namespaces(socket: &Path) -> Result<Vec<wire::NamespaceInfo>> {
    match request(socket, &Request::Namespaces)? {
        Response::Namespaces { list } => Ok(list),
        other => Err(unexpected(other)),
    }
}

/// Asks lancod to destroy namespace `ns`.
#[cfg(feature = "cli")]
pub fn destroy(socket: &Path, ns: &NamespaceName, force: bool) -> Result<()> {
    let req = Request::Destroy {
        ns: ns.clone(),
        force,
    };
    match request(socket, &req)? {
        Response::Destroyed => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Response) -> Error {
    Error::HelperNoAnswer(format!("unexpected answer from lancod: {r:?}"))
}

fn request(socket: &Path, req: &Request) -> Result<Response> {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match exchange(socket, req)? {
            Response::Error {
                code: ErrorCode::Busy,
                message,
            } => {
                if started.elapsed() + backoff > BUSY_RETRY_FOR {
                    return Err(Error::HelperBusy {
                        message,
                        retried_for: BUSY_RETRY_FOR,
                    });
                }
                std::thread::sleep(jittered(backoff));
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Response::Error { code, message } => {
                return Err(Error::HelperRefused { code, message })
            }
            r => return Ok(r),
        }
    }
}

/// One connection: send `req`, read lancod's answer.
fn exchange(socket: &Path, req: &Request) -> Result<Response> {
    let unreachable = |source: std::io::Error| Error::HelperUnreachable {
        socket: socket.to_owned(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(unreachable)?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(unreachable)?;
    // lancod answers Busy at accept, before reading, and closes: the write can
    // then fail (EPIPE) while the answer waits to be read.
    let sent = wire::write_frame(&mut NoSigpipe(&s), req);
    match (wire::read_frame_max(&mut s, wire::MAX_REPLY), sent) {
        (Ok(r), _) => Ok(r),
        (Err(_), Err(wire::FrameError::Io(e))) => Err(unreachable(e)),
        // Its words only: a FrameError also gives its inner error as its
        // source, which would print it twice.
        (Err(_), Err(e)) => Err(unreachable(std::io::Error::other(e.to_string()))),
        (Err(wire::FrameError::Closed), Ok(())) => Err(Error::HelperNoAnswer(
            "lancod closed the connection without answering (did it crash or restart?)".into(),
        )),
        (Err(e), Ok(())) => Err(Error::HelperNoAnswer(format!(
            "bad answer from lancod: {e}"
        ))),
    }
}

/// Writes with MSG_NOSIGNAL: `lanco` leaves SIGPIPE at its default (see
/// main.rs), as may a daemon linking the library, and a write to a peer that
/// has gone (lancod, a monitor) must be an error, not the end of the process.
pub(crate) struct NoSigpipe<'a>(pub(crate) &'a UnixStream);

impl Write for NoSigpipe<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        send(self.0.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL).map_err(std::io::Error::from)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Somewhere in [d/2, d], so clients turned away together do not all come
/// back together.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let half = d / 2;
    half + Duration::from_nanos(u64::from(nanos) % (half.as_nanos() as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake lancod that answers its connections with `answers` in turn,
    /// without reading their requests, then stops listening.
    fn fake_lancod(tag: &str, answers: Vec<Response>) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "lanco-helper-test-{}-{tag}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for a in answers {
                let (mut s, _) = listener.accept().unwrap();
                let _ = wire::write_frame(&mut s, &a);
            }
        });
        path
    }

    fn admit() -> Request {
        Request::Admit {
            ns: "ns".try_into().unwrap(),
        }
    }

    fn busy() -> Response {
        Response::Error {
            code: ErrorCode::Busy,
            message: "lancod is busy: test".into(),
        }
    }

    #[test]
    fn busy_is_retried_until_answered() {
        let path = fake_lancod("retried", vec![busy(), busy(), busy(), Response::Admitted]);
        assert_eq!(request(&path, &admit()).unwrap(), Response::Admitted);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn busy_for_too_long_is_one_clear_error() {
        let path = fake_lancod("gives-up", vec![busy(); 100]);
        let t0 = Instant::now();
        let e = request(&path, &admit()).unwrap_err();
        assert!(t0.elapsed() >= BUSY_RETRY_FOR / 2, "{:?}", t0.elapsed());
        assert!(matches!(e, Error::HelperBusy { .. }), "{e:?}");
        let text = e.to_string();
        assert_eq!(
            text,
            "lancod is busy: test (still busy after retrying for 3 s)"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let denied = Response::Error {
            code: ErrorCode::PermissionDenied,
            message: "no".into(),
        };
        let path = fake_lancod("denied", vec![denied, Response::Admitted]);
        assert!(matches!(
            request(&path, &admit()),
            Err(Error::HelperRefused {
                code: ErrorCode::PermissionDenied,
                message: m
            }) if m == "no"
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn jitter_stays_within_half_to_whole() {
        for ms in [10, 20, 500] {
            let d = Duration::from_millis(ms);
            let j = jittered(d);
            assert!(j >= d / 2 && j <= d, "{j:?} for {d:?}");
        }
    }
}
