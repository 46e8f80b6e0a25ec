use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use lanco_proto::TaskName;

use crate::commands::restart::names;
use crate::error::{Error, Result};
use crate::graph;
use crate::msg;
use crate::namespace::{Namespace, Status};
use crate::spec::DEFAULT_STOP_TIMEOUT;
use crate::transition::{self, in_parallel, Readiness};

/// `lanco NS stop [--force] TASK`, as one transition: refused while tasks
/// that need TASK run, unless `force`, which stops them first (dependents
/// before their dependencies); then TASK; then what nothing that runs
/// holds any more.
pub fn run(ns: &Namespace, task: &TaskName, timeout: Option<Duration>, force: bool) -> Result<u8> {
    let _lock = ns.transition_lock(waiting)?;
    let nodes = ns.nodes()?;
    let g = transition::graph(&nodes);
    let needing = graph::needing(&g, task);
    if !needing.is_empty() {
        if !force {
            return Err(Error::Conflict(format!(
                "task {task} is needed by {}: stop them first, or use --force",
                names(&needing)
            )));
        }
        let set: BTreeSet<TaskName> = needing.into_iter().collect();
        for wave in graph::stop_waves(&g, &set) {
            let failed = in_parallel(&wave, |t| {
                msg::log(
                    "INFO",
                    "stop",
                    &format_args!("stopping {t}: it needs {task}"),
                );
                match stop_telling(ns, t, timeout) {
                    Ok(_) | Err(Error::NotRunning(_)) => None,
                    Err(e) => Some(e),
                }
            });
            if let Some(e) = failed.into_iter().flatten().next() {
                return Err(e);
            }
        }
    }
    if stop_telling(ns, task, timeout)? {
        msg::log(
            "INFO",
            "stop",
            &format_args!("task {task} outlived its stop timeout and was killed"),
        );
    }
    ns.settle(&settled("stop"))?;
    Ok(0)
}

/// How long a stop waits before saying, on a terminal, what it waits for.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// `ns.stop(task, timeout)`; on a terminal, a stop still waiting after
/// [`NOTICE_AFTER`] says what for (the processes that outlive SIGTERM) and
/// when it kills them, rather than hang silently for the stop timeout.
fn stop_telling(ns: &Namespace, task: &TaskName, timeout: Option<Duration>) -> Result<bool> {
    if !std::io::stderr().is_terminal() {
        return ns.stop(task, timeout);
    }
    let began = Instant::now();
    // The task's own stop timeout, from its run's state file (read before
    // the stop: the file goes with the run).
    let timeout_of_run = match timeout {
        Some(t) => t,
        None => match ns.status(task) {
            Ok(Status::Running { info: Some(s), .. }) => s
                .stop_timeout_ms
                .map_or(DEFAULT_STOP_TIMEOUT, Duration::from_millis),
            _ => DEFAULT_STOP_TIMEOUT,
        },
    };
    let (done, stopped) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if stopped.recv_timeout(NOTICE_AFTER) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            let left = ns
                .task_cgroup(task)
                .ok()
                .flatten()
                .and_then(|cg| cg.procs_recursive().ok())
                .map_or(0, |p| p.len());
            let wait = timeout_of_run.saturating_sub(began.elapsed());
            let at = crate::time::now_secs() + wait.as_secs_f64().ceil() as i64;
            msg::log(
                "INFO",
                "stop",
                &format_args!(
                    "waiting for task {task}'s {left} process{} to end after SIGTERM; cgroup.kill at {} (in {:.0} s) if {} not",
                    if left == 1 { "" } else { "es" },
                    crate::time::utc(at),
                    wait.as_secs_f64().ceil(),
                    if left == 1 { "it has" } else { "they have" },
                ),
            );
        });
        let r = ns.stop(task, timeout);
        drop(done);
        r
    })
}

/// `lanco NS release TASK`: drops its mark of started on purpose; it
/// stops unless a running task holds it.
pub fn release(ns: &Namespace, task: &TaskName) -> Result<u8> {
    let _lock = ns.transition_lock(waiting)?;
    if ns.readiness(task)? == Readiness::Down {
        return Err(Error::NotRunning(task.clone()));
    }
    ns.mark(task, false)?;
    ns.settle(&settled("release"))?;
    let nodes = ns.nodes()?;
    if nodes.contains_key(task) {
        let holders = graph::holders(&transition::graph(&nodes));
        let by: Vec<TaskName> = holders
            .get(task)
            .into_iter()
            .flatten()
            .map(|(_, t)| t.clone())
            .collect();
        msg::log(
            "INFO",
            "release",
            &format_args!("task {task} stays: held by {}", names(&by)),
        );
    }
    Ok(0)
}

/// Says why a command waits: another transition holds the lock.
pub fn waiting() {
    msg::log(
        "INFO",
        "lanco",
        &"waiting for another start or stop in this namespace to finish",
    );
}

/// Tells of each task a settling stopped.
pub fn settled(cmd: &'static str) -> impl Fn(&TaskName, Result<()>) + Sync {
    move |t, r| match r {
        Ok(()) => msg::log(
            "INFO",
            cmd,
            &format_args!("task {t} stopped: nothing that runs needs it"),
        ),
        Err(e) => msg::error(cmd, &format_args!("cannot stop {t}: {}", e.one_line())),
    }
}
