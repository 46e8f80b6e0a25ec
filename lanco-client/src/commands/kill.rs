use lanco_proto::TaskName;

use crate::error::Result;
use crate::namespace::Namespace;
use crate::signal::Signal;

pub fn run(ns: &Namespace, task: &TaskName, signal: Signal, main: bool) -> Result<u8> {
    if main {
        ns.kill_main(task, signal)?;
    } else {
        ns.kill(task, signal)?;
    }
    Ok(0)
}
