//! How a supervised task tells its monitor it is ready: sd_notify
//! datagrams on a socket of the monitor's own (`ready = "notify"`), or a
//! newline on a pipe the task gets at fd N (`ready = "fd:N"`).
//!
//! The notify socket is abstract (no file, no path length limit), so any
//! process on the host may send to it: a datagram counts only if its
//! sender, as the kernel gives it (SCM_CREDENTIALS), is a live process of
//! the task's cgroup or one below it. The check holds a pidfd across the
//! cgroup read, so the pid cannot have been reused meanwhile. A sender
//! that exits before its datagram is read (`systemd-notify` without a
//! barrier) is not believed; `systemd-notify --ready` waits for the
//! barrier, which closing the fds it passes answers.

use std::fs::File;
use std::io::{ErrorKind, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use lanco_proto::cgroupfs::Cgroup;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::error::{Error, Result};
use crate::supervision::Ready;

/// Longest `STATUS=` text kept.
const MAX_STATUS: usize = 256;

/// What the task said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Said {
    Ready,
    Status(String),
    Stopping,
    MainPid(i32),
    /// Its readiness fd was closed before a newline came.
    Closed,
}

pub(super) enum Channel {
    /// Ready when exec'd: nothing to watch.
    Exec,
    /// The notify socket, and `NOTIFY_SOCKET`'s value for it.
    Notify { sock: OwnedFd, address: String },
    /// The fd number the task gets, and this run's read end (until the
    /// newline or EOF).
    Fd { at: i32, read: Option<File> },
}

impl Channel {
    pub(super) fn new(ready: Ready) -> Result<Self> {
        Ok(match ready {
            Ready::Exec => Channel::Exec,
            Ready::Fd(at) => Channel::Fd { at, read: None },
            Ready::Notify => {
                let sock = socket::socket(
                    AddressFamily::Unix,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                    None,
                )
                .map_err(|e| Error::system("cannot make the notify socket", e))?;
                // 16 random hex digits, as a run id has.
                let name = format!(
                    "lanco/notify/{}",
                    super::start::run_id(std::process::id() as i32)
                );
                let addr = UnixAddr::new_abstract(name.as_bytes())
                    .map_err(|e| Error::system("notify socket address", e))?;
                socket::bind(sock.as_raw_fd(), &addr)
                    .and_then(|()| socket::setsockopt(&sock, sockopt::PassCred, &true))
                    .map_err(|e| Error::system("cannot bind the notify socket", e))?;
                Channel::Notify {
                    sock,
                    address: format!("@{name}"),
                }
            }
        })
    }

    /// The variable the task gets, if any.
    pub(super) fn env(&self) -> Option<Vec<u8>> {
        match self {
            Channel::Notify { address, .. } => {
                Some(format!("NOTIFY_SOCKET={address}").into_bytes())
            }
            _ => None,
        }
    }

    /// Before each run: a new readiness pipe (its write end, to pass at fd
    /// N), or the notify socket emptied of what an earlier run left.
    pub(super) fn arm(&mut self) -> Result<Option<(OwnedFd, i32)>> {
        match self {
            Channel::Exec => Ok(None),
            Channel::Notify { sock, .. } => {
                let mut b = [0u8; 1];
                while socket::recv(sock.as_raw_fd(), &mut b, MsgFlags::MSG_DONTWAIT).is_ok() {}
                Ok(None)
            }
            Channel::Fd { at, read } => {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
                    .map_err(|e| Error::system("cannot make the readiness pipe", e))?;
                *read = Some(File::from(r));
                Ok(Some((w, *at)))
            }
        }
    }

    /// The fd to poll, while there is something to hear.
    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Channel::Exec => None,
            Channel::Notify { sock, .. } => Some(sock.as_fd()),
            Channel::Fd { read, .. } => read.as_ref().map(AsFd::as_fd),
        }
    }

    /// Everything the task said since the last call, from its processes
    /// only (those in `cgroup`).
    pub(super) fn read(&mut self, cgroup: &Cgroup) -> Vec<Said> {
        let mut said = Vec::new();
        match self {
            Channel::Exec => {}
            Channel::Fd { read, .. } => {
                let Some(f) = read else { return said };
                let mut buf = [0u8; 512];
                loop {
                    match f.read(&mut buf) {
                        Ok(0) => {
                            said.push(Said::Closed);
                            *read = None;
                            break;
                        }
                        Ok(n) if buf[..n].contains(&b'\n') => {
                            said.push(Said::Ready);
                            // Nothing more to hear: no POLLHUP later.
                            *read = None;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            Channel::Notify { sock, .. } => {
                while let Some(d) = recv_datagram(sock.as_fd()) {
                    if let Some(text) = d.text_if_from_task(cgroup) {
                        said.extend(parse(&text));
                    }
                }
            }
        }
        said
    }
}

struct Datagram {
    text: Vec<u8>,
    pid: Option<i32>,
}

impl Datagram {
    /// The text, if its sender is a live process of the task.
    fn text_if_from_task(self, cgroup: &Cgroup) -> Option<Vec<u8>> {
        let pid = self.pid.filter(|p| *p > 0)?;
        let pidfd = lanco_proto::sys::pidfd_open(pid).ok()?;
        let inside = cgroup.procs_recursive().ok()?.contains(&pid);
        (inside && lanco_proto::sys::pidfd_alive(pidfd.as_fd())).then_some(self.text)
    }
}

/// One datagram, `None` when there is none left. Fds it carries (a
/// `BARRIER=1`'s) are closed at once, which is the barrier's answer.
fn recv_datagram(sock: BorrowedFd<'_>) -> Option<Datagram> {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!(libc::ucred, [std::os::fd::RawFd; 16]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    );
    let msg = match msg {
        Ok(m) => m,
        Err(nix::errno::Errno::EINTR) => return recv_datagram(sock),
        Err(_) => return None,
    };
    let mut pid = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmCredentials(cred) => pid = Some(cred.pid()),
                ControlMessageOwned::ScmRights(fds) => {
                    for fd in fds {
                        let _ = nix::unistd::close(fd);
                    }
                }
                _ => {}
            }
        }
    }
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    let n = msg.bytes;
    let text = buf[..n].to_vec();
    // A truncated datagram is not believed (its end is missing).
    Some(Datagram {
        text: if truncated { Vec::new() } else { text },
        pid,
    })
}

/// The sd_notify assignments lanco understands; the rest are ignored.
fn parse(text: &[u8]) -> Vec<Said> {
    let text = String::from_utf8_lossy(text);
    text.lines()
        .filter_map(|l| match l.split_once('=')? {
            ("READY", "1") => Some(Said::Ready),
            ("STOPPING", "1") => Some(Said::Stopping),
            ("STATUS", s) => Some(Said::Status(s.chars().take(MAX_STATUS).collect())),
            ("MAINPID", p) => p.parse().ok().filter(|p| *p > 0).map(Said::MainPid),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_notify_assignments() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=serving 3 clients\nMAINPID=42\nWATCHDOG=1\nSTOPPING=1"),
            [
                Said::Ready,
                Said::Status("serving 3 clients".into()),
                Said::MainPid(42),
                Said::Stopping
            ]
        );
        assert!(parse(b"READY=0\nMAINPID=x\nMAINPID=-1").is_empty());
        let long = format!("STATUS={}", "x".repeat(1000));
        assert_eq!(
            parse(long.as_bytes()),
            [Said::Status("x".repeat(MAX_STATUS))]
        );
    }
}
