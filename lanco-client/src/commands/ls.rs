use std::io::Write;

use crate::error::{Error, Result};
use crate::namespace::Namespace;

/// Width command lines are cut to without `-l`.
const WIDTH: usize = 80;

pub fn run(ns: &Namespace, long: bool, json: bool) -> Result<u8> {
    let tasks = ns.list()?;
    // Buffered: stdout alone writes each line with its own write(2).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        serde_json::to_writer_pretty(&mut out, &tasks).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
        out.flush().map_err(fail)?;
        return Ok(0);
    }
    // The original lanco's tree: the task, then one "→ PID cmdline" per process.
    for t in &tasks {
        match t.restarting_at_ms {
            Some(at) => {
                let left = crate::time::secs_until(at);
                writeln!(out, "{} (restarting in {left:.1} s)", t.task).map_err(fail)?;
            }
            None => writeln!(out, "{}", t.task).map_err(fail)?,
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
