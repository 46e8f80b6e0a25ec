//! One sample's reads: a cgroup's interface files (only those of the
//! controllers enabled there), and per task its cgroup, processes and state
//! file — reusing what the previous sample read where it cannot have
//! changed.

use std::collections::HashMap;
use std::fs;
use std::time::Instant;

use lanco_proto::cgroupfs::{self, CgroupDir};
use lanco_proto::files::Dir;
use lanco_proto::{layout, TaskName};

use super::memory::{self, PssCache};
use super::TaskUsage;
use super::{CpuUsage, Limits, MemorySource, MemoryUsage, PidsSource, PidsUsage, TaskPhase};
use crate::record::{self, TaskState};

/// The controllers enabled in a cgroup: which interface files to read.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Controllers {
    cpu: bool,
    memory: bool,
    pids: bool,
    io: bool,
}

impl Controllers {
    /// From `cgroup.controllers` or a parent's `cgroup.subtree_control`
    /// (`None`: unreadable, so none).
    pub fn parse(text: Option<&str>) -> Self {
        let mut c = Controllers::default();
        for word in text.unwrap_or("").split_whitespace() {
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
pub(super) struct Figures {
    pub cpu: CpuUsage,
    pub memory: MemoryUsage,
    pub pids: PidsUsage,
    pub limits: Limits,
}

/// A cgroup (a directory, or its child `child`) and scratch space to read
/// its files into; each figure is `None` if its file is absent or
/// unreadable (a cgroup removed meanwhile).
pub(super) struct Reader<'a> {
    dir: &'a CgroupDir,
    child: Option<&'a str>,
    buf: &'a mut Vec<u8>,
}

impl<'a> Reader<'a> {
    pub fn of(dir: &'a CgroupDir, buf: &'a mut Vec<u8>) -> Self {
        Reader {
            dir,
            child: None,
            buf,
        }
    }

    pub fn text(&mut self, file: &str) -> Option<&str> {
        let n = match self.child {
            Some(c) => self.dir.read_file_of(c, file, self.buf),
            None => self.dir.read_file(file, self.buf),
        };
        std::str::from_utf8(&self.buf[..n.ok().flatten()?]).ok()
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
    pub fn figures(&mut self, c: Controllers) -> Figures {
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

/// What a sample found of a task, for the next sample.
#[derive(Debug)]
pub(super) struct Memo {
    /// Its cgroup's id (inode): another id is a cgroup made anew.
    pub id: u64,
    pub usage_usec: Option<u64>,
    pids: Vec<i32>,
    /// Its memory from its processes (no memory controller), and when read.
    memory: Option<(u64, MemorySource, Instant)>,
    /// Its state file's inode, and what it said.
    state: Option<(u64, TaskState)>,
}

/// The tasks read so far in one sample, and the means to read more.
pub(super) struct Scan<'a> {
    pub buf: Vec<u8>,
    proc_dir: Option<fs::File>,
    memos: &'a HashMap<(u32, TaskName), Memo>,
    pss: &'a mut PssCache,
    now_secs: i64,
    found: Vec<(TaskUsage, Memo)>,
}

impl<'a> Scan<'a> {
    pub fn new(
        buf: Vec<u8>,
        memos: &'a HashMap<(u32, TaskName), Memo>,
        pss: &'a mut PssCache,
        now_secs: i64,
    ) -> Self {
        pss.start();
        Scan {
            buf,
            proc_dir: fs::File::open("/proc").ok(),
            memos,
            pss,
            now_secs,
            found: Vec::new(),
        }
    }

    /// The tasks found, by name (then member), each with its memo.
    pub fn finish(self) -> Vec<(TaskUsage, Memo)> {
        self.pss.finish();
        let mut found = self.found;
        found.sort_by(|(a, _), (b, _)| a.task.cmp(&b.task).then(a.uid.cmp(&b.uid)));
        found
    }

    /// Task `task`, whose cgroup is `name` in `parent`, of member `uid`
    /// (`None`: the cgroup's owner), its state file in `state`; listed if
    /// it has a process or is between two runs.
    pub fn task(
        &mut self,
        parent: &CgroupDir,
        name: &str,
        task: TaskName,
        uid: Option<u32>,
        state: Option<&Dir>,
        controllers: Controllers,
    ) {
        // Ended between the listing and the reads: not listed.
        let Ok(Some(st)) = parent.stat_of(name) else {
            return;
        };
        let uid = uid.unwrap_or(st.st_uid);
        let before = self.memos.get(&(uid, task.clone()));
        let mut pids = Vec::new();
        if parent
            .procs_recursive_of(name, &mut self.buf, &mut pids)
            .is_err()
        {
            return;
        }
        let state = read_state(state, &task, uid, before);
        let Some(phase) = phase(!pids.is_empty(), state.as_ref().map(|s| &s.1)) else {
            return;
        };
        let mut f = Reader {
            dir: parent,
            child: Some(name),
            buf: &mut self.buf,
        }
        .figures(controllers);
        let mut memory = None;
        if f.memory.current.is_none() && !pids.is_empty() {
            // Unchanged if it used no CPU and has the same processes, for a
            // while.
            let unchanged = before.filter(|m| {
                m.id == st.st_ino && m.usage_usec == f.cpu.usage_usec && m.pids == pids
            });
            let m = match unchanged.and_then(|m| m.memory) {
                Some(m @ (_, _, at)) if memory::fresh(at, pids[0]) => {
                    self.pss.keep(&pids);
                    m
                }
                _ => {
                    let (bytes, source) =
                        self.pss
                            .memory_of(self.proc_dir.as_ref(), &pids, &mut self.buf);
                    (bytes, source, Instant::now())
                }
            };
            f.memory.current = Some(m.0);
            f.memory.source = Some(m.1);
            memory = Some(m);
        }
        if f.pids.current.is_none() {
            f.pids.current = Some(pids.len() as u64);
            f.pids.source = Some(PidsSource::Processes);
        }
        let run = state.as_ref().map(|s| &s.1);
        let started = run.map(|s| s.start);
        let usage = TaskUsage {
            task,
            user: String::new(),
            uid,
            state: phase,
            waiting_for: run.and_then(|s| s.waiting_for.clone()),
            started,
            uptime_secs: started.map(|s| self.now_secs.saturating_sub(s).max(0) as u64),
            restarts: run.map(|s| s.supervised.as_ref().map_or(0, |v| v.restarts)),
            cpu: f.cpu,
            memory: f.memory,
            pids: f.pids,
            limits: f.limits,
        };
        let memo = Memo {
            id: st.st_ino,
            usage_usec: usage.cpu.usage_usec,
            pids,
            memory,
            state,
        };
        self.found.push((usage, memo));
    }
}

/// The task's state file in `dir` (a file of `uid`'s) and its inode: what
/// `before` read if it is the same file (a monitor replaces it by rename,
/// so a rewritten one has another inode), else read now.
fn read_state(
    dir: Option<&Dir>,
    task: &TaskName,
    uid: u32,
    before: Option<&Memo>,
) -> Option<(u64, TaskState)> {
    let dir = dir?;
    let name = layout::state_name(task);
    let e = dir
        .entry(&name)
        .ok()
        .flatten()
        .filter(|e| e.is_file() && e.uid == uid)?;
    match before.and_then(|m| m.state.as_ref()) {
        Some((ino, s)) if *ino == e.ino => Some((e.ino, s.clone())),
        _ => record::read_json::<TaskState>(dir, &name, uid)
            .ok()
            .flatten()
            .map(|s| (e.ino, s)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The files of every controller, on a fake cgroupfs (this host has
    /// none in cgroup v2; the VM scenario reads real ones).
    #[test]
    fn figures_of_every_controller() {
        let dir = std::env::temp_dir().join(format!("lanco-usage-unit-{}", std::process::id()));
        let task = dir.join("task-x");
        fs::create_dir_all(&task).unwrap();
        for (file, text) in [
            (
                "cpu.stat",
                "usage_usec 2500000\nuser_usec 2000000\nthrottled_usec 700\n",
            ),
            ("cpu.max", "50000 100000\n"),
            ("cpu.weight", "100\n"),
            ("memory.current", "1048576\n"),
            ("memory.peak", "2097152\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("memory.max", "67108864\n"),
            ("memory.high", "max\n"),
            ("pids.current", "7\n"),
            ("pids.max", "64\n"),
            ("pids.events", "max 12\n"),
            ("io.weight", "default 300\n8:0 50\n"),
        ] {
            fs::write(task.join(file), text).unwrap();
        }
        let parent = CgroupDir::open(&dir).unwrap();
        let mut buf = Vec::new();
        let mut r = Reader {
            dir: &parent,
            child: Some("task-x"),
            buf: &mut buf,
        };
        let f = r.figures(Controllers::parse(Some("cpu io memory pids")));
        assert_eq!(f.cpu.usage_usec, Some(2_500_000));
        assert_eq!(f.cpu.throttled_usec, Some(700));
        assert_eq!(f.memory.current, Some(1_048_576));
        assert_eq!(f.memory.source, Some(MemorySource::Cgroup));
        assert_eq!(
            (f.memory.peak, f.memory.oom_kills),
            (Some(2_097_152), Some(1))
        );
        assert_eq!(f.pids.current, Some(7));
        assert_eq!(f.pids.source, Some(PidsSource::Cgroup));
        assert_eq!(f.pids.forks_refused, Some(12));
        let l = f.limits;
        assert_eq!((l.memory_max, l.memory_high), (Some(67_108_864), None));
        assert_eq!((l.pids_max, l.cpu_max), (Some(64), Some(0.5)));
        assert_eq!((l.cpu_weight, l.io_weight), (Some(100), Some(300)));
        // Without the controllers, only cpu.stat is read.
        let f = r.figures(Controllers::parse(None));
        assert_eq!(f.cpu.usage_usec, Some(2_500_000));
        assert_eq!((f.memory.current, f.limits.pids_max), (None, None));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn controllers_and_phases() {
        let c = Controllers::parse(Some("cpuset cpu io memory hugetlb pids rdma misc\n"));
        assert!(c.cpu && c.io && c.memory && c.pids);
        let c = Controllers::parse(None);
        assert!(!c.cpu && !c.memory);
        assert_eq!(phase(true, None), Some(TaskPhase::Running));
        assert_eq!(phase(false, None), None);
    }
}
