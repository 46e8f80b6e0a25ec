use lanco_proto::TaskName;

use crate::commands::start::{launch, report};
use crate::defs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;

/// `lanco NS restart TASK`: stop (if it runs), then start from the
/// caller's definition, which is checked first (nothing is stopped for a
/// start that would be refused).
pub fn run(ns: &Namespace, task: &TaskName, no_wait: bool) -> Result<u8> {
    let d = defs::owned(&defs::all(ns)?, task, "restart it")?;
    match ns.stop(task, None) {
        Ok(_) | Err(Error::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(report(
        "restart",
        task,
        launch(ns, task, &d, no_wait),
        no_wait,
    ))
}
