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
    let results: Vec<Result<bool>> = std::thread::scope(|s| {
        let started: Vec<_> = tasks
            .iter()
            .map(|task| {
                let all = &all;
                s.spawn(move || {
                    let d = defs::owned(all, task, "start it")?;
                    launch(ns, task, &d, no_wait)
                })
            })
            .collect();
        started
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut code = 0;
    for (task, r) in tasks.iter().zip(results) {
        let status = report("start", task, r, no_wait);
        if code == 0 {
            code = status;
        }
    }
    Ok(code)
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
