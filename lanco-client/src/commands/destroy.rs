use lanco_proto::wire::{Request, Response};
use lanco_proto::{Config, NamespaceName};

use crate::error::{Error, Result};
use crate::namespace::Namespace;

pub fn run(config: Config, ns: NamespaceName, force: bool) -> Result<u8> {
    if force {
        // Stop gracefully first, so every task gets its exit record; lancod's
        // forced destroy only kills what is left.
        if let Ok(n) = Namespace::open(config.clone(), ns.clone()) {
            for t in n.list()? {
                if let Ok(task) = lanco_proto::TaskName::try_from(t.task.as_str()) {
                    match n.stop(&task, None) {
                        Ok(()) | Err(Error::NotRunning(_)) => {}
                        Err(e) => {
                            crate::msg::warn("destroy", &format_args!("stopping {task}: {e}"))
                        }
                    }
                }
            }
        }
    }
    match crate::helper::request(
        &config.socket,
        &Request::Destroy {
            ns: ns.clone(),
            force,
        },
    )? {
        Response::Destroyed => {
            crate::msg::log("INFO", "destroy", &format_args!("namespace {ns} destroyed"));
            Ok(0)
        }
        other => Err(Error::Helper(format!(
            "unexpected answer from lancod: {other:?}"
        ))),
    }
}
