//! One module per subcommand; each returns the exit status or an error.

mod check;
mod destroy;
mod init;
mod kill;
mod logs;
mod ls;
mod run;
mod status;
mod stop;

use lanco_proto::{Config, NamespaceName};

use crate::cli::{parse_name, Cli, Command};
use crate::error::{Error, Result};
use crate::namespace::Namespace;

fn load_config(cli: &Cli) -> Result<Config> {
    match &cli.config {
        Some(p) => Config::from_file(p),
        None => Config::load(),
    }
    .map_err(|e| Error::Usage(e.to_string()))
}

pub fn dispatch(cli: Cli) -> Result<u8> {
    let config = load_config(&cli)?;
    let ns: NamespaceName = parse_name(cli.namespace)?;
    match cli.command {
        Command::Init { user, group } => init::run(&config, ns, user, group),
        Command::Destroy { force } => destroy::run(config, ns, force),
        cmd => {
            // Validate the task name before touching anything.
            let open = || Namespace::open(config.clone(), ns.clone());
            match cmd {
                Command::Run(args) => run::run(&open()?, args),
                Command::Check { task } => check::run(&open()?, &parse_name(task)?),
                Command::Stop { timeout, task } => {
                    let task = parse_name(task)?;
                    stop::run(&open()?, &task, timeout.map(seconds).transpose()?)
                }
                Command::Kill { signal, task } => {
                    let task = parse_name(task)?;
                    kill::run(&open()?, &task, &signal)
                }
                Command::Ls { long, json } => ls::run(&open()?, long, json),
                Command::Status { json, task } => status::run(&open()?, &parse_name(task)?, json),
                Command::Logs {
                    follow,
                    lines,
                    task,
                } => logs::run(&open()?, &parse_name(task)?, follow, lines),
                Command::Init { .. } | Command::Destroy { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// A non-negative number of seconds.
pub fn seconds(s: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s)
        .map_err(|_| Error::Usage(format!("invalid number of seconds: {s}")))
}
