use std::collections::BTreeMap;
use std::io::Write;

use lanco_proto::TaskName;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::graph;
use crate::namespace::{Namespace, Status, TaskInfo};
use crate::transition;

/// A task as `ls` shows it: what the library lists, and its place among
/// dependencies.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    info: &'a TaskInfo,
    /// Started on purpose, not pulled in.
    explicit: bool,
    /// The running tasks that hold it (for a task pulled in).
    pulled_in_by: Vec<TaskName>,
    /// `starting`, `ready`, `stopping`, `waiting for db`, `restarting`;
    /// for a task that does not run but that a waiting task waits for,
    /// `failed` or `not running`.
    state: String,
}

/// Width command lines are cut to without `-l`.
const WIDTH: usize = 80;

pub fn run(ns: &Namespace, long: bool, json: bool) -> Result<u8> {
    // The tasks and their processes, and (in a second thread) the state
    // files of marked ones; unreadable state files only cost a task its
    // annotations.
    let (tasks, nodes) = std::thread::scope(|s| {
        let nodes = s.spawn(|| ns.nodes().unwrap_or_default());
        let tasks = ns.list();
        (tasks, nodes.join().unwrap_or_default())
    });
    let mut tasks = tasks?;
    // What waiting tasks wait for is listed too when it does not run, with
    // why (`failed`: its last run gave up), so a stuck dependent's cause
    // shows.
    let mut down: BTreeMap<TaskName, String> = BTreeMap::new();
    for need in nodes.values().filter_map(|n| n.waiting_for.as_ref()) {
        if let Err(at) = tasks.binary_search_by(|i| i.task.cmp(need)) {
            let failed = matches!(
                ns.status(need),
                Ok(Status::NotRunning { last: Some(r) }) if r.failed.is_some()
            );
            down.insert(
                need.clone(),
                if failed { "failed" } else { "not running" }.into(),
            );
            tasks.insert(
                at,
                TaskInfo {
                    task: need.clone(),
                    processes: Vec::new(),
                    restarting_at_ms: None,
                    waiting_for: None,
                    unreadable: None,
                },
            );
        }
    }
    let holders = graph::holders(&transition::graph(&nodes));
    let rows: Vec<Row> = tasks
        .iter()
        .map(|info| {
            let node = nodes.get(&info.task);
            let mut by: Vec<TaskName> = holders
                .get(&info.task)
                .into_iter()
                .flatten()
                .map(|(_, t)| t.clone())
                .collect();
            by.dedup();
            if let Some(state) = down.get(&info.task) {
                // Not running: held by the tasks that wait for it.
                return Row {
                    info,
                    explicit: false,
                    pulled_in_by: by,
                    state: state.clone(),
                };
            }
            Row {
                info,
                explicit: node.is_none_or(|n| n.explicit),
                pulled_in_by: if node.is_some_and(|n| !n.explicit) {
                    by
                } else {
                    Vec::new()
                },
                state: node.map_or_else(|| "ready".into(), transition::state_words),
            }
        })
        .collect();
    // Buffered: stdout alone writes each line with its own write(2).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        serde_json::to_writer_pretty(&mut out, &rows).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
        out.flush().map_err(fail)?;
        return Ok(0);
    }
    // The original lanco's tree: the task, then one "→ PID cmdline" per process.
    for row in &rows {
        let t = row.info;
        let mut notes = Vec::new();
        if let Some(why) = &t.unreadable {
            notes.push(format!("unreadable: {why}"));
        } else if let Some(at) = t.restarting_at_ms {
            let left = crate::time::secs_until(at);
            notes.push(format!("restarting in {left:.1} s"));
        } else if row.state != "ready" {
            notes.push(row.state.clone());
        }
        if !row.explicit {
            let by: Vec<&str> = row.pulled_in_by.iter().map(TaskName::as_str).collect();
            notes.push(if by.is_empty() {
                "pulled in".into()
            } else {
                format!("pulled in by {}", by.join(", "))
            });
        }
        if notes.is_empty() {
            writeln!(out, "{}", t.task).map_err(fail)?;
        } else {
            writeln!(out, "{} ({})", t.task, notes.join("; ")).map_err(fail)?;
        }
        for p in &t.processes {
            let line = format!(" → {} {}", p.pid, p.cmdline);
            let line = if long {
                line.as_str()
            } else {
                truncate(&line, WIDTH)
            };
            writeln!(out, "{line}").map_err(fail)?;
        }
    }
    out.flush().map_err(fail)?;
    Ok(0)
}

fn truncate(s: &str, width: usize) -> &str {
    match s.char_indices().nth(width) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
