//! Reading the runs of members' journals: which parts there are, and the
//! lines of a part, or of a byte range of one (a large part is read by
//! several threads, each from a line's start to a line's start).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use lanco_proto::files::Dir;
use lanco_proto::layout;
use lanco_proto::{NamespaceName, TaskName};

use super::{line, JournalWarning, Run, MAX_LINE};
use crate::error::Result;
use crate::journal::{self, BadLine, Part};

/// Journal parts, each with the member whose journal it is.
pub(super) type MemberParts = Vec<(u32, Part)>;

/// Every member's journal parts in a namespace's state directory, each
/// opened as a file of the member whose directory holds it; and what could
/// not be opened.
pub(super) fn member_parts(ns_dir: &Dir) -> Result<(MemberParts, Vec<JournalWarning>)> {
    let (mut parts, mut warnings) = (Vec::new(), Vec::new());
    for entry in ns_dir.list()? {
        let Some(uid) = layout::uid_of_user_entry(&entry) else {
            continue;
        };
        let member = match ns_dir.sub(&entry) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(JournalWarning::Unreadable {
                    path: ns_dir.join(&entry),
                    why: e.to_string(),
                });
                continue;
            }
        };
        let (found, bad) = journal::open_parts(&member, layout::ACCOUNTING, uid);
        warnings.extend(
            bad.into_iter()
                .map(|(path, why)| JournalWarning::Unreadable { path, why }),
        );
        parts.extend(found.into_iter().map(|p| (uid, p)));
    }
    Ok((parts, warnings))
}

/// Task names seen in a namespace's journals, validated once each: a
/// line's name is looked up, not checked and copied again (a million lines
/// name a few hundred tasks). Bounded, for a journal of a million names.
#[derive(Default)]
pub(super) struct Names(HashMap<String, TaskName>);

impl Names {
    const MAX: usize = 100_000;

    fn get(&mut self, name: &str) -> std::result::Result<Cow<'_, TaskName>, String> {
        if !self.0.contains_key(name) {
            // Validated: a tenant's journal may hold anything, and task
            // names end up on an administrator's terminal.
            let t = TaskName::try_from(name).map_err(|e| e.to_string())?;
            if self.0.len() >= Self::MAX {
                return Ok(Cow::Owned(t));
            }
            self.0.insert(name.to_owned(), t);
        }
        Ok(Cow::Borrowed(&self.0[name]))
    }
}

/// What reading a range of a part came to.
#[derive(Debug, Default)]
pub(super) struct Ranged {
    /// Lines read.
    lines: u64,
    /// Lines skipped, and the first of them (its number in the range) and
    /// why.
    skipped: u64,
    first: Option<(u64, String)>,
    error: Option<io::Error>,
}

/// Reads the lines of `file` in `bytes` (from a line's start; `u64::MAX`
/// for "to its end"), calling `each` for every run.
pub(super) fn range(
    file: &File,
    bytes: Range<u64>,
    ns: &NamespaceName,
    uid: u32,
    names: &mut Names,
    each: &mut impl FnMut(&Run<'_>),
) -> Ranged {
    let mut owned = String::new();
    let reader = At {
        file,
        pos: bytes.start,
        end: bytes.end,
    };
    lines(reader, |l| {
        let f = line::parse(l, &mut owned)?;
        let task = names.get(f.task)?;
        each(&Run {
            namespace: ns,
            uid,
            task: &task,
            start: f.start,
            end: f.end,
            cpu_usec: f.cpu_usec,
            peak_memory_bytes: f.peak_memory_bytes,
            failed: f.failed || !(f.stopped || f.exit_ok),
            oom_killed: f.oom_kills > 0,
        });
        Ok(())
    })
}

/// Hands every line of `r` that is whole and within [`MAX_LINE`] to
/// `take`, and counts those it refuses (with why) and those that are not.
pub(super) fn lines(
    r: impl Read,
    mut take: impl FnMut(&[u8]) -> std::result::Result<(), String>,
) -> Ranged {
    let mut out = Ranged::default();
    let read = journal::for_each_line(r, MAX_LINE, |n, l| {
        out.lines = n;
        let taken = match l {
            Ok(l) => take(l),
            Err(BadLine::TooLong) => Err(format!("longer than {MAX_LINE} bytes")),
            Err(BadLine::Unterminated) => Err("cut short: no newline at the end".into()),
        };
        if let Err(why) = taken {
            out.skipped += 1;
            out.first.get_or_insert((n, why));
        }
    });
    out.error = read.err();
    out
}

/// The warnings of a part read in ranges, in order: their line numbers
/// counted from the part's start.
pub(super) fn warnings(
    path: &Path,
    ranges: impl IntoIterator<Item = Ranged>,
) -> Vec<JournalWarning> {
    let (mut before, mut skipped, mut first, mut errors) = (0, 0, None, Vec::new());
    for r in ranges {
        skipped += r.skipped;
        if first.is_none() {
            first = r.first.map(|(n, why)| (before + n, why));
        }
        before += r.lines;
        errors.extend(r.error.map(|e| JournalWarning::Unreadable {
            path: path.to_owned(),
            why: format!("read failed: {e}"),
        }));
    }
    let skipped = first.map(|(first_line, why)| JournalWarning::Skipped {
        path: path.to_owned(),
        lines: skipped,
        first_line,
        why,
    });
    skipped.into_iter().chain(errors).collect()
}

/// At most `threads` ranges of about equal size covering `0..len` of
/// `file`, each starting at a line's start.
pub(super) fn split(file: &File, len: u64, threads: usize) -> Vec<Range<u64>> {
    let mut cuts = vec![0];
    let mut buf = vec![0u8; 64 << 10];
    for k in 1..threads as u64 {
        let mut at = (len * k / threads as u64).max(*cuts.last().unwrap_or(&0));
        // The line's start after the first newline at or past `at`.
        let cut = loop {
            match file.read_at(&mut buf, at) {
                Ok(0) | Err(_) => break len,
                Ok(n) => match buf[..n].iter().position(|&b| b == b'\n') {
                    Some(p) => break (at + p as u64 + 1).min(len),
                    None => at += n as u64,
                },
            }
        };
        if cut > *cuts.last().unwrap_or(&0) && cut < len {
            cuts.push(cut);
        }
    }
    cuts.push(len);
    cuts.windows(2).map(|w| w[0]..w[1]).collect()
}

/// `file` from `pos` to `end`, by positional reads: threads share the
/// file, not its offset.
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
