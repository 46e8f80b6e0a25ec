use std::time::Duration;

use lanco_proto::TaskName;

use crate::error::Result;
use crate::namespace::Namespace;

pub fn run(ns: &Namespace, task: &TaskName, timeout: Option<Duration>) -> Result<u8> {
    ns.stop(task, timeout)?;
    Ok(0)
}
