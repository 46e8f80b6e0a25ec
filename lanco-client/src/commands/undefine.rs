use lanco_proto::TaskName;

use crate::defs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::transition::Readiness;

/// `lanco NS undefine [--stop] TASK`: refused while the task runs, unless
/// told to stop it first. The name stays the caller's.
pub fn run(ns: &Namespace, task: &TaskName, stop: bool) -> Result<u8> {
    defs::owned(&defs::all(ns)?, task, "undefine it")?;
    // Between two runs (a restart delay, waiting for a need) counts as
    // running: its monitor would start it again.
    if ns.readiness(task)? != Readiness::Down {
        if !stop {
            return Err(Error::Conflict(format!(
                "task {task} is running; stop it first, or use undefine --stop"
            )));
        }
        // As `stop` does: refused while tasks that need it run.
        match super::stop::run(ns, task, None, false) {
            Ok(_) | Err(Error::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
    }
    defs::update(ns, |mine| {
        mine.remove(task)
            .ok_or_else(|| Error::NotDefined(task.clone()))?;
        Ok(Vec::new())
    })?;
    Ok(0)
}
