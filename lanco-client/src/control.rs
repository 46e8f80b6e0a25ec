//! The per-task control socket: how `stop` and `kill` ask a task's monitor to
//! signal the task. The monitor does the sweep itself because it reaps the
//! task's orphans: only it can guarantee no pid is reaped and reused between
//! reading `cgroup.procs` and signalling. The socket lives in the task
//! owner's state directory, group-connectable (0660): any member may stop the
//! task. Clients open it with `files::Dir::open_socket`, checked to be the
//! owner's socket, never a planted one.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use lanco_proto::files::Dir;
use lanco_proto::wire::{self, FrameError};
use nix::sys::stat::Mode;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Largest request or reply: a reply carries an exit record, whose command
/// line can be long (a record too large for it is read from its file).
const MAX_FRAME: u64 = 1 << 20;

// The serde attributes give 0.1's JSON shape (`{"stop":{"timeout_ms":10}}`),
// still spoken to monitors started by lanco 0.1 (see `legacy`); postcard
// ignores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Graceful stop; the reply comes when every process is gone.
    Stop { timeout_ms: Option<u64> },
    /// Deliver a signal to every process of the task.
    Kill { signal: i32 },
    /// Answer once the run (and its on-exit command) is over, with its
    /// record. Not understood by 0.1 monitors.
    Wait,
    /// Set (started on purpose) or drop (`release`) the task's explicit
    /// mark in its state file.
    Mark { explicit: bool },
    /// Deliver a signal to the task's main process only (`kill --main`).
    /// Last, so the variants before keep their postcard tags; monitors
    /// older than it drop the connection unanswered.
    KillMain { signal: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlReply {
    /// For `Stop` and `Wait`, the run's exit record (JSON) once it is over;
    /// none for `Kill` (and from 0.1 monitors).
    Done {
        killed_after_timeout: bool,
        #[serde(default)]
        record: Option<String>,
    },
    Error {
        message: String,
    },
    /// For `KillMain`: the main process has exited (other processes of the
    /// task may run on). Only sent in answer to `KillMain`, which older
    /// clients never send.
    MainGone,
}

impl ControlReply {
    /// An answer other than the one awaited, as an error: an `Error`'s
    /// words, or what came instead.
    pub(crate) fn into_error(self) -> crate::error::Error {
        match self {
            ControlReply::Error { message } => crate::error::Error::failed(message),
            other => crate::error::Error::failed(format!(
                "unexpected answer from the task's monitor: {other:?}"
            )),
        }
    }
}

/// Binds the socket `name` in this member's state directory `dir`
/// (replacing a stale one of ours), connectable by whom `mode` lets write it
/// (connect(2) needs write permission): 0660 for a task's control socket,
/// which every member may use, 0600 for the spawner's. Through
/// `/proc/self/fd/N/NAME`: `sun_path` is 108 bytes, and this always fits.
pub fn bind(dir: &Dir, name: &str, mode: u32) -> std::io::Result<UnixListener> {
    dir.remove_socket(name).map_err(std::io::Error::other)?;
    let l = UnixListener::bind(format!("/proc/self/fd/{}/{name}", dir.as_fd().as_raw_fd()))?;
    nix::sys::stat::fchmodat(
        dir.as_fd(),
        name,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )?;
    Ok(l)
}

/// Sends one request or reply (lancod's framing: magic, version, length
/// checked before allocating, postcard body).
pub fn send<T: Serialize>(s: &mut UnixStream, msg: &T) -> std::io::Result<()> {
    wire::write_frame_max(s, msg, MAX_FRAME).map_err(std::io::Error::other)
}

/// Reads one request or reply, waiting at most `timeout` (None: forever) for
/// it to begin, and — a peer that stalls mid-frame — as long again for the rest.
pub fn recv<T: DeserializeOwned>(s: &UnixStream, timeout: Option<Duration>) -> std::io::Result<T> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    if !crate::sys::readable_by(s.as_fd(), deadline)? {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    s.set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
    wire::read_frame_max(&mut &*s, MAX_FRAME).map_err(|e| match e {
        FrameError::Io(e) => e,
        FrameError::Closed => std::io::ErrorKind::UnexpectedEof.into(),
        e => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// lanco 0.1's monitors, still running tasks started before an upgrade,
/// speak JSON lines on this socket; they are asked in their own language
/// until they end.
pub mod legacy {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::{ControlReply, ControlRequest};

    pub fn ask(
        s: &mut UnixStream,
        req: &ControlRequest,
        timeout: Option<Duration>,
    ) -> std::io::Result<ControlReply> {
        let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        line.push(b'\n');
        s.write_all(&line)?;
        s.set_read_timeout(timeout)?;
        let mut reply = Vec::new();
        BufReader::new((&*s).take(4096)).read_until(b'\n', &mut reply)?;
        serde_json::from_slice(&reply)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_json_shape() {
        assert_eq!(
            serde_json::to_string(&ControlRequest::Stop {
                timeout_ms: Some(10)
            })
            .unwrap(),
            r#"{"stop":{"timeout_ms":10}}"#
        );
        let r: ControlReply =
            serde_json::from_str(r#"{"done":{"killed_after_timeout":false}}"#).unwrap();
        assert_eq!(
            r,
            ControlReply::Done {
                killed_after_timeout: false,
                record: None
            }
        );
    }

    #[test]
    fn frames_roundtrip_and_are_bounded() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = a;
        send(&mut a, &ControlRequest::Kill { signal: 15 }).unwrap();
        let r: ControlRequest = recv(&b, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(r, ControlRequest::Kill { signal: 15 });
        // A peer that claims a huge frame is refused before allocating.
        use std::io::Write;
        a.write_all(b"LNC\x01\xff\xff\xff\xff\xff\xff\xff\x7f")
            .unwrap();
        assert!(recv::<ControlRequest>(&b, Some(Duration::from_secs(1))).is_err());
    }

    /// A wait for a reply that never comes gives up at its time, never
    /// before (the daemon probe once saw SO_RCVTIMEO give up 0.2 ms early).
    #[test]
    fn a_timeout_is_never_early() {
        let (_a, b) = UnixStream::pair().unwrap();
        for ms in [1, 3, 7, 13] {
            let t = Duration::from_millis(ms);
            let t0 = std::time::Instant::now();
            let e = recv::<ControlReply>(&b, Some(t)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
            assert!(
                t0.elapsed() >= t,
                "{ms} ms timeout after {:?}",
                t0.elapsed()
            );
        }
    }
}
