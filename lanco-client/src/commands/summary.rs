//! `lanco NS status` without a task: the namespace at a glance, one row per
//! task it has known (running, restarting, ended, failed) with when its run
//! began or ended and how the last one ended.

use std::io::Write;

use lanco_proto::TaskName;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::namespace::{Namespace, Status};
use crate::record::ExitRecord;

/// One task of the summary.
#[derive(Serialize)]
struct Row {
    task: TaskName,
    /// `running`, `restarting`, `waiting`, `ended`, `failed`,
    /// `never started`, `unreadable`.
    state: String,
    /// A running task's start, an ended one's end (RFC 3339 UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// How its last run ended, in words (`exited with code 3`), or why it
    /// failed or cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_exit: Option<String>,
    /// Its processes (running tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    processes: Option<usize>,
}

#[derive(Serialize)]
struct Summary<'a> {
    namespace: &'a str,
    tasks: Vec<Row>,
}

pub fn run(ns: &Namespace, json: bool) -> Result<u8> {
    let running = ns.list()?;
    let names: Vec<TaskName> = running.iter().map(|t| t.task.clone()).collect();
    let mut rows: Vec<Row> = running
        .iter()
        .map(|t| {
            let (state, since) = match ns.status(&t.task) {
                Ok(Status::Running { info, .. }) => ("running", info.map(|s| s.start_time)),
                Ok(Status::Restarting { info, .. }) if info.waiting_for.is_some() => {
                    ("waiting", None)
                }
                Ok(Status::Restarting { .. }) => ("restarting", None),
                // Ended between the listing and now.
                Ok(Status::NotRunning { .. }) => ("ended", None),
                Err(_) => ("unreadable", None),
            };
            Row {
                task: t.task.clone(),
                state: state.into(),
                since,
                last_exit: None,
                processes: (!t.processes.is_empty()).then_some(t.processes.len()),
            }
        })
        .collect();
    for e in ns.ended(&names)? {
        let (state, since, last_exit) = match (&e.last, e.unreadable) {
            (_, Some(why)) => ("unreadable", None, Some(why)),
            (None, None) => ("never started", None, None),
            (Some(r), None) => ended(r),
        };
        rows.push(Row {
            task: e.task,
            state: state.into(),
            since,
            last_exit,
            processes: None,
        });
    }
    rows.sort_by(|a, b| a.task.cmp(&b.task));
    let mut out = std::io::stdout().lock();
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        let s = Summary {
            namespace: ns.name().as_str(),
            tasks: rows,
        };
        serde_json::to_writer_pretty(&mut out, &s).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
        return Ok(0);
    }
    let count = |s: &str| rows.iter().filter(|r| r.state == s).count();
    let mut counts: Vec<String> = Vec::new();
    for s in [
        "running",
        "restarting",
        "waiting",
        "failed",
        "ended",
        "never started",
        "unreadable",
    ] {
        let n = count(s);
        if n > 0 {
            counts.push(format!("{n} {s}"));
        }
    }
    let what = match rows.len() {
        0 => "no task yet (start one: lanco NS run TASK CMD)".replace("NS", ns.name().as_str()),
        1 => format!("1 task: {}", counts.join(", ")),
        n => format!("{n} tasks: {}", counts.join(", ")),
    };
    writeln!(out, "namespace {}: {what}", ns.name()).map_err(fail)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut table = vec![["TASK", "STATE", "SINCE", "PROCS", "LAST EXIT"]
        .map(String::from)
        .to_vec()];
    for r in &rows {
        table.push(vec![
            r.task.to_string(),
            r.state.clone(),
            r.since.clone().unwrap_or_else(|| "-".into()),
            r.processes.map_or_else(|| "-".into(), |n| n.to_string()),
            r.last_exit.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    super::table::table(&mut out, &table, |c| c == 3)?;
    Ok(0)
}

/// An ended task's state, end and last exit, as the summary and `ls -a`
/// give them.
pub(super) fn ended(r: &ExitRecord) -> (&'static str, Option<String>, Option<String>) {
    let stopped = match (r.stopped, r.killed_after_timeout) {
        (_, true) => "; stopped, killed after the stop timeout",
        (true, false) => "; stopped",
        _ => "",
    };
    match &r.failed {
        Some(why) => ("failed", Some(r.end_time.clone()), Some(why.clone())),
        None => (
            "ended",
            Some(r.end_time.clone()),
            Some(format!("{}{stopped}", r.ending())),
        ),
    }
}
