//! Root's billing journal: the kernel's own counters of each member's
//! subtree (`ns-NS/user-UID`), sampled by root into `{state_dir}/billing/
//! usage.jsonl`, a file in a directory no tenant can write. A tenant writes
//! its own per-run records and can alter them; it cannot alter these. The
//! kernel's counters are hierarchical and keep what removed children used,
//! so a member's subtree counts every task it ever ran there.
//!
//! Samples are taken at each admission, at destroy (before the cgroups go),
//! at stop-all, and by `lancod account` (a timer under systemd). Each line
//! holds cumulative counters since the subtree was made; a new `cgroup_id`
//! (the subtree's inode) means they started again from zero. Nothing here
//! reads a tenant's file: only cgroupfs and root's own records.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use lanco_proto::billing::{UsageEvent, UsageSample};
use lanco_proto::cgroupfs::{self, Cgroup};
use lanco_proto::files::Dir;
use lanco_proto::layout::{self, Layout};
use lanco_proto::NamespaceName;
use nix::fcntl::{Flock, FlockArg};

/// Why a sample could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    File(#[from] lanco_proto::files::FileError),
    #[error("billing journal {path}: {what}")]
    Journal {
        path: std::path::PathBuf,
        what: String,
    },
}

use lanco_proto::layout::BILLING_JOURNAL as JOURNAL;
/// Rotated past this size…
const ROTATE_AT: u64 = 64 << 20;
/// …keeping this many parts (about 1.3 GiB, some years of hourly samples
/// of a few hundred members).
const KEEP: u32 = 20;

/// Reads `uid`'s subtree of `ns`; `None` if it does not exist.
fn take(layout: &Layout, ns: &NamespaceName, uid: u32, event: UsageEvent) -> Option<UsageSample> {
    let cg = Cgroup::new(layout.user_cgroup(ns, uid));
    let cgroup_id = std::fs::metadata(cg.path()).ok()?.ino();
    // One read of io.stat for both sums (absent without the io controller).
    let io_stat = cg.read("io.stat").ok();
    let io = |key: &str| -> Option<u64> {
        Some(
            io_stat
                .as_deref()?
                .split_whitespace()
                .filter_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
                .sum(),
        )
    };
    Some(UsageSample {
        time: now(),
        event,
        namespace: ns.to_string(),
        uid,
        user: uzers::get_user_by_uid(uid)
            .map(|u| u.name().to_string_lossy().into_owned())
            .unwrap_or_else(|| uid.to_string()),
        cgroup_id,
        cpu_usec: cg.cpu_usage_usec().ok()?,
        memory_peak_bytes: cg.optional_u64(cgroupfs::MEMORY_PEAK).ok().flatten(),
        io_read_bytes: io("rbytes"),
        io_write_bytes: io("wbytes"),
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Samples member `uid` of `ns` (at its admission).
pub fn member(
    layout: &Layout,
    admin_gid: Option<u32>,
    ns: &NamespaceName,
    uid: u32,
    event: UsageEvent,
) -> Result<(), BillingError> {
    let lines: Vec<UsageSample> = take(layout, ns, uid, event).into_iter().collect();
    append(layout, admin_gid, &lines)
}

/// Samples every member of `ns` (at destroy, before its cgroups go).
pub fn namespace(
    layout: &Layout,
    admin_gid: Option<u32>,
    ns: &NamespaceName,
    event: UsageEvent,
) -> Result<(), BillingError> {
    let lines = members(layout, ns, event);
    append(layout, admin_gid, &lines)
}

/// Samples every member of each of `namespaces` (`lancod account`,
/// stop-all: every registered one).
pub fn all(
    layout: &Layout,
    admin_gid: Option<u32>,
    namespaces: &[NamespaceName],
    event: UsageEvent,
) -> Result<usize, BillingError> {
    let lines: Vec<UsageSample> = namespaces
        .iter()
        .flat_map(|ns| members(layout, ns, event))
        .collect();
    append(layout, admin_gid, &lines)?;
    Ok(lines.len())
}

fn members(layout: &Layout, ns: &NamespaceName, event: UsageEvent) -> Vec<UsageSample> {
    layout::user_cgroups(layout, ns)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(uid, _)| take(layout, ns, uid, event))
        .collect()
}

/// Appends `lines` in one write, under an exclusive lock of the journal
/// (lancod's handlers and `lancod account` may append at once), rotating it
/// first when it has grown past [`ROTATE_AT`]. A writer that waited for the
/// lock while another rotated appends to the part it opened: no line is
/// lost, it lands in `.1`.
fn append(
    layout: &Layout,
    admin_gid: Option<u32>,
    lines: &[UsageSample],
) -> Result<(), BillingError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = Vec::new();
    for s in lines {
        serde_json::to_writer(&mut text, s).map_err(|e| journal_error(layout, e))?;
        text.push(b'\n');
    }
    let dir = billing_dir(layout, admin_gid)?;
    let file = dir.open_append(JOURNAL, 0o640)?;
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| journal_error(layout, format!("cannot lock it: {e}")))?;
    let io = |e: std::io::Error| journal_error(layout, e);
    if file.metadata().map_err(io)?.len() >= ROTATE_AT {
        rotate(&dir)?;
        let mut fresh = dir.open_append(JOURNAL, 0o640)?;
        return fresh.write_all(&text).map_err(io);
    }
    file.write_all(&text).map_err(io)
}

fn journal_error(layout: &Layout, what: impl std::fmt::Display) -> BillingError {
    BillingError::Journal {
        path: layout.billing_dir().join(JOURNAL),
        what: what.to_string(),
    }
}

/// `usage.jsonl.N` → `.N+1` (the oldest beyond [`KEEP`] removed), then the
/// journal → `.1`.
fn rotate(dir: &Dir) -> Result<(), BillingError> {
    let part = |n: u32| format!("{JOURNAL}.{n}");
    if dir.entry(&part(KEEP))?.is_some() {
        dir.remove(&part(KEEP))?;
    }
    for n in (1..KEEP).rev() {
        if dir.entry(&part(n))?.is_some() {
            dir.rename(&part(n), &part(n + 1))?;
        }
    }
    Ok(dir.rename(JOURNAL, &part(1))?)
}

/// `{state_dir}/billing/`, made if missing: root's, group the admin group
/// and mode 2750, so the journal and its parts take that group (0700
/// without an admin group). An existing entry that is not a
/// root-owned directory is refused, never adopted.
fn billing_dir(layout: &Layout, admin_gid: Option<u32>) -> Result<Dir, BillingError> {
    const DIR: &str = "billing";
    let state = Dir::open(&layout.state_dir)?;
    let (gid, mode) = admin_gid.map_or((0, 0o700), |g| (g, 0o2750));
    state.mkdir(DIR, mode)?;
    let e = state
        .entry(DIR)?
        .ok_or_else(|| journal_error(layout, "its directory vanished"))?;
    if !(e.is_dir() && e.uid == 0) {
        return Err(journal_error(
            layout,
            format!(
                "{} is not a directory of root's (uid {}): lanco will not adopt it",
                state.join(DIR).display(),
                e.uid
            ),
        ));
    }
    let dir = state.sub(DIR)?;
    if e.gid != gid || e.mode & 0o7777 != mode {
        dir.set_owner(0, gid, mode)?;
    }
    Ok(dir)
}
