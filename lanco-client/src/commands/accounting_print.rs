//! How `lanco … accounting` writes a report of runs: an aligned table
//! (sizes and durations for people), one JSON document, or CSV (plain
//! numbers); and the helpers the billing report shares.

use std::io::Write;

use lanco_proto::NamespaceName;
use serde::Serialize;

use super::table::table;
use crate::accounting::{utc_day, By, Group, GroupKey, Report, Totals};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// The key of the totals row in CSV and tables: no task, user or day can
/// be named so.
pub(super) const TOTAL: &str = "(total)";

#[derive(Serialize)]
pub(super) struct JsonTotals {
    runs: u64,
    cpu_usec: u64,
    cpu_seconds: f64,
    peak_memory_bytes: Option<u64>,
    avg_memory_bytes: Option<u64>,
    wall_seconds: u64,
    failures: u64,
    oom_kills: u64,
}

impl From<&Totals> for JsonTotals {
    fn from(t: &Totals) -> Self {
        JsonTotals {
            runs: t.runs,
            cpu_usec: t.cpu_usec,
            cpu_seconds: t.cpu_usec as f64 / 1e6,
            peak_memory_bytes: t.peak_memory_bytes,
            avg_memory_bytes: t.avg_memory_bytes(),
            wall_seconds: t.wall_seconds,
            failures: t.failures,
            oom_kills: t.oom_kills,
        }
    }
}

#[derive(Serialize)]
struct JsonGroup<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a NamespaceName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<String>,
    #[serde(flatten)]
    totals: JsonTotals,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    /// `null` across namespaces.
    namespace: Option<&'a NamespaceName>,
    since: Option<String>,
    until: Option<String>,
    by: String,
    groups: Vec<JsonGroup<'a>>,
    totals: JsonTotals,
    skipped_lines: u64,
}

/// The key columns of a group: (namespace, when across namespaces), then
/// the task; the user and uid; or the day.
fn key_columns(by: By, across: bool) -> Vec<&'static str> {
    let mut c = if across { vec!["namespace"] } else { vec![] };
    c.extend(match by {
        By::Task => &["task"][..],
        By::User => &["user", "uid"][..],
        By::Day => &["day"][..],
    });
    c
}

fn key_values(g: &Group, across: bool) -> Vec<String> {
    let mut v = Vec::new();
    if across {
        v.push(
            g.namespace
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_default(),
        );
    }
    match &g.key {
        GroupKey::Task(t) => v.push(t.to_string()),
        GroupKey::User(uid) => v.extend([crate::record::user_name(*uid), uid.to_string()]),
        GroupKey::Day(d) => v.push(utc_day(d * 86_400)),
    }
    v
}

/// A report of runs, grouped; `ns` is its namespace (`None` across
/// namespaces).
pub fn report(r: &Report, ns: Option<&NamespaceName>, format: Format) -> Result<()> {
    let across = ns.is_none() && r.by != By::Day;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Json => {
            let doc = JsonReport {
                namespace: ns,
                since: r.period.since.map(crate::time::utc),
                until: r.period.until.map(crate::time::utc),
                by: r.by.to_string(),
                groups: r.groups.iter().map(|g| json_group(g, across)).collect(),
                totals: (&r.totals).into(),
                skipped_lines: r
                    .warnings
                    .iter()
                    .map(|w| match w {
                        crate::accounting::JournalWarning::Skipped { lines, .. } => *lines,
                        _ => 0,
                    })
                    .sum(),
            };
            serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| Error::system("stdout", e))?;
            writeln!(out).map_err(stdout)?;
        }
        Format::Csv => {
            let mut header = key_columns(r.by, across);
            header.extend([
                "runs",
                "cpu_seconds",
                "peak_memory_bytes",
                "avg_memory_bytes",
                "wall_seconds",
                "failures",
                "oom_kills",
            ]);
            csv_row(&mut out, header.iter().map(|s| s.to_string()))?;
            let keys = header.len() - 7;
            for g in &r.groups {
                csv_row(
                    &mut out,
                    key_values(g, across)
                        .into_iter()
                        .chain(csv_totals(&g.totals)),
                )?;
            }
            let total = std::iter::once(TOTAL.to_owned())
                .chain(std::iter::repeat_n(String::new(), keys - 1));
            csv_row(&mut out, total.chain(csv_totals(&r.totals)))?;
        }
        Format::Text => {
            let mut header: Vec<String> = key_columns(r.by, across)
                .iter()
                .map(|s| s.to_uppercase())
                .collect();
            let keys = header.len();
            header.extend(
                [
                    "RUNS", "CPU S", "PEAK MEM", "AVG MEM", "WALL", "FAILED", "OOM",
                ]
                .map(String::from),
            );
            let mut rows = vec![header];
            for g in &r.groups {
                rows.push(
                    key_values(g, across)
                        .into_iter()
                        .chain(text_totals(&g.totals))
                        .collect(),
                );
            }
            let total = std::iter::once(TOTAL.to_owned())
                .chain(std::iter::repeat_n(String::new(), keys - 1));
            rows.push(total.chain(text_totals(&r.totals)).collect());
            table(&mut out, &rows, |c| c >= keys)?;
        }
    }
    out.flush().map_err(stdout)
}

fn json_group(g: &Group, across: bool) -> JsonGroup<'_> {
    let mut j = JsonGroup {
        namespace: if across { g.namespace.as_ref() } else { None },
        task: None,
        user: None,
        uid: None,
        day: None,
        totals: (&g.totals).into(),
    };
    match &g.key {
        GroupKey::Task(t) => j.task = Some(t.as_str()),
        GroupKey::User(uid) => {
            j.user = Some(crate::record::user_name(*uid));
            j.uid = Some(*uid);
        }
        GroupKey::Day(d) => j.day = Some(utc_day(d * 86_400)),
    }
    j
}

fn csv_totals(t: &Totals) -> [String; 7] {
    [
        t.runs.to_string(),
        format!("{:.6}", t.cpu_usec as f64 / 1e6),
        opt(t.peak_memory_bytes),
        opt(t.avg_memory_bytes()),
        t.wall_seconds.to_string(),
        t.failures.to_string(),
        t.oom_kills.to_string(),
    ]
}

fn text_totals(t: &Totals) -> [String; 7] {
    [
        t.runs.to_string(),
        format!("{:.2}", t.cpu_usec as f64 / 1e6),
        size(t.peak_memory_bytes),
        size(t.avg_memory_bytes()),
        duration(t.wall_seconds),
        t.failures.to_string(),
        t.oom_kills.to_string(),
    ]
}

pub(super) fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

pub(super) fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Binary units, as `ls -h` would: `512 B`, `1.5 KiB`, `64 MiB`.
pub(super) fn size(v: Option<u64>) -> String {
    let Some(v) = v else { return "-".into() };
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v} B")
    } else if x < 10.0 {
        format!("{x:.1} {}", units[u])
    } else {
        format!("{x:.0} {}", units[u])
    }
}

/// `42s`, `5m03s`, `2h05m`, `3d04h`.
pub(super) fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// One CSV record (RFC 4180: a field with a comma, quote or line break is
/// quoted, its quotes doubled).
pub(super) fn csv_row(out: &mut impl Write, fields: impl Iterator<Item = String>) -> Result<()> {
    let fields: Vec<String> = fields
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect();
    writeln!(out, "{}", fields.join(",")).map_err(stdout)
}

pub(super) fn stdout(e: std::io::Error) -> Error {
    Error::system("stdout", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_csv() {
        assert_eq!(size(None), "-");
        assert_eq!(size(Some(512)), "512 B");
        assert_eq!(size(Some(1536)), "1.5 KiB");
        assert_eq!(size(Some(64 << 20)), "64 MiB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(303), "5m03s");
        assert_eq!(duration(7500), "2h05m");
        assert_eq!(duration(273_600), "3d04h");
        let mut out = Vec::new();
        csv_row(
            &mut out,
            ["a,b", "say \"hi\"", "c"].map(String::from).into_iter(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a,b\",\"say \"\"hi\"\"\",c\n"
        );
    }
}
