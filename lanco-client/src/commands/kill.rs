use lanco_proto::TaskName;

use crate::error::Result;
use crate::namespace::Namespace;
use crate::signal::Signal;

pub fn run(ns: &Namespace, task: &TaskName, signal: Signal) -> Result<u8> {
    ns.kill(task, signal)?;
    Ok(0)
}
