use std::io::Write;

use lanco_proto::cgroupfs::Cgroup;
use lanco_proto::TaskName;

use crate::error::{exit, Error, Result};
use crate::namespace::{Namespace, Status};
use crate::record::{Counters, TaskState};

pub fn run(ns: &Namespace, task: &TaskName, json: bool) -> Result<u8> {
    let status = ns.status(task)?;
    let code = match status {
        Status::Running { .. } => exit::OK,
        Status::Restarting { .. } | Status::NotRunning { .. } => exit::NOT_RUNNING,
    };
    let mut out = std::io::stdout().lock();
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        let mut v = serde_json::to_value(&status).map_err(|e| Error::system("stdout", e))?;
        if let (Status::Running { info: Some(s), .. }, Some(obj)) = (&status, v.as_object_mut()) {
            if let Some(why) = predates_definition(ns, task, s) {
                obj.insert("definition_changed".into(), why.into());
            }
        }
        serde_json::to_writer_pretty(&mut out, &v).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
        return Ok(code);
    }
    let mut lines = Vec::new();
    match &status {
        Status::Running {
            info,
            monitor_alive,
            processes,
        } => {
            lines.push(format!("task {task} is running"));
            if let Some(s) = info {
                lines.push(format!("  main pid:    {}", s.pid));
                lines.push(format!(
                    "  started:     {} by {}",
                    s.start_time,
                    crate::record::user_name(s.uid)
                ));
                lines.push(format!(
                    "  command:     {}",
                    crate::quote::words(&s.command)
                ));
                lines.push(format!("  log:         {}", s.log));
                let m = if *monitor_alive {
                    String::new()
                } else {
                    " (dead: the exit status will be lost)".into()
                };
                lines.push(format!("  monitor pid: {}{m}", s.monitor_pid));
                supervised_lines(s, &mut lines);
                if let Some(why) = predates_definition(ns, task, s) {
                    lines.push(format!("  definition:  {why}"));
                }
            }
            lines.push(format!("  processes:   {processes}"));
            if let Some(cg) = ns.task_cgroup(task)? {
                limit_lines(&cg, &mut lines);
            }
        }
        Status::Restarting { info, last } => {
            match &info.waiting_for {
                Some(need) => lines.push(format!(
                    "task {task} is waiting for {need}: it starts again once {need} is ready"
                )),
                None => {
                    let when = info.next_restart_ms().map_or(0.0, crate::time::secs_until);
                    lines.push(format!("task {task} is restarting (in {when:.1} s)"));
                }
            }
            lines.push(format!(
                "  command:     {}",
                crate::quote::words(&info.command)
            ));
            if let Some(r) = last {
                lines.push(format!("  last run:    {} to {}", r.start_time, r.end_time));
            }
            supervised_lines(info, &mut lines);
            lines.push(format!("  monitor pid: {}", info.monitor_pid));
        }
        Status::NotRunning { last } => {
            match last.as_ref().and_then(|r| r.failed.as_ref()) {
                Some(why) => lines.push(format!("task {task} is failed: {why}")),
                None => lines.push(format!("task {task} is not running")),
            }
            if let Some(r) = last {
                let how = match (r.stopped, r.killed_after_timeout) {
                    (_, true) => " (stopped; killed after the stop timeout)",
                    (true, false) => " (stopped)",
                    _ => "",
                };
                lines.push(format!("  last run:    {} to {}", r.start_time, r.end_time));
                lines.push(format!(
                    "  command:     {}",
                    crate::quote::words(&r.command)
                ));
                lines.push(format!("  exit:        {}{how}", r.ending()));
                effect_lines(r.forks_refused, 0, r.throttled_usec, &mut lines);
                if r.restarts > 0 {
                    lines.push(format!("  restarts:    {} before this run", r.restarts));
                }
                lines.push(format!("  cpu time:    {:.3} s", r.cpu_usec as f64 / 1e6));
                if let (Some(b), Some(src)) = (r.peak_memory_bytes, &r.peak_memory_source) {
                    lines.push(format!(
                        "  peak memory: {:.1} MiB ({src})",
                        b as f64 / 1048576.0
                    ));
                }
                if !r.log.is_empty() {
                    lines.push(format!("  log:         {}", r.log));
                }
                // lanco's own lines about the run (they are not in its log).
                if !r.notes.is_empty() {
                    lines.push("  notes:".into());
                    lines.extend(r.notes.iter().map(|n| format!("    {n}")));
                }
            }
        }
    }
    for l in lines {
        writeln!(out, "{l}").map_err(fail)?;
    }
    Ok(code)
}

/// A running task's own limits and what they have done so far.
fn limit_lines(cg: &Cgroup, lines: &mut Vec<String>) {
    if let Ok(l) = cg.limits() {
        if !l.is_empty() {
            lines.push(format!("  limits:      {}", l.describe()));
        }
    }
    let c = Counters::read(cg);
    effect_lines(c.forks_refused, c.oom_kills, c.throttled_usec, lines);
}

/// What the limits did: forks the pids limit refused, processes the OOM
/// killer killed (a finished run's exit line says it instead), time the cpu
/// limit held the task back.
fn effect_lines(forks_refused: u64, oom_kills: u64, throttled_usec: u64, lines: &mut Vec<String>) {
    if forks_refused > 0 {
        lines.push(format!("  pids limit:  refused {forks_refused} forks"));
    }
    if oom_kills > 0 {
        lines.push(format!(
            "  OOM killer:  killed {oom_kills} of its processes"
        ));
    }
    if throttled_usec > 0 {
        lines.push(format!(
            "  cpu limit:   throttled for {:.3} s",
            throttled_usec as f64 / 1e6
        ));
    }
}

/// A supervised run's policy, restarts, last exit and own words.
fn supervised_lines(s: &TaskState, lines: &mut Vec<String>) {
    let Some(v) = &s.supervised else { return };
    lines.push(format!(
        "  supervised:  restart {}, limit {}, ready {} ({})",
        v.restart, v.restart_limit, v.ready, v.phase
    ));
    lines.push(format!("  restarts:    {}", v.restarts));
    if let Some(e) = &v.last_exit {
        lines.push(format!("  last exit:   {e}"));
    }
    if let Some(t) = &v.status {
        lines.push(format!("  says:        {t}"));
    }
}

/// Why the running process is not what its definition now says, if it was
/// started from one that has since changed or gone.
fn predates_definition(ns: &Namespace, task: &TaskName, s: &TaskState) -> Option<String> {
    let started_from = s.definition.as_ref()?;
    let all = crate::defs::all(ns).ok()?;
    Some(match crate::defs::find(&all, task) {
        Ok((_, d)) if d.digest() == *started_from => return None,
        Ok(_) => "redefined since this run started: the running process predates its definition (the next start uses the new one)".into(),
        Err(_) => "undefined since this run started".into(),
    })
}
