//! The tasks a namespace has known, running or not: every name a member
//! used (its lock file in `names/`), with the last run's exit record of
//! each that does not run now. For `ls -a` and `status` without a task.
//! Reads only; a task whose files cannot be read is given with the reason,
//! never fails the listing.

use lanco_proto::layout;
use lanco_proto::TaskName;
use serde::Serialize;

use crate::error::Result;
use crate::namespace::Namespace;
use crate::record::{self, ExitRecord, TaskState};

/// A task that does not run now, and what lanco knows of its last run
/// ([`Namespace::ended`]).
#[derive(Debug, Clone, Serialize)]
pub struct Ended {
    /// The task.
    pub task: TaskName,
    /// Its last run's exit record; `None` if there is none (its runs never
    /// started, or the record was removed) or it cannot be read.
    pub last: Option<ExitRecord>,
    /// Why its record could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl Namespace {
    /// Every task name used in the namespace, sorted: the names of its
    /// runs, past and present (each member's, from `names/`).
    pub fn names(&self) -> Result<Vec<TaskName>> {
        let mut names: Vec<TaskName> = self
            .names_dir()?
            .list()?
            .iter()
            .filter_map(|e| layout::task_of_lock_entry(e))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The tasks whose name was used but that do not run now (`running`:
    /// those that do, sorted, as [`Namespace::list`] gives them), each with
    /// its last run's exit record, sorted by name.
    pub fn ended(&self, running: &[TaskName]) -> Result<Vec<Ended>> {
        Ok(self
            .names()?
            .into_iter()
            .filter(|t| running.binary_search(t).is_err())
            .map(|task| {
                let (last, unreadable) = match self.last_record(&task) {
                    Ok(r) => (r, None),
                    Err(e) => (None, Some(e.one_line())),
                };
                Ended {
                    task,
                    last,
                    unreadable,
                }
            })
            .collect())
    }

    /// The exit record of `task`'s last run, if it has one (without
    /// waiting for a monitor writing one, as `status` does). A run whose
    /// monitor died left its state file and no record: it is "lost", as
    /// `status` says (and, for the name's owner, records).
    fn last_record(&self, task: &TaskName) -> Result<Option<ExitRecord>> {
        let Some(found) = self.find(task)? else {
            return Ok(None);
        };
        let dir = self.state_dir_of(&found)?;
        let state: Option<TaskState> =
            record::read_json(&dir, &layout::state_name(task), found.owner)?;
        self.record_of(task, &found, &dir, state.as_ref())
    }
}
