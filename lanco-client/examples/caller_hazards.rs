//! Test helper for tests/tests/caller_hazards.rs, not an example to follow: a
//! daemon that links the library and calls `Namespace::run` after doing to
//! itself what real callers do.
//!
//! `caller_hazards [--subreaper] [--leak FILE] NS TASK COMMAND...`
//!
//! `--leak FILE` opens FILE and a pipe without close-on-exec; `--subreaper`
//! makes it a child subreaper that, after `run`, reaps what it adopts until
//! nothing is left. Ignored signals and a signal mask come from whoever execs
//! it (both survive execve). It prints one fact a line on stdout.

use std::time::{Duration, Instant};

use lanco_client::{Config, Namespace, TaskSpec};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let subreaper = take(&mut args, "--subreaper").is_some();
    let leak = take(&mut args, "--leak");
    if args.len() < 3 {
        return Err("usage: caller_hazards [--subreaper] [--leak FILE] NS TASK COMMAND...".into());
    }
    let _leaked = match leak {
        Some(path) => {
            // No O_CLOEXEC on either: as a careless caller (or a
            // socket-activated daemon's listening socket) leaves them.
            let file = nix::fcntl::open(path.as_str(), OFlag::O_RDONLY, Mode::empty())?;
            let (r, w) = nix::unistd::pipe()?;
            println!("leaked pipe:[{}]", nix::sys::stat::fstat(&r)?.st_ino);
            Some((file, r, w))
        }
        None => None,
    };
    if subreaper {
        nix::sys::prctl::set_child_subreaper(true)?;
    }
    let ns = Namespace::open(Config::load()?, args[0].parse()?)?;
    let spec = TaskSpec::new(args[1].parse()?, args[2..].iter().map(Into::into).collect())?;
    let started = ns.run(&spec)?;
    println!("started {} {}", started.pid, started.monitor_pid);
    println!("children-after-run {}", children());
    if subreaper {
        drop(started);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(WaitStatus::StillAlive) => {
                    println!("timeout");
                    break;
                }
                Ok(WaitStatus::Exited(pid, code)) => println!("reaped {pid} exited {code}"),
                Ok(other) => println!("reaped {other:?}"),
                Err(Errno::ECHILD) => break,
                Err(e) => return Err(e.into()),
            }
        }
        println!("children-at-end {}", children());
    }
    Ok(())
}

/// Removes `flag` (and its value, for `--leak`) from `args`.
fn take(args: &mut Vec<String>, flag: &str) -> Option<String> {
    let i = args.iter().position(|a| a == flag)?;
    args.remove(i);
    if flag == "--leak" {
        return (i < args.len()).then(|| args.remove(i));
    }
    Some(String::new())
}

/// This process's children (zombies included), or `none`. From every
/// process's parent in /proc: not every kernel has /proc/PID/task/*/children.
fn children() -> String {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        if after.split_whitespace().nth(1) == Some(me.as_str()) {
            pids.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    if pids.is_empty() {
        "none".into()
    } else {
        pids.join(",")
    }
}
