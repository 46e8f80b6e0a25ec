use lanco_proto::TaskName;

use crate::defs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;

/// `lanco NS enable|disable TASK`: the flag of the caller's own definition.
pub fn run(ns: &Namespace, task: &TaskName, enable: bool) -> Result<u8> {
    defs::owned(&defs::all(ns)?, task, "change it")?;
    defs::update(ns, |mine| {
        mine.get_mut(task)
            .ok_or_else(|| Error::NotDefined(task.clone()))?
            .enable = enable;
        Ok(Vec::new())
    })?;
    Ok(0)
}
