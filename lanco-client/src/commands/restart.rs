use lanco_proto::TaskName;

use crate::commands::start::{report, start_one};
use crate::defs;
use crate::error::{Error, Result};
use crate::graph;
use crate::namespace::Namespace;
use crate::transition;

/// `lanco NS restart [--force] TASK`: stop (if it runs), then start from
/// the caller's definition, which is checked first (nothing is stopped for
/// a start that would be refused), as one transition. Tasks that need it
/// refuse it unless `force`; then they stop while it is down and start
/// again, by themselves, once it is ready. A task that was pulled in stays
/// pulled in.
pub fn run(ns: &Namespace, task: &TaskName, no_wait: bool, force: bool) -> Result<u8> {
    let d = defs::owned(&defs::all(ns)?, task, "restart it")?;
    let mut spec = d.to_spec(task)?;
    let lock = ns.transition_lock(super::stop::waiting)?;
    let nodes = ns.nodes()?;
    let needing = graph::needing(&transition::graph(&nodes), task);
    if !needing.is_empty() && !force {
        return Err(Error::Conflict(format!(
            "task {task} is needed by {}: use --force to restart them with it",
            names(&needing)
        )));
    }
    spec.pulled_in = nodes.get(task).is_some_and(|n| !n.explicit);
    match ns.stop(task, None) {
        Ok(_) | Err(Error::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    let r = start_one(ns, &lock, task, spec, no_wait).map(|s| s.is_some());
    Ok(report("restart", task, r, no_wait))
}

/// `a, b, c`.
pub fn names(tasks: &[TaskName]) -> String {
    let v: Vec<&str> = tasks.iter().map(TaskName::as_str).collect();
    v.join(", ")
}
