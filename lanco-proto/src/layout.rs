//! Where lanco keeps things, computed from the configuration and validated
//! names only. Nothing else in lanco joins names into paths. The owners and
//! modes of everything here are in docs/DESIGN.md ("Layout").
//!
//! ```text
//! <cgroup root>/ns-NS/user-UID/{monitors, task-NAME}     cgroups
//! <state_dir>/namespaces/NS.toml                          registry (root)
//! <state_dir>/ns/NS/names/task-NAME.lock                  who owns a name
//! <state_dir>/ns/NS/user-UID/task-NAME.{state,exit}.json  a member's records
//! <state_dir>/ns/NS/user-UID/spawner.{sock,lock}          its warm spawner
//! <state_dir>/ns/NS/user-UID/defs.toml                    its task definitions
//! <state_dir>/ns/NS/user-UID/accounting.jsonl{,.1,…}       its finished runs
//! <state_dir>/billing/usage.jsonl{,.1,…}                  root's usage samples
//! <log_dir>/lanco-NS/task-NAME.log                        task output
//! ```

use std::path::PathBuf;

use crate::cgroupfs::{Cgroup, CgroupError};
use crate::name::{NamespaceName, TaskName};

/// The cgroup, below a member's subtree, that its monitors live in.
pub const MONITOR_LEAF: &str = "monitors";
/// Each member's journal of finished runs, in its state directory; its
/// rotated parts are [`rotated_part`]`(ACCOUNTING, N)`.
pub const ACCOUNTING: &str = "accounting.jsonl";
/// Held (flock) by whoever appends to or rotates the member's journal; 0600
/// so that no other member can open it, and so none can hold it.
pub const ACCOUNTING_LOCK: &str = "accounting.lock";
/// Root's journal of usage samples, in [`Layout::billing_dir`].
pub const BILLING_JOURNAL: &str = "usage.jsonl";
/// Where names are claimed (sticky, group-writable).
pub const NAMES: &str = "names";
/// A member's warm spawner's socket (0600) and the lock it holds while it
/// lives (one spawner per member and namespace), in its state directory.
/// Not `task-*` names, so never a task's.
pub const SPAWNER_SOCKET: &str = "spawner.sock";
pub const SPAWNER_LOCK: &str = "spawner.lock";
/// A member's task definitions (0640), in its state directory.
pub const DEFINITIONS: &str = "defs.toml";
/// In a member's state directory: its monitors' marks ([`mark_name`]).
pub const MARKS: &str = "marks";
const NS_PREFIX: &str = "ns-";
const USER_PREFIX: &str = "user-";
const TASK_PREFIX: &str = "task-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub cgroup_root: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Layout {
    /// The layout `config` describes, with its cgroup root resolved to
    /// `cgroup_root` (`cgroupfs::resolve_root`).
    pub fn of(config: &crate::Config, cgroup_root: PathBuf) -> Layout {
        Layout {
            cgroup_root,
            state_dir: config.state_dir.clone(),
            log_dir: config.log_dir.clone(),
        }
    }

    pub fn ns_cgroup(&self, ns: &NamespaceName) -> PathBuf {
        self.cgroup_root.join(format!("{NS_PREFIX}{ns}"))
    }
    /// A member's delegated subtree.
    pub fn user_cgroup(&self, ns: &NamespaceName, uid: u32) -> PathBuf {
        self.ns_cgroup(ns).join(user_entry(uid))
    }
    pub fn monitor_cgroup(&self, ns: &NamespaceName, uid: u32) -> PathBuf {
        self.user_cgroup(ns, uid).join(MONITOR_LEAF)
    }
    pub fn task_cgroup(&self, ns: &NamespaceName, uid: u32, task: &TaskName) -> PathBuf {
        self.user_cgroup(ns, uid).join(task_file(task, ""))
    }
    /// lanco 0.1 put tasks and monitors straight below the namespace; such
    /// tasks are still found, checked and stopped until they end.
    pub fn legacy_task_cgroup(&self, ns: &NamespaceName, task: &TaskName) -> PathBuf {
        self.ns_cgroup(ns).join(task_file(task, ""))
    }
    pub fn legacy_monitor_cgroup(&self, ns: &NamespaceName) -> PathBuf {
        self.ns_cgroup(ns).join(MONITOR_LEAF)
    }

    /// Root-owned registration records, one per namespace.
    pub fn registry_dir(&self) -> PathBuf {
        self.state_dir.join("namespaces")
    }
    pub fn registry_file(&self, ns: &NamespaceName) -> PathBuf {
        self.registry_dir().join(registry_entry(ns))
    }
    /// Root-only: records and logs of destroyed namespaces. No namespace
    /// name can reach these (`ns/NS`, `lanco-NS`).
    pub fn kept_state_dir(&self) -> PathBuf {
        self.state_dir.join("destroyed")
    }
    pub fn kept_log_dir(&self) -> PathBuf {
        self.log_dir.join("lanco.destroyed")
    }
    /// Parent of every namespace's state directory (root, 0711).
    pub fn ns_state_root(&self) -> PathBuf {
        self.state_dir.join("ns")
    }
    /// root:group, 0750: `names/` and one directory per member.
    pub fn ns_state_dir(&self, ns: &NamespaceName) -> PathBuf {
        self.ns_state_root().join(ns.as_str())
    }
    pub fn user_state_dir(&self, ns: &NamespaceName, uid: u32) -> PathBuf {
        self.ns_state_dir(ns).join(user_entry(uid))
    }
    /// lanco 0.1's group-writable state directory, left to 0.1 monitors
    /// until they end.
    pub fn legacy_state_dir(&self, ns: &NamespaceName) -> PathBuf {
        self.state_dir.join(format!("{NS_PREFIX}{ns}"))
    }
    /// Root's billing journal's directory (root:admin_group 2750).
    pub fn billing_dir(&self) -> PathBuf {
        self.state_dir.join("billing")
    }
    pub fn ns_log_dir(&self, ns: &NamespaceName) -> PathBuf {
        self.log_dir.join(format!("lanco-{ns}"))
    }
    pub fn task_log(&self, ns: &NamespaceName, task: &TaskName) -> PathBuf {
        self.ns_log_dir(ns).join(log_name(task))
    }
}

/// `user-UID`: a member's cgroup subtree and state directory.
pub fn user_entry(uid: u32) -> String {
    format!("{USER_PREFIX}{uid}")
}

/// The member a `user-UID` entry stands for.
pub fn uid_of_user_entry(entry: &str) -> Option<u32> {
    let n = entry.strip_prefix(USER_PREFIX)?;
    // Canonical decimal only, so one uid has one directory.
    (n == n.parse::<u32>().ok()?.to_string()).then(|| n.parse().ok())?
}

/// `task-NAME{suffix}`: the name of a task's cgroup (empty suffix) and of its
/// files inside the state and log directories.
pub fn task_file(task: &TaskName, suffix: &str) -> String {
    format!("{TASK_PREFIX}{task}{suffix}")
}
/// In `names/`: held (flock) by the task's monitor while it lives; its owner
/// owns the name.
pub fn lock_name(task: &TaskName) -> String {
    task_file(task, ".lock")
}
/// The running task's state (pids, start time, command).
pub fn state_name(task: &TaskName) -> String {
    task_file(task, ".state.json")
}
/// In `MARKS/` of a member's state directory, while a run's state says
/// more than "it runs": it takes part in dependencies (it has some, or was
/// pulled in) or says when it is ready. Transitions and `ls` read only
/// these runs' state files, so a namespace of plain tasks costs them the
/// listing of an empty or absent directory per member.
pub fn mark_name(task: &TaskName) -> String {
    task_file(task, "")
}
/// The last run's exit record.
pub fn exit_name(task: &TaskName) -> String {
    task_file(task, ".exit.json")
}
/// The monitor's control socket. Reached through a directory fd, as a full
/// path may exceed the 108-byte `sun_path` limit.
pub fn socket_name(task: &TaskName) -> String {
    task_file(task, ".sock")
}
pub fn log_name(task: &TaskName) -> String {
    task_file(task, ".log")
}
/// A journal's rotated part `N` (1 = the newest): `BASE.N`; part 0 is
/// `BASE` itself, the one appended to.
pub fn rotated_part(base: &str, n: u32) -> String {
    if n == 0 {
        base.to_owned()
    } else {
        format!("{base}.{n}")
    }
}
/// Which rotated part of `base` a directory entry is (canonical decimal, at
/// least 1), if it is one.
pub fn part_of_entry(base: &str, entry: &str) -> Option<u32> {
    let n = entry.strip_prefix(base)?.strip_prefix('.')?;
    let v = n.parse::<u32>().ok().filter(|v| *v > 0)?;
    (n == v.to_string()).then_some(v)
}
pub fn registry_entry(ns: &NamespaceName) -> String {
    format!("{ns}.toml")
}

/// The task a cgroup directory entry stands for, if it is one.
pub fn task_of_cgroup_entry(entry: &str) -> Option<TaskName> {
    entry
        .strip_prefix(TASK_PREFIX)
        .and_then(|t| TaskName::try_from(t).ok())
}

/// The task a lock file of `names/` (`task-NAME.lock`) claims, if it is one.
pub fn task_of_lock_entry(entry: &str) -> Option<TaskName> {
    task_of_cgroup_entry(entry.strip_suffix(".lock")?)
}

/// The namespace a log directory (`lanco-NS` in `log_dir`) is of, if it is
/// one (not `lanco.destroyed`, nor another program's `lanco-…` file).
pub fn ns_of_log_entry(entry: &str) -> Option<NamespaceName> {
    NamespaceName::try_from(entry.strip_prefix("lanco-")?).ok()
}

/// The task a mark (`MARKS/task-NAME`) is of, if it is one.
pub fn task_of_mark_entry(entry: &str) -> Option<TaskName> {
    task_of_cgroup_entry(entry)
}

/// The namespace a registry file (`NS.toml`) stands for, if it is one.
pub fn ns_of_registry_entry(entry: &str) -> Option<NamespaceName> {
    entry
        .strip_suffix(".toml")
        .and_then(|n| NamespaceName::try_from(n).ok())
}

/// A task's cgroup as found in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCgroup {
    pub task: TaskName,
    /// The member whose subtree holds it; `None` for a 0.1 task.
    pub uid: Option<u32>,
    pub cgroup: Cgroup,
}

/// Every member's subtree of a namespace: (uid, cgroup).
pub fn user_cgroups(
    layout: &Layout,
    ns: &NamespaceName,
) -> Result<Vec<(u32, Cgroup)>, CgroupError> {
    Ok(Cgroup::new(layout.ns_cgroup(ns))
        .children()?
        .into_iter()
        .filter_map(|cg| {
            let uid = cg
                .path()
                .file_name()?
                .to_str()
                .and_then(uid_of_user_entry)?;
            Some((uid, cg))
        })
        .collect())
}

/// Every task cgroup of a namespace, running or not, sorted by name: those
/// in members' subtrees and 0.1 ones straight below the namespace.
pub fn task_cgroups(layout: &Layout, ns: &NamespaceName) -> Result<Vec<TaskCgroup>, CgroupError> {
    let mut out = Vec::new();
    let tasks_in = |parent: &Cgroup, uid: Option<u32>, out: &mut Vec<TaskCgroup>| {
        for cg in parent.children()? {
            let entry = cg.path().file_name().and_then(|n| n.to_str());
            if let Some(task) = entry.and_then(task_of_cgroup_entry) {
                out.push(TaskCgroup {
                    task,
                    uid,
                    cgroup: cg,
                });
            }
        }
        Ok::<_, CgroupError>(())
    };
    tasks_in(&Cgroup::new(layout.ns_cgroup(ns)), None, &mut out)?;
    for (uid, cg) in user_cgroups(layout, ns)? {
        match tasks_in(&cg, Some(uid), &mut out) {
            // Another member's subtree may be closed to the caller.
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::PermissionDenied) => {}
            r => r?,
        }
    }
    out.sort_by(|a, b| a.task.cmp(&b.task));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn names_read_back_from_entries() {
        let l = Layout {
            cgroup_root: "/r".into(),
            state_dir: "/s".into(),
            log_dir: "/l".into(),
        };
        let ns = NamespaceName::try_from("web").unwrap();
        let t = TaskName::try_from("db.1").unwrap();
        let log_dir = l.ns_log_dir(&ns);
        let entry = log_dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(ns_of_log_entry(entry), Some(ns));
        assert_eq!(ns_of_log_entry("lanco.destroyed"), None);
        assert_eq!(task_of_lock_entry(&lock_name(&t)), Some(t));
        assert_eq!(task_of_lock_entry("task-x.state.json"), None);
    }

    #[test]
    fn paths() {
        let l = Layout {
            cgroup_root: "/sys/fs/cgroup/lanco".into(),
            state_dir: "/var/lib/lanco".into(),
            log_dir: "/var/log".into(),
        };
        let ns = NamespaceName::try_from("testns").unwrap();
        let t = TaskName::try_from("first-task").unwrap();
        assert_eq!(
            l.task_cgroup(&ns, 1001, &t),
            Path::new("/sys/fs/cgroup/lanco/ns-testns/user-1001/task-first-task")
        );
        assert_eq!(
            l.monitor_cgroup(&ns, 1001),
            Path::new("/sys/fs/cgroup/lanco/ns-testns/user-1001/monitors")
        );
        assert_eq!(
            l.task_log(&ns, &t),
            Path::new("/var/log/lanco-testns/task-first-task.log")
        );
        assert_eq!(
            l.user_state_dir(&ns, 7),
            Path::new("/var/lib/lanco/ns/testns/user-7")
        );
        assert_eq!(
            l.registry_file(&ns),
            Path::new("/var/lib/lanco/namespaces/testns.toml")
        );
        assert_eq!(
            task_of_lock_entry("task-first-task.lock").as_ref(),
            Some(&t)
        );
        assert_eq!(task_of_lock_entry("task-first-task"), None);
        assert_eq!(task_of_cgroup_entry("task-first-task"), Some(t));
        assert_eq!(task_of_cgroup_entry("monitors"), None);
        assert_eq!(task_of_cgroup_entry("task-.."), None);
        assert_eq!(uid_of_user_entry("user-1001"), Some(1001));
        for bad in [
            "user-",
            "user-01",
            "user-+1",
            "user-1x",
            "monitors",
            "user-99999999999",
        ] {
            assert_eq!(uid_of_user_entry(bad), None, "{bad}");
        }
    }

    #[test]
    fn rotated_parts() {
        assert_eq!(rotated_part(ACCOUNTING, 0), "accounting.jsonl");
        assert_eq!(rotated_part(ACCOUNTING, 3), "accounting.jsonl.3");
        assert_eq!(part_of_entry(ACCOUNTING, "accounting.jsonl.12"), Some(12));
        for bad in [
            "accounting.jsonl",
            "accounting.jsonl.",
            "accounting.jsonl.0",
            "accounting.jsonl.01",
            "accounting.jsonl.+1",
            "accounting.jsonl.1.tmp",
            ".accounting.jsonl.1",
            "accounting.jsonl1",
        ] {
            assert_eq!(part_of_entry(ACCOUNTING, bad), None, "{bad}");
        }
    }
}
