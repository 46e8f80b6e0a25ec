//! The `lanco` command line (clap derive). Man pages and completions are
//! generated from [`Cli`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lanco_proto::limits;
use lanco_proto::{Limits, NamespaceName, TaskName};

use crate::graph::Deps;
use crate::signal::Signal;
use crate::supervision::{parse_duration, Ready, Restart, RestartLimit};

/// The exit statuses, as `--help` ends: the same table as the README's
/// "Exit status" and DESIGN's "What bad input gets", and what
/// `Error::exit_code` maps to (tests/tests/usability.rs runs a case of
/// each row).
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success; check, status TASK: the task is running
  1    check, status TASK: the task is not running
  2    bad usage or input (names, options, the config, an owner outside the
       group, a limit this host's cgroups lack); nothing was changed
  3    refused by state: already running (run); not running (stop, kill,
       wait, release); needed by running tasks (stop, restart without
       --force); namespace busy (destroy without --force) or owned by
       someone else (init); a name another member owns or defined (run,
       define, apply); a definition whose task runs (undefine without
       --stop)
  4    permission denied: not an administrator (init, destroy, limit);
       another member's definition (start, restart, undefine); no such
       namespace, or you are not a member of it (the same answer for both)
  5    what is named does not exist: the namespace (told to root), a user or
       group (init), a definition (start, show, undefine), a task's log
       (logs of a task that never ran)
  6    the command could not be started (with why: no such program, a
       directory it cannot enter), or was never ready (run --ready, start),
       or a task it needs failed to start (start)
  7    lancod unreachable, failed, or still busy after 3 s of retries
  8    system error (cgroupfs, files); run -f, wait: the task's status was
       lost (its monitor was killed)
  124  wait: the timeout passed first
  run -f and wait exit with the task's own status (128+N if killed by
  signal N).";

#[derive(Debug, Parser)]
#[command(
    name = "lanco",
    version,
    about = "Run named tasks tracked by cgroup v2: find, measure and stop them later",
    after_help = EXIT_STATUS_HELP,
    subcommand_value_name = "COMMAND",
    override_usage = "lanco [OPTIONS] <NAMESPACE> <COMMAND>\n       \
                      lanco [OPTIONS] --all-namespaces accounting [ACCOUNTING OPTIONS]\n       \
                      lanco [OPTIONS] namespaces [--json]"
)]
pub struct Cli {
    /// Configuration file [default: $LANCO_CONFIG, else /etc/lanco/lanco.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Every namespace instead of one (root and admin_group; with `accounting` only)
    #[arg(long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// The namespace (every command but `namespaces` and `--all-namespaces
    /// accounting` needs one)
    #[arg(value_name = "NAMESPACE")]
    pub namespace: Option<NamespaceName>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the namespaces you may use (root and the admin group: all) with
    /// their owner, group, running tasks and ceilings; no NAMESPACE before it
    #[command(after_help = EXIT_STATUS_HELP)]
    Namespaces {
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Create a namespace owned by USER:GROUP (root or the admin group; via lancod)
    #[command(after_help = EXIT_STATUS_HELP)]
    Init {
        /// Owner [default: the caller, or $SUDO_USER under sudo]
        #[arg(short = 'u', long = "user", value_name = "USER")]
        user: Option<String>,
        /// Group whose members share the namespace [default: the owner's primary group]
        #[arg(short = 'g', long = "group", value_name = "GROUP")]
        group: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Remove an idle namespace (root or the admin group; via lancod)
    #[command(after_help = EXIT_STATUS_HELP)]
    Destroy {
        /// Stop its running tasks first
        #[arg(long)]
        force: bool,
    },
    /// Start TASK running CMD; returns once CMD has been exec'd (or is ready, with --ready)
    #[command(after_help = EXIT_STATUS_HELP)]
    Run(RunArgs),
    /// Define TASK as CMD, to be started later with `start` (replaces your
    /// previous definition of TASK)
    #[command(after_help = EXIT_STATUS_HELP)]
    Define(DefineArgs),
    /// Add the definitions of FILE ([task.NAME] tables), replacing yours of
    /// the same names; your other definitions stay. All or nothing: a file
    /// with any error changes nothing
    #[command(after_help = EXIT_STATUS_HELP)]
    Apply {
        /// The TOML file (as `show` prints)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove your definition of TASK (refused while it runs, unless --stop)
    #[command(after_help = EXIT_STATUS_HELP)]
    Undefine {
        /// Stop the task first if it runs
        #[arg(long)]
        stop: bool,
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// List every member's definitions, and whether each task runs
    #[command(after_help = EXIT_STATUS_HELP)]
    Defs {
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Print TASK's definition as TOML that `apply` reads back unchanged
    #[command(after_help = EXIT_STATUS_HELP)]
    Show {
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Mark your definition of TASK enabled
    #[command(after_help = EXIT_STATUS_HELP)]
    Enable {
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Mark your definition of TASK disabled
    #[command(after_help = EXIT_STATUS_HELP)]
    Disable {
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Start your defined TASKs (in parallel); returns once each is ready.
    /// A task that already runs is left alone (exit 0)
    #[command(after_help = EXIT_STATUS_HELP)]
    Start(StartArgs),
    /// Show the namespace's ceilings, or change them (root or the admin
    /// group; via lancod); members cannot raise them
    #[command(after_help = LIMITS_HELP)]
    Limit {
        /// Remove this ceiling (repeatable): memory, memory-high, pids, cpu,
        /// cpu-weight, io-weight
        #[arg(long, value_name = "KEY")]
        clear: Vec<lanco_proto::limits::Key>,
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Stop TASK if it runs, then start it from your definition
    #[command(after_help = EXIT_STATUS_HELP)]
    Restart {
        /// Return once the command has been exec'd, without waiting for readiness
        #[arg(long)]
        no_wait: bool,
        /// Also when tasks that need TASK run: they stop while it restarts,
        /// and start again once it is ready
        #[arg(long)]
        force: bool,
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Exit 0 while any process of TASK lives, 1 otherwise; prints nothing
    #[command(after_help = EXIT_STATUS_HELP)]
    Check {
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Stop TASK: SIGTERM to every process, cgroup.kill after the timeout
    #[command(after_help = EXIT_STATUS_HELP)]
    Stop {
        /// Seconds to wait before cgroup.kill [default: the task's --stop-timeout]
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        timeout: Option<Duration>,
        /// Also when tasks that need TASK run: stop them first
        #[arg(long)]
        force: bool,
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Drop TASK's mark of started on purpose: it stops unless a running
    /// task holds it (then it stops with the last one)
    #[command(after_help = EXIT_STATUS_HELP)]
    Release {
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Show TASK's dependency tree, and the state of each task in it
    #[command(after_help = EXIT_STATUS_HELP)]
    Deps {
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Send a signal to every process of TASK, or with --main to its main
    /// process only
    #[command(after_help = EXIT_STATUS_HELP)]
    Kill {
        /// Only the task's main process (the command run, or the process
        /// it named with MAINPID=), not its children or helpers: `kill
        /// --main -s HUP` asks a daemon to reload without signalling
        /// helpers that do not handle HUP (as `systemctl kill
        /// --kill-whom=main`). Exit 3 if the main process has exited
        #[arg(long)]
        main: bool,
        /// Signal name (TERM, SIGHUP, …) or number
        #[arg(
            short = 's',
            long = "signal",
            default_value = "TERM",
            value_name = "SIGNAL"
        )]
        signal: Signal,
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Wait until each TASK's current run is over; exit with its status
    #[command(after_help = EXIT_STATUS_HELP)]
    Wait {
        /// Give up after SECS (exit 124) [default: wait as long as it takes]
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        timeout: Option<Duration>,
        #[arg(value_name = "TASK", required = true)]
        tasks: Vec<TaskName>,
    },
    /// List running tasks and every process in them (-a: also those that
    /// ended or failed, with how their last run ended)
    #[command(after_help = EXIT_STATUS_HELP)]
    Ls {
        /// Do not truncate command lines
        #[arg(short = 'l', long = "long")]
        long: bool,
        /// Also the tasks that do not run now: every name used in the
        /// namespace, with its last run's end from its exit record (ended,
        /// failed, stopped, killed), as `status` without TASK
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Show whether TASK runs, its pids and start time, or its last exit
    /// record; without TASK, a summary of the namespace: every task it has
    /// known, its state, when it started or ended, and how its last run ended
    #[command(after_help = EXIT_STATUS_HELP)]
    Status {
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
        /// The task [default: a summary of every task]
        #[arg(value_name = "TASK")]
        task: Option<TaskName>,
    },
    /// Report finished runs from the members' journals: runs, CPU, memory,
    /// wall time, failures and OOM kills per task, user or day, and totals
    #[command(after_help = EXIT_STATUS_HELP)]
    Accounting(AccountingArgs),
    /// Print TASK's log
    #[command(after_help = EXIT_STATUS_HELP)]
    Logs {
        /// Keep printing as the log grows, until the task ends
        #[arg(short = 'f', long = "follow")]
        follow: bool,
        /// Only the last LINES lines
        #[arg(short = 'n', long = "lines", value_name = "LINES")]
        lines: Option<usize>,
        #[arg(value_name = "TASK")]
        task: TaskName,
    },
    /// Watch the tasks live: CPU, memory and processes against their limits
    ///
    /// A full-screen view refreshed every -d SECS: one row per task (state,
    /// user, CPU % of one CPU and of the host, memory now, peak and limit,
    /// pids, uptime, restarts), the namespace's totals against its ceilings,
    /// and the selected task's last log lines. Keys: arrows or j/k select;
    /// s, m, c, n sort by state, memory, CPU, name; l shows or hides the log;
    /// K stops the selected task (after y, as `stop` does); q quits. Rows at
    /// 90 % or more of a limit are red.
    ///
    /// With -b, or when stdout is not a terminal, it prints one snapshot as a
    /// table and exits; with --json, one JSON document (namespace, ceilings,
    /// totals, memory_source, tasks with every figure; null where unknown).
    /// The CPU % of a snapshot is measured over -d SECS (-d 0: one sample, no
    /// CPU %). Where the memory controller is not in cgroup v2, memory is the
    /// sum of the task's processes' PSS, or RSS where PSS is not readable
    /// (other users' processes); the header and the JSON say which.
    #[command(after_help = EXIT_STATUS_HELP)]
    Top {
        /// Seconds between refreshes, and the time a snapshot's CPU % is measured over
        #[arg(
            short = 'd',
            long = "delay",
            value_name = "SECS",
            value_parser = seconds,
            default_value = "1"
        )]
        delay: Duration,
        /// Print one snapshot as a table and exit
        #[arg(short = 'b', long = "batch")]
        batch: bool,
        /// Print one snapshot as one JSON document and exit
        #[arg(long)]
        json: bool,
    },
}

/// How a task runs: the options `run` and `define` share.
#[derive(Debug, clap::Args)]
pub struct TaskOptions {
    /// Log file, relative to the current directory [default: {log_dir}/lanco-NS/task-TASK.log]
    #[arg(short = 'l', long = "log", value_name = "LOGFILE")]
    pub log: Option<PathBuf>,
    /// Shell command to run after the task ends, in its cgroup and working
    /// directory, its output appended to the task's log. Its environment has
    /// LANCO_NAMESPACE, LANCO_TASK, LANCO_EXIT_STATUS (the status a shell
    /// would give: 0-255, 128+N for signal N; empty if lost) and LANCO_EXIT
    /// (the end in words: "exited with code 3", "killed by signal 9
    /// (SIGKILL)")
    #[arg(short = 'c', long = "on-exit", value_name = "ON_EXIT_CMD")]
    pub on_exit: Option<String>,
    /// Working directory [default: the current one]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (repeatable). `run` starts from the
    /// caller's environment; a definition from the definer's HOME, USER,
    /// LOGNAME, SHELL (user database) and a default PATH, never the caller's
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<OsString>,
    /// Seconds between SIGTERM and cgroup.kill when the task is stopped [default: 10]
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub stop_timeout: Option<Duration>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub const LIMITS_HELP: &str = "\
Limits need their cgroup v2 controller (memory, pids, cpu, io). On a host
whose cgroup v2 hierarchy lacks it (a hybrid layout, where it is a v1
controller) the command fails with exit status 2 and changes nothing.";

/// Resource limits: the options `init`, `limit`, `run`, `define` and
/// `start` share. On a task, written in its cgroup before its command
/// starts; on a namespace (init, limit), ceilings over all its tasks.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Limit options")]
pub struct LimitArgs {
    /// Memory limit; the OOM killer ends the task, as a whole, past it
    /// (memory.max; SIZE: bytes, or with K, M, G, T: 64M, 1.5G)
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_size)]
    pub memory: Option<u64>,
    /// Memory above which it is slowed and reclaimed hard (memory.high)
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_size)]
    pub memory_high: Option<u64>,
    /// Most processes and threads at once; more forks fail (pids.max)
    #[arg(long, value_name = "N", value_parser = limits::parse_pids)]
    pub pids: Option<u64>,
    /// CPU time, in CPUs (cpu.max; 0.5: half of one CPU)
    #[arg(long, value_name = "CPUS", value_parser = limits::parse_cpus)]
    pub cpu: Option<u64>,
    /// Share of CPU under contention, 1-10000 (cpu.weight; default 100)
    #[arg(long, value_name = "W", value_parser = limits::parse_weight)]
    pub cpu_weight: Option<u16>,
    /// Share of disk time under contention, 1-10000 (io.weight; default 100)
    #[arg(long, value_name = "W", value_parser = limits::parse_weight)]
    pub io_weight: Option<u16>,
}

impl LimitArgs {
    pub fn to_limits(&self) -> Limits {
        Limits {
            memory: self.memory,
            memory_high: self.memory_high,
            pids: self.pids,
            cpu_quota_usec: self.cpu,
            cpu_weight: self.cpu_weight,
            io_weight: self.io_weight,
        }
    }
}

/// Restarts and readiness: the options `run` and `define` share.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Supervision options")]
pub struct SupervisionArgs {
    /// Start CMD again after it ended: no, on-failure, always [default: no]
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<Restart>,
    /// First delay before a restart, doubled after each quick end [default: 200ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub restart_delay: Option<Duration>,
    /// Longest delay before a restart [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub restart_delay_max: Option<Duration>,
    /// Give up after more than COUNT restarts within INTERVAL [default: 3/10s]
    #[arg(long, value_name = "COUNT/INTERVAL")]
    pub restart_limit: Option<RestartLimit>,
    /// When the task is ready: exec, notify (READY=1 on $NOTIFY_SOCKET), fd:N
    /// (a newline on fd N) [default: exec]
    #[arg(long, value_name = "HOW")]
    pub ready: Option<Ready>,
    /// Stop a run not ready this long after its exec [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub start_timeout: Option<Duration>,
}

/// TASK CMD [ARG...], of `run` and `define`.
#[derive(Debug, clap::Args)]
pub struct TaskCommand {
    /// The task's name
    #[arg(value_name = "TASK")]
    pub task: TaskName,
    /// The command and its arguments
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// `lanco NS run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Stay in the foreground until the task ends, copying what it writes
    /// to its log to stdout as well (as `systemd-run --wait --pipe`); exit
    /// with its status
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// With -f: do not copy the task's output to stdout (it is in the log)
    #[arg(short = 'q', long = "quiet", requires = "foreground")]
    pub quiet: bool,
    /// Start the task's environment empty, not from the caller's (then only
    /// the --env variables)
    #[arg(long)]
    pub clear_env: bool,
    /// With --ready other than exec: return once CMD has been exec'd, without
    /// waiting for readiness
    #[arg(long)]
    pub no_wait: bool,
    // After the plain options: a flattened group's heading (its limits')
    // would be theirs too.
    #[command(flatten)]
    pub options: TaskOptions,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
    #[command(flatten)]
    pub deps: DepsArgs,
    #[command(flatten)]
    pub what: TaskCommand,
}

/// `lanco NS start`'s arguments.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Return once each command has been exec'd, without waiting for readiness
    #[arg(long)]
    pub no_wait: bool,
    /// Instead of TASKs: every definition of yours marked enabled (what
    /// runs at boot, as you: `lancod restore` runs this for each member)
    #[arg(long, conflicts_with = "tasks")]
    pub enabled: bool,
    #[arg(value_name = "TASK", required_unless_present = "enabled")]
    pub tasks: Vec<TaskName>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `lanco NS define`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DefineArgs {
    /// Mark the definition enabled
    #[arg(long)]
    pub enable: bool,
    #[command(flatten)]
    pub options: TaskOptions,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
    #[command(flatten)]
    pub deps: DepsArgs,
    #[command(flatten)]
    pub what: TaskCommand,
}

/// `lanco NS accounting`'s arguments.
#[derive(Debug, clap::Args)]
pub struct AccountingArgs {
    /// Count runs that ended at T or later: an RFC 3339 date or date-time
    /// (UTC unless it has an offset: 2026-11-01, 2026-11-01T12:00:00Z) or a
    /// time before now (-7d, -12h, -30m)
    #[arg(long, value_name = "T", value_parser = time_arg, allow_hyphen_values = true)]
    pub since: Option<i64>,
    /// Count runs that ended before T (as --since)
    #[arg(long, value_name = "T", value_parser = time_arg, allow_hyphen_values = true)]
    pub until: Option<i64>,
    /// Group by task, user or day (UTC, of the run's end) [default: task;
    /// with --all-namespaces: user, from root's billing journal]
    #[arg(long, value_name = "BY")]
    pub by: Option<crate::accounting::By>,
    /// One JSON document on stdout
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV on stdout: a header, one row per group, a "(total)" row
    #[arg(long)]
    pub csv: bool,
}

/// A time of `accounting --since/--until`, in UNIX seconds.
fn time_arg(s: &str) -> Result<i64, String> {
    crate::accounting::parse_time(s, crate::time::now_secs())
}

/// Dependencies: the options `run` and `define` share.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Dependency options")]
pub struct DepsArgs {
    /// Start TASK first and wait until it is ready; stop while it is down,
    /// and start again when it is back (repeatable)
    #[arg(long, value_name = "TASK")]
    pub needs: Vec<TaskName>,
    /// Start TASK first and wait until it is ready; it may end afterwards
    #[arg(long, value_name = "TASK")]
    pub milestone: Vec<TaskName>,
    /// Start TASK first and wait until it is ready or has failed
    #[arg(long, value_name = "TASK")]
    pub waits_for: Vec<TaskName>,
    /// Start TASK alongside; whatever becomes of it
    #[arg(long, value_name = "TASK")]
    pub wants: Vec<TaskName>,
    /// If TASK is starting, wait for it first; never start it
    #[arg(long, value_name = "TASK")]
    pub after: Vec<TaskName>,
}

impl DepsArgs {
    pub fn to_deps(&self) -> Deps {
        let mut d = Deps {
            needs: self.needs.clone(),
            milestone: self.milestone.clone(),
            waits_for: self.waits_for.clone(),
            wants: self.wants.clone(),
            after: self.after.clone(),
        };
        d.normalise();
        d
    }
}

impl SupervisionArgs {
    /// `s` with the options given set.
    pub fn apply_to(&self, s: &mut crate::supervision::Supervision) {
        if let Some(r) = self.restart {
            s.restart = r;
        }
        if let Some(d) = self.restart_delay {
            s.restart_delay = d;
        }
        if let Some(d) = self.restart_delay_max {
            s.restart_delay_max = d;
        }
        if let Some(l) = self.restart_limit {
            s.restart_limit = l;
        }
        if let Some(r) = self.ready {
            s.ready = r;
        }
        if let Some(d) = self.start_timeout {
            s.start_timeout = d;
        }
    }
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::Destroy { .. } => "destroy",
            Command::Run(_) => "run",
            Command::Define(_) => "define",
            Command::Apply { .. } => "apply",
            Command::Undefine { .. } => "undefine",
            Command::Defs { .. } => "defs",
            Command::Show { .. } => "show",
            Command::Enable { .. } => "enable",
            Command::Disable { .. } => "disable",
            Command::Start(_) => "start",
            Command::Limit { .. } => "limit",
            Command::Namespaces { .. } => "namespaces",
            Command::Restart { .. } => "restart",
            Command::Check { .. } => "check",
            Command::Stop { .. } => "stop",
            Command::Kill { .. } => "kill",
            Command::Release { .. } => "release",
            Command::Deps { .. } => "deps",
            Command::Wait { .. } => "wait",
            Command::Ls { .. } => "ls",
            Command::Status { .. } => "status",
            Command::Logs { .. } => "logs",
            Command::Accounting(_) => "accounting",
            Command::Top { .. } => "top",
        }
    }
}

/// A non-negative number of seconds (`2`, `0.5`).
fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|f| Duration::try_from_secs_f64(f).ok())
        .ok_or_else(|| format!("invalid number of seconds: {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_parsed() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("-1").is_err() && seconds("x").is_err());
    }
}
