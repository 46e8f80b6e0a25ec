use std::time::{Duration, Instant};

use lanco_proto::TaskName;

use crate::error::{exit, Result};
use crate::namespace::Namespace;
use crate::record::Exit;

/// `wait`'s status when its timeout passes first (as timeout(1)).
pub const TIMED_OUT: u8 = 124;

/// Waits for each task's current run in turn, all within `timeout`. Exits
/// with the first non-zero status among them (as `run -f` would), else 0.
pub fn run(ns: &Namespace, tasks: &[TaskName], timeout: Option<Duration>) -> Result<u8> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut code = exit::OK;
    for task in tasks {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let Some(rec) = ns.wait(task, left)? else {
            crate::msg::warn(
                "wait",
                &format_args!(
                    "task {task} is still running after {} s",
                    timeout.unwrap_or_default().as_secs_f64()
                ),
            );
            return Ok(TIMED_OUT);
        };
        let status = status_of("wait", task, rec.exit);
        if code == exit::OK {
            code = status;
        }
    }
    Ok(code)
}

/// The exit status `run -f` and `wait` give for a run that ended so: the
/// shell's, or SYSTEM, said on stderr, when its status was lost.
pub fn status_of(cmd: &str, task: &TaskName, ended: Exit) -> u8 {
    match ended.shell_status() {
        Some(s) => s.clamp(0, 255) as u8,
        None => {
            crate::msg::error(cmd, &format_args!("task {task}: {ended}"));
            exit::SYSTEM
        }
    }
}
