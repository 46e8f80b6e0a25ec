use lanco_proto::TaskName;

use crate::defs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;

/// `lanco NS show TASK`: any member's definition, as `apply` reads it.
pub fn run(ns: &Namespace, task: &TaskName) -> Result<u8> {
    let (_, d) = defs::find(&defs::all(ns)?, task)?;
    let text = defs::to_toml(&defs::Defs::from([(task.clone(), d)]));
    use std::io::Write;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Error::system("stdout", e))?;
    Ok(0)
}
