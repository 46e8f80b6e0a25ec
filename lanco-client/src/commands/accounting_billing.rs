//! `lanco --all-namespaces accounting --by user`: root's billing figures
//! per member of each namespace, joined with the members' own records where
//! the caller may read them, and written out like the other reports.

use std::io::Write;

use lanco_proto::NamespaceName;
use serde::Serialize;

use super::accounting_print::{add, csv_row, opt, size, stdout, Format, JsonTotals, TOTAL};
use super::table::table;
use crate::accounting::{self, KernelUsage, Period, Totals};
use crate::error::{Error, Result};

/// One member of one namespace: the kernel's figures and its own records.
pub struct BillingRow {
    pub namespace: NamespaceName,
    pub uid: u32,
    pub user: String,
    /// `None`: no sample of it in the period.
    pub kernel: Option<accounting::KernelUsage>,
    /// `None`: the caller may not read its records.
    pub records: Option<Totals>,
}

impl BillingRow {
    /// Whether its records disagree with the kernel; `None` if there is
    /// nothing to compare.
    pub fn disagree(&self) -> Option<bool> {
        Some(accounting::records_disagree(
            self.kernel.as_ref()?.cpu_usec,
            self.records.as_ref()?.cpu_usec,
        ))
    }
}

/// A row for every member with samples in the period, and for every
/// member of a namespace the caller may read with records but no sample.
pub fn join(
    usage: &[accounting::KernelUsage],
    groups: &[accounting::Group],
    readable: &[NamespaceName],
) -> Vec<BillingRow> {
    let mut rows: Vec<BillingRow> = usage
        .iter()
        .map(|k| BillingRow {
            namespace: k.namespace.clone(),
            uid: k.uid,
            user: k.user.clone(),
            records: readable
                .contains(&k.namespace)
                .then(|| records_of(groups, &k.namespace, k.uid)),
            kernel: Some(k.clone()),
        })
        .collect();
    for g in groups {
        let (Some(ns), accounting::GroupKey::User(uid)) = (&g.namespace, &g.key) else {
            continue;
        };
        if !rows.iter().any(|r| &r.namespace == ns && r.uid == *uid) {
            rows.push(BillingRow {
                namespace: ns.clone(),
                uid: *uid,
                user: crate::record::user_name(*uid),
                kernel: None,
                records: Some(g.totals.clone()),
            });
        }
    }
    rows.sort_by(|a, b| (&a.namespace, a.uid).cmp(&(&b.namespace, b.uid)));
    rows
}

fn records_of(groups: &[accounting::Group], ns: &NamespaceName, uid: u32) -> Totals {
    groups
        .iter()
        .find(|g| g.namespace.as_ref() == Some(ns) && g.key == accounting::GroupKey::User(uid))
        .map(|g| g.totals.clone())
        .unwrap_or_default()
}

/// The kernel's figures of a member, or of all of them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Kernel {
    cpu_usec: u64,
    cpu_seconds: f64,
    memory_peak_bytes: Option<u64>,
    io_read_bytes: Option<u64>,
    io_write_bytes: Option<u64>,
    samples: u64,
}

impl From<&KernelUsage> for Kernel {
    fn from(k: &KernelUsage) -> Self {
        Kernel {
            cpu_usec: k.cpu_usec,
            cpu_seconds: k.cpu_usec as f64 / 1e6,
            memory_peak_bytes: k.memory_peak_bytes,
            io_read_bytes: k.io_read_bytes,
            io_write_bytes: k.io_write_bytes,
            samples: k.samples,
        }
    }
}

impl Kernel {
    fn add(&mut self, k: &Kernel) {
        self.cpu_usec += k.cpu_usec;
        self.cpu_seconds = self.cpu_usec as f64 / 1e6;
        self.memory_peak_bytes = self.memory_peak_bytes.max(k.memory_peak_bytes);
        self.io_read_bytes = add(self.io_read_bytes, k.io_read_bytes);
        self.io_write_bytes = add(self.io_write_bytes, k.io_write_bytes);
        self.samples += k.samples;
    }
}

#[derive(Serialize)]
struct JsonBillingRow<'a> {
    namespace: &'a NamespaceName,
    user: &'a str,
    uid: u32,
    /// `null`: no sample in the period.
    kernel: Option<Kernel>,
    /// `null`: the caller may not read the member's records.
    records: Option<JsonTotals>,
    records_disagree: Option<bool>,
}

#[derive(Serialize)]
struct JsonBillingTotals {
    kernel: Kernel,
    records: Option<JsonTotals>,
}

#[derive(Serialize)]
struct JsonBilling<'a> {
    source: &'static str,
    since: Option<String>,
    until: Option<String>,
    by: &'static str,
    groups: Vec<JsonBillingRow<'a>>,
    totals: JsonBillingTotals,
}

/// `--all-namespaces --by user`: the kernel's figures per member, and
/// where the caller may read them, the member's own records beside.
pub fn print(rows: &[BillingRow], period: Period, format: Format) -> Result<()> {
    let mut kernel = Kernel::default();
    let mut records: Option<Totals> = None;
    for r in rows {
        if let Some(k) = &r.kernel {
            kernel.add(&k.into());
        }
        if let Some(t) = &r.records {
            records.get_or_insert_with(Totals::default).merge(t);
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Json => {
            let doc = JsonBilling {
                source: "billing",
                since: period.since.map(crate::time::utc),
                until: period.until.map(crate::time::utc),
                by: "user",
                groups: rows
                    .iter()
                    .map(|r| JsonBillingRow {
                        namespace: &r.namespace,
                        user: &r.user,
                        uid: r.uid,
                        kernel: r.kernel.as_ref().map(Kernel::from),
                        records: r.records.as_ref().map(Into::into),
                        records_disagree: r.disagree(),
                    })
                    .collect(),
                totals: JsonBillingTotals {
                    kernel,
                    records: records.as_ref().map(Into::into),
                },
            };
            serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| Error::system("stdout", e))?;
            writeln!(out).map_err(stdout)?;
        }
        Format::Csv => {
            let header = [
                "namespace",
                "user",
                "uid",
                "cpu_seconds",
                "memory_peak_bytes",
                "io_read_bytes",
                "io_write_bytes",
                "samples",
                "records_runs",
                "records_cpu_seconds",
                "records_disagree",
            ];
            csv_row(&mut out, header.iter().map(|s| s.to_string()))?;
            let line = |ns: String,
                        user: String,
                        uid: String,
                        k: Option<Kernel>,
                        t: Option<&Totals>,
                        d: Option<bool>| {
                [
                    ns,
                    user,
                    uid,
                    k.map(|k| format!("{:.6}", k.cpu_usec as f64 / 1e6))
                        .unwrap_or_default(),
                    opt(k.and_then(|k| k.memory_peak_bytes)),
                    opt(k.and_then(|k| k.io_read_bytes)),
                    opt(k.and_then(|k| k.io_write_bytes)),
                    k.map(|k| k.samples.to_string()).unwrap_or_default(),
                    t.map(|t| t.runs.to_string()).unwrap_or_default(),
                    t.map(|t| format!("{:.6}", t.cpu_usec as f64 / 1e6))
                        .unwrap_or_default(),
                    d.map(|d| d.to_string()).unwrap_or_default(),
                ]
            };
            for r in rows {
                let l = line(
                    r.namespace.to_string(),
                    r.user.clone(),
                    r.uid.to_string(),
                    r.kernel.as_ref().map(Kernel::from),
                    r.records.as_ref(),
                    r.disagree(),
                );
                csv_row(&mut out, l.into_iter())?;
            }
            let l = line(
                TOTAL.into(),
                String::new(),
                String::new(),
                Some(kernel),
                records.as_ref(),
                None,
            );
            csv_row(&mut out, l.into_iter())?;
        }
        Format::Text => {
            let mut table_rows = vec![[
                "NAMESPACE",
                "USER",
                "UID",
                "CPU S",
                "PEAK MEM",
                "IO READ",
                "IO WRITTEN",
                "RUNS",
                "RECORDS CPU S",
                "",
            ]
            .map(String::from)
            .to_vec()];
            let line = |ns: String,
                        user: String,
                        uid: String,
                        k: Option<Kernel>,
                        t: Option<&Totals>,
                        note: &str| {
                vec![
                    ns,
                    user,
                    uid,
                    k.map(|k| format!("{:.2}", k.cpu_usec as f64 / 1e6))
                        .unwrap_or_else(|| "-".into()),
                    size(k.and_then(|k| k.memory_peak_bytes)),
                    size(k.and_then(|k| k.io_read_bytes)),
                    size(k.and_then(|k| k.io_write_bytes)),
                    t.map(|t| t.runs.to_string()).unwrap_or_else(|| "-".into()),
                    t.map(|t| format!("{:.2}", t.cpu_usec as f64 / 1e6))
                        .unwrap_or_else(|| "-".into()),
                    note.to_owned(),
                ]
            };
            for r in rows {
                let note = match (r.disagree(), &r.kernel, &r.records) {
                    (Some(true), _, _) => "records disagree",
                    (_, None, Some(_)) => "no samples",
                    _ => "",
                };
                table_rows.push(line(
                    r.namespace.to_string(),
                    r.user.clone(),
                    r.uid.to_string(),
                    r.kernel.as_ref().map(Kernel::from),
                    r.records.as_ref(),
                    note,
                ));
            }
            table_rows.push(line(
                TOTAL.into(),
                String::new(),
                String::new(),
                Some(kernel),
                records.as_ref(),
                "",
            ));
            table(&mut out, &table_rows, |c| c >= 2)?;
        }
    }
    out.flush().map_err(stdout)
}
