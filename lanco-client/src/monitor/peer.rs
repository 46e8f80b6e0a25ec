//! Whom a spawner serves. A monitor the spawner forks is a copy of the
//! spawner, not of the caller: it has the spawner's credentials,
//! capabilities, namespaces, root directory, security label, seccomp state,
//! no_new_privs flag, scheduling policy, OOM score adjustment, I/O priority
//! and personality, and passes them to the task. So the spawner serves a
//! caller only if each of those is the same as its own; anything else
//! (another user, the same user in another mount namespace, under a seccomp
//! filter or with no_new_privs set by its service manager, a set-gid
//! program's group, SCHED_IDLE) is closed without an answer and takes the
//! cold path, where the monitor is the caller's own child and lancod
//! decides. The caller's resource limits, nice value and CPUs are read here
//! too, for the monitor to take on (inherit.rs). Everything comes from the
//! kernel's view of the caller, nothing from what it sends.
//!
//! The caller is the process that connected, pinned by SO_PEERPIDFD (Linux
//! 6.5; without it nobody is served): read from /proc/PID, then the pidfd
//! must still show it alive, so PID was not reused in between. Two flags no
//! other process can read, securebits and memory-deny-write-execute, the
//! client checks on itself (start.rs) and the spawner on itself (below).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use lanco_proto::cgroupfs::{read_small_bytes, read_small_text};
use nix::sys::socket::{
    getsockopt,
    sockopt::{PeerCredentials, PeerPidfd},
};

use crate::inherit::Inherited;
use crate::sys;

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
    /// Scheduling policy and priority, I/O priority, OOM score adjustment
    /// and personality.
    sched: Option<(i32, i32)>,
    ioprio: Option<i64>,
    oom_score_adj: Option<String>,
    personality: Option<String>,
}

impl Context {
    /// This process's. A spawner under a seccomp filter serves nobody: two
    /// filters cannot be compared.
    pub fn own() -> std::io::Result<Context> {
        let c = Context::of(std::process::id() as i32)?;
        if c.status_value("Seccomp:") != Some("0") {
            return Err(std::io::Error::other("runs under a seccomp filter"));
        }
        if sys::own_secure_flags() != (0, 0) {
            return Err(std::io::Error::other(
                "runs with securebits or memory-deny-write-execute",
            ));
        }
        Ok(c)
    }

    fn of(pid: i32) -> std::io::Result<Context> {
        use nix::fcntl::{openat, readlinkat, OFlag, AT_FDCWD};
        use nix::sys::stat::Mode;
        // /proc/PID and its ns/ opened once: each name below is then one
        // step from there, not a walk from / through /proc and the pid.
        let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = openat(
            AT_FDCWD,
            format!("/proc/{pid}").as_str(),
            dir_flags,
            Mode::empty(),
        )?;
        let ns = openat(&dir, "ns", dir_flags, Mode::empty())?;
        // One read each (procfs files have no size for read_to_string's
        // estimate, so it would read them 32 bytes first, doubling).
        let open = |name: &str| -> std::io::Result<std::fs::File> {
            Ok(openat(
                &dir,
                name,
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?
            .into())
        };
        let read = |name: &str| open(name).and_then(|f| read_small_bytes(&f));
        let text = |name: &str| open(name).and_then(|f| read_small_text(&f));
        let status = text("status")?;
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
                readlinkat(&ns, *n)
                    .ok()
                    .map(|l| l.to_string_lossy().into_owned())
            })
            .collect();
        // `root` is a link to the process's root directory: followed.
        let root = nix::sys::stat::fstatat(&dir, "root", nix::fcntl::AtFlags::empty())?;
        Ok(Context {
            status,
            namespaces,
            root: (root.st_dev, root.st_ino),
            // Bytes: a label need not be UTF-8, and two that are not must
            // still compare unequal.
            label: read("attr/current").ok(),
            sched: sys::sched_of(pid).ok(),
            ioprio: sys::ioprio_of(pid).ok(),
            oom_score_adj: text("oom_score_adj").ok(),
            personality: text("personality").ok(),
        })
    }

    /// Reads this process's own as `admit` will read a caller's, for a
    /// standby to do while it waits (spawner.rs): a fork shares its
    /// parent's pages until it writes one, and maps the program's code as
    /// it first runs it, a page fault each time (17 per warm start, 6 after
    /// this; bench/NOTES.md). Taken now, they keep no caller waiting, and
    /// cost no memory: the check writes the same pages again.
    pub fn rehearse(&self) {
        let pid = std::process::id() as i32;
        std::hint::black_box((Context::of(pid).ok(), Inherited::of(pid).ok()));
    }

    fn status_value(&self, key: &str) -> Option<&str> {
        let i = STATUS_KEYS.iter().position(|k| *k == key)?;
        self.status[i].as_deref()
    }

    /// Whether the process at the other end of `conn` may be served: the
    /// same uid, gid and everything else compared here. If so, its limits,
    /// nice value and CPUs; else what differs (for the spawner's own tests;
    /// the caller only sees its connection closed).
    pub fn admit(&self, conn: &UnixStream) -> Result<Inherited, String> {
        let cred =
            getsockopt(conn, PeerCredentials).map_err(|e| format!("no peer credentials: {e}"))?;
        if cred.uid() != nix::unistd::geteuid().as_raw()
            || cred.gid() != nix::unistd::getegid().as_raw()
        {
            return Err(format!("uid {} gid {}", cred.uid(), cred.gid()));
        }
        let pidfd: OwnedFd = getsockopt(conn, PeerPidfd)
            .map_err(|e| format!("cannot pin the caller (SO_PEERPIDFD): {e}"))?;
        let pid = cred.pid();
        let theirs =
            Context::of(pid).map_err(|e| format!("cannot read the caller's /proc: {e}"))?;
        let inherited = Inherited::of(pid)?;
        if !lanco_proto::sys::pidfd_alive(pidfd.as_fd()) {
            return Err("the caller exited".into());
        }
        if theirs == *self {
            return Ok(inherited);
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
            .chain((self.sched != theirs.sched).then_some("scheduling policy"))
            .chain((self.ioprio != theirs.ioprio).then_some("I/O priority"))
            .chain((self.oom_score_adj != theirs.oom_score_adj).then_some("oom_score_adj"))
            .chain((self.personality != theirs.personality).then_some("personality"))
            .collect::<Vec<_>>();
        Err(format!("differs in {}", differs.join(", ")))
    }
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
        assert_eq!(own.admit(&a).map(drop), Ok(()));
    }

    #[test]
    fn a_different_context_is_named() {
        let Ok(mut own) = Context::own() else {
            return;
        };
        own.namespaces[2] = Some("mnt:[1]".into());
        own.label = Some(b"other".to_vec());
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(own.admit(&a).unwrap_err(), "differs in mnt, label");
    }
}
