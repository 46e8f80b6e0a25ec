use lanco_proto::TaskName;

use crate::defs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;

/// `lanco NS undefine [--stop] TASK`: refused while the task runs, unless
/// told to stop it first. The name stays the caller's.
pub fn run(ns: &Namespace, task: &TaskName, stop: bool) -> Result<u8> {
    defs::owned(&defs::all(ns)?, task, "undefine it")?;
    if ns.check(task)? {
        if !stop {
            return Err(Error::Conflict(format!(
                "task {task} is running; stop it first, or use undefine --stop"
            )));
        }
        match ns.stop(task, None) {
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
