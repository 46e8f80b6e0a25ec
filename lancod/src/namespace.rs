//! Namespaces as root sees them: the registration record, and the cgroups and
//! directories a namespace owns. Creating is all-or-nothing: a failed init
//! removes whatever it made.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::{self, Cgroup, CgroupError};
use lanco_proto::layout::{self, Layout};
use lanco_proto::NamespaceName;
use nix::sys::signal::Signal;
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
}

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad namespace record {path}: {message}")]
    BadRecord { path: PathBuf, message: String },
    #[error("no such user: {0}")]
    NoUser(String),
    #[error("no such group: {0}")]
    NoGroup(String),
    #[error(
        "namespace {ns} already belongs to {owner}:{group}; destroy it first to change its owner"
    )]
    OwnedByOther {
        ns: NamespaceName,
        owner: String,
        group: String,
    },
    #[error("namespace {0} does not exist")]
    NotFound(NamespaceName),
    #[error("cannot create the task root ({0}); under systemd, is lanco-tasks.service running?")]
    TaskRoot(CgroupError),
    #[error("namespace {ns} has running tasks ({tasks}); stop them or use --force")]
    Busy { ns: NamespaceName, tasks: String },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NsError + 'a {
    move |source| NsError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

pub fn load_record(layout: &Layout, ns: &NamespaceName) -> Result<Option<Record>, NsError> {
    let path = layout.registry_file(ns);
    let text = match fs::read_to_string(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        r => r.map_err(io("read", &path))?,
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| NsError::BadRecord {
            path,
            message: e.message().to_owned(),
        })
}

fn save_record(layout: &Layout, ns: &NamespaceName, rec: &Record) -> Result<(), NsError> {
    let dir = layout.registry_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io("create", &dir))?;
    let path = layout.registry_file(ns);
    let tmp = path.with_extension("toml.tmp");
    let text = toml::to_string(rec).map_err(|e| NsError::BadRecord {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("rename", &path))
}

/// Every registered namespace.
pub fn registered(layout: &Layout) -> Result<Vec<(NamespaceName, Record)>, NsError> {
    let dir = layout.registry_dir();
    let rd = match fs::read_dir(&dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.map_err(io("list", &dir))?,
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io("list", &dir))?;
        let Some(ns) = entry
            .file_name()
            .to_str()
            .and_then(layout::ns_of_registry_entry)
        else {
            continue;
        };
        if let Some(rec) = load_record(layout, &ns)? {
            out.push((ns, rec));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Resolves the owner and group named in an init request. `None` means the
/// requesting user, and that user's primary group.
pub fn resolve_owner(
    owner: Option<&str>,
    group: Option<&str>,
    peer_uid: u32,
) -> Result<Record, NsError> {
    let user = match owner {
        Some(name) => {
            uzers::get_user_by_name(name).ok_or_else(|| NsError::NoUser(name.to_owned()))?
        }
        None => {
            uzers::get_user_by_uid(peer_uid).ok_or_else(|| NsError::NoUser(peer_uid.to_string()))?
        }
    };
    let grp = match group {
        Some(name) => {
            uzers::get_group_by_name(name).ok_or_else(|| NsError::NoGroup(name.to_owned()))?
        }
        None => uzers::get_group_by_gid(user.primary_group_id())
            .ok_or_else(|| NsError::NoGroup(user.primary_group_id().to_string()))?,
    };
    Ok(Record {
        owner: user.name().to_string_lossy().into_owned(),
        uid: user.uid(),
        group: grp.name().to_string_lossy().into_owned(),
        gid: grp.gid(),
    })
}

/// What an interrupted init must undo.
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
            let _ = fs::remove_dir(d);
        }
    }
}

fn make_dir(path: &Path, mode: u32, undo: &mut Undo) -> Result<(), NsError> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => undo.dirs.push(path.to_owned()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create", path)(e)),
    }
    Ok(())
}

/// A directory only the namespace may use: owner:group, setgid so every file
/// made in it belongs to the group, no access for others.
fn make_private_dir(path: &Path, rec: &Record, undo: &mut Undo) -> Result<(), NsError> {
    make_dir(path, 0o2770, undo)?;
    nix::unistd::chown(
        path,
        Some(Uid::from_raw(rec.uid)),
        Some(Gid::from_raw(rec.gid)),
    )
    .map_err(|e| io("chown", path)(e.into()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o2770)).map_err(io("chmod", path))
}

fn make_cgroup(cg: Cgroup, undo: &mut Undo) -> Result<Cgroup, NsError> {
    if cg.create()? {
        undo.cgroups.push(cg.clone());
    }
    Ok(cg)
}

/// Creates or re-applies everything the namespace owns. Idempotent; on error,
/// removes what this call created and leaves what existed before.
pub fn apply(layout: &Layout, ns: &NamespaceName, rec: &Record) -> Result<bool, NsError> {
    let mut undo = Undo::default();
    let r = apply_inner(layout, ns, rec, &mut undo);
    if r.is_err() {
        undo.run();
    }
    r
}

fn apply_inner(
    layout: &Layout,
    ns: &NamespaceName,
    rec: &Record,
    undo: &mut Undo,
) -> Result<bool, NsError> {
    let (uid, gid) = (Uid::from_raw(rec.uid), Gid::from_raw(rec.gid));
    let root = Cgroup::new(&layout.cgroup_root);
    if !root.exists() {
        // The task root's parents (e.g. system.slice) are never ours to make;
        // under systemd the root is lanco-tasks.service's delegated cgroup,
        // which exists only while that unit runs.
        make_cgroup(root, undo).map_err(|e| match e {
            NsError::Cgroup(c) => NsError::TaskRoot(c),
            e => e,
        })?;
    }
    let created = !layout.ns_cgroup(ns).exists();
    // The namespace directory and its cgroup.procs are the tenant's: moving a
    // process between two of its cgroups needs write access to their common
    // ancestor's cgroup.procs. Quota files stay root's.
    make_cgroup(Cgroup::new(layout.ns_cgroup(ns)), undo)?.delegate(
        Some(uid),
        gid,
        cgroupfs::DELEGATED_FILES,
    )?;
    // Monitors are admitted here by lancod and move their payloads out of it,
    // so members need its cgroup.procs, but not the directory.
    make_cgroup(Cgroup::new(layout.monitor_cgroup(ns)), undo)?.grant(
        Some(uid),
        gid,
        &[cgroupfs::CGROUP_PROCS],
    )?;
    for dir in [&layout.state_dir, &layout.log_dir] {
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io("create", dir))?;
        }
    }
    make_private_dir(&layout.ns_state_dir(ns), rec, undo)?;
    make_private_dir(&layout.ns_log_dir(ns), rec, undo)?;
    save_record(layout, ns, rec)?;
    Ok(created)
}

/// init: refuses to hand an existing namespace to somebody else.
pub fn init(layout: &Layout, ns: &NamespaceName, rec: &Record) -> Result<bool, NsError> {
    if let Some(old) = load_record(layout, ns)? {
        if old.uid != rec.uid || old.gid != rec.gid {
            return Err(NsError::OwnedByOther {
                ns: ns.clone(),
                owner: old.owner,
                group: old.group,
            });
        }
    }
    apply(layout, ns, rec)
}

/// Names of the tasks whose cgroups still hold a process.
pub fn running_tasks(layout: &Layout, ns: &NamespaceName) -> Result<Vec<String>, NsError> {
    Ok(running_task_cgroups(layout, ns)?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

fn running_task_cgroups(
    layout: &Layout,
    ns: &NamespaceName,
) -> Result<Vec<(String, Cgroup)>, NsError> {
    let mut out = Vec::new();
    for cg in Cgroup::new(layout.ns_cgroup(ns)).children()? {
        let entry = cg
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(t) = layout::task_of_cgroup_entry(entry) {
            if cg.populated()? {
                out.push((t.to_string(), cg));
            }
        }
    }
    Ok(out)
}

/// destroy: removes the cgroups and the registration. The state and log
/// directories (exit records, accounting, logs) are kept for the administrator
/// but renamed and made root-only, so a later namespace of the same name, maybe
/// another tenant's, never sees them.
pub fn destroy(layout: &Layout, ns: &NamespaceName, force: bool) -> Result<(), NsError> {
    if load_record(layout, ns)?.is_none() {
        return Err(NsError::NotFound(ns.clone()));
    }
    let cg = Cgroup::new(layout.ns_cgroup(ns));
    let running = running_tasks(layout, ns)?;
    if !running.is_empty() && !force {
        return Err(NsError::Busy {
            ns: ns.clone(),
            tasks: running.join(", "),
        });
    }
    if cg.populated()? {
        cg.kill()?;
        cg.wait_events(Duration::from_secs(10), |e| !e.populated)?;
    }
    cg.remove_tree()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    for dir in [layout.ns_state_dir(ns), layout.ns_log_dir(ns)] {
        if dir.exists() {
            let mut kept = dir.clone().into_os_string();
            kept.push(format!(".destroyed-{stamp}"));
            let kept = PathBuf::from(kept);
            fs::rename(&dir, &kept).map_err(io("rename", &dir))?;
            nix::unistd::chown(&kept, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
                .map_err(|e| io("chown", &kept)(e.into()))?;
            fs::set_permissions(&kept, fs::Permissions::from_mode(0o700))
                .map_err(io("chmod", &kept))?;
        }
    }
    let reg = layout.registry_file(ns);
    fs::remove_file(&reg).map_err(io("remove", &reg))
}

/// Ends every task of every registered namespace as `lanco stop` would, for
/// `systemctl stop lanco-tasks.service`: SIGTERM to each monitor, which then
/// stops its task (freeze, SIGTERM to each process, thaw; cgroup.kill after
/// the task's stop timeout) and writes an exit record that says "stopped".
/// At `timeout`, or as soon as a namespace has no monitor left (a task whose
/// monitor had died), the task cgroups still populated are killed with
/// cgroup.kill and removed; monitors still alive a few seconds later get
/// SIGKILL. Never cgroup.kill on a namespace's own cgroup: the kernel then
/// kills every task the namespace's monitors start afterwards.
/// Returns how many monitors were signalled.
pub fn stop_all(layout: &Layout, timeout: Duration) -> Result<usize, NsError> {
    let namespaces = registered(layout)?;
    let mut signalled = 0;
    for (ns, _) in &namespaces {
        signalled += signal_monitors(layout, ns, Signal::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    for (ns, _) in &namespaces {
        let monitors = Cgroup::new(layout.monitor_cgroup(ns));
        let left = deadline.saturating_duration_since(Instant::now());
        monitors.wait_events(left, |e| !e.populated)?;
        let mut killed = Vec::new();
        for (task, cg) in running_task_cgroups(layout, ns)? {
            tracing::warn!(%ns, task, "still running: cgroup.kill");
            cg.kill()?;
            killed.push(cg);
        }
        for cg in &killed {
            cg.wait_events(Duration::from_secs(5), |e| !e.populated)?;
        }
        // Their monitors, if alive, now record the end and exit.
        if !monitors.wait_events(Duration::from_secs(5), |e| !e.populated)? {
            tracing::warn!(%ns, "monitors still alive: SIGKILL");
            signal_monitors(layout, ns, Signal::SIGKILL);
            monitors.wait_events(Duration::from_secs(5), |e| !e.populated)?;
        }
        for cg in killed {
            // A killed cgroup must not be reused (see above); a monitor that
            // outlived the kill may have removed it already.
            if let Err(e) = cg.remove_tree() {
                tracing::warn!(%ns, "{e}");
            }
        }
        let cg = Cgroup::new(layout.ns_cgroup(ns));
        if cg.populated()? {
            return Err(NsError::Io {
                op: "empty",
                path: cg.path().to_owned(),
                source: ErrorKind::TimedOut.into(),
            });
        }
    }
    Ok(signalled)
}

/// Sends `sig` to every monitor of `ns`; returns how many.
fn signal_monitors(layout: &Layout, ns: &NamespaceName, sig: Signal) -> usize {
    let monitors = Cgroup::new(layout.monitor_cgroup(ns));
    let mut done = std::collections::HashSet::new();
    if monitors.exists() {
        if let Err(e) = monitors.signal_frozen(sig, &mut done) {
            tracing::warn!(%ns, "{e}");
        }
    }
    done.len()
}
