//! The per-task control socket: how `stop` and `kill` ask a task's monitor to
//! signal the task. The monitor does the sweep itself because it reaps the
//! task's orphans: only it can guarantee no pid is reaped and reused between
//! reading `cgroup.procs` and signalling. The socket lives in the task
//! owner's state directory, group-connectable (0660): any member may stop the
//! task. Clients open it with `files::Dir::open_socket`, checked to be the
//! owner's socket, never a planted one.

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use lanco_proto::files::Dir;
use lanco_proto::wire::{self, FrameError};
use nix::sys::stat::Mode;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Graceful stop; the reply comes when every process is gone.
    Stop { timeout_ms: Option<u64> },
    /// Deliver a signal to every process of the task.
    Kill { signal: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    Done { killed_after_timeout: bool },
    Error { message: String },
}

/// Binds the control socket `name` in this member's state directory `dir`
/// (replacing a stale one of ours), reachable by the namespace's group.
/// Through `/proc/self/fd/N/NAME`: `sun_path` is 108 bytes, and this always
/// fits.
pub fn bind(dir: &Dir, name: &str) -> std::io::Result<UnixListener> {
    dir.remove_socket(name).map_err(std::io::Error::other)?;
    let l = UnixListener::bind(format!("/proc/self/fd/{}/{name}", dir.as_fd().as_raw_fd()))?;
    // connect(2) needs write permission on the socket.
    nix::sys::stat::fchmodat(
        dir.as_fd(),
        name,
        Mode::from_bits_truncate(0o660),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )?;
    Ok(l)
}

/// Sends one request or reply (lancod's framing: magic, version, length
/// checked before allocating, postcard body).
pub fn send<T: Serialize>(s: &mut UnixStream, msg: &T) -> std::io::Result<()> {
    wire::write_frame(s, msg).map_err(std::io::Error::other)
}

/// Reads one request or reply, waiting at most `timeout` (None: forever).
pub fn recv<T: DeserializeOwned>(s: &UnixStream, timeout: Option<Duration>) -> std::io::Result<T> {
    s.set_read_timeout(timeout)?;
    wire::read_frame(&mut &*s).map_err(|e| match e {
        FrameError::Io(e) => e,
        FrameError::Closed => std::io::ErrorKind::UnexpectedEof.into(),
        e => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
