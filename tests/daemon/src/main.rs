//! A daemon that links `lanco-client` as an outside one would: the library
//! without the `lanco` command (`default-features = false`), with the
//! awaitable calls (feature `tokio`), and nothing but its public API. Driven
//! by tests/tests/daemon_probe.rs, which runs it as a real member of a
//! private installation (`LANCO_CONFIG`), from a directory with no
//! lanco-monitor in it.
//!
//! Each command does what a daemon does with the library, checks every
//! answer itself and prints what it saw, one fact a line (`key value` or
//! `key=value`), then `ok`. A failed check is one line on stderr and exit
//! status 1. Errors of the library are only ever shown or searched as text,
//! never matched by variant.
//!
//! ```text
//! lanco-daemon-probe NS rapid ROUNDS        run + wait of a job that ends at once
//! lanco-daemon-probe NS status-after-end ROUNDS
//! lanco-daemon-probe NS basics              run, wait (timeout), stop, run ids, refusals
//! lanco-daemon-probe NS env                 the environment is explicit
//! lanco-daemon-probe NS paths WORKDIR       relative paths refused, start failures told apart
//! lanco-daemon-probe NS logs WORKDIR        log path after the end, follow
//! lanco-daemon-probe NS sigchld             a caller that ignores SIGCHLD
//! lanco-daemon-probe NS subreaper           a caller that is a child subreaper
//! lanco-daemon-probe NS fds FILE            a caller with fds without close-on-exec
//! lanco-daemon-probe NS in-a-task           a caller that is a task, started cold
//! lanco-daemon-probe NS async               run, wait, stop awaited, 10 ms heartbeat
//! lanco-daemon-probe NS reattach-start TASK GOFILE   start, then wait (to be SIGKILLed)
//! lanco-daemon-probe NS reattach-find TASK GOFILE    find it by name, release it, wait
//! ```

use std::ffi::OsString;
use std::time::{Duration, Instant};

use lanco_client::{Config, ExitRecord, Namespace, TaskName, TaskSpec};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Fails the command with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

mod asynchronous;
mod hazards;
mod logs;
mod runs;
mod spec;

const USAGE: &str = "usage: lanco-daemon-probe NS COMMAND [ARGS...] (see the source)";

fn main() {
    match probe() {
        Ok(()) => println!("ok"),
        Err(e) => {
            eprintln!("lanco-daemon-probe: {}", chain(&*e));
            std::process::exit(1);
        }
    }
}

fn probe() -> Res {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(ns), Some(cmd)) = (args.first(), args.get(1)) else {
        return Err(USAGE.into());
    };
    let rest = &args[2..];
    let arg = |i: usize| rest.get(i).map(String::as_str).ok_or(USAGE);
    let ns = Namespace::open(Config::load()?, ns.parse()?)?;
    match cmd.as_str() {
        "rapid" => runs::rapid(&ns, arg(0)?.parse()?),
        "status-after-end" => runs::status_after_end(&ns, arg(0)?.parse()?),
        "basics" => runs::basics(&ns),
        "reattach-start" => runs::reattach_start(&ns, &arg(0)?.parse()?, arg(1)?),
        "reattach-find" => runs::reattach_find(&ns, &arg(0)?.parse()?, arg(1)?),
        "env" => spec::env(&ns),
        "paths" => spec::paths(&ns, arg(0)?),
        "logs" => logs::logs(&ns, arg(0)?),
        "sigchld" => hazards::sigchld(&ns),
        "subreaper" => hazards::subreaper(&ns),
        "fds" => hazards::fds(&ns, arg(0)?),
        "in-a-task" => hazards::in_a_task(&ns),
        "async" => asynchronous::probe(ns),
        _ => Err(USAGE.into()),
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn task(s: &str) -> Res<TaskName> {
    Ok(s.parse()?)
}

/// A spec for `argv`, as a daemon makes one: an empty environment, the
/// caller's (absolute) working directory, the default log.
fn spec(task: &TaskName, argv: &[&str]) -> Res<TaskSpec> {
    Ok(TaskSpec::new(
        task.clone(),
        argv.iter().map(OsString::from).collect(),
    )?)
}

/// A spec for `sh -c script` (sh found in the default PATH: the task's
/// environment is empty).
fn sh(task: &TaskName, script: &str) -> Res<TaskSpec> {
    spec(task, &["sh", "-c", script])
}

/// Expects `r` to be an error whose text holds `needle`; prints and returns
/// the text.
fn refused<T: std::fmt::Debug, E: std::error::Error>(
    what: &str,
    r: Result<T, E>,
    needle: &str,
) -> Res<String> {
    match r {
        Ok(v) => {
            Err(format!("{what}: succeeded ({v:?}), expected an error with {needle:?}").into())
        }
        Err(e) => {
            let text = chain(&e);
            ensure!(
                text.contains(needle),
                "{what}: error {text:?} lacks {needle:?}"
            );
            println!("refused {what}: {text}");
            Ok(text)
        }
    }
}

/// Waits (at most `limit`) for the end of `task`'s current run and checks
/// that the record is `run_id`'s.
fn wait_for_run(ns: &Namespace, task: &TaskName, run_id: &str, limit: Duration) -> Res<ExitRecord> {
    let rec = ns
        .wait(task, Some(limit))?
        .ok_or_else(|| format!("wait for {task}: still running after {limit:?}"))?;
    ensure!(
        rec.run_id == run_id,
        "wait for {task}: the record of run {}, not of run {run_id}",
        rec.run_id
    );
    Ok(rec)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Polls `cond` every 5 ms for at most `limit`.
fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Facts about processes, from /proc (what a member may read of its own
/// processes).
mod proc {
    use std::fs;

    /// The state letter and the rest of /proc/PID/stat after the command.
    fn stat(pid: i32) -> Option<Vec<String>> {
        let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let after = s.rsplit_once(')')?.1;
        Some(after.split_whitespace().map(str::to_owned).collect())
    }

    /// Alive: not gone, not a zombie.
    pub fn alive(pid: i32) -> bool {
        stat(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
    }

    /// This process's children, zombies included (from every process's
    /// parent: not every kernel has /proc/PID/task/*/children).
    pub fn children() -> Vec<i32> {
        let me = std::process::id().to_string();
        let mut out: Vec<i32> = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| stat(*pid).is_some_and(|f| f.get(1) == Some(&me)))
            .collect();
        out.sort();
        out
    }

    /// A mask line of /proc/PID/status (`SigIgn`, `SigBlk`), as bits.
    pub fn sigmask(pid: i32, field: &str) -> Result<u64, String> {
        let st = fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let hex = st
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
        u64::from_str_radix(hex.trim(), 16).map_err(|e| format!("{field}: {e}"))
    }

    /// fd number → what it points at.
    pub fn fds(pid: i32) -> Result<Vec<(i32, String)>, String> {
        let mut v: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
            .flatten()
            .map(|e| {
                let n = e.file_name().to_str().and_then(|n| n.parse().ok());
                let target = fs::read_link(e.path()).unwrap_or_default();
                (n.unwrap_or(-1), target.display().to_string())
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// The open flags of one fd of a process (fdinfo's `flags:`, octal).
    pub fn fd_flags(pid: i32, fd: i32) -> Result<u32, String> {
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
            .map_err(|e| format!("/proc/{pid}/fdinfo/{fd}: {e}"))?;
        info.lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .ok_or_else(|| format!("no flags in /proc/{pid}/fdinfo/{fd}"))
    }
}
