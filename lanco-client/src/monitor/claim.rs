//! Claiming a task's name. The name's lock file in the namespace's sticky
//! `names/` directory says who owns the name (whoever made it first); the
//! monitor holds it with flock for its whole life, so one run per name at a
//! time. Then the task's cgroup in the member's own subtree. A `Claim`
//! dropped before `keep` gives back what it took.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;

use lanco_proto::cgroupfs::{self, Cgroup, CgroupDir};
use lanco_proto::files::{self, Dir, FileError};
use lanco_proto::layout::{self, Layout};
use lanco_proto::{Limits, NamespaceName, TaskName};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// How long a start waits for the monitor of a run that just ended to give
/// the name back.
const FINISHING: std::time::Duration = std::time::Duration::from_millis(500);

pub(super) struct Claim {
    lock: Option<Flock<File>>,
    names: Dir,
    lock_name: String,
    /// This claim made the lock file (the member's first run of the name).
    made_lock: bool,
    /// The task's cgroup in the member's subtree; `made` once created.
    pub cgroup: Cgroup,
    made: bool,
    kept: bool,
}

/// Takes `task`'s name in `ns` for the calling user. `unnamed`: a file
/// made ahead in `names/` (`Dir::create_unnamed`) to be the lock file if
/// the name has none yet.
pub(super) fn claim(
    layout: &Layout,
    ns: &NamespaceName,
    task: &TaskName,
    mut unnamed: Option<File>,
) -> Result<Claim> {
    let nsd = Dir::open(&layout.ns_state_dir(ns)).map_err(|e| match e.io_kind() {
        Some(ErrorKind::NotFound | ErrorKind::PermissionDenied) => Error::NotMember(ns.clone()),
        _ => e.into(),
    })?;
    let names = nsd.sub(layout::NAMES)?;
    let lock_name = layout::lock_name(task);
    let me = nix::unistd::geteuid().as_raw();
    let taken = |e: FileError| match names.entry(&lock_name) {
        Ok(Some(ent)) if ent.is_file() && ent.uid != me => Error::NameTaken {
            task: task.clone(),
            owner: files::user_name(ent.uid),
        },
        _ => e.into(),
    };
    // Twice: a concurrent first run of ours may create it between our tries.
    let mut opened = None;
    for _ in 0..2 {
        match names.open_read(&lock_name, me).map_err(taken)? {
            Some(f) => {
                opened = Some((f, false));
                break;
            }
            // The file made ahead, if it takes the name; else a new one
            // (which fails as the link did, if the name is taken).
            None => match unnamed
                .take()
                .and_then(|f| names.link_new(f, &lock_name).ok())
                .map_or_else(|| names.create_new(&lock_name, 0o640), Ok)
            {
                Ok(f) => {
                    opened = Some((f, true));
                    break;
                }
                Err(e) if e.io_kind() == Some(ErrorKind::AlreadyExists) => continue,
                Err(e) => return Err(taken(e)),
            },
        }
    }
    let (file, made_lock) = opened.ok_or_else(|| Error::AlreadyRunning(task.clone()))?;
    let ino = file.metadata().map_err(|e| Error::system("stat lock", e))?;
    // Held: by a run, or by the monitor of one that just ended, which gives
    // the name back once its on-exit command is over and its cgroup empty
    // and removed (the state file, which `wait` looks at, is gone before).
    // A start right after such a `wait` waits for that, briefly.
    let task_cgroup = Cgroup::new(layout.task_cgroup(ns, me, task));
    let finishing = || !matches!(task_cgroup.populated(), Ok(true));
    let t0 = std::time::Instant::now();
    let mut file = file;
    let lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => break l,
            Err((f, Errno::EWOULDBLOCK)) if t0.elapsed() < FINISHING && finishing() => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err((_, Errno::EWOULDBLOCK)) => return Err(Error::AlreadyRunning(task.clone())),
            Err((_, e)) => return Err(Error::system("flock", e)),
        }
    };
    // A failed first run removes the lock file it made: if we opened that
    // one just before, the name is no longer held by it.
    use std::os::unix::fs::MetadataExt;
    if names.entry(&lock_name)?.map(|e| e.ino) != Some(ino.ino()) {
        return Err(Error::AlreadyRunning(task.clone()));
    }
    let claim = Claim {
        lock: Some(lock),
        names,
        lock_name,
        made_lock,
        cgroup: task_cgroup,
        made: false,
        kept: false,
    };
    // A task of lanco 0.1 by that name may still run.
    if Cgroup::new(layout.legacy_task_cgroup(ns, task)).populated()? {
        return Err(Error::AlreadyRunning(task.clone()));
    }
    Ok(claim)
}

impl Claim {
    /// The task's cgroup in the member's subtree (made by lancod at
    /// admission). One that still holds processes is a running task whose
    /// monitor died; an empty one is a leftover and is made anew: if it was
    /// killed (cgroup.kill), the kernel would kill every process born into
    /// it from the monitors' cgroup.
    /// Returns an fd of it, for clone3(CLONE_INTO_CGROUP).
    pub fn make_cgroup(&mut self, task: &TaskName, limits: &Limits) -> Result<OwnedFd> {
        // Made and set up relative to the member's subtree, opened once:
        // each path walk from / is ~5 µs more here (bench/NOTES.md). Only a
        // leftover's removal goes by path.
        let cg = &self.cgroup;
        let (Some(parent), Some(name)) = (cg.path().parent(), cg.path().file_name()) else {
            return Err(Error::failed("a task cgroup without a parent"));
        };
        let name = name.to_string_lossy();
        let user = CgroupDir::open(parent)?;
        if !user.make(&name)? {
            if user.populated_of(&name)?.unwrap_or(false) {
                return Err(Error::AlreadyRunning(task.clone()));
            }
            cg.remove_tree()?;
            user.make(&name)?;
        }
        self.made = true;
        let dir = user.sub(&name)?;
        // The other members stop it through these when the monitor is gone
        // (the subtree's setgid gives the cgroup the namespace's group; on
        // kernels before 6.2 the monitor does).
        dir.take_group_of(&user)?;
        dir.share_with_group(&[cgroupfs::CGROUP_FREEZE, cgroupfs::CGROUP_KILL])?;
        // Before anything runs in it. An OOM kill takes the whole task, not
        // one process of it, wherever the memory controller is enabled.
        for (key, value) in limits.set() {
            dir.write(key.file(), &value)?;
        }
        if dir.has(cgroupfs::MEMORY_OOM_GROUP)? {
            dir.write(cgroupfs::MEMORY_OOM_GROUP, "1")?;
        }
        Ok(dir.into_fd())
    }

    /// Gives the name back (the monitor's last act, before answering stop,
    /// so a `run` right after a returned `stop` finds it free).
    pub fn release(&mut self) {
        if let Some(l) = self.lock.take() {
            let _ = l.unlock();
        }
    }

    /// The task runs: nothing is given back any more.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if self.made {
            let _ = self.cgroup.remove();
        }
        if self.made_lock {
            let _ = self.names.remove(&self.lock_name);
        }
    }
}
