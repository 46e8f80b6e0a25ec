//! Whom a spawner serves. A monitor the spawner forks is a copy of the
//! spawner, not of the caller: it has the spawner's credentials,
//! capabilities, namespaces, root directory, security label, seccomp state
//! and no_new_privs flag, and passes them to the task. So the spawner serves
//! a caller only if each of those is the same as its own; anything else
//! (another user, the same user in another mount namespace, under a seccomp
//! filter or with no_new_privs set by its service manager, a set-gid
//! program's group) is closed without an answer and takes the cold path,
//! where the monitor is the caller's own child and lancod decides.
//! Nothing here ever widens what a caller has.
//!
//! The caller's view is read from /proc/PID while a pidfd pins PID: a pid
//! reused in between makes the pidfd show an exited process.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::fs::MetadataExt;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The lines of /proc/PID/status that must match.
const STATUS_KEYS: [&str; 11] = [
    "Uid:",
    "Gid:",
    "Groups:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
    "NoNewPrivs:",
    "Seccomp:",
    "Seccomp_filters:",
];

/// The namespaces (/proc/PID/ns/*) that must be the same ones.
const NAMESPACES: [&str; 10] = [
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
];

/// What a process passes to the processes it forks, as far as the spawner
/// compares it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Context {
    status: Vec<Option<String>>,
    namespaces: Vec<Option<String>>,
    /// The root directory's device and inode.
    root: (u64, u64),
    /// The LSM label (AppArmor, SELinux), if the kernel has one.
    label: Option<Vec<u8>>,
}

impl Context {
    /// This process's. A spawner under a seccomp filter serves nobody: two
    /// filters cannot be compared.
    pub fn own() -> std::io::Result<Context> {
        let c = Context::of("self")?;
        if c.status_value("Seccomp:") != Some("0") {
            return Err(std::io::Error::other("runs under a seccomp filter"));
        }
        Ok(c)
    }

    fn of(pid: &str) -> std::io::Result<Context> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let status = STATUS_KEYS
            .iter()
            .map(|k| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_owned())
            })
            .collect();
        let namespaces = NAMESPACES
            .iter()
            .map(|n| {
                fs::read_link(format!("/proc/{pid}/ns/{n}"))
                    .ok()
                    .map(|l| l.to_string_lossy().into_owned())
            })
            .collect();
        let root = fs::metadata(format!("/proc/{pid}/root"))?;
        Ok(Context {
            status,
            namespaces,
            root: (root.st_dev(), root.st_ino()),
            label: fs::read(format!("/proc/{pid}/attr/current")).ok(),
        })
    }

    fn status_value(&self, key: &str) -> Option<&str> {
        let i = STATUS_KEYS.iter().position(|k| *k == key)?;
        self.status[i].as_deref()
    }

    /// Whether the process at the other end of `conn` may be served: the
    /// same uid, gid and everything else compared here. `None` if so, else
    /// what differs (for the spawner's own tests; the caller only sees its
    /// connection closed).
    pub fn refuses(&self, conn: &UnixStream) -> Option<String> {
        let cred = match getsockopt(conn, PeerCredentials) {
            Ok(c) => c,
            Err(e) => return Some(format!("no peer credentials: {e}")),
        };
        if cred.uid() != nix::unistd::geteuid().as_raw()
            || cred.gid() != nix::unistd::getegid().as_raw()
        {
            return Some(format!("uid {} gid {}", cred.uid(), cred.gid()));
        }
        let pidfd: OwnedFd = match lanco_proto::sys::pidfd_open(cred.pid()) {
            Ok(fd) => fd,
            Err(e) => return Some(format!("cannot pin the caller: {e}")),
        };
        let theirs = match Context::of(&cred.pid().to_string()) {
            Ok(c) => c,
            Err(e) => return Some(format!("cannot read the caller's /proc: {e}")),
        };
        if !alive(&pidfd) {
            return Some("the caller exited".into());
        }
        if theirs == *self {
            return None;
        }
        let differs = STATUS_KEYS
            .iter()
            .zip(self.status.iter().zip(&theirs.status))
            .filter(|(_, (a, b))| a != b)
            .map(|(k, _)| k.trim_end_matches(':'))
            .chain(
                NAMESPACES
                    .iter()
                    .zip(self.namespaces.iter().zip(&theirs.namespaces))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(n, _)| *n),
            )
            .chain((self.root != theirs.root).then_some("root"))
            .chain((self.label != theirs.label).then_some("label"))
            .collect::<Vec<_>>();
        Some(format!("differs in {}", differs.join(", ")))
    }
}

fn alive(pidfd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    // A pidfd polls readable once its process has exited.
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_served_by_itself() {
        let Ok(own) = Context::own() else {
            return; // the test runner itself is under seccomp
        };
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(own.refuses(&a), None);
    }

    #[test]
    fn a_different_context_is_named() {
        let Ok(mut own) = Context::own() else {
            return;
        };
        own.namespaces[2] = Some("mnt:[1]".into());
        own.label = Some(b"other".to_vec());
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(own.refuses(&a).as_deref(), Some("differs in mnt, label"));
    }
}
