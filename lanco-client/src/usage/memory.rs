//! A task's memory without the memory controller: the sum of its
//! processes' PSS (`/proc/PID/smaps_rollup`, readable for one's own
//! processes), or of their RSS (`/proc/PID/statm`, readable for all) when
//! the PSS of any of them is not. PSS costs the kernel a walk of the
//! process's page tables (~40 µs for a `sleep` on the machine that runs the
//! tests), so a process's PSS is read again only when its `statm` changed
//! or the figure is 10–20 s old.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use super::MemorySource;
use crate::namespace::read_proc;

/// How long a memory figure is used again while nothing shows a change:
/// this, plus the pid modulo the same, so that figures read in one sample
/// do not all expire in the same later one.
const MAX_AGE: Duration = Duration::from_secs(10);

/// Whether a figure read `at` for a process `pid` (or a task whose first
/// process it is) may still be used.
pub(super) fn fresh(at: Instant, pid: i32) -> bool {
    at.elapsed() < MAX_AGE + Duration::from_secs(u64::from(pid.unsigned_abs()) % 10)
}

/// Processes' PSS read in earlier samples, and whether it was readable.
#[derive(Debug, Default)]
pub(super) struct PssCache {
    by_pid: HashMap<i32, PssEntry>,
    /// The number of the current sample: entries not seen in it go.
    sample: u64,
    page_size: u64,
    path: String,
}

#[derive(Debug)]
struct PssEntry {
    /// `statm`'s size, resident and shared pages when PSS was read.
    statm: [u64; 3],
    /// PSS in bytes; `None` when not readable (another user's process).
    pss: Option<u64>,
    read_at: Instant,
    seen: u64,
}

impl PssCache {
    pub fn start(&mut self) {
        self.sample += 1;
        if self.page_size == 0 {
            self.page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(4096);
        }
    }

    /// Keeps the entries of `pids`, whose task's figure was used again.
    pub fn keep(&mut self, pids: &[i32]) {
        for pid in pids {
            if let Some(e) = self.by_pid.get_mut(pid) {
                e.seen = self.sample;
            }
        }
    }

    /// Forgets processes not seen in this sample (gone, or their pid is
    /// another process's now).
    pub fn finish(&mut self) {
        let sample = self.sample;
        self.by_pid.retain(|_, e| e.seen == sample);
    }

    /// The memory of processes `pids`: the sum of their PSS if every one's
    /// is readable, else of their RSS. Processes gone meanwhile count 0.
    pub fn memory_of(
        &mut self,
        proc_dir: Option<&fs::File>,
        pids: &[i32],
        buf: &mut Vec<u8>,
    ) -> (u64, MemorySource) {
        let (mut pss, mut rss, mut all_pss) = (0, 0, true);
        for &pid in pids {
            let Some(statm) = read_proc(proc_dir, pid, "statm", 256, buf, &mut self.path)
                .and_then(|n| parse_statm(&buf[..n]))
            else {
                continue;
            };
            rss += statm[1] * self.page_size;
            let known = self
                .by_pid
                .get(&pid)
                .is_some_and(|e| e.statm == statm && fresh(e.read_at, pid));
            if !known {
                let read = read_proc(proc_dir, pid, "smaps_rollup", 4096, buf, &mut self.path)
                    .and_then(|n| parse_pss(&buf[..n]));
                let e = PssEntry {
                    statm,
                    pss: read,
                    read_at: Instant::now(),
                    seen: 0,
                };
                self.by_pid.insert(pid, e);
            }
            let Some(e) = self.by_pid.get_mut(&pid) else {
                continue;
            };
            e.seen = self.sample;
            match e.pss {
                Some(p) => pss += p,
                None => all_pss = false,
            }
        }
        if all_pss {
            (pss, MemorySource::Pss)
        } else {
            (rss, MemorySource::Rss)
        }
    }
}

/// `/proc/PID/statm`'s first three fields: size, resident, shared (pages).
fn parse_statm(text: &[u8]) -> Option<[u64; 3]> {
    let text = std::str::from_utf8(text).ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `Pss:` of `/proc/PID/smaps_rollup`, in bytes.
fn parse_pss(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_statm(b"2150 512 448 5 0 85 0\n"),
            Some([2150, 512, 448])
        );
        assert_eq!(parse_statm(b"12 x"), None);
        let rollup = b"55d0a0000000-7ffd4c7f2000 ---p 00000000 00:00 0  [rollup]\n\
            Rss:                 896 kB\nPss:                 130 kB\nPss_Anon:  48 kB\n";
        assert_eq!(parse_pss(rollup), Some(130 * 1024));
        assert_eq!(parse_pss(b"Rss: 1 kB\n"), None);
    }

    /// This process's own PSS is readable; a pid that is no process's
    /// counts nothing.
    #[test]
    fn reads_own_pss() {
        let mut cache = PssCache::default();
        cache.start();
        let proc_dir = fs::File::open("/proc").ok();
        let me = std::process::id() as i32;
        let (bytes, source) = cache.memory_of(proc_dir.as_ref(), &[me, i32::MAX], &mut Vec::new());
        assert_eq!(source, MemorySource::Pss);
        assert!(bytes > 0);
        cache.finish();
        assert_eq!(cache.by_pid.len(), 1);
    }
}
