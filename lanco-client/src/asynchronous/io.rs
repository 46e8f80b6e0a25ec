//! The reactor side of the awaited calls: `cgroup.events` watched for
//! POLLPRI, and the control socket's frames (and 0.1's JSON lines) read and
//! written without blocking the runtime.

use std::io::ErrorKind;
use std::time::Duration;

use lanco_proto::cgroupfs::{Cgroup, Events};
use lanco_proto::wire;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::MAX_FRAME;
use crate::control::{ControlReply, ControlRequest};
use crate::error::{Error, Result};

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
pub(super) async fn wait_events(
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
pub(super) async fn send(conn: &mut UnixStream, req: &ControlRequest) -> std::io::Result<()> {
    let frame = wire::encode_max(req, MAX_FRAME).map_err(std::io::Error::other)?;
    conn.write_all(&frame).await
}

/// One reply in `control`'s framing: magic, version and length are checked
/// before the body is allocated, then the whole frame is decoded by
/// `wire` (magic, version, length, no trailing bytes).
pub(super) async fn recv<T: DeserializeOwned>(conn: &mut UnixStream) -> std::io::Result<T> {
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
pub(super) async fn legacy_send(
    conn: &mut UnixStream,
    req: &ControlRequest,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write_all(&line).await
}

/// A 0.1 monitor's reply: one JSON line of at most 4 KiB.
pub(super) async fn legacy_recv(conn: &mut UnixStream) -> std::io::Result<ControlReply> {
    let mut reply = Vec::new();
    tokio::io::BufReader::new(conn.take(4096))
        .read_until(b'\n', &mut reply)
        .await?;
    serde_json::from_slice(&reply).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
