//! Waiting for a run to end and getting its record. The monitor is asked:
//! it answers once the run and its on-exit command are over, with the exit
//! record, so no wake-up can be missed (the kernel rate-limits
//! `cgroup.events` notifications, and one postponed when the monitor removes
//! the cgroup is never delivered). Only when no monitor is there (it was
//! killed, or the task is 0.1's) is the cgroup watched instead.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use lanco_proto::files::Dir;
use lanco_proto::layout;
use lanco_proto::TaskName;
use nix::fcntl::{Flock, FlockArg};

use crate::control::{self, ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::namespace::{Found, Namespace};
use crate::record::{self, Exit, ExitRecord, TaskState};

/// Where a wait starts (see [`Namespace::waiting`]).
pub(crate) enum Waiting {
    /// No run is current: the last one's record.
    Over(Box<ExitRecord>),
    /// A run is current, or has just ended: where it is, and its state file.
    Current {
        found: Found,
        dir: Dir,
        state: Option<Box<TaskState>>,
    },
}

impl Namespace {
    /// Waits until `task`'s current run is over (its on-exit command
    /// included) and returns that run's exit record; `Ok(None)` if `timeout`
    /// passed first. A task that is not running answers at once with its
    /// last record. The record is always the one of the run that was current
    /// when `wait` was called (matched by run id), never an earlier one.
    pub fn wait(&self, task: &TaskName, timeout: Option<Duration>) -> Result<Option<ExitRecord>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let (found, dir, state) = match self.waiting(task)? {
            Waiting::Over(rec) => return Ok(Some(*rec)),
            Waiting::Current { found, dir, state } => (found, dir, state),
        };
        if !found.legacy {
            if let Some(mut conn) = self.connect_monitor(task, &found)? {
                let asked = control::send(&mut conn, &ControlRequest::Wait)
                    .and_then(|()| control::recv::<ControlReply>(&conn, left(deadline)));
                match asked {
                    Ok(ControlReply::Done {
                        record: Some(json), ..
                    }) => {
                        if let Ok(rec) = serde_json::from_str(&json) {
                            return Ok(Some(rec));
                        }
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Ok(None)
                    }
                    // The monitor died while we waited: watch the cgroup.
                    Err(_) => {}
                }
            }
        }
        let forever = Duration::from_secs(u64::from(u32::MAX));
        if !found
            .cgroup
            .wait_events(left(deadline).unwrap_or(forever), |e| !e.populated)?
        {
            return Ok(None);
        }
        self.record_of(task, &found, &dir, state.as_deref())
    }

    /// Where a wait starts: the task's last record if no run is current,
    /// else the current run (its place and state file).
    pub(crate) fn waiting(&self, task: &TaskName) -> Result<Waiting> {
        let found = self
            .find(task)?
            .ok_or_else(|| Error::NotRunning(task.clone()))?;
        let dir = self.state_dir_of(&found)?;
        let state: Option<TaskState> =
            record::read_json(&dir, &layout::state_name(task), found.owner)?;
        if state.is_none() && !found.cgroup.populated()? {
            return record::read_json(&dir, &layout::exit_name(task), found.owner)?
                .map(|r| Waiting::Over(Box::new(r)))
                .ok_or_else(|| Error::NotRunning(task.clone()));
        }
        Ok(Waiting::Current {
            found,
            dir,
            state: state.map(Box::new),
        })
    }

    /// The record of the run `state` describes, once it is over: its exit
    /// record if the monitor wrote it, else — its monitor died — "lost",
    /// written by the name's owner (in its own directory, under the name's
    /// lock) or, for anyone else, made up without writing anything.
    pub(crate) fn record_of(
        &self,
        task: &TaskName,
        found: &Found,
        dir: &Dir,
        state: Option<&TaskState>,
    ) -> Result<Option<ExitRecord>> {
        let read = || record::read_json::<ExitRecord>(dir, &layout::exit_name(task), found.owner);
        let Some(state) = state else {
            return read();
        };
        if let Some(rec) = read()?.filter(|r| r.run_id == state.run_id) {
            return Ok(Some(rec));
        }
        if self.is_mine(found) {
            let names = self.names_dir()?;
            if let Some(f) = names.open_read(&layout::lock_name(task), found.owner)? {
                if let Ok(_held) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    self.finalize_lost_run(task, found, false, false)?;
                    // What the dead monitor would have removed.
                    let _ = dir.remove_socket(&layout::socket_name(task));
                    let _ = found.cgroup.remove_tree();
                    return read();
                }
            }
        }
        Ok(Some(ExitRecord::ended(
            state,
            &found.cgroup,
            record::Counters::default(),
            Exit::Lost,
            false,
            false,
            None,
        )))
    }
}

/// What is left of the caller's timeout (None: no timeout); never more.
fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    })
}
