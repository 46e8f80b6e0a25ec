use lanco_proto::TaskName;
use nix::sys::signal::Signal;

use crate::error::Result;
use crate::namespace::Namespace;

pub fn run(ns: &Namespace, task: &TaskName, signal: Signal) -> Result<u8> {
    ns.kill(task, signal)?;
    Ok(0)
}
