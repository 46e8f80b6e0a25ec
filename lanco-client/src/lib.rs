//! lanco-client: the `lanco` command, the per-task monitor, and the library
//! that daemons link to run, check, stop, list and measure tasks. Everything
//! here runs unprivileged; the one privileged step (admission into a
//! namespace) is a request to lancod.

pub mod cli;
mod commands;
pub mod control;
pub mod error;
mod helper;
pub mod monitor;
pub mod msg;
pub mod record;
mod sys;
pub mod task;
pub mod time;

pub use error::{Error, Result};
pub use lanco_proto::{Config, NamespaceName, TaskName};
pub use record::{Exit, ExitRecord, TaskState};
pub use task::{Namespace, Started, Status, TaskInfo, TaskSpec};
