//! What a namespace's tasks use, for `lanco NS top` and for daemons that
//! link the library: per task, what its cgroup's interface files say (they
//! are hierarchical: the task's cgroup and every cgroup below it) and what
//! its state file says of its run; for the namespace, its own cgroup's
//! totals and ceilings (root's files, readable by members). Where the memory
//! controller is not in cgroup v2 (a hybrid host), a task's memory is its
//! processes' PSS, or RSS where PSS is not readable (another user's
//! processes). Reads only: it decides, writes and signals nothing.
//!
//! Cheap by construction, since `top` reads every task every second: the
//! namespace's and each member's cgroup directories are opened once per
//! sample and every file is opened relative to them; the interface files of
//! a controller that is not enabled are not tried; PSS (a walk of the
//! process's page tables in the kernel, ~40 µs for a `sleep`) is read again
//! only when the process's `statm` changed or the figure is 10–20 s old.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::{self, CgroupDir};
use lanco_proto::files::Dir;
use lanco_proto::{layout, NamespaceName, TaskName};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::namespace::{read_proc, Namespace};
use crate::record::{self, TaskState};

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
    /// How `top` names it.
    pub fn describe(self) -> &'static str {
        match self {
            MemorySource::Cgroup => "memory.current",
            MemorySource::Pss => "PSS",
            MemorySource::Rss => "RSS",
            MemorySource::Mixed => "PSS (own tasks) and RSS (others')",
        }
    }

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
/// percentages need (the previous sample's counters) and what makes PSS
/// cheap to read again. One per namespace watched.
#[derive(Debug, Default)]
pub struct UsageSampler {
    last: Option<Last>,
    pss: PssCache,
    users: HashMap<u32, String>,
}

/// The counters of the previous sample.
#[derive(Debug)]
struct Last {
    at: Instant,
    ns_usec: Option<u64>,
    /// (uid, task) → (cgroup id, usage_usec).
    tasks: HashMap<(u32, TaskName), (u64, u64)>,
}

/// The controllers enabled in a cgroup: which interface files to read.
#[derive(Debug, Clone, Copy, Default)]
struct Controllers {
    cpu: bool,
    memory: bool,
    pids: bool,
    io: bool,
}

impl Controllers {
    /// From `cgroup.controllers` or a parent's `cgroup.subtree_control`.
    fn parse(text: &str) -> Self {
        let mut c = Controllers::default();
        for word in text.split_whitespace() {
            match word {
                "cpu" => c.cpu = true,
                "memory" => c.memory = true,
                "pids" => c.pids = true,
                "io" => c.io = true,
                _ => {}
            }
        }
        c
    }
}

/// What one cgroup's interface files say.
#[derive(Debug, Default)]
struct Figures {
    cpu: CpuUsage,
    memory: MemoryUsage,
    pids: PidsUsage,
    limits: Limits,
}

/// A cgroup directory and scratch space to read its files into; each
/// figure is `None` if its file is absent or unreadable (a cgroup removed
/// meanwhile).
struct Reader<'a> {
    dir: &'a CgroupDir,
    buf: &'a mut Vec<u8>,
}

impl Reader<'_> {
    fn text(&mut self, file: &str) -> Option<&str> {
        let n = self.dir.read_file(file, self.buf).ok().flatten()?;
        std::str::from_utf8(&self.buf[..n]).ok()
    }

    fn u64(&mut self, file: &str) -> Option<u64> {
        self.text(file)?.trim().parse().ok()
    }

    fn limit(&mut self, file: &str) -> Option<u64> {
        cgroupfs::parse_limit(self.text(file)?).ok().flatten()
    }

    fn keyed(&mut self, file: &str, key: &str) -> Option<u64> {
        cgroupfs::parse_keyed(self.text(file)?, key)
    }

    /// Every figure of the cgroup that its enabled controllers give.
    fn figures(&mut self, c: Controllers) -> Figures {
        let mut f = Figures::default();
        // cpu.stat is a core file; throttled_usec is in it with the cpu
        // controller only.
        if let Some(text) = self.text(cgroupfs::CPU_STAT) {
            f.cpu.usage_usec = cgroupfs::parse_keyed(text, "usage_usec");
            f.cpu.throttled_usec = cgroupfs::parse_keyed(text, "throttled_usec");
        }
        if c.cpu {
            f.limits.cpu_max = self
                .text(cgroupfs::CPU_MAX)
                .and_then(cgroupfs::parse_cpu_max);
            f.limits.cpu_weight = self.u64(cgroupfs::CPU_WEIGHT);
        }
        if c.memory {
            f.memory.current = self.u64(cgroupfs::MEMORY_CURRENT);
            f.memory.source = f.memory.current.map(|_| MemorySource::Cgroup);
            f.memory.peak = self.u64(cgroupfs::MEMORY_PEAK);
            f.memory.oom_kills = self.keyed(cgroupfs::MEMORY_EVENTS, "oom_kill");
            f.limits.memory_max = self.limit(cgroupfs::MEMORY_MAX);
            f.limits.memory_high = self.limit(cgroupfs::MEMORY_HIGH);
        }
        if c.pids {
            f.pids.current = self.u64(cgroupfs::PIDS_CURRENT);
            f.pids.source = f.pids.current.map(|_| PidsSource::Cgroup);
            f.pids.forks_refused = self.keyed(cgroupfs::PIDS_EVENTS, "max");
            f.limits.pids_max = self.limit(cgroupfs::PIDS_MAX);
        }
        if c.io {
            f.limits.io_weight = self.keyed(cgroupfs::IO_WEIGHT, "default");
        }
        f
    }
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
        let denied = || Error::NotMember(ns.name().clone());
        let ns_dir =
            CgroupDir::open(&ns.layout().ns_cgroup(ns.name())).map_err(|e| match e.io_kind() {
                Some(ErrorKind::PermissionDenied | ErrorKind::NotFound) => denied(),
                _ => e.into(),
            })?;
        let mut buf = Vec::new();
        let mut reader = Reader {
            dir: &ns_dir,
            buf: &mut buf,
        };
        let ns_controllers =
            Controllers::parse(reader.text(cgroupfs::CGROUP_CONTROLLERS).unwrap_or(""));
        let ns_figures = reader.figures(ns_controllers);
        // What the namespace's own cgroup hands down to 0.1 tasks below it.
        let legacy_controllers =
            Controllers::parse(reader.text(cgroupfs::CGROUP_SUBTREE_CONTROL).unwrap_or(""));
        let entries = ns_dir.children()?;
        let proc_dir = fs::File::open("/proc").ok();
        let mut scan = Scan {
            buf,
            proc_dir: proc_dir.as_ref(),
            pss: &mut self.pss,
            now_secs: now / 1000,
            tasks: Vec::new(),
            ids: Vec::new(),
        };
        scan.pss.start();
        for entry in &entries {
            if let Some(uid) = layout::uid_of_user_entry(entry) {
                // Another member's subtree may be closed to the caller.
                let Ok(member) = ns_dir.sub(entry) else {
                    continue;
                };
                let state = Dir::open(&ns.layout().user_state_dir(ns.name(), uid)).ok();
                let mut r = Reader {
                    dir: &member,
                    buf: &mut scan.buf,
                };
                let c = Controllers::parse(r.text(cgroupfs::CGROUP_SUBTREE_CONTROL).unwrap_or(""));
                let names = member.children().unwrap_or_default();
                for name in &names {
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
        scan.pss.finish();
        let mut found: Vec<(TaskUsage, u64)> = scan.tasks.into_iter().zip(scan.ids).collect();
        found.sort_by(|(a, _), (b, _)| a.task.cmp(&b.task).then(a.uid.cmp(&b.uid)));
        let (mut tasks, ids): (Vec<TaskUsage>, Vec<u64>) = found.into_iter().unzip();
        for t in &mut tasks {
            t.user = self
                .users
                .entry(t.uid)
                .or_insert_with(|| record::user_name(t.uid))
                .clone();
        }
        let host_cpus = host_cpus();
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
        // CPU percentages, against the previous sample.
        let mut counters = HashMap::with_capacity(tasks.len());
        let last = self.last.take();
        let interval = last.as_ref().map(|l| at.duration_since(l.at));
        let percent = |delta: u64| {
            let secs = interval?.as_secs_f64();
            (secs > 0.0).then(|| delta as f64 / 1e4 / secs)
        };
        for (t, id) in tasks.iter_mut().zip(ids) {
            let Some(usec) = t.cpu.usage_usec else {
                continue;
            };
            let key = (t.uid, t.task.clone());
            // A task first seen, or whose cgroup was made anew since: all
            // its time is since then.
            let before = last
                .as_ref()
                .and_then(|l| l.tasks.get(&key))
                .filter(|(was, _)| *was == id)
                .map_or(0, |(_, u)| *u);
            t.cpu.percent = percent(usec.saturating_sub(before));
            t.cpu.host_percent = t.cpu.percent.map(|p| p / f64::from(host_cpus));
            counters.insert(key, (id, usec));
        }
        if let (Some(now), Some(before)) =
            (totals.cpu.usage_usec, last.as_ref().and_then(|l| l.ns_usec))
        {
            totals.cpu.percent = percent(now.saturating_sub(before));
            totals.cpu.host_percent = totals.cpu.percent.map(|p| p / f64::from(host_cpus));
        }
        self.last = Some(Last {
            at,
            ns_usec: totals.cpu.usage_usec,
            tasks: counters,
        });
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

/// The tasks read so far in one sample, and the means to read more.
struct Scan<'a> {
    buf: Vec<u8>,
    proc_dir: Option<&'a fs::File>,
    pss: &'a mut PssCache,
    now_secs: i64,
    tasks: Vec<TaskUsage>,
    /// The cgroup id of each of `tasks`.
    ids: Vec<u64>,
}

impl Scan<'_> {
    /// Task `task`, whose cgroup is `name` in `parent`, of member `uid`
    /// (`None`: the cgroup's owner), its state file in `state`; listed if
    /// it has a process or is between two runs.
    fn task(
        &mut self,
        parent: &CgroupDir,
        name: &str,
        task: TaskName,
        uid: Option<u32>,
        state: Option<&Dir>,
        controllers: Controllers,
    ) {
        // Ended between the listing and the reads: not listed.
        let Ok(dir) = parent.sub(name) else {
            return;
        };
        let Ok(meta) = dir.meta() else {
            return;
        };
        let uid = uid.unwrap_or(meta.st_uid);
        let mut pids = Vec::new();
        if parent
            .procs_recursive_of(name, &mut self.buf, &mut pids)
            .is_err()
        {
            return;
        }
        let state: Option<TaskState> = state
            .and_then(|d| record::read_json(d, &layout::state_name(&task), uid).ok())
            .flatten();
        let Some(phase) = phase(!pids.is_empty(), state.as_ref()) else {
            return;
        };
        let mut f = Reader {
            dir: &dir,
            buf: &mut self.buf,
        }
        .figures(controllers);
        if f.memory.current.is_none() && !pids.is_empty() {
            let (bytes, source) = self.pss.memory_of(self.proc_dir, &pids, &mut self.buf);
            f.memory.current = Some(bytes);
            f.memory.source = Some(source);
        }
        if f.pids.current.is_none() {
            f.pids.current = Some(pids.len() as u64);
            f.pids.source = Some(PidsSource::Processes);
        }
        let started = state.as_ref().map(|s| s.start);
        self.tasks.push(TaskUsage {
            task,
            user: String::new(),
            uid,
            state: phase,
            waiting_for: state.as_ref().and_then(|s| s.waiting_for.clone()),
            started,
            uptime_secs: started.map(|s| self.now_secs.saturating_sub(s).max(0) as u64),
            restarts: state
                .as_ref()
                .map(|s| s.supervised.as_ref().map_or(0, |v| v.restarts)),
            cpu: f.cpu,
            memory: f.memory,
            pids: f.pids,
            limits: f.limits,
        });
        self.ids.push(meta.st_ino);
    }
}

/// A task's phase, from whether it has a process and its state file;
/// `None` for one that is not running and not between two runs (a run
/// that just ended, or a monitor that died).
fn phase(running: bool, state: Option<&TaskState>) -> Option<TaskPhase> {
    if running {
        return Some(
            match state
                .and_then(|s| s.supervised.as_ref())
                .map(|v| v.phase.as_str())
            {
                Some("starting") => TaskPhase::Starting,
                Some("stopping") => TaskPhase::Stopping,
                _ => TaskPhase::Running,
            },
        );
    }
    let state = state?;
    if state.waiting_for.is_some() {
        Some(TaskPhase::Waiting)
    } else if state.next_restart_ms().is_some() {
        Some(TaskPhase::Restarting)
    } else {
        None
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

/// How long a process's PSS is used again while its `statm` is unchanged:
/// this, plus its pid modulo the same, so that figures read in one sample
/// do not all expire in the same later one. (A process's PSS also moves
/// when other processes map or unmap pages it shares.)
const PSS_MAX_AGE: Duration = Duration::from_secs(10);

/// Processes' PSS read in earlier samples, and whether it was readable.
#[derive(Debug, Default)]
struct PssCache {
    by_pid: HashMap<i32, PssEntry>,
    /// The number of the current sample: entries not seen in it go.
    sample: u64,
    page_size: u64,
    path: String,
}

#[derive(Debug)]
struct PssEntry {
    /// `statm`'s size, resident and shared pages when PSS was read.
    statm: [u64; 3],
    /// PSS in bytes; `None` when not readable (another user's process).
    pss: Option<u64>,
    read_at: Instant,
    seen: u64,
}

impl PssCache {
    fn start(&mut self) {
        self.sample += 1;
        if self.page_size == 0 {
            self.page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(4096);
        }
    }

    /// Forgets processes not seen in this sample (gone, or their pid is
    /// another process's now).
    fn finish(&mut self) {
        let sample = self.sample;
        self.by_pid.retain(|_, e| e.seen == sample);
    }

    /// The memory of processes `pids`: the sum of their PSS if every one's
    /// is readable, else of their RSS. Processes gone meanwhile count 0.
    fn memory_of(
        &mut self,
        proc_dir: Option<&fs::File>,
        pids: &[i32],
        buf: &mut Vec<u8>,
    ) -> (u64, MemorySource) {
        let (mut pss, mut rss, mut all_pss) = (0, 0, true);
        for &pid in pids {
            let Some(statm) = read_proc(proc_dir, pid, "statm", 256, buf, &mut self.path)
                .and_then(|n| parse_statm(&buf[..n]))
            else {
                continue;
            };
            rss += statm[1] * self.page_size;
            let fresh = |e: &PssEntry| {
                let age = PSS_MAX_AGE + Duration::from_secs(pid.unsigned_abs() as u64 % 10);
                e.statm == statm && e.read_at.elapsed() < age
            };
            if self.by_pid.get(&pid).is_none_or(|e| !fresh(e)) {
                let pss = read_proc(proc_dir, pid, "smaps_rollup", 4096, buf, &mut self.path)
                    .and_then(|n| parse_pss(&buf[..n]));
                let read_at = Instant::now();
                let e = PssEntry {
                    statm,
                    pss,
                    read_at,
                    seen: 0,
                };
                self.by_pid.insert(pid, e);
            }
            let Some(entry) = self.by_pid.get_mut(&pid) else {
                continue;
            };
            entry.seen = self.sample;
            match entry.pss {
                Some(p) => pss += p,
                None => all_pss = false,
            }
        }
        if all_pss {
            (pss, MemorySource::Pss)
        } else {
            (rss, MemorySource::Rss)
        }
    }
}

/// `/proc/PID/statm`'s first three fields: size, resident, shared (pages).
fn parse_statm(text: &[u8]) -> Option<[u64; 3]> {
    let text = std::str::from_utf8(text).ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `Pss:` of `/proc/PID/smaps_rollup`, in bytes.
fn parse_pss(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_statm(b"2150 512 448 5 0 85 0\n"),
            Some([2150, 512, 448])
        );
        assert_eq!(parse_statm(b"12 x"), None);
        let rollup = b"55d0a0000000-7ffd4c7f2000 ---p 00000000 00:00 0  [rollup]\n\
            Rss:                 896 kB\nPss:                 130 kB\nPss_Anon:  48 kB\n";
        assert_eq!(parse_pss(rollup), Some(130 * 1024));
        assert_eq!(parse_pss(b"Rss: 1 kB\n"), None);
    }

    #[test]
    fn controllers_and_sources() {
        let c = Controllers::parse("cpuset cpu io memory hugetlb pids rdma misc\n");
        assert!(c.cpu && c.io && c.memory && c.pids);
        let c = Controllers::parse("");
        assert!(!c.cpu && !c.memory);
        use MemorySource::*;
        assert_eq!(MemorySource::and(None, Some(Pss)), Some(Pss));
        assert_eq!(MemorySource::and(Some(Pss), Some(Pss)), Some(Pss));
        assert_eq!(MemorySource::and(Some(Pss), Some(Rss)), Some(Mixed));
        assert_eq!(MemorySource::and(Some(Mixed), Some(Pss)), Some(Mixed));
    }

    #[test]
    fn phases() {
        assert_eq!(phase(true, None), Some(TaskPhase::Running));
        assert_eq!(phase(false, None), None);
    }
}
