//! lanco-client: the library that daemons link to run, check, stop, list and
//! measure named tasks, the per-task monitor, and (feature `cli`, on by
//! default) the `lanco` command. Everything here runs unprivileged; the one
//! privileged step (admission into a namespace) is a request to lancod.
//!
//! The API is what this file re-exports; every module is private. Modules,
//! each with one job: `namespace` (finding and reading tasks), `follow` (a
//! task's log as it grows), `start` (TaskSpec, the hand-off to a monitor),
//! `signal` (stop, kill, `Signal`), `wait`, `usage` (what tasks use, for
//! `top`), `record` (state files, exit
//! records, accounting), `handoff` and `control` (the monitor's two
//! channels), `monitor` (the `lanco-monitor` binary), `helper` (requests to
//! lancod), `error` (the one `Error` and the exit statuses), `defs` (task
//! definitions, `defs.toml`; with `cli`), `cli` and
//! `commands` (the `lanco` command).
#![warn(missing_docs)]

pub mod accounting;
#[cfg(feature = "tokio")]
pub mod asynchronous;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod commands;
mod control;
#[cfg(feature = "cli")]
mod defs;
mod ended;
mod error;
mod follow;
mod graph;
mod handoff;
mod helper;
mod inherit;
mod journal;
#[cfg(feature = "cli")]
mod manual;
mod monitor;
#[cfg(feature = "cli")]
mod msg;
mod namespace;
mod quote;
mod record;
mod signal;
mod spec;
mod start;
mod supervision;
mod sys;
mod tail;
mod time;
mod transition;
mod usage;
mod wait;

pub use ended::Ended;
pub use error::{Error, Result, StartStep};
pub use follow::{Followed, LogFollower};
pub use graph::{Deps, Kind};
pub use lanco_proto::{Config, NamespaceName, TaskName};
pub use namespace::{Namespace, Process, Status, TaskInfo};
pub use record::{Exit, ExitRecord, Supervised, TaskState};
pub use signal::Signal;
pub use spec::{TaskSpec, DEFAULT_STOP_TIMEOUT};
pub use start::Started;
pub use supervision::{Ready, Restart, RestartLimit, Supervision};
pub use usage::{
    CpuUsage, Limits, MemorySource, MemoryUsage, NamespaceUsage, PidsSource, PidsUsage, TaskPhase,
    TaskUsage, UsageSampler, UsageTotals,
};

/// The errors of lanco's lower layers that [`Error`] wraps, and lancod's
/// kinds of error ([`Error::HelperRefused`]).
pub use lanco_proto::{
    cgroupfs::CgroupError, config::ConfigError, files::FileError, wire::ErrorCode, NameError,
};

/// `lanco`'s main: parse, dispatch, one line per error; the exit status.
#[cfg(feature = "cli")]
pub use commands::run as run_cli;

/// `lanco-monitor`'s main (its binary's only call). Not for callers: the
/// library starts monitors itself.
#[doc(hidden)]
pub fn monitor_main() -> u8 {
    monitor::main()
}

/// The `lanco` command's clap definition, for `lanco-gen` (man pages and
/// completions). Not API.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub fn cli_command() -> clap::Command {
    <cli::Cli as clap::CommandFactory>::command()
}

/// The man pages of `lanco` (file name, roff), for `lanco-gen`. Not API.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub fn man_pages() -> Vec<(String, String)> {
    manual::pages()
}
