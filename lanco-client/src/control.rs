//! The per-task control socket: how `stop` and `kill` ask a task's monitor to
//! signal the task. The monitor does the sweep itself because it reaps the
//! task's orphans: only it can guarantee no pid is reaped and reused between
//! reading `cgroup.procs` and signalling. The socket lives in the task
//! owner's state directory, group-connectable (0660): any member may stop the
//! task. Clients open it with `files::Dir::open_socket`, checked to be the
//! owner's socket, never a planted one.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use lanco_proto::files::Dir;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// Longest request or reply line.
pub const MAX_LINE: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Graceful stop; the reply comes when every process is gone.
    Stop { timeout_ms: Option<u64> },
    /// Deliver a signal to every process of the task.
    Kill { signal: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

pub fn send_line<T: Serialize>(s: &mut UnixStream, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}

pub fn read_line<T: for<'de> Deserialize<'de>>(
    s: &UnixStream,
    timeout: Option<Duration>,
) -> std::io::Result<T> {
    s.set_read_timeout(timeout)?;
    let mut line = Vec::new();
    BufReader::new(std::io::Read::take(s, MAX_LINE)).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no complete message",
        ));
    }
    serde_json::from_slice(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let s = serde_json::to_string(&ControlRequest::Stop {
            timeout_ms: Some(10),
        })
        .unwrap();
        assert_eq!(s, r#"{"stop":{"timeout_ms":10}}"#);
        assert!(
            serde_json::from_str::<ControlRequest>(r#"{"stop":{"timeout_ms":1,"x":2}}"#).is_err()
        );
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = a;
        send_line(&mut a, &ControlRequest::Kill { signal: 15 }).unwrap();
        let r: ControlRequest = read_line(&b, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(r, ControlRequest::Kill { signal: 15 });
    }
}
