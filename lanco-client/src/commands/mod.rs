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

use lanco_proto::Config;

use crate::cli::{Cli, Command};
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
    let ns = cli.namespace;
    let open = || Namespace::open(config.clone(), ns.clone());
    match cli.command {
        Command::Init { user, group } => init::run(&config, ns, user, group),
        Command::Destroy { force } => destroy::run(config, ns, force),
        Command::Run(args) => run::run(&open()?, args),
        Command::Check { task } => check::run(&open()?, &task),
        Command::Stop { timeout, task } => stop::run(&open()?, &task, timeout),
        Command::Kill { signal, task } => kill::run(&open()?, &task, signal.0),
        Command::Ls { long, json } => ls::run(&open()?, long, json),
        Command::Status { json, task } => status::run(&open()?, &task, json),
        Command::Logs {
            follow,
            lines,
            task,
        } => logs::run(&open()?, &task, follow, lines),
    }
}
