//! A namespace's dependency state, without a manager: what runs and why is
//! in the state files of the tasks' monitors (each its owner's), and a
//! transition (a start or stop that follows dependencies, a monitor's end)
//! holds the namespace's transition lock, so transitions of several
//! members happen one after the other. A client killed mid-way releases
//! the lock with its death and leaves only running tasks and their state
//! files behind: the next transition takes them as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::time::Duration;

use lanco_proto::cgroupfs::{Cgroup, CgroupDir};
use lanco_proto::files::Dir;
use lanco_proto::layout;
use lanco_proto::TaskName;

use crate::control::{ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::graph::{self, Deps};
use crate::namespace::{Found, Namespace};
use crate::record::{self, TaskState};

/// The namespace's transition lock, held until dropped (or the holder's
/// death).
pub(crate) struct Lock {
    _held: nix::fcntl::Flock<OwnedFd>,
}

/// Every node of the namespace (a marked task that runs, or whose monitor
/// waits to start it again: see [`Namespace::nodes`]), by task, with its
/// state file.
pub(crate) type Nodes = BTreeMap<TaskName, TaskState>;

/// How far a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    /// Running but not ready yet, or its monitor is between two runs.
    Starting,
    Down,
}

/// A node's state: `starting`, `ready`, `stopping`, `waiting for db`,
/// `restarting`.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn state_words(s: &TaskState) -> String {
    if let Some(t) = &s.waiting_for {
        return format!("waiting for {t}");
    }
    if s.next_restart_ms().is_some() {
        return "restarting".into();
    }
    match s.supervised.as_ref().map(|v| v.phase.as_str()) {
        Some("starting") => "starting".into(),
        Some("stopping") => "stopping".into(),
        _ => "ready".into(),
    }
}

/// The dependency graph of the nodes.
pub(crate) fn graph(nodes: &Nodes) -> BTreeMap<TaskName, Deps> {
    nodes
        .iter()
        .map(|(t, n)| (t.clone(), n.deps.clone()))
        .collect()
}

/// Runs `f` on each item, at most 16 at a time.
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(16);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(per)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl Namespace {
    /// Takes the namespace's transition lock: an flock of its state
    /// directory, which every member may open. Waits for the holder,
    /// calling `waiting` first if it must.
    pub(crate) fn transition_lock(&self, waiting: impl FnOnce()) -> Result<Lock> {
        use nix::fcntl::{Flock, FlockArg};
        let dir = self.ns_dir()?;
        let fd = dir
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::system("cannot lock the namespace's transitions", e))?;
        let held = match Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((fd, nix::errno::Errno::EWOULDBLOCK)) => {
                waiting();
                Flock::lock(fd, FlockArg::LockExclusive)
                    .map_err(|(_, e)| Error::system("cannot lock the namespace's transitions", e))?
            }
            Err((_, e)) => return Err(Error::system("cannot lock the namespace's transitions", e)),
        };
        Ok(Lock { _held: held })
    }

    /// Every marked task (`layout::mark_name`: one with dependencies,
    /// pulled in, or with a readiness of its own) that runs or waits to run
    /// again, from the members' state files; an unmarked task is started on
    /// purpose, holds nothing and is ready once it runs. A state file
    /// counts only in the directory of the member who owns the task's name,
    /// and only while its cgroup has a process or its monitor listens;
    /// unreadable ones are left out.
    pub(crate) fn nodes(&self) -> Result<Nodes> {
        let mut nodes = Nodes::new();
        let names = self.names_dir()?;
        for uid in self
            .ns_dir()?
            .list()?
            .iter()
            .filter_map(|e| layout::uid_of_user_entry(e))
        {
            let Ok(dir) = Dir::open(&self.layout().user_state_dir(self.name(), uid)) else {
                continue;
            };
            // No marks (no such directory): nothing of this member's counts.
            let Ok(entries) = dir.sub(layout::MARKS).and_then(|m| m.list()) else {
                continue;
            };
            let cgroups = CgroupDir::open(&self.layout().user_cgroup(self.name(), uid)).ok();
            for task in entries.iter().filter_map(|e| layout::task_of_mark_entry(e)) {
                let owner = names
                    .entry(&layout::lock_name(&task))
                    .ok()
                    .flatten()
                    .filter(|e| e.is_file())
                    .map(|e| e.uid);
                if owner != Some(uid) {
                    continue;
                }
                let Ok(Some(state)) =
                    record::read_json::<TaskState>(&dir, &layout::state_name(&task), uid)
                else {
                    continue;
                };
                let running = cgroups
                    .as_ref()
                    .and_then(|c| c.populated_of(&layout::task_file(&task, "")).ok().flatten());
                let found = || Found {
                    owner: uid,
                    legacy: false,
                    cgroup: Cgroup::new(self.layout().task_cgroup(self.name(), uid, &task)),
                };
                // Between two runs, or a run that has just ended, whose
                // monitor decides what comes next: still there while its
                // monitor listens.
                let alive = running == Some(true)
                    || self
                        .connect_monitor(&task, &found())
                        .ok()
                        .flatten()
                        .is_some();
                if alive {
                    nodes.insert(task, state);
                }
            }
        }
        Ok(nodes)
    }

    /// How far `task` is: ready (running, and ready if it says so),
    /// starting, or down.
    pub(crate) fn readiness(&self, task: &TaskName) -> Result<Readiness> {
        let Some(found) = self.find(task)? else {
            return Ok(Readiness::Down);
        };
        let running = match found.cgroup.populated() {
            Ok(r) => r,
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        let state: Option<TaskState> = record::read_json(
            &self.state_dir_of(&found)?,
            &layout::state_name(task),
            found.owner,
        )?;
        Ok(match state {
            // Its monitor died, or has not written its state yet: what
            // runs is taken as it is.
            None if running => Readiness::Ready,
            None => Readiness::Down,
            Some(s) if s.waiting_for.is_some() || s.next_restart_ms().is_some() => {
                Readiness::Starting
            }
            Some(_) if !running => Readiness::Down,
            Some(s) => match s.supervised.as_ref().map(|v| v.phase.as_str()) {
                Some("starting") => Readiness::Starting,
                _ => Readiness::Ready,
            },
        })
    }

    /// Sets or drops `task`'s explicit mark (its monitor rewrites its
    /// state file).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn mark(&self, task: &TaskName, explicit: bool) -> Result<()> {
        let Some(found) = self.find(task)? else {
            return Err(Error::NotRunning(task.clone()));
        };
        let req = ControlRequest::Mark { explicit };
        match self.ask_monitor(task, &found, &req, Some(Duration::from_secs(10)))? {
            Some(ControlReply::Done { .. }) => Ok(()),
            Some(other) => Err(other.into_error()),
            None => Err(Error::failed(format!(
                "task {task} has no monitor to keep its mark (it was killed)"
            ))),
        }
    }

    /// Stops every task that was pulled in and that nothing wanted holds
    /// any more, dependents before what they hold; `stopped` is told of
    /// each, and whether its stop went well. Under the transition lock.
    pub(crate) fn settle(&self, stopped: &(dyn Fn(&TaskName, Result<()>) + Sync)) -> Result<()> {
        let nodes = self.nodes()?;
        let g = graph(&nodes);
        // Wanted: those started on purpose and what they hold, through
        // running tasks.
        let explicit = nodes.iter().filter(|(_, n)| n.explicit).map(|(t, _)| t);
        let keep = graph::closure(&g, explicit);
        let unwanted: BTreeSet<TaskName> = nodes
            .keys()
            .filter(|t| !keep.contains(*t))
            .cloned()
            .collect();
        for wave in graph::stop_waves(&g, &unwanted) {
            in_parallel(&wave, |t| match self.stop(t, None) {
                Err(Error::NotRunning(_)) => {}
                r => stopped(t, r.map(|_| ())),
            });
        }
        Ok(())
    }
}
