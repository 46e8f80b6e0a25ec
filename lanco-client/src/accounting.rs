//! Accounting: the runs that members' journals record, and root's billing
//! figures. [`for_each_run`] reads every member's journal of a namespace
//! (the current file and its rotated parts), each only as a file of that
//! member, streaming, one bounded line at a time: a line cut short (power
//! lost mid-write) or unparsable is skipped and counted in a
//! [`JournalWarning`], never an error. [`report`] groups the runs of a
//! period by task, user or day; [`read_billing`] computes the kernel's
//! usage per member from root's billing journal. Nothing here prints: the
//! `lanco NS accounting` command (with the `cli` feature) does.
//!
//! The journals are written by monitors running as the tenant, so a tenant
//! can alter its own: they are for the tenant's own insight. Root's billing
//! journal holds the kernel's counters, which no tenant can forge.

mod billing;
mod line;
mod period;
mod read;
mod summary;

use std::path::PathBuf;

use lanco_proto::files::Dir;
use lanco_proto::{NamespaceName, TaskName};

pub use billing::{read_billing, records_disagree, Billing, KernelUsage, DISAGREEMENT};
pub use period::{parse_time, utc_day, Period};
pub use summary::{report, report_at, By, Group, GroupKey, Report, Totals};

use crate::error::Result;
use crate::namespace::Namespace;

/// The longest journal line read, in bytes; a longer one is skipped. (A
/// record is a few hundred bytes; a huge command line makes a long one.)
pub const MAX_LINE: usize = 1 << 20;

/// A finished run, as a line of a member's journal gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run<'a> {
    /// The namespace whose journals hold it.
    pub namespace: &'a NamespaceName,
    /// The member whose journal holds it: the journal file's owner, not
    /// what the line says, so no member can put a run in another's name.
    pub uid: u32,
    /// The task.
    pub task: &'a TaskName,
    /// When its command was exec'd (UNIX seconds).
    pub start: i64,
    /// When its last process was gone (UNIX seconds): the time that puts a
    /// run in a period.
    pub end: i64,
    /// Its CPU time.
    pub cpu_usec: u64,
    /// Its peak memory, if it was measured.
    pub peak_memory_bytes: Option<u64>,
    /// It failed: it ended other than with status 0 and not by a stop, or
    /// its restarts gave up on it.
    pub failed: bool,
    /// The kernel's OOM killer killed some of its processes.
    pub oom_killed: bool,
}

/// Something of a journal that was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalWarning {
    /// Lines skipped: cut short (the last, by power lost mid-write),
    /// longer than [`MAX_LINE`], or not a record.
    Skipped {
        /// The part of the journal.
        path: PathBuf,
        /// How many lines.
        lines: u64,
        /// The first of them (from 1).
        first_line: u64,
        /// Why the first was skipped.
        why: String,
    },
    /// A file or directory that could not be read at all.
    Unreadable {
        /// It.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl std::fmt::Display for JournalWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalWarning::Skipped {
                path,
                lines,
                first_line,
                why,
            } => write!(
                f,
                "{}: skipped {lines} line{} (line {first_line}: {why})",
                path.display(),
                if *lines == 1 { "" } else { "s" }
            ),
            JournalWarning::Unreadable { path, why } => {
                write!(f, "{}: not read: {why}", path.display())
            }
        }
    }
}

/// Calls `each` for every run recorded in the journals of `ns`'s members,
/// as the caller may read them (a member or root; anyone else is refused
/// with [`crate::Error::NotMember`]). Returns what was not read.
pub fn for_each_run(ns: &Namespace, each: impl FnMut(&Run<'_>)) -> Result<Vec<JournalWarning>> {
    for_each_run_in(&ns.ns_dir()?, ns.name(), each)
}

fn for_each_run_in(
    ns_dir: &Dir,
    ns: &NamespaceName,
    mut each: impl FnMut(&Run<'_>),
) -> Result<Vec<JournalWarning>> {
    let (parts, mut warnings) = read::member_parts(ns_dir)?;
    let mut names = read::Names::default();
    for (uid, part) in parts {
        let r = read::range(&part.file, 0..u64::MAX, ns, uid, &mut names, &mut each);
        warnings.extend(read::warnings(&part.path, [r]));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests;
