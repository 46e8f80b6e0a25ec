use lanco_proto::TaskName;

use crate::error::{exit, Result};
use crate::namespace::Namespace;

pub fn run(ns: &Namespace, task: &TaskName) -> Result<u8> {
    Ok(if ns.check(task)? {
        exit::OK
    } else {
        exit::NOT_RUNNING
    })
}
