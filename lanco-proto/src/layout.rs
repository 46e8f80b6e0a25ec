//! Where lanco keeps things, computed from the configuration and validated
//! names only. Nothing else in lanco joins names into paths.

use std::path::{Path, PathBuf};

use crate::name::{NamespaceName, TaskName};

/// The cgroup, below a namespace, that admitted monitors live in.
pub const MONITOR_LEAF: &str = "monitors";
const NS_PREFIX: &str = "ns-";
const TASK_PREFIX: &str = "task-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub cgroup_root: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Layout {
    pub fn ns_cgroup(&self, ns: &NamespaceName) -> PathBuf {
        self.cgroup_root.join(format!("{NS_PREFIX}{ns}"))
    }
    pub fn monitor_cgroup(&self, ns: &NamespaceName) -> PathBuf {
        self.ns_cgroup(ns).join(MONITOR_LEAF)
    }
    pub fn task_cgroup(&self, ns: &NamespaceName, task: &TaskName) -> PathBuf {
        self.ns_cgroup(ns).join(task_file(task, ""))
    }
    /// Root-owned registration records, one per namespace.
    pub fn registry_dir(&self) -> PathBuf {
        self.state_dir.join("namespaces")
    }
    pub fn registry_file(&self, ns: &NamespaceName) -> PathBuf {
        self.registry_dir().join(format!("{ns}.toml"))
    }
    /// Owner:group state directory: locks, sockets, state and exit records,
    /// accounting.
    pub fn ns_state_dir(&self, ns: &NamespaceName) -> PathBuf {
        self.state_dir.join(format!("{NS_PREFIX}{ns}"))
    }
    pub fn ns_log_dir(&self, ns: &NamespaceName) -> PathBuf {
        self.log_dir.join(format!("lanco-{ns}"))
    }
    pub fn task_log(&self, ns: &NamespaceName, task: &TaskName) -> PathBuf {
        self.ns_log_dir(ns).join(task_file(task, ".log"))
    }
    pub fn accounting_file(&self, ns: &NamespaceName) -> PathBuf {
        self.ns_state_dir(ns).join("accounting.jsonl")
    }
    /// Held (flock) by the task's monitor for as long as it lives.
    pub fn task_lock(&self, ns: &NamespaceName, task: &TaskName) -> PathBuf {
        self.ns_state_dir(ns).join(task_file(task, ".lock"))
    }
    /// The running task's state (pids, start time, command).
    pub fn task_state(&self, ns: &NamespaceName, task: &TaskName) -> PathBuf {
        self.ns_state_dir(ns).join(task_file(task, ".state.json"))
    }
    /// The last run's exit record.
    pub fn task_exit(&self, ns: &NamespaceName, task: &TaskName) -> PathBuf {
        self.ns_state_dir(ns).join(task_file(task, ".exit.json"))
    }
}

/// The monitor's control socket, relative to the namespace's state
/// directory: reach it through a directory fd, as a full path may exceed
/// the 108-byte `sun_path` limit.
pub fn task_socket_name(task: &TaskName) -> String {
    task_file(task, ".sock")
}

/// `task-NAME{suffix}`: the name of a task's cgroup (empty suffix) and of its
/// files inside the namespace's state and log directories.
pub fn task_file(task: &TaskName, suffix: &str) -> String {
    format!("{TASK_PREFIX}{task}{suffix}")
}

/// The task a cgroup directory entry stands for, if it is one.
pub fn task_of_cgroup_entry(entry: &str) -> Option<TaskName> {
    entry
        .strip_prefix(TASK_PREFIX)
        .and_then(|t| TaskName::try_from(t).ok())
}

/// The namespace a registry file (`NS.toml`) stands for, if it is one.
pub fn ns_of_registry_entry(entry: &str) -> Option<NamespaceName> {
    entry
        .strip_suffix(".toml")
        .and_then(|n| NamespaceName::try_from(n).ok())
}

/// Is `path` (already absolute) inside `root`? Lexical: both come from config.
pub fn is_within(path: &Path, root: &Path) -> bool {
    path.starts_with(root) && path != root
}

#[cfg(test)]
mod tests {
    use super::*;

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
            l.task_cgroup(&ns, &t),
            Path::new("/sys/fs/cgroup/lanco/ns-testns/task-first-task")
        );
        assert_eq!(
            l.monitor_cgroup(&ns),
            Path::new("/sys/fs/cgroup/lanco/ns-testns/monitors")
        );
        assert_eq!(
            l.task_log(&ns, &t),
            Path::new("/var/log/lanco-testns/task-first-task.log")
        );
        assert_eq!(
            l.registry_file(&ns),
            Path::new("/var/lib/lanco/namespaces/testns.toml")
        );
        assert_eq!(task_of_cgroup_entry("task-first-task"), Some(t));
        assert_eq!(task_of_cgroup_entry("monitors"), None);
        assert_eq!(task_of_cgroup_entry("task-.."), None);
    }
}
