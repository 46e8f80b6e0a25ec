//! The per-task monitor (the `lanco-monitor` binary). One small process per
//! task, no async runtime: it claims the task's name, gets itself admitted to
//! the namespace by lancod, starts the payload straight into the task's cgroup
//! with clone3(CLONE_INTO_CGROUP), reports the exec result to `lanco run`, and
//! then sleeps in poll(2) until the task's cgroup is empty. As a child
//! subreaper it reaps every orphan of the task. It does the stop sweep itself,
//! writes the exit record and the accounting line, runs the on-exit command,
//! removes the cgroup and exits. If it is killed, the task runs on: the cgroup,
//! not the monitor, is the task.

mod claim;
mod ending;
mod event_loop;
mod logs;
mod needs;
mod notes;
mod peer;
mod prepared;
mod ready;
mod spawn;
mod spawner;
mod start;
mod supervise;

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::EventsFile;
use lanco_proto::files::Dir;
use lanco_proto::layout;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::error::{Error, Result};
use crate::handoff::{recv, send, Failure, Report, Spec};
use crate::record::{self, Counters, Exit, ExitRecord, TaskState};
use crate::sys;
use claim::Claim;
use logs::Log;
use notes::Notes;
use spawn::start_process;
use start::Prelude;
use supervise::Supervisor;

/// How often a running task's log size is checked against `log_max_bytes`.
const LOG_CHECK: Duration = Duration::from_secs(10);
/// How often a stop looks for processes that escaped its SIGTERM sweep.
const RESWEEP: Duration = Duration::from_secs(1);

/// Entry point of `lanco-monitor`. Returns only in the short-lived first
/// process; the detached monitor ends with `exit`.
#[allow(unsafe_code)] // closing inherited fds and the detach fork: see the SAFETY comments
pub fn main() -> u8 {
    if let Some(dir) = std::env::var_os(spawner::ENV_DIR) {
        return spawner::main(&dir);
    }
    // Start clean whatever the caller did: its ignored signals, its mask and
    // its fds without close-on-exec all survive execve. Kept: stdin (the
    // spec), stdout (the report pipe), stderr (errors until detach).
    if let Err(e) = sys::reset_signals() {
        eprintln!("lanco-monitor: cannot reset signal dispositions: {e}");
        return 2;
    }
    // SAFETY: this is lanco-monitor's entry point (its C main calls nothing
    // before it) and this its first act: nothing in the process owns an fd.
    if let Err(e) = unsafe { sys::close_fds_from(3) } {
        eprintln!("lanco-monitor: cannot close inherited fds: {e}");
        return 2;
    }
    let spec: Spec = match recv(&mut std::io::stdin().lock()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lanco-monitor: cannot read the task spec on stdin: {e}");
            return 2;
        }
    };
    // Detach: `lanco run` reaps this first process at once, so a daemon that
    // links the library never collects zombies, and the monitor lives on
    // re-parented to init, or to the nearest subreaper ancestor (which may be
    // the caller: see Namespace::run).
    // SAFETY: nothing has started a thread yet; the monitor never does.
    let first = nix::unistd::getpid();
    match unsafe { sys::fork_single_threaded() } {
        Ok(sys::Forked::Parent) => return 0,
        Ok(sys::Forked::Child) => {}
        Err(e) => {
            eprintln!("lanco-monitor: fork: {e}");
            return 2;
        }
    }
    let report = match detach() {
        Ok(r) => r,
        Err(e) => std::process::exit(i32::from(e.exit_code())),
    };
    let mut report = File::from(report);
    let monitor = match Prelude::new().and_then(|p| Monitor::start(spec, &mut report, p)) {
        Ok(m) => m,
        Err(e) => {
            let _ = send(&mut report, &Report::Failed(Failure::from(&e)));
            std::process::exit(1);
        }
    };
    // The task runs and its caller has its answer: warm the next start.
    if monitor.admitted {
        spawner::ensure(&monitor, first);
    }
    monitor.run(report)
}

/// New session (no controlling terminal, so no SIGHUP at hang-up), stdio on
/// /dev/null, the report pipe kept on a close-on-exec fd.
fn detach() -> Result<OwnedFd> {
    nix::unistd::setsid().map_err(|e| Error::system("setsid", e))?;
    let report = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::system("dup report pipe", e))?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::system("/dev/null", e))?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .map_err(|e| Error::system("dup2 /dev/null", e))?;
    std::env::set_current_dir("/").map_err(|e| Error::system("chdir /", e))?;
    // Members read the task's files; nobody but this user writes them.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    // A `lanco run` that stopped listening must not kill us with SIGPIPE.
    sys::ignore_signals(&[Signal::SIGPIPE, Signal::SIGHUP])
        .map_err(|e| Error::system("sigaction", e))?;
    Ok(report)
}

enum Phase {
    /// The payload and everything it started.
    Task,
    /// The on-exit command, still inside the task's cgroup.
    OnExit,
    /// Between runs of a supervised task: its restart delay.
    Waiting,
}

/// A stop under way.
struct Stopping {
    /// When the remaining processes get cgroup.kill (`None` once done).
    deadline: Option<Instant>,
    /// Pids already sent SIGTERM, and when to look for new ones.
    termed: HashSet<i32>,
    next_sweep: Instant,
}

struct Monitor {
    /// Moved into the monitors cgroup by lancod (a cold start), not forked
    /// there by a spawner.
    admitted: bool,
    spec: Spec,
    claim: Claim,
    cgroup_dir: OwnedFd,
    /// This member's state directory in the namespace.
    dir: Dir,
    state: TaskState,
    log: Log,
    main_pid: i32,
    main_exit: Option<Exit>,
    /// The cgroup's counters when this run began (restarts reuse it).
    run_counters: Counters,
    phase: Phase,
    record: Option<ExitRecord>,
    /// lanco's lines about this run, for its record and the journal.
    notes: RefCell<Notes>,
    /// Synced to disk once `stop` has been answered.
    accounting: Option<File>,
    listener: UnixListener,
    stopping: Option<Stopping>,
    killed_after_timeout: bool,
    waiters: Vec<UnixStream>,
    sigfd: SignalFd,
    events: EventsFile,
    /// Restarts and readiness.
    sup: Supervisor,
    /// The environment each run gets: the spec's, with NOTIFY_SOCKET for
    /// a notify-ready task.
    run_env: Vec<Vec<u8>>,
    /// What it needs, watched; `None` for a task without dependencies.
    needs: Option<needs::Needs>,
    /// The channel to whoever started the task (`Started`), once the start
    /// is reported: readiness and the end go there.
    report: Option<File>,
}

impl Monitor {
    /// A line from lanco itself about this run. Never into the task's log:
    /// kept for the exit record (the record is rewritten with it if it has
    /// already been written: the name is still ours until `finish` gives it
    /// back) and sent to the journal.
    fn note(&self, text: &dyn std::fmt::Display) {
        let mut notes = self.notes.borrow_mut();
        notes.add(&text.to_string());
        if let Some(rec) = &self.record {
            let rec = ExitRecord {
                notes: notes.lines(),
                ..rec.clone()
            };
            let _ = record::write_json(&self.dir, &layout::exit_name(&self.spec.task), &rec);
        }
    }
}
