use std::time::Duration;

use lanco_proto::TaskName;

use crate::error::Result;
use crate::namespace::Namespace;

pub fn run(ns: &Namespace, task: &TaskName, timeout: Option<Duration>) -> Result<u8> {
    if ns.stop(task, timeout)? {
        crate::msg::log(
            "INFO",
            "stop",
            &format_args!("task {task} outlived its stop timeout and was killed"),
        );
    }
    Ok(0)
}
