//! A task's `needs`, watched by its monitor: when one goes down (its
//! cgroup empties: it ended, is restarting, was killed), the run is
//! stopped and the monitor waits, between runs, until every need is ready
//! again, then starts the command anew. No manager: the dependent's own
//! monitor keeps the link, with lancod down or not.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::EventsFile;
use lanco_proto::{layout, TaskName};

use super::{Monitor, Phase};
use crate::handoff::Spec;
use crate::namespace::Namespace;
use crate::transition::Readiness;

/// How often a monitor waiting for its needs looks at them.
pub(super) const NEEDS_CHECK: Duration = Duration::from_millis(100);

pub(super) struct Needs {
    ns: Namespace,
    /// Each need, and its cgroup's `cgroup.events` while this run goes on.
    watched: Vec<(TaskName, Option<EventsFile>)>,
    /// The need that went down during this run.
    pub down: Option<TaskName>,
    /// Between runs: when to look at the needs next.
    pub next_check: Option<Instant>,
}

impl Needs {
    /// For a task with dependencies of any kind (its end may release
    /// what it holds); `None` for the rest.
    pub fn new(spec: &Spec) -> Option<Needs> {
        if spec.deps.is_empty() {
            return None;
        }
        let ns = Namespace::open(spec.config.clone(), spec.ns.clone()).ok()?;
        let mut n = Needs {
            ns,
            watched: spec.deps.needs.iter().map(|t| (t.clone(), None)).collect(),
            down: None,
            next_check: None,
        };
        n.watch();
        Some(n)
    }

    /// The namespace, for the end's settling.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// (Re)opens each need's `cgroup.events`, for a new run.
    pub fn watch(&mut self) {
        for (task, events) in &mut self.watched {
            *events = self
                .ns
                .find(task)
                .ok()
                .flatten()
                .and_then(|f| f.cgroup.open_events().ok());
        }
    }

    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.watched
            .iter()
            .filter_map(|(_, e)| e.as_ref().map(|e| e.as_fd()))
    }

    /// The first need with no process left (reading re-arms its poll).
    fn gone(&self) -> Option<TaskName> {
        self.watched
            .iter()
            .find(|(_, e)| {
                !e.as_ref()
                    .is_some_and(|e| e.read().is_ok_and(|v| v.populated))
            })
            .map(|(t, _)| t.clone())
    }

    /// The first need that is not ready, if any.
    pub fn not_ready(&self) -> Option<TaskName> {
        self.watched
            .iter()
            .find(|(t, _)| self.ns.readiness(t).ok() != Some(Readiness::Ready))
            .map(|(t, _)| t.clone())
    }
}

impl Monitor {
    /// Puts (or, for a run whose state says only that it runs, removes
    /// any stale) the task's mark in `marks/`.
    pub(super) fn set_mark(&self, on: bool) {
        let name = layout::mark_name(&self.spec.task);
        let marks = || self.dir.sub(layout::MARKS);
        let r = if on {
            self.dir
                .mkdir(layout::MARKS, 0o750)
                .and_then(|_| marks())
                .and_then(|d| d.replace(&name, b"", 0o640))
        } else {
            match marks() {
                Ok(d) => d.remove(&name),
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(()),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = r {
            self.note(&e);
        }
    }

    /// During a run: if a need went down, stop the run (not on purpose:
    /// it starts again when the need is back).
    pub(super) fn check_needs(&mut self) {
        let Some(needs) = &mut self.needs else {
            return;
        };
        if !matches!(self.phase, Phase::Task) || self.stopping.is_some() || needs.down.is_some() {
            return;
        }
        if let Some(gone) = needs.gone() {
            needs.down = Some(gone.clone());
            // Until the next run: a removed cgroup's file polls ready forever.
            for (_, events) in &mut needs.watched {
                *events = None;
            }
            let why = format!("dependency {gone} went down");
            self.note(&format_args!("{why}: stopping until it is ready again"));
            self.begin_stop(None, &why, false);
        }
    }

    /// Between runs, waiting for a need: start again once all are ready.
    /// Returns whether it did.
    pub(super) fn resume_if_needs_ready(&mut self, now: Instant) -> bool {
        let Some(needs) = &mut self.needs else {
            return false;
        };
        if self.state.waiting_for.is_none() || needs.next_check.is_some_and(|t| now < t) {
            return false;
        }
        match needs.not_ready() {
            Some(t) => {
                needs.next_check = Some(now + NEEDS_CHECK);
                if self.state.waiting_for.as_ref() != Some(&t) {
                    self.state.waiting_for = Some(t);
                    self.write_state();
                }
                false
            }
            None => {
                needs.next_check = None;
                self.note(&"every dependency it needs is ready: starting again");
                self.restart();
                true
            }
        }
    }

    /// At the monitor's end, for a task that held others: stop what
    /// nothing wanted holds any more (under the namespace's transition
    /// lock, after the waiters have their answer).
    pub(super) fn settle_at_end(&self) {
        if let Some(needs) = &self.needs {
            let ns = needs.namespace();
            // Nothing it held runs: nothing to release (and no lock taken,
            // so the end of a long chain costs each monitor O(1)).
            let holds = || self.spec.deps.held().any(|t| ns.check(t).unwrap_or(true));
            if !holds() {
                return;
            }
            // Looked at again under the lock: the transition that stopped
            // this task has usually stopped what it held as well.
            if let Ok(_lock) = ns.transition_lock(|| {}) {
                if holds() {
                    let _ = ns.settle(&|_, _| {});
                }
            }
        }
    }
}
