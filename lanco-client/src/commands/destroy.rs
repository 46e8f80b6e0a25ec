use lanco_proto::{Config, NamespaceName};

use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::spec::DEFAULT_STOP_TIMEOUT;

pub fn run(config: Config, ns: NamespaceName, force: bool) -> Result<u8> {
    if force {
        // Stop gracefully first, so every task gets its exit record; lancod's
        // forced destroy only kills what is left. With a bounded timeout:
        // the monitor answering is a member's process, and an administrator's
        // destroy must not wait on it for long.
        if let Ok(n) = Namespace::open(config.clone(), ns.clone()) {
            for t in n.list()? {
                match n.stop(&t.task, Some(DEFAULT_STOP_TIMEOUT)) {
                    Ok(_) | Err(Error::NotRunning(_)) => {}
                    Err(e) => crate::msg::warn(
                        "destroy",
                        &format_args!("stopping {}: {}", t.task, e.one_line()),
                    ),
                }
            }
        }
    }
    crate::helper::destroy(&config.socket, &ns, force)?;
    crate::msg::log("INFO", "destroy", &format_args!("namespace {ns} destroyed"));
    Ok(0)
}
