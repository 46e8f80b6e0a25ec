//! lanco-client: the library that daemons link to run, check, stop, list and
//! measure named tasks, the per-task monitor, and (feature `cli`, on by
//! default) the `lanco` command. Everything here runs unprivileged; the one
//! privileged step (admission into a namespace) is a request to lancod.
//!
//! Modules, each with one job: `namespace` (finding and reading tasks),
//! `follow` (a task's log as it grows), `start` (TaskSpec, the hand-off to a
//! monitor), `signal` (stop, kill), `record` (state files, exit records,
//! accounting), `handoff` and `control` (the monitor's two channels),
//! `monitor` (the `lanco-monitor` binary), `helper` (requests to lancod).

#[cfg(feature = "tokio")]
pub mod asynchronous;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
mod commands;
mod control;
pub mod error;
mod follow;
mod handoff;
mod helper;
#[doc(hidden)]
pub mod monitor;
#[cfg(feature = "cli")]
mod msg;
mod namespace;
pub mod record;
mod signal;
mod start;
mod sys;
mod time;
mod wait;

pub use error::{Error, Result};
pub use follow::{Followed, LogFollower};
pub use lanco_proto::{Config, NamespaceName, TaskName};
pub use namespace::{Namespace, Process, Status, TaskInfo};
pub use record::{Exit, ExitRecord, TaskState};
pub use signal::Signal;
pub use start::{Started, TaskSpec, DEFAULT_STOP_TIMEOUT};

/// `lanco`'s main: parse, dispatch, one line per error; the exit status.
#[cfg(feature = "cli")]
pub use commands::run as run_cli;
