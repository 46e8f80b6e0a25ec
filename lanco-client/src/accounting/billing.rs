//! Root's billing journal (`S/billing/usage.jsonl` and its rotated parts,
//! root's files, readable by the admin group): the kernel's usage per
//! member over a period, which no tenant can forge.
//!
//! Each sample holds the cumulative counters of a member's subtree
//! `ns-NS/user-UID` since that cgroup was made; a new `cgroup_id` is a new
//! subtree whose counters start at 0. So a member's CPU time over
//! `[since, until)` is, for each `cgroup_id`, its last sample in the period
//! minus its last sample before it (0 if it has none: it was made in the
//! period), summed. Between samples the kernel's figures do not move: a
//! period shorter than the sampling interval may see none.

use std::collections::HashMap;

use lanco_proto::billing::UsageSample;
use lanco_proto::files::Dir;
use lanco_proto::layout::{self, Layout};
use lanco_proto::NamespaceName;

use super::{read, JournalWarning, Period};
use crate::error::Result;
use crate::journal;

/// A member's usage over the period, by the kernel's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelUsage {
    /// The namespace.
    pub namespace: NamespaceName,
    /// The member.
    pub uid: u32,
    /// Its name, as the latest sample says.
    pub user: String,
    /// CPU time of everything in its subtree: its tasks, and its monitors.
    pub cpu_usec: u64,
    /// The highest `memory.peak` sampled in the period (the kernel's peak
    /// since the subtree was made), where the memory controller is enabled.
    pub memory_peak_bytes: Option<u64>,
    /// Bytes read, where the io controller is enabled.
    pub io_read_bytes: Option<u64>,
    /// Bytes written, where the io controller is enabled.
    pub io_write_bytes: Option<u64>,
    /// Samples of it taken in the period.
    pub samples: u64,
}

/// The billing journal's figures for a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billing {
    /// Per member and namespace, in order, for those with a sample in the
    /// period.
    pub usage: Vec<KernelUsage>,
    /// The time of the oldest sample read: a period starting before it may
    /// lack the samples (rotated away) that its start needs.
    pub oldest_sample: Option<i64>,
    /// What was skipped.
    pub warnings: Vec<JournalWarning>,
}

/// How far a member's records may stray from the kernel's CPU time before
/// a report says they disagree: 5 %.
pub const DISAGREEMENT: f64 = 0.05;

/// Do a member's own records (`records_usec`, the sum of its runs'
/// `cpu_usec`) disagree with the kernel's CPU time of its subtree by more
/// than [`DISAGREEMENT`] of the kernel's?
pub fn records_disagree(kernel_usec: u64, records_usec: u64) -> bool {
    records_usec.abs_diff(kernel_usec) as f64 > DISAGREEMENT * kernel_usec as f64
}

/// Reads root's billing journal of the installation `layout` describes
/// (root, and the members of `admin_group`, may read it). Its parts must
/// be root's files; any other is left out with a warning.
pub fn read_billing(layout: &Layout, period: Period) -> Result<Billing> {
    Ok(billing_in(&Dir::open(&layout.billing_dir())?, period))
}

/// A subtree's samples, as far as the period needs them.
#[derive(Default)]
struct Incarnation {
    user: String,
    /// The last sample before the period.
    before: Option<Point>,
    /// The last sample in it.
    last: Option<Point>,
    peak: Option<u64>,
    samples: u64,
}

#[derive(Clone, Copy)]
struct Point {
    time: i64,
    cpu: u64,
    read: Option<u64>,
    write: Option<u64>,
}

pub(super) fn billing_in(dir: &Dir, period: Period) -> Billing {
    let mut out = Billing::default();
    let (parts, bad) = journal::open_parts(dir, layout::BILLING_JOURNAL, 0);
    out.warnings.extend(
        bad.into_iter()
            .map(|(path, why)| JournalWarning::Unreadable { path, why }),
    );
    let mut seen: HashMap<(NamespaceName, u32, u64), Incarnation> = HashMap::new();
    for part in parts {
        let r = read::lines(&part.file, |l| {
            let s = serde_json::from_slice::<UsageSample>(l).map_err(|e| e.to_string())?;
            let ns = NamespaceName::try_from(s.namespace.as_str()).map_err(|e| e.to_string())?;
            out.oldest_sample = Some(out.oldest_sample.map_or(s.time, |o| o.min(s.time)));
            take(
                seen.entry((ns, s.uid, s.cgroup_id)).or_default(),
                &s,
                period,
            );
            Ok(())
        });
        out.warnings.extend(read::warnings(&part.path, [r]));
    }
    let mut per_member: HashMap<(NamespaceName, u32), KernelUsage> = HashMap::new();
    // Newest incarnation last, so its user name is the one kept.
    let mut incs: Vec<_> = seen.into_iter().collect();
    incs.sort_by_key(|(_, i)| i.last.map(|p| p.time));
    for ((ns, uid, _), inc) in incs {
        let Some(last) = inc.last else { continue };
        let base = inc.before.unwrap_or(Point {
            time: 0,
            cpu: 0,
            read: Some(0),
            write: Some(0),
        });
        let delta =
            |now: Option<u64>, then: Option<u64>| Some(now?.saturating_sub(then.unwrap_or(0)));
        let u = per_member
            .entry((ns.clone(), uid))
            .or_insert_with(|| KernelUsage {
                namespace: ns,
                uid,
                user: String::new(),
                cpu_usec: 0,
                memory_peak_bytes: None,
                io_read_bytes: None,
                io_write_bytes: None,
                samples: 0,
            });
        u.user = inc.user;
        u.cpu_usec += last.cpu.saturating_sub(base.cpu);
        u.memory_peak_bytes = u.memory_peak_bytes.max(inc.peak);
        u.io_read_bytes = sum(u.io_read_bytes, delta(last.read, base.read));
        u.io_write_bytes = sum(u.io_write_bytes, delta(last.write, base.write));
        u.samples += inc.samples;
    }
    out.usage = per_member.into_values().collect();
    out.usage
        .sort_by(|a, b| (&a.namespace, a.uid).cmp(&(&b.namespace, b.uid)));
    out
}

fn take(inc: &mut Incarnation, s: &UsageSample, period: Period) {
    let p = Point {
        time: s.time,
        cpu: s.cpu_usec,
        read: s.io_read_bytes,
        write: s.io_write_bytes,
    };
    // The later of two samples wins; of two at the same second, the one
    // written later.
    let later = |old: &Option<Point>| old.is_none_or(|o| p.time >= o.time);
    if period.before(s.time) {
        if later(&inc.before) {
            inc.before = Some(p);
        }
    } else if period.contains(s.time) {
        if later(&inc.last) {
            inc.last = Some(p);
            inc.user.clone_from(&s.user);
        }
        inc.peak = inc.peak.max(s.memory_peak_bytes);
        inc.samples += 1;
    }
}

fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}
