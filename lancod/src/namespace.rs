//! Namespaces as root sees them: the registration record, and the cgroups and
//! directories a namespace owns (docs/DESIGN.md, "Layout"). Creating is
//! all-or-nothing: a failed init removes whatever it made.
//!
//! Root never writes in a directory a tenant can write: lancod makes and
//! chowns directories only inside root-owned ones (the state directory, its
//! `ns/`, a namespace's own root:group directory, the log directory), opens no
//! file below a member's directory, and decides nothing from what tenants
//! wrote. The one thing it writes into a member's subtree is a pid into the
//! cgroupfs file `monitors/cgroup.procs` at admission, which the kernel's
//! common-ancestor rule reserves to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lanco_proto::cgroupfs::{self, Cgroup, CgroupError};
use lanco_proto::files::{Dir, Entry, FileError};
use lanco_proto::layout::{self, Layout};
use lanco_proto::limits::{self, Limits};
use lanco_proto::NamespaceName;
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

/// A namespace's registration, root-owned under `{state_dir}/namespaces/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub owner: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
    /// The namespace's ceilings, written on its cgroup at init, at each
    /// change and at every restore (a reboot makes the cgroups anew).
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("bad namespace record {path}: {message}")]
    BadRecord { path: PathBuf, message: String },
    #[error("no such user: {0}")]
    NoUser(String),
    #[error("no such group: {0}")]
    NoGroup(String),
    #[error("user {user} is not in group {group}: a namespace is shared through its group, so its owner must be a member (usermod -aG {group} {user}, then log in again), or choose a group {user} is in")]
    NotInGroup { user: String, group: String },
    #[error(
        "namespace {ns} already belongs to {owner}:{group}; destroy it first to change its owner"
    )]
    OwnedByOther {
        ns: NamespaceName,
        owner: String,
        group: String,
    },
    #[error("{path} already exists and belongs to {owner}, not to root: lanco will not adopt it; move it away first")]
    Unexpected { path: PathBuf, owner: String },
    #[error("namespace {0} does not exist")]
    NotFound(NamespaceName),
    #[error("cannot create the task root ({0}); under systemd, is lanco-tasks.service running?")]
    TaskRoot(CgroupError),
    #[error("namespace {ns} has running tasks ({tasks}); stop them or use --force")]
    Busy { ns: NamespaceName, tasks: String },
    #[error("{0}")]
    Several(String),
}

pub fn load_record(layout: &Layout, ns: &NamespaceName) -> Result<Option<Record>, NsError> {
    let dir = match Dir::open(&layout.registry_dir()) {
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(None),
        r => r?,
    };
    let name = layout::registry_entry(ns);
    let Some(bytes) = dir.read(&name, 0, 64 * 1024)? else {
        return Ok(None);
    };
    let bad = |message: String| NsError::BadRecord {
        path: dir.join(&name),
        message,
    };
    let text = String::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| bad(e.message().to_owned()))
}

fn save_record(layout: &Layout, ns: &NamespaceName, rec: &Record) -> Result<(), NsError> {
    let dir = root_dir(&layout.registry_dir(), 0o700)?;
    let name = layout::registry_entry(ns);
    let text = toml::to_string(rec).map_err(|e| NsError::BadRecord {
        path: dir.join(&name),
        message: e.to_string(),
    })?;
    Ok(dir.replace(&name, text.as_bytes(), 0o600)?)
}

/// A root-owned directory of the configuration (made, with its parents, if
/// missing).
fn root_dir(path: &Path, mode: u32) -> Result<Dir, NsError> {
    if !path.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .map_err(|error| FileError::Io {
                op: "create",
                path: path.to_owned(),
                error,
            })?;
    }
    Ok(Dir::open(path)?)
}

/// Every registered namespace.
pub fn registered(layout: &Layout) -> Result<Vec<(NamespaceName, Record)>, NsError> {
    let dir = match Dir::open(&layout.registry_dir()) {
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(Vec::new()),
        r => r?,
    };
    let mut out = Vec::new();
    for entry in dir.list()? {
        let Some(ns) = layout::ns_of_registry_entry(&entry) else {
            continue;
        };
        // One unreadable record must not stop restore or stop-all from
        // serving every other namespace.
        match load_record(layout, &ns) {
            Ok(Some(rec)) => out.push((ns, rec)),
            Ok(None) => {}
            Err(e) => tracing::error!(%ns, "skipped: {e}"),
        }
    }
    Ok(out)
}

/// Resolves the owner and group named in an init request (`None`: the
/// requesting user, and that user's primary group) and checks that the
/// owner is in the group.
pub fn resolve_owner(
    owner: Option<&str>,
    group: Option<&str>,
    peer_uid: u32,
) -> Result<Record, NsError> {
    use nix::unistd::{Group, User};
    let user = match owner {
        Some(name) => User::from_name(name).ok().flatten(),
        None => User::from_uid(Uid::from_raw(peer_uid)).ok().flatten(),
    }
    .ok_or_else(|| NsError::NoUser(owner.map_or(peer_uid.to_string(), str::to_owned)))?;
    let grp = match group {
        Some(name) => Group::from_name(name).ok().flatten(),
        None => Group::from_gid(user.gid).ok().flatten(),
    }
    .ok_or_else(|| NsError::NoGroup(group.map_or(user.gid.to_string(), str::to_owned)))?;
    let member = user.gid == grp.gid
        || std::ffi::CString::new(user.name.as_str())
            .ok()
            .and_then(|n| nix::unistd::getgrouplist(&n, user.gid).ok())
            .is_some_and(|gs| gs.contains(&grp.gid));
    if !member {
        return Err(NsError::NotInGroup {
            user: user.name,
            group: grp.name,
        });
    }
    Ok(Record {
        owner: user.name,
        uid: user.uid.as_raw(),
        group: grp.name,
        gid: grp.gid.as_raw(),
        limits: Limits::default(),
    })
}

/// What an interrupted init or admission must undo.
#[derive(Default)]
struct Undo {
    cgroups: Vec<Cgroup>,
    dirs: Vec<PathBuf>,
}

impl Undo {
    fn run(self) {
        for cg in self.cgroups.iter().rev() {
            let _ = cg.remove();
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// Runs `f`; on error, removes what it made.
    fn all_or_nothing<T>(f: impl FnOnce(&mut Undo) -> Result<T, NsError>) -> Result<T, NsError> {
        let mut undo = Undo::default();
        let r = f(&mut undo);
        if r.is_err() {
            undo.run();
        }
        r
    }

    fn cgroup(&mut self, cg: Cgroup) -> Result<Cgroup, NsError> {
        if cg.create()? {
            self.cgroups.push(cg.clone());
        }
        Ok(cg)
    }

    /// The directory `name` in `parent`, made if missing, then given to
    /// `uid`:`gid` with `mode`. An existing one must satisfy `ours` (its
    /// owner is the one lanco gave it), or it is refused, never adopted.
    fn dir(
        &mut self,
        parent: &Dir,
        name: &str,
        (uid, gid, mode): (u32, u32, u32),
        ours: impl Fn(&Entry) -> bool,
    ) -> Result<Dir, NsError> {
        let made = parent.mkdir(name, 0o700)?;
        if made {
            self.dirs.push(parent.join(name));
        }
        let d = parent.sub(name)?;
        let meta = d.meta()?;
        if !made && !ours(&meta) {
            return Err(NsError::Unexpected {
                path: d.path().to_owned(),
                owner: lanco_proto::files::user_name(meta.uid),
            });
        }
        d.set_owner(uid, gid, mode)?;
        Ok(d)
    }
}

const ROOT: u32 = 0;
fn by_root(e: &Entry) -> bool {
    e.uid == ROOT && e.is_dir()
}

/// Creates or re-applies everything the namespace owns, and moves a 0.1
/// namespace to this layout (its running tasks stay where they are).
/// Idempotent; on error, removes what this call made.
pub fn apply(layout: &Layout, ns: &NamespaceName, rec: &Record) -> Result<bool, NsError> {
    Undo::all_or_nothing(|undo| {
        let root = Cgroup::new(&layout.cgroup_root);
        if !root.exists() {
            // The task root's parents (e.g. system.slice) are never ours to
            // make; under systemd the root is lanco-tasks.service's delegated
            // cgroup, which exists only while that unit runs.
            undo.cgroup(root.clone()).map_err(|e| match e {
                NsError::Cgroup(c) => NsError::TaskRoot(c),
                e => e,
            })?;
        }
        // Others may pass (members reach their namespace) but not list.
        root.set_mode(0o711)?;
        let created = !layout.ns_cgroup(ns).exists();
        // root:group, and its cgroup.procs root's: with each member in a
        // subtree of its own, only root may move processes between them.
        let nscg = undo.cgroup(Cgroup::new(layout.ns_cgroup(ns)))?;
        nscg.delegate(
            Uid::from_raw(ROOT),
            Gid::from_raw(rec.gid),
            0o750,
            cgroupfs::DELEGATED_FILES,
        )?;
        write_ceilings(&root, &nscg, &rec.limits, &[])?;
        let state = root_dir(&layout.state_dir, 0o755)?;
        let all = undo.dir(&state, "ns", (ROOT, ROOT, 0o711), by_root)?;
        let nsd = undo.dir(&all, ns.as_str(), (ROOT, rec.gid, 0o750), by_root)?;
        undo.dir(&nsd, layout::NAMES, (ROOT, rec.gid, 0o1770), by_root)?;
        // Shared by the members' tasks at the documented path: sticky, so
        // each file is its writer's alone; setgid, so members can read them. A 0.1 namespace's directory
        // belonged to its owner and group; it is taken back.
        let logs = root_dir(&layout.log_dir, 0o755)?;
        let legacy = |e: &Entry| e.is_dir() && e.uid == rec.uid && e.gid == rec.gid;
        undo.dir(
            &logs,
            &format!("lanco-{ns}"),
            (ROOT, rec.gid, 0o3770),
            |e| by_root(e) || legacy(e),
        )?;
        save_record(layout, ns, rec)?;
        Ok(created)
    })
    .inspect(|_| tidy_legacy(layout, ns))
}

/// Writes `set` on the namespace cgroup `nscg` (its files stay root's:
/// members cannot raise them), after enabling in the task root `root` the
/// controllers they need; then puts each of `clear` back to unlimited where
/// its file exists. Nothing is written if a controller is missing.
fn write_ceilings(
    root: &Cgroup,
    nscg: &Cgroup,
    set: &Limits,
    clear: &[limits::Key],
) -> Result<(), NsError> {
    root.enable_controllers(set.controllers())?;
    for (key, value) in set.set() {
        nscg.write(key.file(), &value)?;
    }
    for key in clear {
        if nscg.file(key.file()).exists() {
            nscg.write(key.file(), key.unlimited())?;
        }
    }
    Ok(())
}

/// `lanco NS limit`: sets `set`, then clears `clear`, on the namespace's
/// cgroup and in its record; returns the ceilings now in force.
pub fn limit(
    layout: &Layout,
    ns: &NamespaceName,
    set: &Limits,
    clear: &[limits::Key],
) -> Result<Limits, NsError> {
    let mut rec = load_record(layout, ns)?.ok_or_else(|| NsError::NotFound(ns.clone()))?;
    let nscg = Cgroup::new(layout.ns_cgroup(ns));
    if !nscg.exists() {
        return Err(NsError::NotFound(ns.clone()));
    }
    write_ceilings(&Cgroup::new(&layout.cgroup_root), &nscg, set, clear)?;
    rec.limits = rec.limits.overlaid(set);
    for key in clear {
        rec.limits.clear(*key);
    }
    save_record(layout, ns, &rec)?;
    Ok(rec.limits)
}

/// Makes `controllers` available to the members' subtrees of `ns` (enabled
/// in the task root's and the namespace's `cgroup.subtree_control`), for
/// their tasks' own limits. A member enables them in its own subtree.
pub fn enable(layout: &Layout, ns: &NamespaceName, controllers: &[&str]) -> Result<(), NsError> {
    let nscg = Cgroup::new(layout.ns_cgroup(ns));
    if !nscg.exists() {
        return Err(NsError::NotFound(ns.clone()));
    }
    Cgroup::new(&layout.cgroup_root).enable_controllers(controllers.iter().copied())?;
    Ok(nscg.enable_controllers(controllers.iter().copied())?)
}

/// init: refuses to hand an existing namespace to somebody else.
/// Ceilings it already has stay, but for those `rec` sets.
pub fn init(layout: &Layout, ns: &NamespaceName, rec: &Record) -> Result<bool, NsError> {
    let mut rec = rec.clone();
    if let Some(old) = load_record(layout, ns)? {
        if old.uid != rec.uid || old.gid != rec.gid {
            return Err(NsError::OwnedByOther {
                ns: ns.clone(),
                owner: old.owner,
                group: old.group,
            });
        }
        rec.limits = old.limits.overlaid(&rec.limits);
    }
    apply(layout, ns, &rec)
}

/// Makes (or re-applies) member `uid`'s subtree of the namespace — its
/// cgroup subtree with a `monitors` leaf, and its state directory — and
/// returns the leaf its monitors are admitted to.
pub fn ensure_member(
    layout: &Layout,
    ns: &NamespaceName,
    rec: &Record,
    uid: u32,
    max_cgroups: u64,
) -> Result<Cgroup, NsError> {
    tidy_legacy(layout, ns);
    Undo::all_or_nothing(|undo| {
        let (u, g) = (Uid::from_raw(uid), Gid::from_raw(rec.gid));
        let user = undo.cgroup(Cgroup::new(layout.user_cgroup(ns, uid)))?;
        // setgid: every cgroup the member makes below takes the namespace's
        // group, so the other members can read it and use the two files its
        // owner shares (cgroup.freeze, cgroup.kill).
        user.delegate(u, g, 0o2750, cgroupfs::DELEGATED_FILES)?;
        user.set_max_descendants(max_cgroups)?;
        let monitors = undo.cgroup(Cgroup::new(layout.monitor_cgroup(ns, uid)))?;
        monitors.delegate(u, g, 0o2750, &[cgroupfs::CGROUP_PROCS])?;
        let nsd = Dir::open(&layout.ns_state_dir(ns))?;
        undo.dir(
            &nsd,
            &layout::user_entry(uid),
            (uid, rec.gid, 0o2750),
            |e| e.is_dir() && e.uid == uid,
        )?;
        Ok(monitors)
    })
}

/// Running tasks: names of the task cgroups that still hold a process.
pub fn running_tasks(layout: &Layout, ns: &NamespaceName) -> Result<Vec<String>, NsError> {
    Ok(running_task_cgroups(layout, ns)?
        .into_iter()
        .map(|t| t.task.to_string())
        .collect())
}

pub(crate) fn running_task_cgroups(
    layout: &Layout,
    ns: &NamespaceName,
) -> Result<Vec<layout::TaskCgroup>, NsError> {
    let mut out = Vec::new();
    for t in layout::task_cgroups(layout, ns)? {
        if t.cgroup.populated()? {
            out.push(t);
        }
    }
    Ok(out)
}

/// A 0.1 namespace's leftovers once its last 0.1 task has ended: the empty
/// cgroups below the namespace and the group-writable state directory (kept
/// for the administrator in the root-only `destroyed/`, as at destroy).
fn tidy_legacy(layout: &Layout, ns: &NamespaceName) {
    let Ok(children) = Cgroup::new(layout.ns_cgroup(ns)).children() else {
        return;
    };
    let mut busy = false;
    for cg in children {
        let name = cg.path().file_name().and_then(|n| n.to_str()).unwrap_or("");
        if layout::uid_of_user_entry(name).is_some() {
            continue;
        }
        if cg.populated().unwrap_or(true) || cg.remove_tree().is_err() {
            busy = true;
        }
    }
    let legacy = layout.legacy_state_dir(ns);
    if !busy && legacy.is_dir() {
        let name = format!("{}-0.1", kept_name(ns));
        if let Err(e) = keep(&layout.kept_state_dir(), &legacy, &name) {
            tracing::warn!(%ns, "cannot put away the 0.1 state directory: {e}");
        }
    }
}

/// The name a destroyed namespace's records and logs are kept under,
/// `NS-STAMP` (STAMP: nanoseconds since the epoch), the same in both kept
/// directories; `crate::destroyed` reads it back.
pub(crate) fn kept_name(ns: &NamespaceName) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{ns}-{stamp}")
}

/// Moves `dir` (an entry of a root-owned directory) into the root-only
/// `kept` as `kept_name`.
fn keep(kept: &Path, dir: &Path, kept_name: &str) -> Result<(), NsError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(());
    };
    let from = Dir::open(parent)?;
    let to = root_dir(kept, 0o700)?;
    // Made by an older lanco without the mode: no tenant may reach inside.
    to.set_owner(ROOT, ROOT, 0o700)?;
    Ok(from.move_to(name, &to, kept_name)?)
}

/// destroy: removes the cgroups and the registration. State and logs (exit
/// records, accounting, logs) are kept for the administrator in root-only
/// directories no namespace name can reach (`{state_dir}/destroyed/`,
/// `{log_dir}/lanco.destroyed/`), so a later namespace of the same name,
/// maybe another tenant's, never sees them.
pub fn destroy(
    layout: &Layout,
    admin_gid: Option<u32>,
    ns: &NamespaceName,
    force: bool,
) -> Result<(), NsError> {
    if load_record(layout, ns)?.is_none() {
        return Err(NsError::NotFound(ns.clone()));
    }
    let running = running_tasks(layout, ns)?;
    if !running.is_empty() && !force {
        return Err(NsError::Busy {
            ns: ns.clone(),
            tasks: running.join(", "),
        });
    }
    let cg = Cgroup::new(layout.ns_cgroup(ns));
    if cg.populated()? {
        // The namespace goes: its kill counter dies with it.
        cg.kill()?;
        cg.wait_events(Duration::from_secs(10), |e| !e.populated)?;
    }
    // The members' last counters, before their cgroups (and counters) go.
    if let Err(e) = crate::billing::namespace(
        layout,
        admin_gid,
        ns,
        lanco_proto::billing::UsageEvent::Destroy,
    ) {
        tracing::error!(%ns, "billing sample failed: {e}");
    }
    cg.remove_tree()?;
    // One name for the records and the logs, so that `lancod destroyed`
    // shows them as one.
    let name = kept_name(ns);
    for (kept, dir, tag) in [
        (layout.kept_state_dir(), layout.ns_state_dir(ns), ""),
        (layout.kept_state_dir(), layout.legacy_state_dir(ns), "-0.1"),
        (layout.kept_log_dir(), layout.ns_log_dir(ns), ""),
    ] {
        if dir.is_dir() {
            keep(&kept, &dir, &format!("{name}{tag}"))?;
        }
    }
    let reg = Dir::open(&layout.registry_dir())?;
    let name = layout::registry_entry(ns);
    Ok(reg.remove(&name)?)
}
