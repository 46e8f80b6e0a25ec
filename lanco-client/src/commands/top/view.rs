//! What `top` shows, as text: the header's lines, each task's cells, the
//! sort orders, and which figures are near their limits. Both the
//! full-screen view and the batch snapshot are made of these.

use std::cmp::Ordering;

use crate::usage::{MemorySource, NamespaceUsage, PidsSource, TaskUsage};

/// The order of the task rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    State,
    Memory,
    Cpu,
    Name,
}

impl SortBy {
    pub fn word(self) -> &'static str {
        match self {
            SortBy::State => "state",
            SortBy::Memory => "memory",
            SortBy::Cpu => "CPU",
            SortBy::Name => "name",
        }
    }
}

/// Sorts `tasks`: state in its order (running first), memory and CPU
/// largest first, then by name (and member).
pub fn sort(tasks: &mut [TaskUsage], by: SortBy) {
    let name = |a: &TaskUsage, b: &TaskUsage| a.task.cmp(&b.task).then(a.uid.cmp(&b.uid));
    let desc = |a: Option<f64>, b: Option<f64>| {
        b.unwrap_or(-1.0)
            .partial_cmp(&a.unwrap_or(-1.0))
            .unwrap_or(Ordering::Equal)
    };
    tasks.sort_by(|a, b| {
        let first = match by {
            SortBy::State => a.state.cmp(&b.state),
            SortBy::Memory => desc(
                a.memory.current.map(|m| m as f64),
                b.memory.current.map(|m| m as f64),
            ),
            SortBy::Cpu => desc(a.cpu.percent, b.cpu.percent),
            SortBy::Name => Ordering::Equal,
        };
        first.then_with(|| name(a, b))
    });
}

/// The table's columns; `true` for those aligned right (figures).
pub const COLUMNS: [(&str, bool); 11] = [
    ("TASK", false),
    ("STATE", false),
    ("USER", false),
    ("CPU%", true),
    ("HOST%", true),
    ("MEM", true),
    ("PEAK", true),
    ("LIMIT", true),
    ("PIDS", true),
    ("UPTIME", true),
    ("RESTARTS", true),
];

/// A task's row, cell by cell (`-` where a figure is unknown).
pub fn cells(t: &TaskUsage) -> [String; 11] {
    let state = match &t.waiting_for {
        Some(need) => format!("{} for {need}", t.state),
        None => t.state.to_string(),
    };
    // The limit memory is held to: memory.max, else memory.high.
    let limit = t.limits.memory_max.or(t.limits.memory_high);
    [
        t.task.to_string(),
        state,
        t.user.clone(),
        percent(t.cpu.percent),
        percent(t.cpu.host_percent),
        bytes(t.memory.current),
        bytes(t.memory.peak),
        bytes(limit),
        opt(t.pids.current),
        duration(t.uptime_secs),
        opt(t.restarts),
    ]
}

/// Whether a task is at 90 % or more of one of its own limits: memory
/// (max or high), pids, or CPU (cpu.max).
pub fn near_limit(t: &TaskUsage) -> bool {
    let l = &t.limits;
    near(t.memory.current, l.memory_max)
        || near(t.memory.current, l.memory_high)
        || near(t.pids.current, l.pids_max)
        || near_cpu(t.cpu.percent, l.cpu_max)
}

fn near(used: Option<u64>, limit: Option<u64>) -> bool {
    matches!((used, limit), (Some(u), Some(l)) if u as f64 >= 0.9 * l as f64)
}

fn near_cpu(percent: Option<f64>, cpus: Option<f64>) -> bool {
    matches!((percent, cpus), (Some(p), Some(c)) if p >= 90.0 * c)
}

/// The header: one line per figure of the namespace, each with whether it
/// is at 90 % or more of a ceiling; what only a controller gives is left
/// out where it is unknown.
pub fn header(u: &NamespaceUsage) -> Vec<(String, bool)> {
    let (t, c) = (&u.totals, &u.ceilings);
    let over = match u.interval_secs {
        Some(s) => format!("CPU % over {s:.1} s"),
        None => "CPU % after the next sample".into(),
    };
    let when = crate::time::utc(u.time_ms / 1000);
    let first = format!(
        "namespace {} · {} tasks · {} CPUs · {} · {}",
        u.namespace,
        t.tasks,
        u.host_cpus,
        over,
        when.split_once('T').map_or(when.as_str(), |(_, time)| time)
    );
    let mut cpu = format!(
        "CPU   {} of one CPU ({} of the host) · max {}",
        percent_or(t.cpu.percent),
        percent_or(t.cpu.host_percent),
        c.cpu_max
            .map_or_else(|| "none".into(), |c| format!("{c} CPUs")),
    );
    if let Some(usec) = t.cpu.throttled_usec {
        cpu += &format!(" · throttled {:.1} s", usec as f64 / 1e6);
    }
    if c.cpu_weight.is_some() || c.io_weight.is_some() {
        cpu += &format!(
            " · weight cpu {}, io {}",
            opt(c.cpu_weight),
            opt(c.io_weight)
        );
    }
    let mut mem = format!(
        "MEM   {} · max {} · high {}",
        bytes(t.memory.current),
        limit_bytes(c.memory_max),
        limit_bytes(c.memory_high),
    );
    if let Some(peak) = t.memory.peak {
        mem += &format!(" · peak {}", bytes(Some(peak)));
    }
    if let Some(n) = t.memory.oom_kills {
        mem += &format!(" · OOM kills {n}");
    }
    let mut pids = format!(
        "PIDS  {} {} · max {}",
        opt(t.pids.current),
        match t.pids.source {
            Some(PidsSource::Cgroup) => "(pids.current)",
            _ => "processes",
        },
        c.pids_max.map_or_else(|| "none".into(), |m| m.to_string()),
    );
    if let Some(n) = t.pids.forks_refused {
        pids += &format!(" · forks refused {n}");
    }
    vec![
        (first, false),
        (cpu, near_cpu(t.cpu.percent, c.cpu_max)),
        (
            mem,
            near(t.memory.current, c.memory_max) || near(t.memory.current, c.memory_high),
        ),
        (pids, near(t.pids.current, c.pids_max)),
        (format!("memory: {}", source(u.memory_source)), false),
    ]
}

/// Where the memory figures come from, in the header's words.
fn source(s: Option<MemorySource>) -> &'static str {
    match s {
        None => "-",
        Some(MemorySource::Cgroup) => "memory.current of each task's cgroup",
        Some(MemorySource::Pss) => {
            "PSS of each task's processes (no memory controller in cgroup v2)"
        }
        Some(MemorySource::Rss) => {
            "RSS of each task's processes (their PSS is not readable: other users' processes; \
             no memory controller in cgroup v2)"
        }
        Some(MemorySource::Mixed) => {
            "PSS of your own tasks' processes, RSS of other members' (no memory controller in \
             cgroup v2)"
        }
    }
}

fn opt(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p:.1}"))
}

fn percent_or(p: Option<f64>) -> String {
    p.map_or_else(|| "-%".into(), |p| format!("{p:.1}%"))
}

fn limit_bytes(n: Option<u64>) -> String {
    n.map_or_else(|| "none".into(), |n| bytes(Some(n)))
}

/// Bytes in binary units, 3 significant digits (`512 B`, `1.50 MiB`, `212 MiB`).
pub fn bytes(n: Option<u64>) -> String {
    let Some(n) = n else {
        return "-".into();
    };
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if v >= 100.0 => format!("{v:.0} {}", UNITS[unit]),
        _ if v >= 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.2} {}", UNITS[unit]),
    }
}

/// `H:MM:SS`, or `Nd HHh` from a day on.
pub fn duration(secs: Option<u64>) -> String {
    let Some(s) = secs else {
        return "-".into();
    };
    if s >= 86_400 {
        format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600)
    } else {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    }
}

/// The widths the columns need for `rows` (and their titles).
pub fn widths(rows: &[[String; 11]]) -> [usize; 11] {
    let mut w = COLUMNS.map(|(title, _)| title.chars().count());
    for row in rows {
        for (w, cell) in w.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    w
}

/// The whole snapshot as text: the header, a blank line, the aligned table.
pub fn text(u: &NamespaceUsage) -> String {
    let mut out = String::new();
    for (line, _) in header(u) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    let rows: Vec<[String; 11]> = u.tasks.iter().map(cells).collect();
    let w = widths(&rows);
    let titles = COLUMNS.map(|(t, _)| t.to_string());
    for row in std::iter::once(&titles).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = w[i].saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if COLUMNS[i].1 {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(bytes(Some(512)), "512 B");
        assert_eq!(bytes(Some(1536 * 1024)), "1.50 MiB");
        assert_eq!(bytes(Some(212 * 1024 * 1024)), "212 MiB");
        assert_eq!(bytes(None), "-");
        assert_eq!(duration(Some(3725)), "1:02:05");
        assert_eq!(duration(Some(2 * 86_400 + 7200)), "2d 02h");
        assert!(near(Some(90), Some(100)) && !near(Some(89), Some(100)));
        assert!(!near(Some(90), None));
        assert!(near_cpu(Some(45.0), Some(0.5)) && !near_cpu(Some(44.0), Some(0.5)));
    }
}
