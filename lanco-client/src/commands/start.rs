use lanco_proto::TaskName;

use crate::defs::{self, Definition};
use crate::error::{Error, Result};
use crate::msg;
use crate::namespace::Namespace;

/// `lanco NS start [--no-wait] TASK...`: the caller's definitions, started
/// in parallel, each reported; the status of the first that failed, in
/// the order given.
pub fn run(ns: &Namespace, tasks: &[TaskName], no_wait: bool) -> Result<u8> {
    let mut tasks = tasks.to_vec();
    tasks.dedup();
    let all = defs::all(ns)?;
    let jobs = tasks
        .into_iter()
        .map(|task| {
            let d = defs::owned(&all, &task, "start it");
            (task, d)
        })
        .collect();
    Ok(start_all(ns, jobs, no_wait))
}

/// `lanco NS start --enabled [--no-wait]`: every definition of the
/// caller's marked enabled, as `run` starts named ones. Only the caller's
/// own file is read, so another member's broken one holds up nothing.
pub fn run_enabled(ns: &Namespace, no_wait: bool) -> Result<u8> {
    let jobs = defs::mine(ns)?
        .into_iter()
        .filter(|(_, d)| d.enable)
        .map(|(task, d)| (task, Ok(d)))
        .collect();
    Ok(start_all(ns, jobs, no_wait))
}

/// Starts each task from its definition in parallel, one line each; the
/// status of the first that failed.
fn start_all(ns: &Namespace, jobs: Vec<(TaskName, Result<Definition>)>, no_wait: bool) -> u8 {
    let results: Vec<(TaskName, Result<bool>)> = std::thread::scope(|s| {
        let started: Vec<_> = jobs
            .into_iter()
            .map(|(task, d)| {
                s.spawn(move || {
                    let r = d.and_then(|d| launch(ns, &task, &d, no_wait));
                    (task, r)
                })
            })
            .collect();
        started
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut code = 0;
    for (task, r) in results {
        let status = report("start", &task, r, no_wait);
        if code == 0 {
            code = status;
        }
    }
    code
}

/// Starts `task` from `d`, waiting for its readiness unless `no_wait`;
/// `false` if it was already running.
pub fn launch(ns: &Namespace, task: &TaskName, d: &Definition, no_wait: bool) -> Result<bool> {
    match ns.run(&d.to_spec(task)?) {
        Ok(mut started) => {
            if !no_wait {
                started.wait_ready()?;
            }
            Ok(true)
        }
        Err(Error::AlreadyRunning(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// One line on stderr for `task`'s outcome; its exit status.
pub fn report(cmd: &str, task: &TaskName, r: Result<bool>, no_wait: bool) -> u8 {
    match r {
        Ok(true) if no_wait => msg::log("INFO", cmd, &format_args!("task {task} started")),
        Ok(true) => msg::log("INFO", cmd, &format_args!("task {task} is ready")),
        Ok(false) => msg::log("INFO", cmd, &format_args!("task {task} is already running")),
        Err(e) => {
            msg::error(cmd, &e.one_line());
            return e.exit_code();
        }
    }
    0
}
