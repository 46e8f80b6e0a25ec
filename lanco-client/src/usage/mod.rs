//! What a namespace's tasks use, for `lanco NS top` and for daemons that
//! link the library: per task, what its cgroup's interface files say (they
//! are hierarchical: the task's cgroup and every cgroup below it) and what
//! its state file says of its run; for the namespace, its own cgroup's
//! totals and ceilings (root's files, readable by members). Where the memory
//! controller is not in cgroup v2 (a hybrid host), a task's memory is its
//! processes' PSS, or RSS where PSS is not readable (another user's
//! processes). Reads only: it decides, writes and signals nothing.
//!
//! Cheap, since `top` reads every task every second (`read`: the files,
//! relative to directories opened once per sample; `memory`: the PSS
//! fallback). A sampler remembers what it found of each task, and reads
//! again only what may have changed: a state file whose inode is the same
//! is the same (monitors replace it by rename), and a task that used no
//! CPU and has the same processes has the same memory (for 10–20 s: pages
//! it shares move with other processes).

mod memory;
mod read;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::Instant;

use lanco_proto::cgroupfs::{self, CgroupDir};
use lanco_proto::files::Dir;
use lanco_proto::{layout, NamespaceName, TaskName};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::record;
use memory::PssCache;
use read::{Controllers, Memo, Reader, Scan};

/// Where a memory figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MemorySource {
    /// The memory controller's `memory.current` (cgroup v2).
    #[serde(rename = "memory.current")]
    Cgroup,
    /// The sum of the processes' proportional set sizes
    /// (`/proc/PID/smaps_rollup`: readable for one's own processes).
    #[serde(rename = "pss")]
    Pss,
    /// The sum of the processes' resident set sizes (`/proc/PID/statm`),
    /// where their PSS is not readable; pages the processes share count
    /// once per process.
    #[serde(rename = "rss")]
    Rss,
    /// The namespace's figure only: its tasks' figures are of more than one
    /// kind (each task says which).
    #[serde(rename = "mixed")]
    Mixed,
}

impl MemorySource {
    /// The source of a sum of figures from `a` and `b`.
    fn and(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) if a != b => Some(MemorySource::Mixed),
            (a, b) => a.or(b),
        }
    }
}

/// What a pids figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PidsSource {
    /// The pids controller's `pids.current`: tasks (threads) in the cgroup.
    #[serde(rename = "pids.current")]
    Cgroup,
    /// The processes listed in `cgroup.procs` (without the pids controller).
    #[serde(rename = "cgroup.procs")]
    Processes,
}

/// Where a task is in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    /// It runs (and is ready, if it has a readiness of its own).
    Running,
    /// It runs, and is not ready yet.
    Starting,
    /// It runs, and said it is stopping (sd_notify `STOPPING=1`).
    Stopping,
    /// Nothing of it runs; its monitor starts it again after a delay.
    Restarting,
    /// Nothing of it runs; its monitor waits for a task it needs.
    Waiting,
}

impl std::fmt::Display for TaskPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskPhase::Running => "running",
            TaskPhase::Starting => "starting",
            TaskPhase::Stopping => "stopping",
            TaskPhase::Restarting => "restarting",
            TaskPhase::Waiting => "waiting",
        })
    }
}

/// CPU use of a cgroup (and every cgroup below it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    /// `cpu.stat` usage_usec: CPU time since the cgroup was made.
    pub usage_usec: Option<u64>,
    /// `cpu.stat` throttled_usec: time held back by `cpu.max` (with the
    /// cpu controller only).
    pub throttled_usec: Option<u64>,
    /// Use since the previous sample, in % of one CPU; `None` on a first
    /// sample.
    pub percent: Option<f64>,
    /// The same in % of the host's CPUs.
    pub host_percent: Option<f64>,
}

/// Memory use of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryUsage {
    /// Bytes in use now.
    pub current: Option<u64>,
    /// What `current` is.
    pub source: Option<MemorySource>,
    /// `memory.peak`: the most it ever used (with the memory controller
    /// only).
    pub peak: Option<u64>,
    /// `memory.events` oom_kill: processes the OOM killer ended because of
    /// this cgroup's limits.
    pub oom_kills: Option<u64>,
}

/// Processes or tasks in a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PidsUsage {
    /// How many there are now.
    pub current: Option<u64>,
    /// What `current` counts.
    pub source: Option<PidsSource>,
    /// `pids.events` max: forks refused by a pids limit.
    pub forks_refused: Option<u64>,
}

/// A cgroup's limits: a task's own, or the namespace's ceilings. `None`
/// where there is none (`max`) or its controller is not enabled.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    /// `memory.max`, bytes.
    pub memory_max: Option<u64>,
    /// `memory.high`, bytes.
    pub memory_high: Option<u64>,
    /// `pids.max`.
    pub pids_max: Option<u64>,
    /// `cpu.max` as CPUs (`50000 100000` → 0.5).
    pub cpu_max: Option<f64>,
    /// `cpu.weight`.
    pub cpu_weight: Option<u64>,
    /// `io.weight`'s default.
    pub io_weight: Option<u64>,
}

/// One task as [`UsageSampler::sample`] finds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskUsage {
    /// The task.
    pub task: TaskName,
    /// The member whose subtree holds it: their user name, or the uid.
    pub user: String,
    /// Their uid.
    pub uid: u32,
    /// Where it is in its run.
    pub state: TaskPhase,
    /// The task it waits for ([`TaskPhase::Waiting`]).
    pub waiting_for: Option<TaskName>,
    /// When this run's command was exec'd (UNIX seconds), from its state
    /// file; `None` without one (a monitor that died).
    pub started: Option<i64>,
    /// Seconds since then.
    pub uptime_secs: Option<u64>,
    /// Restarts under its monitor so far (0 for a run without a restart
    /// policy); `None` without a state file.
    pub restarts: Option<u32>,
    /// Its CPU use.
    pub cpu: CpuUsage,
    /// Its memory.
    pub memory: MemoryUsage,
    /// Its processes.
    pub pids: PidsUsage,
    /// Its own limits (the namespace's ceilings bind it too).
    pub limits: Limits,
}

/// The namespace's totals: its cgroup's own (hierarchical) figures, which
/// include its members' monitors; where a controller is missing, the sums
/// of the tasks' figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageTotals {
    /// Tasks listed.
    pub tasks: usize,
    /// CPU.
    pub cpu: CpuUsage,
    /// Memory.
    pub memory: MemoryUsage,
    /// Processes.
    pub pids: PidsUsage,
}

/// One sample of a namespace ([`UsageSampler::sample`], `lanco NS top
/// --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamespaceUsage {
    /// The namespace.
    pub namespace: NamespaceName,
    /// When it was taken, Unix time in milliseconds.
    pub time_ms: i64,
    /// The time the CPU percentages cover (since the previous sample);
    /// `None` on a first sample.
    pub interval_secs: Option<f64>,
    /// CPUs this process may run on (as `nproc` counts them): what
    /// `host_percent` is relative to.
    pub host_cpus: u32,
    /// Where the memory figures come from.
    pub memory_source: Option<MemorySource>,
    /// The namespace's limits.
    pub ceilings: Limits,
    /// Its totals.
    pub totals: UsageTotals,
    /// Its tasks that run or are between two runs, by name.
    pub tasks: Vec<TaskUsage>,
}

/// Samples a namespace's usage again and again, keeping what CPU
/// percentages need (the previous sample's counters) and what spares
/// reading again what has not changed. One per namespace watched.
#[derive(Debug, Default)]
pub struct UsageSampler {
    /// When the previous sample was taken, and the namespace's CPU then.
    last: Option<(Instant, Option<u64>)>,
    /// What the previous sample found of each task, by (uid, task).
    memos: HashMap<(u32, TaskName), Memo>,
    pss: PssCache,
    users: HashMap<u32, String>,
}

impl Namespace {
    /// One sample of the namespace's usage. Its CPU percentages are
    /// `None`: they need two samples ([`UsageSampler`]).
    pub fn usage(&self) -> Result<NamespaceUsage> {
        UsageSampler::new().sample(self)
    }
}

impl UsageSampler {
    /// A sampler with no previous sample.
    pub fn new() -> Self {
        Self::default()
    }

    /// The namespace's usage now, with CPU percentages over the time since
    /// this sampler's previous sample (of the same namespace).
    pub fn sample(&mut self, ns: &Namespace) -> Result<NamespaceUsage> {
        let at = Instant::now();
        let now = crate::time::now_millis();
        let ns_dir =
            CgroupDir::open(&ns.layout().ns_cgroup(ns.name())).map_err(|e| match e.io_kind() {
                Some(ErrorKind::PermissionDenied | ErrorKind::NotFound) => {
                    Error::NotMember(ns.name().clone())
                }
                _ => e.into(),
            })?;
        let mut buf = Vec::new();
        let mut reader = Reader::of(&ns_dir, &mut buf);
        let controllers = Controllers::parse(reader.text(cgroupfs::CGROUP_CONTROLLERS));
        let ns_figures = reader.figures(controllers);
        // What the namespace's own cgroup hands down to 0.1 tasks below it.
        let legacy_controllers = Controllers::parse(reader.text(cgroupfs::CGROUP_SUBTREE_CONTROL));
        let entries = ns_dir.children()?;
        let mut scan = Scan::new(buf, &self.memos, &mut self.pss, now / 1000);
        for entry in &entries {
            if let Some(uid) = layout::uid_of_user_entry(entry) {
                // Another member's subtree may be closed to the caller.
                let Ok(member) = ns_dir.sub(entry) else {
                    continue;
                };
                let state = Dir::open(&ns.layout().user_state_dir(ns.name(), uid)).ok();
                let mut r = Reader::of(&member, &mut scan.buf);
                let c = Controllers::parse(r.text(cgroupfs::CGROUP_SUBTREE_CONTROL));
                for name in &member.children().unwrap_or_default() {
                    if let Some(task) = layout::task_of_cgroup_entry(name) {
                        scan.task(&member, name, task, Some(uid), state.as_ref(), c);
                    }
                }
            } else if let Some(task) = layout::task_of_cgroup_entry(entry) {
                // A task of lanco 0.1, straight below the namespace: its
                // owner is its cgroup's.
                let state = Dir::open(&ns.layout().legacy_state_dir(ns.name())).ok();
                scan.task(
                    &ns_dir,
                    entry,
                    task,
                    None,
                    state.as_ref(),
                    legacy_controllers,
                );
            }
        }
        let found = scan.finish();
        let host_cpus = host_cpus();
        let interval = self.last.map(|(t, _)| at.duration_since(t));
        let percent = |delta: u64| {
            let secs = interval?.as_secs_f64();
            (secs > 0.0).then(|| delta as f64 / 1e4 / secs)
        };
        let mut tasks = Vec::with_capacity(found.len());
        let mut memos = HashMap::with_capacity(found.len());
        for (mut t, memo) in found {
            t.user = self
                .users
                .entry(t.uid)
                .or_insert_with(|| record::user_name(t.uid))
                .clone();
            let key = (t.uid, t.task.clone());
            if let Some(usec) = t.cpu.usage_usec {
                // A task first seen, or whose cgroup was made anew since:
                // all its time is since then.
                let before = self
                    .memos
                    .get(&key)
                    .filter(|m| m.id == memo.id)
                    .and_then(|m| m.usage_usec)
                    .unwrap_or(0);
                t.cpu.percent = percent(usec.saturating_sub(before));
                t.cpu.host_percent = t.cpu.percent.map(|p| p / f64::from(host_cpus));
            }
            memos.insert(key, memo);
            tasks.push(t);
        }
        self.memos = memos;
        let mut totals = UsageTotals {
            tasks: tasks.len(),
            cpu: ns_figures.cpu,
            memory: ns_figures.memory,
            pids: ns_figures.pids,
        };
        // Without a controller, the namespace's figure is the sum of its
        // tasks' (its members' monitors left out).
        if totals.memory.current.is_none() && !tasks.is_empty() {
            totals.memory.current = Some(tasks.iter().filter_map(|t| t.memory.current).sum());
            totals.memory.source = tasks
                .iter()
                .fold(None, |s, t| MemorySource::and(s, t.memory.source));
        }
        if totals.pids.current.is_none() {
            totals.pids.current = Some(tasks.iter().filter_map(|t| t.pids.current).sum());
            totals.pids.source = Some(PidsSource::Processes);
        }
        if let (Some(now), Some((_, Some(before)))) = (totals.cpu.usage_usec, self.last) {
            totals.cpu.percent = percent(now.saturating_sub(before));
            totals.cpu.host_percent = totals.cpu.percent.map(|p| p / f64::from(host_cpus));
        }
        self.last = Some((at, totals.cpu.usage_usec));
        Ok(NamespaceUsage {
            namespace: ns.name().clone(),
            time_ms: now,
            interval_secs: interval.map(|d| d.as_secs_f64()),
            host_cpus,
            memory_source: totals.memory.source,
            ceilings: ns_figures.limits,
            totals,
            tasks,
        })
    }
}

/// The CPUs this process may run on (`nproc`); at least 1.
fn host_cpus() -> u32 {
    use nix::sched::{sched_getaffinity, CpuSet};
    let n = sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .unwrap_or(1);
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_combine() {
        use MemorySource::*;
        assert_eq!(MemorySource::and(None, Some(Pss)), Some(Pss));
        assert_eq!(MemorySource::and(Some(Pss), Some(Pss)), Some(Pss));
        assert_eq!(MemorySource::and(Some(Pss), Some(Rss)), Some(Mixed));
        assert_eq!(MemorySource::and(Some(Mixed), Some(Pss)), Some(Mixed));
        assert!(host_cpus() >= 1);
    }
}
