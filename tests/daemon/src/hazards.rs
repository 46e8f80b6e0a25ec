//! What real callers do to themselves before they call `run`, done here in
//! this process as a daemon does it: ignore SIGCHLD (and another signal,
//! and block one), become a child subreaper, hold fds without close-on-exec
//! (a file, a pipe, a listening socket as socket activation hands over).
//! `run` and `wait` still work, the monitor still sees its task end, and
//! neither the monitor nor the task keeps the caller's signal state or fds.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use lanco_client::{Exit, Namespace};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::{poll, proc, sh, spec, task, wait_for_run, Res};

const LIMIT: Duration = Duration::from_secs(10);

fn bit(sig: Signal) -> u64 {
    1 << (sig as u32 - 1)
}

/// Sets `sig` to SIG_IGN in this process.
#[allow(unsafe_code)]
fn ignore(sig: Signal) -> Res {
    // SAFETY: SIG_IGN installs no handler: no code runs in signal context.
    unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) }?;
    Ok(())
}

/// A caller that ignores SIGCHLD (and SIGUSR2) and blocks SIGUSR1.
pub fn sigchld(ns: &Namespace) -> Res {
    use Signal::{SIGCHLD, SIGUSR1, SIGUSR2};
    ignore(SIGCHLD)?;
    ignore(SIGUSR2)?;
    let mut set = SigSet::empty();
    set.add(SIGUSR1);
    set.thread_block()?;
    let me = std::process::id() as i32;
    ensure!(
        proc::sigmask(me, "SigIgn")? & bit(SIGCHLD) != 0
            && proc::sigmask(me, "SigBlk")? & bit(SIGUSR1) != 0,
        "the hazard is not set up"
    );

    // run works (0.1: "wait for the monitor: No child processes"), the
    // monitor sees its task end, and the name is free again.
    let q = task("quick")?;
    let started = ns.run(&sh(&q, "exit 7")?)?;
    let kids = proc::children();
    ensure!(kids.is_empty(), "children after run: {kids:?}");
    let rec = wait_for_run(ns, &q, &started.run_id, LIMIT)?;
    ensure!(rec.exit == Exit::Code(7), "{rec:?}");
    let monitor = started.monitor_pid;
    ensure!(
        poll(LIMIT, || !proc::alive(monitor)),
        "the monitor {monitor} never noticed the end of its task"
    );
    ensure!(!ns.check(&q)?, "check: still running");
    let again = ns.run(&sh(&q, "exit 3")?)?;
    let exit = again.wait()?;
    ensure!(exit == Exit::Code(3), "Started::wait: {exit:?}");
    println!("sigchld ignored: run, wait and Started::wait work");

    // Neither the monitor nor the task keeps what the caller ignored or
    // blocked; the task starts with the defaults.
    let long = task("long")?;
    let s = ns.run(&spec(&long, &["sleep", "60"])?)?;
    for (who, pid) in [("monitor", s.monitor_pid), ("task", s.pid)] {
        let ign = proc::sigmask(pid, "SigIgn")?;
        let blk = proc::sigmask(pid, "SigBlk")?;
        println!("{who} SigIgn={ign:#x} SigBlk={blk:#x}");
        ensure!(
            ign & (bit(SIGCHLD) | bit(SIGUSR2)) == 0,
            "the {who} ignores {ign:#x}"
        );
        ensure!(blk & bit(SIGUSR1) == 0, "the {who} blocks {blk:#x}");
        if who == "task" {
            ensure!(
                (ign, blk) == (0, 0),
                "the task's signal state: {ign:#x} {blk:#x}"
            );
        }
    }
    ensure!(!ns.stop(&long, Some(LIMIT))?, "stop of sleep: killed");
    let rec = wait_for_run(ns, &long, &s.run_id, LIMIT)?;
    ensure!(rec.exit == Exit::Signal(15), "{rec:?}");
    Ok(())
}

/// A caller that is a child subreaper: it adopts the monitor (the kernel's
/// rule for orphans; nothing lets a descendant opt out), which exits
/// cleanly once its task is over and is reaped by the caller's loop, the
/// only child it ever gets.
pub fn subreaper(ns: &Namespace) -> Res {
    nix::sys::prctl::set_child_subreaper(true)?;
    let t = task("t")?;
    let started = ns.run(&sh(&t, "sleep 0.2; exit 7")?)?;
    let monitor = started.monitor_pid;
    // run reaped the process it started: the only child there may be is the
    // monitor, adopted.
    let kids = proc::children();
    println!("children after run: {kids:?} (monitor {monitor})");
    ensure!(
        kids.is_empty() || kids == [monitor],
        "children after run: {kids:?}, monitor {monitor}"
    );
    let rec = wait_for_run(ns, &t, &started.run_id, LIMIT)?;
    ensure!(rec.exit == Exit::Code(7), "{rec:?}");
    drop(started);

    // The daemon's reaping loop.
    let mut reaped = Vec::new();
    let deadline = Instant::now() + LIMIT;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                ensure!(
                    Instant::now() < deadline,
                    "a child never exited: {reaped:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(WaitStatus::Exited(pid, code)) => reaped.push(format!("{pid} exited {code}")),
            Ok(other) => reaped.push(format!("{other:?}")),
            Err(Errno::ECHILD) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("reaped {reaped:?}");
    ensure!(
        reaped == [format!("{monitor} exited 0")],
        "reaped {reaped:?}, monitor {monitor}"
    );
    let kids = proc::children();
    ensure!(kids.is_empty(), "children at the end: {kids:?}");
    Ok(())
}

/// What `/proc/PID/fd/N` says of an fd of this process.
fn target(fd: &impl AsFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// A caller holding, without close-on-exec, `file` opened, a pipe and a
/// listening TCP socket.
pub fn fds(ns: &Namespace, file: &str) -> Res {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    let opened: OwnedFd = nix::fcntl::open(file, OFlag::O_RDONLY, nix::sys::stat::Mode::empty())?;
    let (r, w) = nix::unistd::pipe()?;
    // As a socket-activated daemon gets its listening socket: inherited,
    // so without close-on-exec.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let mut leaked = Vec::new();
    for fd in [opened.as_fd(), r.as_fd(), w.as_fd(), listener.as_fd()] {
        let what = target(&fd);
        let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
        ensure!(
            !flags.contains(FdFlag::FD_CLOEXEC),
            "fd {} ({what}) is close-on-exec: no hazard",
            fd.as_raw_fd()
        );
        println!("leaked {} {what}", fd.as_raw_fd());
        leaked.push(what);
    }

    let t = task("t")?;
    let s = ns.run(&spec(&t, &["sleep", "60"])?)?;
    for (who, pid) in [("monitor", s.monitor_pid), ("task", s.pid)] {
        let open = proc::fds(pid)?;
        println!("{who} fds {open:?}");
        ensure!(
            open.iter().all(|(_, t)| leaked.iter().all(|l| l != t)),
            "the {who} inherited the caller's fds: {open:?}"
        );
    }
    // The monitor's own fds are close-on-exec, all but stdio. One it
    // closed since the listing (a cold monitor opens the spawner's lock for
    // a moment after it answered) is gone, not leaked.
    for (n, target) in proc::fds(s.monitor_pid)? {
        if n > 2 {
            let flags = match proc::fd_flags(s.monitor_pid, n) {
                Err(_)
                    if !std::path::Path::new(&format!("/proc/{}/fd/{n}", s.monitor_pid))
                        .exists() =>
                {
                    continue
                }
                r => r?,
            };
            ensure!(
                flags & libc::O_CLOEXEC as u32 != 0,
                "monitor fd {n} ({target}) is not close-on-exec"
            );
        }
    }
    // The task gets stdin (/dev/null), stdout and stderr (its log), no more.
    let log = ns.log_path(&t)?.ok_or("no log path")?.display().to_string();
    let want = vec![(0, "/dev/null".to_owned()), (1, log.clone()), (2, log)];
    // `run` returns once the task has exec'd; sleep's dynamic loader may
    // still hold /etc/ld.so.cache or a library open for a moment then. A
    // leaked fd stays; that one goes, so look until the table settles.
    let mut got = Vec::new();
    poll(LIMIT, || {
        got = proc::fds(s.pid).unwrap_or_default();
        got == want
    });
    ensure!(got == want, "the task's fds: {got:?}, not {want:?}");
    ensure!(!ns.stop(&t, Some(LIMIT))?, "stop of sleep: killed");
    wait_for_run(ns, &t, &s.run_id, LIMIT)?;
    Ok(())
}

/// A caller that is itself a task of the namespace (a job that starts
/// jobs), with the warm path off: its cold start's early write to the
/// member's `cgroup.threads` (which makes the admission's grace period
/// start sooner) must leave it in its own cgroup.
pub fn in_a_task(ns: &Namespace) -> Res {
    let cgroup = || -> Res<String> {
        let text = std::fs::read_to_string("/proc/self/cgroup")?;
        let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
        Ok(v2.ok_or("no cgroup2 line")?.to_owned())
    };
    let before = cgroup()?;
    ensure!(before.contains("/task-"), "not run as a task: {before}");
    let t = task("inner")?;
    let s = ns.run(&spec(&t, &["sleep", "1000"])?)?;
    let after = cgroup()?;
    ensure!(before == after, "the caller moved: {before} -> {after}");
    println!("cgroup {after}");
    ensure!(ns.check(&t)?, "the inner task is not running");
    ensure!(!ns.stop(&t, Some(LIMIT))?, "stop of sleep: killed");
    wait_for_run(ns, &t, &s.run_id, LIMIT)?;
    Ok(())
}
