//! All access to cgroupfs: finding the cgroup2 mount, the interface file names,
//! and the reads and writes lanco makes. Every error names the file and the
//! operation. Nothing here decides who may do what; callers run with whatever
//! credentials they have and the kernel's delegation rules apply.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid};

pub const CGROUP_PROCS: &str = "cgroup.procs";
pub const CGROUP_THREADS: &str = "cgroup.threads";
pub const CGROUP_EVENTS: &str = "cgroup.events";
pub const CGROUP_KILL: &str = "cgroup.kill";
pub const CGROUP_FREEZE: &str = "cgroup.freeze";
pub const CGROUP_SUBTREE_CONTROL: &str = "cgroup.subtree_control";
pub const CGROUP_MAX_DESCENDANTS: &str = "cgroup.max.descendants";
pub const CGROUP_CONTROLLERS: &str = "cgroup.controllers";
pub const CPU_STAT: &str = "cpu.stat";
pub const MEMORY_PEAK: &str = "memory.peak";
pub const MEMORY_CURRENT: &str = "memory.current";
pub const MEMORY_MAX: &str = "memory.max";
pub const MEMORY_OOM_GROUP: &str = "memory.oom.group";
pub const MEMORY_EVENTS: &str = "memory.events";
pub const PIDS_EVENTS: &str = "pids.events";
pub const MEMORY_HIGH: &str = "memory.high";
pub const PIDS_CURRENT: &str = "pids.current";
pub const PIDS_MAX: &str = "pids.max";
pub const CPU_MAX: &str = "cpu.max";
pub const CPU_WEIGHT: &str = "cpu.weight";
pub const IO_WEIGHT: &str = "io.weight";

/// How many processes a SIGTERM sweep ([`Cgroup::signal_frozen`]) pins,
/// checks and signals at a time.
pub const SWEEP_BATCH: usize = 256;

/// Files a delegatee must be able to write (cgroup-v2.rst, "Delegation").
pub const DELEGATED_FILES: &[&str] = &[CGROUP_PROCS, CGROUP_THREADS, CGROUP_SUBTREE_CONTROL];

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("unexpected contents in {path}: {what}")]
    Parse { path: PathBuf, what: String },
    #[error("no cgroup2 filesystem is mounted (lanco needs the unified cgroup hierarchy)")]
    NoCgroup2,
    #[error("{path} is not inside the cgroup2 mount {mount}")]
    OutsideMount { path: PathBuf, mount: PathBuf },
    #[error("the {controller} controller is not available in cgroup v2 here: {why}")]
    NoController { controller: String, why: String },
}

impl CgroupError {
    pub fn io_kind(&self) -> Option<ErrorKind> {
        match self {
            CgroupError::Io { error, .. } => Some(error.kind()),
            _ => None,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |error| CgroupError::Io {
        op,
        path: path.to_owned(),
        error,
    }
}

/// Why cgroup v2 does not offer `controller` at `path`: bound to a cgroup v1
/// hierarchy (a hybrid host, `/proc/cgroups` gives it a hierarchy id), not
/// in the kernel at all, or not handed down to `path` by its parents.
pub fn why_missing(controller: &str, path: &Path) -> String {
    // cgroup v1 calls the io controller blkio.
    let v1_name = if controller == "io" {
        "blkio"
    } else {
        controller
    };
    let v1 = read_small(Path::new("/proc/cgroups")).ok().and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(v1_name)).then(|| f.next().map(|h| h != "0"))?
        })
    });
    match v1 {
        Some(true) => format!(
            "this host has a hybrid layout, with {controller} on a cgroup v1 hierarchy; \
             limits need the unified layout (boot with systemd.unified_cgroup_hierarchy=1)"
        ),
        None => format!("the kernel has no {controller} controller"),
        Some(false) => format!(
            "it is not enabled in the parents of {} (their cgroup.subtree_control)",
            path.display()
        ),
    }
}

/// The cgroup2 mount point: `/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one, else the first cgroup2 mount in
/// `/proc/self/mountinfo`. The two usual places are tried with statfs(2)
/// first: every command needs the mount, and the kernel formats the whole
/// mount table anew for each read of mountinfo.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    for usual in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if statfs(usual).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC) {
            return Ok(PathBuf::from(usual));
        }
    }
    let p = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(p).map_err(io("read", p))?;
    parse_mountinfo(&text).ok_or(CgroupError::NoCgroup2)
}

fn parse_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_whitespace()
            .nth(4)
            .map(|m| PathBuf::from(unescape_mountinfo(m)))
    })
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The unit whose delegated cgroup is the task root when systemd runs the host.
pub const SYSTEMD_TASK_ROOT: &str = "system.slice/lanco-tasks.service";

/// Resolves the configured `cgroup_root`. `auto` is the delegated cgroup of
/// `lanco-tasks.service` when systemd is the init system (systemd must own the
/// cgroups it did not delegate), else `lanco/` under the cgroup2 mount. An
/// explicit directory must lie inside the mount.
pub fn resolve_root(configured: &str) -> Result<PathBuf, CgroupError> {
    let mount = cgroup2_mount()?;
    if configured == "auto" {
        let under_systemd = Path::new("/run/systemd/system").is_dir();
        return Ok(mount.join(if under_systemd {
            SYSTEMD_TASK_ROOT
        } else {
            "lanco"
        }));
    }
    let p = PathBuf::from(configured);
    // Lexical: both come from the configuration.
    if p.starts_with(&mount) && p != mount {
        Ok(p)
    } else {
        Err(CgroupError::OutsideMount { path: p, mount })
    }
}

/// `populated` and `frozen` from `cgroup.events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events {
    pub populated: bool,
    pub frozen: bool,
}

/// Reads a small (pseudo-)file in one go. cgroupfs and procfs report a size
/// of 0, so `read_to_string`'s size hint and doubling buffer cost extra reads.
pub fn read_small(path: &Path) -> std::io::Result<String> {
    read_small_text(&fs::File::open(path)?)
}

/// [`read_small`] of a file already open, as bytes.
pub fn read_small_bytes(file: &fs::File) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let n = read_into(file, &mut buf, usize::MAX, false)?;
    buf.truncate(n);
    Ok(buf)
}

/// [`read_small`] of a file already open.
pub fn read_small_text(file: &fs::File) -> std::io::Result<String> {
    String::from_utf8(read_small_bytes(file)?)
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// Reads `file` to its end, or to `limit` bytes, into `buf[..n]`; returns
/// `n`. `buf` is scratch space a caller reuses across files: it only grows
/// (zero-filled when it does), so rereading costs no allocation and no
/// clearing. Unlike `Read::read_to_end` on a `File`, it asks for no size
/// hint (a statx and an lseek, which pseudo-files answer with 0 anyway).
///
/// With `short_is_end`, a read that returns less than asked is taken as
/// the end, sparing the read that would return 0: only for files whose
/// reads fill the whole request unless the end is reached (see callers).
pub fn read_into(
    file: &fs::File,
    buf: &mut Vec<u8>,
    limit: usize,
    short_is_end: bool,
) -> std::io::Result<usize> {
    use std::io::Read;
    let mut reader = file;
    let mut n = 0;
    loop {
        if n >= limit {
            return Ok(limit);
        }
        if buf.len() - n < 4096 {
            buf.resize((buf.len() * 2).max(n + 4096), 0);
        }
        let end = buf.len().min(limit);
        match reader.read(&mut buf[n..end]) {
            Ok(0) => return Ok(n),
            Ok(k) if short_is_end && n + k < end => return Ok(n + k),
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn parse_events(text: &str) -> Events {
    let mut ev = Events::default();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("populated", v)) => ev.populated = v.trim() == "1",
            Some(("frozen", v)) => ev.frozen = v.trim() == "1",
            _ => {}
        }
    }
    ev
}

/// An open `cgroup.events`. The kernel wakes poll(2) on it (POLLPRI) when a
/// value changes, and each read re-arms that. Unlike inotify this needs no
/// inotify instance, of which a user gets only 128 by default: one per task
/// monitor would cap a user at 128 tasks.
#[derive(Debug)]
pub struct EventsFile {
    file: fs::File,
    path: PathBuf,
}

impl EventsFile {
    /// What to poll for.
    pub const POLL: nix::poll::PollFlags =
        nix::poll::PollFlags::POLLPRI.union(nix::poll::PollFlags::POLLERR);

    /// Reads the current values (and re-arms the notification). A cgroup
    /// removed meanwhile reads as empty.
    pub fn read(&self) -> Result<Events, CgroupError> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 256];
        match self.file.read_at(&mut buf, 0) {
            Ok(n) => Ok(parse_events(&String::from_utf8_lossy(&buf[..n]))),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENODEV as i32) => {
                Ok(Events::default())
            }
            Err(e) => Err(io("read", &self.path)(e)),
        }
    }
}

impl AsFd for EventsFile {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// One key of a flat-keyed interface file's text (`cpu.stat`,
/// `memory.events`, `pids.events`; `io.weight`'s `default`): `None` if the
/// key is absent.
pub fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A limit file's text (`memory.max`, `pids.max`, …): `None` for `max`.
pub fn parse_limit(text: &str) -> Result<Option<u64>, std::num::ParseIntError> {
    match text.trim() {
        "max" => Ok(None),
        v => v.parse().map(Some),
    }
}

/// `cpu.max`'s text (`QUOTA PERIOD`, µs) as the CPUs it allows
/// (`50000 100000` → 0.5): `None` for `max` or an unreadable value.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let quota: u64 = it.next()?.parse().ok()?;
    let period: u64 = it.next()?.parse().ok()?;
    (period > 0).then(|| quota as f64 / period as f64)
}

/// One cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// `mkdir`; `Ok(false)` if it already existed.
    pub fn create(&self) -> Result<bool, CgroupError> {
        match fs::create_dir(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("create cgroup", &self.path)(e)),
        }
    }

    /// `rmdir`; a cgroup that is already gone is fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        match fs::remove_dir(&self.path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove cgroup", &self.path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes child cgroups depth-first, then this one. Fails (EBUSY) if any
    /// still holds a process.
    pub fn remove_tree(&self) -> Result<(), CgroupError> {
        for child in self.children()? {
            child.remove_tree()?;
        }
        self.remove()
    }

    pub fn children(&self) -> Result<Vec<Cgroup>, CgroupError> {
        let rd = match fs::read_dir(&self.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(io("list", &self.path))?,
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io("list", &self.path))?;
            if e.file_type().map_err(io("stat", &e.path()))?.is_dir() {
                out.push(Cgroup::new(e.path()));
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub fn read(&self, name: &str) -> Result<String, CgroupError> {
        let p = self.file(name);
        read_small(&p).map_err(io("read", &p))
    }

    pub fn write(&self, name: &str, data: &str) -> Result<(), CgroupError> {
        let p = self.file(name);
        // One write(2) per value: cgroupfs acts on each write.
        fs::write(&p, data).map_err(io("write", &p))
    }

    /// Process ids directly in this cgroup.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let p = self.file(CGROUP_PROCS);
        let text = read_small(&p).map_err(io("read", &p))?;
        text.lines()
            .map(|l| {
                l.trim().parse().map_err(|_| CgroupError::Parse {
                    path: p.clone(),
                    what: l.into(),
                })
            })
            .collect()
    }

    /// Process ids in this cgroup and every cgroup below it.
    pub fn procs_recursive(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = self.procs()?;
        if self.has_children()? {
            for c in self.children()? {
                out.extend(c.procs_recursive()?);
            }
        }
        Ok(out)
    }

    /// Does this cgroup have child cgroups? A directory's link count is 2
    /// plus its subdirectories (kernfs keeps it so), which spares listing the
    /// ~20 interface files of every task to find the rare sub-cgroup.
    fn has_children(&self) -> Result<bool, CgroupError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(&self.path) {
            Ok(m) => Ok(m.nlink() != 2),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("stat", &self.path)(e)),
        }
    }

    /// Opens `cgroup.events` for reading and for waiting on its changes.
    pub fn open_events(&self) -> Result<EventsFile, CgroupError> {
        let path = self.file(CGROUP_EVENTS);
        let file = fs::File::open(&path).map_err(io("open", &path))?;
        Ok(EventsFile { file, path })
    }

    pub fn events(&self) -> Result<Events, CgroupError> {
        self.open_events()?.read()
    }

    /// Is any process alive in this cgroup or below? A missing cgroup is empty.
    pub fn populated(&self) -> Result<bool, CgroupError> {
        match self.events() {
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => Ok(false),
            r => r.map(|e| e.populated),
        }
    }

    /// Freezes the subtree and waits (at most `timeout`) until the kernel
    /// reports it frozen. A frozen process can neither fork nor exit, so pids
    /// read while frozen stay valid until the thaw.
    pub fn freeze(&self, timeout: Duration) -> Result<(), CgroupError> {
        self.write(CGROUP_FREEZE, "1")?;
        self.wait_events(timeout, |e| e.frozen || !e.populated)?;
        Ok(())
    }

    /// Thaws the subtree. Nothing waits for it: signals sent while frozen are
    /// acted on as each process runs again.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.write(CGROUP_FREEZE, "0")
    }

    /// Freezes the subtree, sends `sig` to each of its processes not in
    /// `done` (adding it), and thaws in any case. Frozen processes can
    /// neither fork nor exit, but a process can be moved out of the cgroup
    /// by its owner, exit and be reaped, and its pid reused, between the
    /// read and the signal. So each pid is pinned with a pidfd, the
    /// membership read again, and the signal sent through the pidfd: a
    /// process is signalled only if it was in the cgroup while pinned. A
    /// freeze that does not complete within 5 s (a process in
    /// uninterruptible sleep) still holds most of them: the sweep goes on.
    ///
    /// The pids are pinned, checked and signalled [`SWEEP_BATCH`] at a time:
    /// the first processes get their signal (and, if it is fatal, die, on
    /// the other CPU) while the rest are still being pinned, rather than a
    /// thousand `pidfd_open`s first; and at most that many pidfds are open
    /// at once, whatever the soft limit on open files (often 1024).
    pub fn signal_frozen(
        &self,
        sig: nix::sys::signal::Signal,
        done: &mut HashSet<i32>,
    ) -> Result<(), CgroupError> {
        let frozen = self.freeze(Duration::from_secs(5));
        let pids = self.procs_recursive();
        let todo: Vec<i32> = pids
            .iter()
            .flatten()
            .copied()
            .filter(|pid| !done.contains(pid))
            .collect();
        let mut still = Ok(());
        let mut denied = 0;
        for batch in todo.chunks(SWEEP_BATCH) {
            let pinned: Vec<(i32, std::os::fd::OwnedFd)> = batch
                .iter()
                .filter_map(|pid| crate::sys::pidfd_open(*pid).ok().map(|fd| (*pid, fd)))
                .collect();
            let listed = match self.procs_recursive() {
                Ok(l) => l.into_iter().collect::<HashSet<i32>>(),
                Err(e) => {
                    still = Err(e);
                    break;
                }
            };
            for (pid, fd) in &pinned {
                // The pidfd's process had `pid` when pinned and is alive
                // while it still has it, so `pid` listed now is that process.
                if listed.contains(pid) {
                    done.insert(*pid);
                    if crate::sys::pidfd_send_signal(fd.as_fd(), sig as i32)
                        == Err(nix::errno::Errno::EPERM)
                    {
                        denied += 1;
                    }
                }
            }
        }
        let thawed = self.thaw();
        frozen.and(pids.map(drop)).and(still).and(thawed)?;
        if denied > 0 {
            // Another user's processes (a member stopping a task whose
            // monitor is gone): only cgroup.kill reaches them.
            return Err(io("signal", &self.path)(std::io::Error::from(
                std::io::ErrorKind::PermissionDenied,
            )));
        }
        Ok(())
    }

    /// SIGKILLs every process in the subtree at once, concurrent forks included.
    pub fn kill(&self) -> Result<(), CgroupError> {
        self.write(CGROUP_KILL, "1")
    }

    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        self.write(CGROUP_PROCS, &pid.to_string())
    }

    /// Waits (poll(2) on `cgroup.events`) until `done` holds or `timeout`
    /// passes; returns whether it held. A cgroup that does not exist counts
    /// as empty.
    pub fn wait_events(
        &self,
        timeout: Duration,
        done: impl Fn(&Events) -> bool,
    ) -> Result<bool, CgroupError> {
        let ev = match self.open_events() {
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => {
                return Ok(done(&Events::default()))
            }
            r => r?,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if done(&ev.read()?) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut fds = [nix::poll::PollFd::new(ev.as_fd(), EventsFile::POLL)];
            // The kernel sends at most one notification per cgroup file every
            // 20 ms and postpones the rest to a timer, whose notification is
            // lost if the cgroup is removed meanwhile. Re-reading every
            // second bounds what such a loss costs; never past the deadline.
            let ms = left.min(Duration::from_secs(1)).as_millis().max(1) as u16;
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Err(nix::errno::Errno::EINTR) | Ok(_) => {}
                Err(e) => return Err(io("poll", &ev.path)(e.into())),
            }
        }
    }

    /// `usage_usec` from `cpu.stat` (present on every cgroup2 cgroup).
    pub fn cpu_usage_usec(&self) -> Result<u64, CgroupError> {
        let p = self.file(CPU_STAT);
        let text = self.read(CPU_STAT)?;
        text.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| CgroupError::Parse {
                path: p,
                what: "no usage_usec".into(),
            })
    }

    /// A u64 interface file that exists only with its controller enabled.
    pub fn optional_u64(&self, name: &str) -> Result<Option<u64>, CgroupError> {
        match self.read(name) {
            Ok(s) => s.trim().parse().map(Some).map_err(|_| CgroupError::Parse {
                path: self.file(name),
                what: s,
            }),
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One key of a flat-keyed interface file (`cpu.stat`, `memory.events`,
    /// `pids.events`): `None` if the file (its controller) or the key is
    /// absent.
    pub fn keyed_u64(&self, name: &str, key: &str) -> Result<Option<u64>, CgroupError> {
        let text = match self.read(name) {
            Ok(t) => t,
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(parse_keyed(&text, key))
    }

    /// A limit file (`memory.max`, `pids.max`, …): `None` if it is absent
    /// or says `max`.
    pub fn limit_u64(&self, name: &str) -> Result<Option<u64>, CgroupError> {
        match self.read(name) {
            Ok(s) => parse_limit(&s).map_err(|_| CgroupError::Parse {
                path: self.file(name),
                what: s,
            }),
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes each of `wanted` available to this cgroup's children: it must
    /// be in this cgroup's `cgroup.controllers` (else
    /// [`CgroupError::NoController`], saying why the host lacks it), and is
    /// enabled in its `cgroup.subtree_control` if it is not yet. The
    /// cgroup must hold no process (cgroup v2's no-internal-process rule).
    pub fn enable_controllers<'a>(
        &self,
        wanted: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), CgroupError> {
        self.check_controllers(wanted.clone())?;
        let on = self.read(CGROUP_SUBTREE_CONTROL)?;
        let on: Vec<&str> = on.split_whitespace().collect();
        for c in wanted {
            if !on.contains(&c) {
                self.write(CGROUP_SUBTREE_CONTROL, &format!("+{c}"))?;
            }
        }
        Ok(())
    }

    /// Each of `wanted` is in this cgroup's `cgroup.controllers`; else
    /// [`CgroupError::NoController`] for the first one that is not.
    pub fn check_controllers<'a>(
        &self,
        wanted: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), CgroupError> {
        let have = self.controllers()?;
        match wanted.into_iter().find(|c| !have.iter().any(|h| h == c)) {
            Some(c) => Err(CgroupError::NoController {
                controller: c.to_owned(),
                why: why_missing(c, &self.path),
            }),
            None => Ok(()),
        }
    }

    /// The limits written on this cgroup, as [`crate::limits::Limits`]
    /// (weights at their default of 100 count as unset).
    pub fn limits(&self) -> Result<crate::limits::Limits, CgroupError> {
        let opt = |name: &str| match self.read(name) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        };
        // cpu.weight is a number; io.weight says `default N` first.
        let weight = |text: Option<String>| -> Option<u16> {
            let t = text?;
            let w = t.split_whitespace().find_map(|f| f.parse().ok())?;
            (w != 100).then_some(w)
        };
        let cpu = opt(CPU_MAX)?.as_deref().and_then(parse_cpu_max);
        Ok(crate::limits::Limits {
            memory: self.limit_u64(MEMORY_MAX)?,
            memory_high: self.limit_u64(MEMORY_HIGH)?,
            pids: self.limit_u64(PIDS_MAX)?,
            cpu_quota_usec: cpu.map(|c| (c * crate::limits::CPU_PERIOD_USEC as f64).round() as u64),
            cpu_weight: weight(opt(CPU_WEIGHT)?),
            io_weight: weight(opt(IO_WEIGHT)?),
        })
    }

    pub fn controllers(&self) -> Result<Vec<String>, CgroupError> {
        Ok(self
            .read(CGROUP_CONTROLLERS)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// Sets the directory's owner, group and mode, and hands the given
    /// interface files to `uid` (mode 0644: writable by the owner only).
    pub fn delegate(
        &self,
        uid: Uid,
        gid: Gid,
        mode: u32,
        files: &[&str],
    ) -> Result<(), CgroupError> {
        set_owner(&self.path, Some(uid), Some(gid), mode)?;
        files
            .iter()
            .try_for_each(|f| set_owner(&self.file(f), Some(uid), Some(gid), 0o644))
    }

    /// Sets the directory's mode.
    pub fn set_mode(&self, mode: u32) -> Result<(), CgroupError> {
        set_owner(&self.path, None, None, mode)
    }

    /// Writes `cgroup.max.descendants` (root's, on a member's subtree).
    pub fn set_max_descendants(&self, n: u64) -> Result<(), CgroupError> {
        self.write(CGROUP_MAX_DESCENDANTS, &n.to_string())
    }
}

/// An open cgroup directory, whose child cgroups are read by paths relative
/// to it (`openat`). Listing many cgroups this way spares walking each
/// full path (6 components below `/`) again for every file: `lanco ls` of
/// 1000 tasks opens some 2000 files.
#[derive(Debug)]
pub struct CgroupDir {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl CgroupDir {
    /// Opens the directory (for reading: listing it needs that).
    pub fn open(path: &Path) -> Result<Self, CgroupError> {
        use nix::fcntl::{open, OFlag};
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(path, flags, nix::sys::stat::Mode::empty())
            .map_err(|e| io("open", path)(e.into()))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The child cgroup `name` (one path component), opened.
    pub fn sub(&self, name: &str) -> Result<Self, CgroupError> {
        use nix::fcntl::{openat, OFlag};
        let path = self.path.join(name);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, nix::sys::stat::Mode::empty())
            .map_err(|e| io("open", &path)(e.into()))?;
        Ok(Self { fd, path })
    }

    /// Makes child cgroup `name` (`mkdirat`); `Ok(false)` if it exists.
    pub fn make(&self, name: &str) -> Result<bool, CgroupError> {
        match nix::sys::stat::mkdirat(
            &self.fd,
            name,
            nix::sys::stat::Mode::from_bits_truncate(0o777),
        ) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::EEXIST) => Ok(false),
            Err(e) => Err(io("create cgroup", &self.path.join(name))(e.into())),
        }
    }

    /// Writes this cgroup's interface file `file`, as [`Cgroup::write`]
    /// does by path.
    pub fn write(&self, file: &str, data: &str) -> Result<(), CgroupError> {
        use nix::fcntl::{openat, OFlag};
        use std::io::Write;
        let flags = OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        openat(&self.fd, file, flags, nix::sys::stat::Mode::empty())
            .map_err(std::io::Error::from)
            // One write(2) per value: cgroupfs acts on each write.
            .and_then(|fd| fs::File::from(fd).write_all(data.as_bytes()))
            .map_err(io("write", &self.path.join(file)))
    }

    /// Whether this cgroup has interface file `file` (its controller is
    /// enabled here).
    pub fn has(&self, file: &str) -> Result<bool, CgroupError> {
        Ok(self.stat(file)?.is_some())
    }

    /// Makes the given interface files writable by the cgroup's group too
    /// (its owner may, without privilege).
    pub fn share_with_group(&self, files: &[&str]) -> Result<(), CgroupError> {
        use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
        files.iter().try_for_each(|f| {
            let path = || self.path.join(f);
            let st = self
                .stat(*f)?
                .ok_or_else(|| io("stat", &path())(std::io::Error::from(ErrorKind::NotFound)))?;
            let mode = Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o020);
            // cgroupfs has no symbolic links to follow.
            fchmodat(&self.fd, *f, mode, FchmodatFlags::FollowSymlink)
                .map_err(|e| io("chmod", &path())(e.into()))
        })
    }

    /// Gives this cgroup and its interface files `parent`'s group, where
    /// the kernel did not: a setgid cgroup directory passes its group on
    /// in Linux 6.18, but Debian 12's 6.1 gives a task cgroup the member's
    /// own group, which the other members cannot enter (seen in tests/vm).
    pub fn take_group_of(&self, parent: &CgroupDir) -> Result<(), CgroupError> {
        use nix::fcntl::AtFlags;
        let gid_of = |d: &CgroupDir| {
            nix::sys::stat::fstat(&d.fd)
                .map(|st| st.st_gid)
                .map_err(|e| io("stat", &d.path)(e.into()))
        };
        let want = gid_of(parent)?;
        if gid_of(self)? == want {
            return Ok(());
        }
        let gid = Some(Gid::from_raw(want));
        nix::unistd::fchown(&self.fd, None, gid).map_err(|e| io("chgrp", &self.path)(e.into()))?;
        for e in fs::read_dir(&self.path).map_err(io("list", &self.path))? {
            let e = e.map_err(io("list", &self.path))?;
            if e.file_type().map_err(io("stat", &e.path()))?.is_file() {
                nix::unistd::fchownat(
                    &self.fd,
                    e.file_name().as_os_str(),
                    None,
                    gid,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e2| io("chgrp", &e.path())(e2.into()))?;
            }
        }
        Ok(())
    }

    /// The directory's fd, for clone3(CLONE_INTO_CGROUP).
    pub fn into_fd(self) -> std::os::fd::OwnedFd {
        self.fd
    }

    /// This cgroup's own interface file `file` into `buf[..n]` (scratch
    /// space reused across reads); `None` if it is absent (its controller
    /// is not enabled here).
    pub fn read_file(&self, file: &str, buf: &mut Vec<u8>) -> Result<Option<usize>, CgroupError> {
        self.read_rel(file, buf)
    }

    /// Interface file `file` of child cgroup `name`, as [`read_file`]
    /// (one `openat` of `name/file`: cheaper than opening the child).
    ///
    /// [`read_file`]: CgroupDir::read_file
    pub fn read_file_of(
        &self,
        name: &str,
        file: &str,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, CgroupError> {
        self.read_rel(&format!("{name}/{file}"), buf)
    }

    fn read_rel(&self, rel: &str, buf: &mut Vec<u8>) -> Result<Option<usize>, CgroupError> {
        use nix::fcntl::{openat, OFlag};
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, rel, flags, nix::sys::stat::Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(io("open", &self.path.join(rel))(e.into())),
        };
        // A short read is the end: interface files with one value or one
        // set of keys are one seq_file record (not cgroup.procs).
        read_into(&fs::File::from(fd), buf, 1 << 20, true)
            .map(Some)
            .map_err(io("read", &self.path.join(rel)))
    }

    /// Child cgroup `name`'s metadata (its inode is the cgroup's id, which
    /// a cgroup made anew under the same name does not share); `None` if
    /// there is no such child.
    pub fn stat_of(&self, name: &str) -> Result<Option<nix::sys::stat::FileStat>, CgroupError> {
        self.stat(name)
    }

    /// Whether child cgroup `name` has a process (in it or below); `None`
    /// if there is no such child.
    pub fn populated_of(&self, name: &str) -> Result<Option<bool>, CgroupError> {
        use nix::fcntl::{openat, OFlag};
        let rel = format!("{name}/{CGROUP_EVENTS}");
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, rel.as_str(), flags, nix::sys::stat::Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(io("open", &self.path.join(&rel))(e.into())),
        };
        let mut buf = Vec::new();
        // A short read is the end: cgroup.events is one seq_file page.
        let n = read_into(&fs::File::from(fd), &mut buf, 4096, true)
            .map_err(io("read", &self.path.join(&rel)))?;
        Ok(Some(
            parse_events(&String::from_utf8_lossy(&buf[..n])).populated,
        ))
    }

    /// The names of the child cgroups, sorted.
    pub fn children(&self) -> Result<Vec<String>, CgroupError> {
        use nix::fcntl::OFlag;
        let fail = |e: nix::errno::Errno| io("list", &self.path)(e.into());
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::openat(&self.fd, ".", flags, nix::sys::stat::Mode::empty())
            .map_err(fail)?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(fail)?;
            let is_dir = match e.file_type() {
                Some(t) => t == nix::dir::Type::Directory,
                // No d_type from this filesystem: ask.
                None => self.stat(e.file_name())?.is_some_and(|st| {
                    nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                        .contains(nix::sys::stat::SFlag::S_IFDIR)
                }),
            };
            let Ok(name) = e.file_name().to_str() else {
                continue;
            };
            if is_dir && name != "." && name != ".." {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn stat<P: ?Sized + nix::NixPath>(
        &self,
        name: &P,
    ) -> Result<Option<nix::sys::stat::FileStat>, CgroupError> {
        use nix::fcntl::AtFlags;
        match nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(io("stat", &self.path)(e.into())),
        }
    }

    /// Appends the pids of child cgroup `name` and of every cgroup below it
    /// to `out`, as [`Cgroup::procs_recursive`] does; `buf` is scratch
    /// space for the reads, reused across calls.
    pub fn procs_recursive_of(
        &self,
        name: &str,
        buf: &mut Vec<u8>,
        out: &mut Vec<i32>,
    ) -> Result<(), CgroupError> {
        use nix::fcntl::{openat, OFlag};
        let rel = format!("{name}/{CGROUP_PROCS}");
        let fail = |e: std::io::Error| io("read", &self.path.join(&rel))(e);
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let file = fs::File::from(
            openat(&self.fd, rel.as_str(), flags, nix::sys::stat::Mode::empty())
                .map_err(|e| fail(e.into()))?,
        );
        let n = read_into(&file, buf, usize::MAX, false).map_err(fail)?;
        drop(file);
        for l in buf[..n].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let pid = std::str::from_utf8(l)
                .ok()
                .and_then(|l| l.trim().parse().ok())
                .ok_or_else(|| CgroupError::Parse {
                    path: self.path.join(&rel),
                    what: String::from_utf8_lossy(l).into_owned(),
                })?;
            out.push(pid);
        }
        // A directory's link count is 2 plus its subdirectories (kernfs
        // keeps it so): the rare sub-cgroup is looked for only when there is
        // one, sparing a listing of ~20 interface files per task.
        if self.stat(name)?.is_some_and(|st| st.st_nlink != 2) {
            let sub = self.sub(name)?;
            for child in sub.children()? {
                sub.procs_recursive_of(&child, buf, out)?;
            }
        }
        Ok(())
    }
}

fn set_owner(p: &Path, uid: Option<Uid>, gid: Option<Gid>, mode: u32) -> Result<(), CgroupError> {
    use std::os::unix::fs::PermissionsExt;
    nix::unistd::chown(p, uid, gid).map_err(|e| io("chown", p)(e.into()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io("chmod", p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_mountinfo() {
        let text = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            parse_mountinfo(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_mountinfo("32 31 0:29 / /x rw - cgroup cgroup rw\n"),
            None
        );
        let spaced = "41 31 0:38 / /mnt/c\\040g shared:9 - cgroup2 none rw\n";
        assert_eq!(parse_mountinfo(spaced), Some(PathBuf::from("/mnt/c g")));
    }

    #[test]
    fn parses_keyed_limit_and_cpu_max_values() {
        let stat = "usage_usec 4242\nuser_usec 1\nthrottled_usec 7\n";
        assert_eq!(parse_keyed(stat, "usage_usec"), Some(4242));
        assert_eq!(parse_keyed(stat, "throttled_usec"), Some(7));
        assert_eq!(parse_keyed(stat, "usage"), None);
        assert_eq!(parse_keyed("default 100\n8:0 200\n", "default"), Some(100));
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(parse_limit("67108864\n"), Ok(Some(67_108_864)));
        assert!(parse_limit("lots").is_err());
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
    }

    /// An open directory's files, relative to it.
    #[test]
    fn reads_files_of_an_open_directory() {
        let dir = std::env::temp_dir().join(format!("lanco-cgdir-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(MEMORY_MAX), "max\n").unwrap();
        let d = CgroupDir::open(&dir).unwrap();
        let mut buf = Vec::new();
        let n = d.read_file(MEMORY_MAX, &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], b"max\n");
        assert_eq!(d.read_file(PIDS_MAX, &mut buf).unwrap(), None);
        fs::create_dir(dir.join("child")).unwrap();
        fs::write(dir.join("child").join(CPU_STAT), "usage_usec 9\n").unwrap();
        let n = d
            .read_file_of("child", CPU_STAT, &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"usage_usec 9\n");
        use std::os::unix::fs::MetadataExt;
        let st = d.stat_of("child").unwrap().unwrap();
        assert_eq!(st.st_ino, fs::metadata(dir.join("child")).unwrap().ino());
        assert!(d.stat_of("gone").unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Parsing only, on a fake directory: the kernel's behaviour is tested
    /// end to end in tests/.
    #[test]
    fn reads_events_procs_and_cpu_from_files() {
        let dir = std::env::temp_dir().join(format!("lanco-cgfs-unit-{}", std::process::id()));
        fs::create_dir_all(dir.join("child")).unwrap();
        fs::write(dir.join(CGROUP_EVENTS), "populated 1\nfrozen 0\n").unwrap();
        fs::write(dir.join(CGROUP_PROCS), "12\n34\n").unwrap();
        fs::write(dir.join("child").join(CGROUP_PROCS), "56\n").unwrap();
        fs::write(dir.join(CPU_STAT), "usage_usec 4242\nuser_usec 1\n").unwrap();
        let cg = Cgroup::new(&dir);
        assert_eq!(
            cg.events().unwrap(),
            Events {
                populated: true,
                frozen: false
            }
        );
        assert_eq!(cg.procs_recursive().unwrap(), vec![12, 34, 56]);
        assert_eq!(cg.cpu_usage_usec().unwrap(), 4242);
        assert_eq!(cg.optional_u64(MEMORY_PEAK).unwrap(), None);
        assert!(!Cgroup::new(dir.join("gone")).populated().unwrap());
        fs::write(dir.join(CGROUP_PROCS), "12\nbogus\n").unwrap();
        assert!(matches!(cg.procs(), Err(CgroupError::Parse { .. })));
        // Limits as the kernel words them; "max" and default weights unset.
        assert_eq!(cg.limits().unwrap(), crate::limits::Limits::default());
        for (f, v) in [
            (MEMORY_MAX, "max\n"),
            (MEMORY_HIGH, "67108864\n"),
            (PIDS_MAX, "64\n"),
            (CPU_MAX, "25000 50000\n"),
            (CPU_WEIGHT, "100\n"),
            (IO_WEIGHT, "default 300\n8:0 50\n"),
        ] {
            fs::write(dir.join(f), v).unwrap();
        }
        assert_eq!(
            cg.limits().unwrap(),
            crate::limits::Limits {
                memory_high: Some(64 << 20),
                pids: Some(64),
                cpu_quota_usec: Some(50_000),
                io_weight: Some(300),
                ..Default::default()
            }
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
