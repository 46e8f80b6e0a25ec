//! Journals of JSON lines: a member's accounting journal (appended by its
//! monitors, rotated by size) and, for reading only, root's billing
//! journal. Appending and rotating a member's journal happen under its
//! lock file, 0600, so that no line is lost to a rotation and no other
//! member can hold the lock; readers take no lock. Everything goes through
//! `lanco_proto::files`; nothing here parses a line.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use lanco_proto::files::Dir;
use lanco_proto::layout;
use lanco_proto::Config;

use crate::error::{Error, Result};

/// How a journal is rotated: past `max_bytes`, `BASE` becomes `BASE.1`,
/// `.1` becomes `.2` … and `.keep` is dropped. Either 0: never rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

impl Rotation {
    /// The member accounting journal's, from the configuration.
    pub fn accounting(config: &Config) -> Self {
        Rotation {
            max_bytes: config.accounting_max_bytes,
            keep: config.accounting_keep,
        }
    }

    fn enabled(&self) -> bool {
        self.max_bytes > 0 && self.keep > 0
    }
}

/// Appends `line` (one JSON document and its newline) to this user's
/// journal `base` in `dir` with one O_APPEND write, first rotating the
/// journal if the line would take it past `rot.max_bytes` (a journal
/// holding nothing is never rotated, so one line longer than the bound
/// still goes in). Returns the file the line went into, for the caller to
/// `sync_data` when it suits.
///
/// Appenders (several monitors of the member, its `lanco` recording a lost
/// run) hold `lock_name` exclusively from the open to the write: a rotation
/// never happens between an appender's open and its write, so no line goes
/// into a part that is then dropped, and two rotations never interleave
/// their renames. The lock is its own file, 0600, rather than an flock of
/// the journal: members may open each other's journals (0640, to read
/// them), and flock needs no more than a read-only open, so any member could
/// otherwise stall another's monitors.
pub(crate) fn append(
    dir: &Dir,
    base: &str,
    lock_name: &str,
    line: &[u8],
    rot: Rotation,
) -> Result<File> {
    let path = dir.join(base);
    let write = |mut f: File| {
        f.write_all(line)
            .map_err(|e| Error::system(format!("cannot append to {}", path.display()), e))?;
        Ok(f)
    };
    if !rot.enabled() {
        return write(dir.open_append(base, 0o640)?);
    }
    let lock = dir.open_append(lock_name, 0o600)?;
    let _held =
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            Error::system(format!("cannot lock {}", dir.join(lock_name).display()), e)
        })?;
    let f = dir.open_append(base, 0o640)?;
    let len = f
        .metadata()
        .map_err(|e| Error::system(format!("cannot stat {}", path.display()), e))?
        .len();
    if len == 0 || len + line.len() as u64 <= rot.max_bytes {
        return write(f);
    }
    drop(f);
    rotate(dir, base, rot.keep)?;
    write(dir.open_append(base, 0o640)?)
}

/// `.keep-1` → `.keep` (replacing the oldest) … `.1` → `.2`, `BASE` →
/// `.1`; parts beyond `keep` (left by a larger `keep` before) are removed.
/// Only the parts up to the first missing one move: a rotation cut short
/// (a monitor killed half-way) leaves a gap, and the parts past it are
/// older than everything that moves. Only this user's own files are
/// renamed or removed: the directory is theirs, and a planted entry is an
/// error naming its owner.
fn rotate(dir: &Dir, base: &str, keep: u32) -> Result<()> {
    let present =
        |n| -> Result<bool> { Ok(dir.own_or_absent(&layout::rotated_part(base, n))?.is_some()) };
    let mut extra = keep + 1;
    while present(extra)? {
        dir.remove(&layout::rotated_part(base, extra))?;
        extra += 1;
    }
    let mut top = 0;
    while top < keep && present(top + 1)? {
        top += 1;
    }
    for n in (0..=top.min(keep - 1)).rev() {
        dir.rename(
            &layout::rotated_part(base, n),
            &layout::rotated_part(base, n + 1),
        )?;
    }
    Ok(())
}

/// One part of a journal, open for reading.
#[derive(Debug)]
pub(crate) struct Part {
    pub path: PathBuf,
    pub file: File,
}

/// A part that could not be read (not a file of its owner, an I/O error):
/// its path and why.
pub(crate) type Unreadable = (PathBuf, String);

/// The parts of journal `base` in `dir` that are files of `owner`, oldest
/// first (`BASE.N` … `BASE.1`, then `BASE`); parts that are not such files
/// are left out and returned with the reason.
///
/// They are opened newest first and told apart by inode, so a rotation
/// while they are opened never has a part read twice (as `BASE` and then,
/// renamed, as `BASE.1`) nor makes one be missed: a part renamed past the
/// highest number seen in the listing is found by looking one further. At
/// worst the oldest part, dropped by that rotation, is not read, as if the
/// reading had come a moment later.
pub(crate) fn open_parts(dir: &Dir, base: &str, owner: u32) -> (Vec<Part>, Vec<Unreadable>) {
    let mut numbers: Vec<u32> = match dir.list() {
        Ok(names) => names
            .iter()
            .filter_map(|n| layout::part_of_entry(base, n))
            .collect(),
        Err(e) => return (Vec::new(), vec![(dir.path().to_owned(), e.to_string())]),
    };
    numbers.push(0);
    numbers.sort_unstable();
    let (mut parts, mut bad) = (Vec::new(), Vec::new());
    let mut seen = Vec::new();
    let mut i = 0;
    while let Some(&n) = numbers.get(i) {
        i += 1;
        let name = layout::rotated_part(base, n);
        let path = dir.join(&name);
        match dir.open_read(&name, owner) {
            Ok(Some(file)) => {
                let id = file.metadata().map(|m| (m.dev(), m.ino())).ok();
                if id.is_none_or(|id| !seen.contains(&id)) {
                    seen.extend(id);
                    parts.push(Part { path, file });
                }
                if i == numbers.len() {
                    numbers.push(n + 1);
                }
            }
            Ok(None) => {}
            Err(e) => bad.push((path, e.to_string())),
        }
    }
    parts.reverse();
    (parts, bad)
}

/// A line [`for_each_line`] could not hand over whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadLine {
    /// Longer than the bound: skipped to its newline, never held whole.
    TooLong,
    /// The last line has no newline: cut short (power lost mid-write), or
    /// still being written.
    Unterminated,
}

/// Calls `each(number, line)` for each line of `r` (numbered from 1,
/// without its newline), reading in large blocks and handing over slices
/// of the block where it can: a line of at most `max` bytes, or why not.
pub(crate) fn for_each_line(
    mut r: impl Read,
    max: usize,
    mut each: impl FnMut(u64, std::result::Result<&[u8], BadLine>),
) -> io::Result<()> {
    const BLOCK: usize = 1 << 20;
    let mut buf = vec![0u8; BLOCK.max(max + 1)];
    // buf[..filled] holds data; buf[start..filled] is not yet handed over.
    let (mut start, mut filled) = (0, 0);
    // Skipping the rest of a line that was too long.
    let mut skipping = false;
    let mut number = 0u64;
    loop {
        let n = match r.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let eof = n == 0;
        let mut scan = filled;
        filled += n;
        while let Some(nl) = newline(&buf[scan..filled]).map(|i| scan + i) {
            number += 1;
            if skipping || nl - start > max {
                skipping = false;
                each(number, Err(BadLine::TooLong));
            } else {
                each(number, Ok(&buf[start..nl]));
            }
            start = nl + 1;
            scan = start;
        }
        if skipping || filled - start > max {
            // What is held cannot become a line within the bound.
            skipping = true;
            start = filled;
        }
        if eof {
            if start < filled || skipping {
                number += 1;
                each(
                    number,
                    match skipping {
                        true => Err(BadLine::TooLong),
                        false => Err(BadLine::Unterminated),
                    },
                );
            }
            return Ok(());
        }
        // Keep the unfinished line, at the front.
        buf.copy_within(start..filled, 0);
        filled -= start;
        start = 0;
    }
}

/// The first newline of `s`: a word at a time (the journal is read at
/// hundreds of megabytes per second).
fn newline(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    for (i, c) in chunks.by_ref().enumerate() {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default()) ^ NL;
        if (w.wrapping_sub(LO) & !w & HI) != 0 {
            return c.iter().position(|&b| b == b'\n').map(|p| i * 8 + p);
        }
    }
    let done = s.len() - chunks.remainder().len();
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| done + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("lanco-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn lines_of(input: &[u8], max: usize) -> Vec<(u64, std::result::Result<String, BadLine>)> {
        let mut out = Vec::new();
        // A reader handing out 3 bytes at a time crosses every boundary.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(b.len()).min(3);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for_each_line(Slow(input), max, |n, l| {
            out.push((n, l.map(|l| String::from_utf8_lossy(l).into_owned())))
        })
        .unwrap();
        let mut whole = Vec::new();
        for_each_line(input, max, |n, l| {
            whole.push((n, l.map(|l| String::from_utf8_lossy(l).into_owned())))
        })
        .unwrap();
        assert_eq!(out, whole, "block boundaries change nothing");
        out
    }

    #[test]
    fn lines_bounded_and_a_truncated_last_one() {
        let ok = |n, s: &str| (n, Ok(s.to_owned()));
        assert_eq!(
            lines_of(b"ab\n\ncdefgh\nxy\n{\"cut", 4),
            vec![
                ok(1, "ab"),
                ok(2, ""),
                (3, Err(BadLine::TooLong)),
                ok(4, "xy"),
                (5, Err(BadLine::TooLong)),
            ]
        );
        assert_eq!(
            lines_of(b"ab\n{\"c", 8),
            vec![ok(1, "ab"), (2, Err(BadLine::Unterminated))]
        );
        assert_eq!(lines_of(b"", 8), vec![]);
        assert_eq!(
            lines_of(b"0123456789abcdefg\n0123456\n", 16),
            vec![(1, Err(BadLine::TooLong)), ok(2, "0123456")]
        );
        assert_eq!(newline(b"0123456789abcdef\n"), Some(16));
        assert_eq!(newline(b"01234\n6789"), Some(5));
        assert_eq!(newline(b"\x8a\x0b0123456789"), None);
    }

    fn read_all(d: &Dir) -> Vec<String> {
        let me = nix::unistd::geteuid().as_raw();
        let (parts, bad) = open_parts(d, "j", me);
        assert!(bad.is_empty(), "{bad:?}");
        let mut out = Vec::new();
        for p in parts {
            for_each_line(p.file, 1 << 10, |_, l| {
                out.push(String::from_utf8(l.unwrap().to_vec()).unwrap())
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn rotation_order_and_oldest_dropped() {
        let p = tmpdir("order");
        let d = Dir::open(&p).unwrap();
        let rot = Rotation {
            max_bytes: 9,
            keep: 3,
        };
        for i in 0..10 {
            append(&d, "j", "j.lock", format!("l{i}\n").as_bytes(), rot).unwrap();
        }
        // Three lines of 3 bytes per part: l9 | l6 l7 l8 | … | l0 l1 l2.
        let part = |n| std::fs::read_to_string(p.join(layout::rotated_part("j", n))).unwrap();
        assert_eq!(part(0), "l9\n");
        assert_eq!(part(1), "l6\nl7\nl8\n");
        assert_eq!(part(3), "l0\nl1\nl2\n");
        assert!(!p.join("j.4").exists());
        for _ in 0..3 {
            append(&d, "j", "j.lock", b"mm\n", rot).unwrap();
        }
        // The third rotated: l0 l1 l2 dropped; read oldest first.
        let all = read_all(&d);
        assert_eq!(all[..4], ["l3", "l4", "l5", "l6"]);
        assert_eq!(all[6..], ["l9", "mm", "mm", "mm"]);
        assert_eq!(part(0), "mm\n");
        let mode = std::fs::metadata(p.join("j.lock")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A smaller `keep` drops what is beyond it at the next rotation.
        for i in 0..4 {
            let small = Rotation { keep: 1, ..rot };
            append(&d, "j", "j.lock", format!("s{i}\n").as_bytes(), small).unwrap();
        }
        assert!(p.join("j.1").exists() && !p.join("j.2").exists() && !p.join("j.3").exists());
        std::fs::remove_dir_all(&p).unwrap();
    }

    /// A directory holding the journal `j` and some parts, as `files` say.
    fn with_parts(tag: &str, files: &[(&str, &str)]) -> (PathBuf, Dir) {
        let p = tmpdir(tag);
        for (name, text) in files {
            std::fs::write(p.join(name), text).unwrap();
        }
        let d = Dir::open(&p).unwrap();
        (p, d)
    }

    #[test]
    fn a_rotation_cut_short_leaves_a_gap_the_next_one_closes() {
        let (p, d) = with_parts("cut", &[("j", "d\n"), ("j.1", "c\n"), ("j.3", "a\n")]);
        let rot = Rotation {
            max_bytes: 2,
            keep: 4,
        };
        append(&d, "j", "j.lock", b"e\n", rot).unwrap();
        // d and c moved up into the gap; a, older, stayed.
        assert_eq!(read_all(&d), ["a", "c", "d", "e"]);
        assert!(p.join("j.2").exists() && !p.join("j.4").exists());
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn a_gap_in_the_parts_and_a_part_renamed_while_listing() {
        let (p, d) = with_parts("gap", &[("j", "c\n"), ("j.1", "b\n"), ("j.3", "a\n")]);
        assert_eq!(read_all(&d), ["a", "b", "c"]);
        std::fs::write(p.join("j.4"), "z\n").unwrap();
        assert_eq!(read_all(&d), ["z", "a", "b", "c"]);
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn concurrent_appenders_lose_no_line() {
        let p = tmpdir("concurrent");
        let rot = Rotation {
            max_bytes: 200,
            keep: 10_000,
        };
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let d = Dir::open(&p).unwrap();
                    for i in 0..150 {
                        let line = format!("{{\"t\":{t},\"i\":{i}}}\n");
                        append(&d, "j", "j.lock", line.as_bytes(), rot).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all = read_all(&Dir::open(&p).unwrap());
        assert_eq!(all.len(), 8 * 150);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8 * 150, "no line twice");
        let parts = std::fs::read_dir(&p).unwrap().count();
        assert!(parts > 40, "rotated: {parts} files");
        std::fs::remove_dir_all(&p).unwrap();
    }
}
