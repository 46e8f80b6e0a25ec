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
    /// `failed` or `not running`; with -a, for the others that do not run,
    /// `ended`, `failed`, `never started` or `unreadable`.
    state: String,
    /// With -a, a task that does not run: when its last run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
    /// With -a, a task that does not run: how its last run ended, or why
    /// it cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_exit: Option<String>,
}

/// Width command lines are cut to without `-l`.
const WIDTH: usize = 80;

pub fn run(ns: &Namespace, long: bool, json: bool, all: bool) -> Result<u8> {
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
                    ended: None,
                    last_exit: None,
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
                ended: None,
                last_exit: None,
            }
        })
        .collect();
    // With -a, the tasks that do not run, from their exit records.
    let listed: Vec<TaskName> = tasks.iter().map(|t| t.task.clone()).collect();
    let ended = if all { ns.ended(&listed)? } else { Vec::new() };
    let quiet: Vec<TaskInfo> = ended
        .iter()
        .map(|e| TaskInfo {
            task: e.task.clone(),
            processes: Vec::new(),
            restarting_at_ms: None,
            waiting_for: None,
            unreadable: None,
        })
        .collect();
    let mut rows = rows;
    for (e, info) in ended.iter().zip(&quiet) {
        let (state, when, how) = match (&e.last, &e.unreadable) {
            (_, Some(why)) => ("unreadable", None, Some(why.clone())),
            (None, None) => ("never started", None, None),
            (Some(r), None) => super::summary::ended(r),
        };
        rows.push(Row {
            info,
            explicit: true,
            pulled_in_by: Vec::new(),
            state: state.into(),
            ended: when,
            last_exit: how,
        });
    }
    rows.sort_by(|a, b| a.info.task.cmp(&b.info.task));
    // Buffered: stdout alone writes each line with its own write(2).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        serde_json::to_writer_pretty(&mut out, &rows).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
        out.flush().map_err(fail)?;
        return Ok(0);
    }
    if rows.is_empty() {
        // An empty listing says why on stderr, so stdout stays a list.
        let hint = if all {
            format!(
                "namespace {ns} has no task yet; start one: lanco {ns} run TASK CMD",
                ns = ns.name()
            )
        } else {
            format!(
                "no task runs in namespace {ns} (lanco {ns} ls -a: also those that ended)",
                ns = ns.name()
            )
        };
        crate::msg::log("INFO", "ls", &hint);
    }
    // The original lanco's tree: the task, then one "→ PID cmdline" per process.
    for row in &rows {
        let t = row.info;
        let mut notes = Vec::new();
        if row.ended.is_some() || row.last_exit.is_some() || row.state == "never started" {
            // -a: a task that does not run.
            let mut what = row.state.clone();
            if let Some(when) = &row.ended {
                what = format!("{what} {when}");
            }
            match &row.last_exit {
                Some(how) => writeln!(out, "{} ({what}: {how})", t.task),
                None => writeln!(out, "{} ({what})", t.task),
            }
            .map_err(fail)?;
            continue;
        }
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
