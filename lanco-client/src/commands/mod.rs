//! One module per subcommand; each returns the exit status or an error.

mod accounting;
mod accounting_billing;
mod accounting_print;
mod apply;
mod check;
mod complete;
mod define;
mod deps;
mod destroy;
mod enable;
mod init;
mod kill;
mod limit;
mod list_defs;
mod logs;
mod ls;
mod namespaces;
mod restart;
mod run;
mod show;
mod start;
mod status;
mod stop;
mod summary;
mod table;
mod top;
mod undefine;
mod wait;

use lanco_proto::{Config, NamespaceName, TaskName};

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::exit;
use crate::error::{Error, Result};
use crate::namespace::Namespace;

fn load_config(cli: &Cli) -> Result<Config> {
    Ok(match &cli.config {
        Some(p) => Config::from_file(p),
        None => Config::load(),
    }?)
}

pub fn dispatch(cli: Cli) -> Result<u8> {
    let config = load_config(&cli)?;
    // Without a namespace: `namespaces`, or `--all-namespaces accounting`.
    let Some(ns) = cli.namespace else {
        return match cli.command {
            Command::Namespaces { json } => namespaces::run(&config, json),
            Command::Accounting(args) if cli.all_namespaces => accounting::run_all(&config, args),
            other if cli.all_namespaces => Err(Error::InvalidInput(format!(
                "--all-namespaces goes with accounting only, not {}",
                other.name()
            ))),
            other => Err(Error::InvalidInput(format!(
                "{} needs a namespace: lanco NAMESPACE {0} …",
                other.name()
            ))),
        };
    };
    let open = || Namespace::open(config.clone(), ns.clone());
    match cli.command {
        Command::Namespaces { .. } => Err(Error::InvalidInput(format!(
            "namespaces takes no namespace: lanco namespaces, not lanco {ns} namespaces"
        ))),
        Command::Init {
            user,
            group,
            limits,
        } => init::run(&config, ns, user, group, limits.to_limits()),
        Command::Limit {
            limits,
            clear,
            json,
        } => limit::run(&config, &ns, limits.to_limits(), clear, json),
        Command::Destroy { force } => destroy::run(config, ns, force),
        Command::Run(args) => run::run(&open()?, args),
        Command::Define(args) => define::run(&open()?, args),
        Command::Apply { file } => apply::run(&open()?, &file),
        Command::Undefine { stop, task } => undefine::run(&open()?, &task, stop),
        Command::Defs { json } => list_defs::run(&open()?, json),
        Command::Show { task } => show::run(&open()?, &task),
        Command::Enable { task } => enable::run(&open()?, &task, true),
        Command::Disable { task } => enable::run(&open()?, &task, false),
        Command::Start(args) => start_cmd(&open()?, args),
        Command::Restart {
            no_wait,
            force,
            task,
        } => restart::run(&open()?, &task, no_wait, force),
        Command::Check { task } => check::run(&open()?, &task),
        Command::Stop {
            timeout,
            force,
            task,
        } => stop::run(&open()?, &task, timeout, force),
        Command::Release { task } => stop::release(&open()?, &task),
        Command::Deps { json, task } => deps::run(&open()?, &task, json),
        Command::Kill { signal, main, task } => kill::run(&open()?, &task, signal, main),
        Command::Wait { timeout, tasks } => wait::run(&open()?, &tasks, timeout),
        Command::Ls { long, json, all } => ls::run(&open()?, long, json, all),
        Command::Status {
            json,
            task: Some(task),
        } => status::run(&open()?, &task, json),
        Command::Status { json, task: None } => summary::run(&open()?, json),
        Command::Logs {
            follow,
            lines,
            task,
        } => logs::run(&open()?, &task, follow, lines),
        Command::Accounting(args) => accounting::run(&open()?, args),
        Command::Top { delay, batch, json } => top::run(&open()?, delay, batch, json),
    }
}

/// `lanco`'s main: parse, dispatch, print one line per error; returns the
/// exit status.
pub fn run() -> u8 {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "__complete") {
        return complete::run(args.collect());
    }
    if let Some((ns, task)) = fast_check() {
        return check_only(ns, task);
    }
    if let Some((ns, fast)) = fast_start() {
        return start_only(ns, fast);
    }
    let parsed = Cli::try_parse();
    let cli = match parsed {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return exit::OK;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return exit::USAGE;
        }
        Err(e) => {
            // clap's message without its usage block, on one line.
            let rendered = e.render().to_string();
            let message = rendered.split("\n\n").next().unwrap_or("bad usage");
            let message: Vec<&str> = message.split_whitespace().collect();
            let message = message.join(" ");
            let message = message.trim_start_matches("error: ");
            crate::msg::error("usage", &format_args!("{message} (see lanco --help)"));
            return exit::USAGE;
        }
    };
    let cmd = cli.command.name();
    said(cmd, dispatch(cli))
}

/// The exit status of `cmd`'s result, its error said on one line.
fn said(cmd: &str, result: Result<u8>) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) => {
            let line = e.one_line();
            // Refusals by the task's state are warnings (the original
            // lanco's wording); the rest errors.
            if matches!(e, Error::AlreadyRunning(_) | Error::NotRunning(_)) {
                crate::msg::warn(cmd, &line);
            } else {
                crate::msg::error(cmd, &line);
            }
            e.exit_code()
        }
    }
}

/// `lanco NS check TASK` is what scripts poll in loops. That exact form skips
/// building the clap parser, a quarter of the command's instructions; any
/// other form (options, --help, mistakes) goes through clap.
fn fast_check() -> Option<(NamespaceName, TaskName)> {
    let mut args = std::env::args_os().skip(1);
    let (ns, cmd, task) = (args.next()?, args.next()?, args.next()?);
    if args.next().is_some() || cmd != "check" {
        return None;
    }
    // Anything unusual (a bad name, an option) goes through clap and its
    // messages.
    Some((ns.to_str()?.parse().ok()?, task.to_str()?.parse().ok()?))
}

/// `lanco NS run …` and `lanco NS start …`, what start tasks: their
/// arguments parsed by the command's own parser, without building the rest
/// of the command line's (two dozen commands: most of what clap costs a
/// start). Anything that parser does not take (`--config`, `--help`, a
/// mistake) goes through the whole parser and its messages.
#[allow(clippy::large_enum_variant)] // one per process, as clap's Command
enum Fast {
    Run(crate::cli::RunArgs),
    Start(crate::cli::StartArgs),
}

fn fast_start() -> Option<(NamespaceName, Fast)> {
    fast_start_of(std::env::args_os().skip(1))
}

fn fast_start_of(
    mut args: impl Iterator<Item = std::ffi::OsString>,
) -> Option<(NamespaceName, Fast)> {
    use clap::{Args, FromArgMatches};
    fn parse<A: Args + FromArgMatches>(
        name: &'static str,
        args: impl Iterator<Item = std::ffi::OsString>,
    ) -> Option<A> {
        let parser = A::augment_args(
            clap::Command::new(name)
                .no_binary_name(true)
                .disable_help_flag(true)
                .disable_version_flag(true),
        );
        A::from_arg_matches(&parser.try_get_matches_from(args).ok()?).ok()
    }
    let (ns, cmd) = (args.next()?, args.next()?);
    let ns: NamespaceName = ns.to_str()?.parse().ok()?;
    let fast = match cmd.to_str()? {
        "run" => Fast::Run(parse("run", args)?),
        "start" => Fast::Start(parse("start", args)?),
        _ => return None,
    };
    Some((ns, fast))
}

/// A start of the fast form, as `dispatch` would run it.
#[inline(never)]
fn start_only(ns: NamespaceName, fast: Fast) -> u8 {
    let ns = Config::load()
        .map_err(Error::from)
        .and_then(|config| Namespace::open(config, ns));
    match fast {
        Fast::Run(args) => said("run", ns.and_then(|ns| run::run(&ns, args))),
        Fast::Start(args) => said("start", ns.and_then(|ns| start_cmd(&ns, args))),
    }
}

/// `lanco NS start`: the TASKs named, or every enabled definition.
fn start_cmd(ns: &Namespace, a: crate::cli::StartArgs) -> Result<u8> {
    let limits = a.limits.to_limits();
    if a.enabled {
        start::run_enabled(ns, a.no_wait, &limits)
    } else {
        start::run(ns, &a.tasks, a.no_wait, &limits)
    }
}

/// `check` of the fast form, as `dispatch` would run it, without passing
/// through `dispatch`: its stack frame, sized for every command, cost
/// `check` three page faults of stack, and its code pages more.
#[inline(never)]
fn check_only(ns: NamespaceName, task: TaskName) -> u8 {
    let checked = Config::load()
        .map_err(Error::from)
        .and_then(|config| Namespace::open(config, ns))
        .and_then(|ns| check::run(&ns, &task));
    said("check", checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the fast form takes `run`'s or `start`'s arguments, it reads
    /// them as the whole parser does; what it does not take, the whole
    /// parser gets.
    #[test]
    fn the_fast_start_reads_what_the_whole_parser_reads() {
        let cases: &[&[&str]] = &[
            &["ns", "run", "t", "sleep", "10"],
            &["ns", "run", "t", "ls", "-l", "--color"],
            &["ns", "run", "-f", "-q", "t", "sh", "-c", "exit 3"],
            &[
                "ns", "run", "--env", "A=1", "--cwd", "/tmp", "--memory", "64M", "t", "x",
            ],
            &[
                "ns",
                "run",
                "--restart",
                "on-failure",
                "--needs",
                "db",
                "t",
                "x",
                "--",
                "y",
            ],
            &["ns", "run", "t", "--", "x"],
            &["ns", "run", "--help"],
            &["ns", "run", "--config", "/x", "t", "x"],
            &["ns", "run", "-q", "t", "x"],
            &["ns", "run", "t"],
            &["ns", "run", "bad/name", "x"],
            &["--all-namespaces", "run", "t", "x"],
            &["ns", "start", "a", "b"],
            &["ns", "start", "--no-wait", "--memory", "1G", "a"],
            &["ns", "start", "--enabled"],
            &["ns", "start", "--enabled", "a"],
            &["ns", "start"],
            &["ns", "start", "--help"],
        ];
        for argv in cases {
            let fast = fast_start_of(argv.iter().map(std::ffi::OsString::from));
            let whole = Cli::try_parse_from(std::iter::once("lanco").chain(argv.iter().copied()));
            match (fast, whole) {
                (Some((ns, fast)), Ok(cli)) => {
                    assert_eq!(cli.namespace.as_ref(), Some(&ns), "{argv:?}");
                    assert!(
                        cli.config.is_none(),
                        "{argv:?}: --config must go the whole way"
                    );
                    let same = match (fast, cli.command) {
                        (Fast::Run(f), Command::Run(w)) => format!("{f:?}") == format!("{w:?}"),
                        (Fast::Start(f), Command::Start(w)) => format!("{f:?}") == format!("{w:?}"),
                        _ => false,
                    };
                    assert!(same, "{argv:?}");
                }
                (Some(_), Err(e)) => panic!("{argv:?}: fast took what clap refuses: {e}"),
                (None, _) => {}
            }
        }
        // The common forms do take the fast way.
        for argv in [
            &["ns", "run", "t", "sleep", "10"][..],
            &["ns", "start", "a"],
        ] {
            assert!(fast_start_of(argv.iter().map(std::ffi::OsString::from)).is_some());
        }
    }
}
