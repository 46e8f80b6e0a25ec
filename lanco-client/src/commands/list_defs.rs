use std::io::Write;

use lanco_proto::files::user_name;
use lanco_proto::TaskName;
use serde::Serialize;

use crate::defs;
use crate::error::{Error, Result};
use crate::namespace::{Namespace, Status};

/// One definition as `defs` lists it.
#[derive(Serialize)]
struct Row {
    task: TaskName,
    owner: String,
    uid: u32,
    command: Vec<String>,
    restart: String,
    ready: String,
    enable: bool,
    /// `running`, `restarting` (between two runs), `failed` (its last run
    /// ended its restarts, or never got ready) or `not running`.
    state: &'static str,
    /// The digest a run started from it carries.
    definition: String,
}

/// `lanco NS defs [--json]`: every member's definitions, by task.
pub fn run(ns: &Namespace, json: bool) -> Result<u8> {
    let mut rows = Vec::new();
    for (uid, defs) in defs::all(ns)? {
        for (task, d) in defs {
            rows.push(Row {
                state: match ns.status(&task)? {
                    Status::Running { .. } => "running",
                    Status::Restarting { .. } => "restarting",
                    Status::NotRunning { last: Some(r) } if r.failed.is_some() => "failed",
                    Status::NotRunning { .. } => "not running",
                },
                task,
                owner: user_name(uid),
                uid,
                restart: d.supervision.restart.to_string(),
                ready: d.supervision.ready.to_string(),
                enable: d.enable,
                definition: d.digest(),
                command: d.cmd,
            });
        }
    }
    rows.sort_by(|a, b| a.task.cmp(&b.task));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        serde_json::to_writer_pretty(&mut out, &rows).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
    } else {
        let w = |f: fn(&Row) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
        let (wt, wo) = (w(|r| r.task.as_str().len(), 4), w(|r| r.owner.len(), 5));
        writeln!(
            out,
            "{:wt$}  {:wo$}  {:11}  {:10}  {:7}  {:7}  COMMAND",
            "TASK", "OWNER", "STATE", "RESTART", "READY", "ENABLE"
        )
        .map_err(fail)?;
        for r in &rows {
            writeln!(
                out,
                "{:wt$}  {:wo$}  {:11}  {:10}  {:7}  {:7}  {}",
                r.task.as_str(),
                r.owner,
                r.state,
                r.restart,
                r.ready,
                if r.enable { "enabled" } else { "-" },
                crate::quote::words(&r.command)
            )
            .map_err(fail)?;
        }
    }
    out.flush().map_err(fail)?;
    Ok(0)
}
