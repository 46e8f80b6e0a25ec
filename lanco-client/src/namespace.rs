//! The library's core: open a namespace and find, check, list, inspect and
//! wait for its tasks, unprivileged, from the cgroup directories and state
//! files its members were granted. A task is found through its name's
//! owner (`names/task-NAME.lock`); every file is read through
//! `lanco_proto::files` with that owner expected. Starting is in `start`,
//! stopping and signalling in `signal`; the `lanco` command is a thin layer
//! over all three.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lanco_proto::cgroupfs::{self, Cgroup, CgroupDir};
use lanco_proto::files::Dir;
use lanco_proto::layout;
use lanco_proto::{Config, Layout, NamespaceName, TaskName};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::journal::Rotation;
use crate::record::{self, ExitRecord, TaskState};

/// How long `status` waits for a monitor that is writing its run's record.
const ENDING: Duration = Duration::from_secs(5);

/// One process of a running task ([`TaskInfo`]).
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    /// Its pid.
    pub pid: i32,
    /// Its command line, each argument shell-quoted where a shell would
    /// need it (`sh -c 'while true; do sleep 1; done'`); a title a process
    /// set for itself as it is; `[comm]` for a process that has none (a
    /// kernel thread, a zombie).
    pub cmdline: String,
}

/// A running task and every process in it, as [`Namespace::list`] gives
/// them (and `lanco NS ls` shows them).
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    /// The task.
    pub task: TaskName,
    /// Every process in its cgroup (and the cgroups it made), the payload's
    /// children and orphans included.
    pub processes: Vec<Process>,
    /// A supervised task between two runs (no process): when its monitor
    /// starts it again, Unix time in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarting_at_ms: Option<i64>,
    /// A task stopped because a task it needs went down: the one its
    /// monitor waits for (no process of it runs meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<TaskName>,
    /// Its cgroup could not be read, and why (e.g. a cgroup its owner made
    /// without the namespace's group): listed with no process rather than
    /// failing the whole list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// Whether a task runs, and what lanco knows of its run
/// ([`Namespace::status`]). Its JSON form (`lanco NS status --json`) is
/// tagged by `"state": "running"` or `"not_running"`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Some process of the task lives.
    Running {
        /// The run's state file: its run id, pids, command, start, log.
        /// `None` when the monitor died and the state file is gone or stale.
        info: Option<TaskState>,
        /// Whether the run's monitor still listens. Without it the task
        /// runs on, and can be stopped, but its exit status will be lost.
        monitor_alive: bool,
        /// How many processes the task has.
        processes: usize,
    },
    /// A task between two runs: no process of it lives; its monitor
    /// starts it again at `info.supervised.next_restart_ms` (a supervised
    /// task's restart delay) or once `info.waiting_for` is ready (a task
    /// it needs went down).
    Restarting {
        /// The state file (its `supervised` part says when, and why).
        info: TaskState,
        /// The record of the run that ended.
        last: Option<Box<ExitRecord>>,
    },
    /// No process of the task lives.
    NotRunning {
        /// The record of its last run, if it ever ran. Right after a run
        /// ends, that run's (never the one before).
        last: Option<ExitRecord>,
    },
}

/// A namespace the caller may use: its tasks, found through the cgroup
/// directories and state files its members were granted, without lancod.
///
/// Every method works unprivileged and for any member; only the member whose
/// task name it is runs it and writes its records. Root may look and stop,
/// but runs no task ([`Namespace::run`]). A `Namespace` holds no file
/// descriptor: each call finds what it needs anew, so one opened at a
/// daemon's start serves for its whole life, across the runs of its tasks
/// and the restarts of lancod.
#[derive(Debug, Clone)]
pub struct Namespace {
    config: Config,
    layout: Layout,
    ns: NamespaceName,
}

/// Where a task is: its cgroup and the member whose name it is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The member who owns the name (for a 0.1 task: who made its cgroup).
    pub owner: u32,
    /// A task started by lanco 0.1, before the upgrade to per-member
    /// subtrees: its files are in the old group-writable state directory.
    pub legacy: bool,
    pub cgroup: Cgroup,
}

impl Namespace {
    /// Opens namespace `ns` of the installation `config` describes (see
    /// [`Config::load`]). A namespace that does not exist and one the
    /// caller is not a member of get the same answer,
    /// [`Error::NotMember`], as from lancod: names of other tenants'
    /// namespaces are not for everyone. Root is told which it is
    /// ([`Error::NoNamespace`]).
    pub fn open(config: Config, ns: NamespaceName) -> Result<Self> {
        let layout = Layout::of(&config, cgroupfs::resolve_root(&config.cgroup_root)?);
        let dir = layout.ns_cgroup(&ns);
        use nix::unistd::{access, AccessFlags};
        match access(&dir, AccessFlags::R_OK | AccessFlags::X_OK) {
            Ok(()) => Ok(Self { config, layout, ns }),
            Err(nix::errno::Errno::ENOENT) if nix::unistd::geteuid().is_root() => {
                Err(Error::NoNamespace(ns))
            }
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EACCES) => Err(Error::NotMember(ns)),
            Err(e) => Err(Error::system(dir.display(), e)),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &NamespaceName {
        &self.ns
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn ns_dir(&self) -> Result<Dir> {
        Dir::open(&self.layout.ns_state_dir(&self.ns)).map_err(|e| match e.io_kind() {
            Some(ErrorKind::PermissionDenied | ErrorKind::NotFound) => {
                Error::NotMember(self.ns.clone())
            }
            _ => e.into(),
        })
    }

    /// The namespace's `names/` directory.
    pub(crate) fn names_dir(&self) -> Result<Dir> {
        Ok(self.ns_dir()?.sub(layout::NAMES)?)
    }

    /// The member who owns `task`'s name: the owner of its lock file.
    /// Anything but a plain file there (a FIFO, a link someone planted)
    /// names no run: no monitor can hold it (`run` refuses it, naming its
    /// owner).
    pub(crate) fn name_owner(&self, task: &TaskName) -> Result<Option<u32>> {
        Ok(self
            .names_dir()?
            .entry(&layout::lock_name(task))?
            .filter(|e| e.is_file())
            .map(|e| e.uid))
    }

    /// Where `task` is, if its name was ever used (or a 0.1 task of that
    /// name still has a cgroup).
    pub(crate) fn find(&self, task: &TaskName) -> Result<Option<Found>> {
        let owner = self.name_owner(task)?;
        let legacy = Cgroup::new(self.layout.legacy_task_cgroup(&self.ns, task));
        let legacy = match fs::symlink_metadata(legacy.path()) {
            Ok(m) if m.is_dir() => {
                use std::os::unix::fs::MetadataExt;
                Some(Found {
                    owner: m.uid(),
                    legacy: true,
                    cgroup: legacy,
                })
            }
            _ => None,
        };
        // A 0.1 task that still runs is the task; once it has ended, a run
        // of the name in this layout is (its empty 0.1 cgroup lingers until
        // lancod tidies it away).
        if let Some(l) = &legacy {
            if l.cgroup.populated()? || owner.is_none() {
                return Ok(legacy);
            }
        }
        Ok(owner.map(|owner| Found {
            owner,
            legacy: false,
            cgroup: Cgroup::new(self.layout.task_cgroup(&self.ns, owner, task)),
        }))
    }

    /// The directory holding `found`'s state files and control socket.
    pub(crate) fn state_dir_of(&self, found: &Found) -> Result<Dir> {
        let path = if found.legacy {
            self.layout.legacy_state_dir(&self.ns)
        } else {
            self.layout.user_state_dir(&self.ns, found.owner)
        };
        Ok(Dir::open(&path)?)
    }

    /// Records a run whose monitor died (its owner only, in its own
    /// directory).
    pub(crate) fn finalize_lost_run(
        &self,
        task: &TaskName,
        found: &Found,
        stopped: bool,
        killed: bool,
    ) -> Result<()> {
        record::finalize(
            &self.state_dir_of(found)?,
            task,
            &found.cgroup,
            stopped,
            killed,
            Rotation::accounting(&self.config),
        )
    }

    /// Is the caller the member whose name `found` is (and so the one who
    /// may write its records)?
    pub(crate) fn is_mine(&self, found: &Found) -> bool {
        !found.legacy && found.owner == nix::unistd::geteuid().as_raw()
    }

    /// The namespace's ceilings, as its cgroup says (members may read them;
    /// only root or the admin group, through lancod, may change them).
    pub fn ceilings(&self) -> Result<lanco_proto::Limits> {
        Ok(Cgroup::new(self.layout().ns_cgroup(&self.ns)).limits()?)
    }

    /// The cgroup of `task`'s run, if it has one now.
    #[cfg(feature = "cli")]
    pub(crate) fn task_cgroup(&self, task: &TaskName) -> Result<Option<Cgroup>> {
        Ok(self.find(task)?.map(|f| f.cgroup).filter(Cgroup::exists))
    }

    /// Is any process of the task alive? `false` for a name never used.
    pub fn check(&self, task: &TaskName) -> Result<bool> {
        match self.find(task)? {
            Some(f) => Ok(f.cgroup.populated()?),
            None => Ok(false),
        }
    }

    /// Running tasks (cgroups holding a process) and their processes.
    ///
    /// The namespace's and members' cgroup directories, and `/proc`, are
    /// opened once and every file is opened relative to them, so no path is
    /// walked from `/` per task or per process.
    pub fn list(&self) -> Result<Vec<TaskInfo>> {
        let ns_dir = match CgroupDir::open(&self.layout.ns_cgroup(&self.ns)) {
            Ok(d) => d,
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        // Every task cgroup, running or not, sorted by name: 0.1 ones
        // straight below the namespace, then those in members' subtrees (as
        // `layout::task_cgroups` finds them).
        let entries = ns_dir.children()?;
        let mut listed = Vec::new();
        for entry in entries
            .iter()
            .filter(|e| layout::uid_of_user_entry(e).is_some())
        {
            // Another member's subtree may be closed to the caller.
            match ns_dir.sub(entry).and_then(|d| Ok((d.children()?, d))) {
                Ok((names, d)) => listed.push((d, names)),
                Err(e)
                    if matches!(
                        e.io_kind(),
                        Some(ErrorKind::PermissionDenied | ErrorKind::NotFound)
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        listed.insert(0, (ns_dir, entries));
        // (name, index of its directory in `dirs`, entry there)
        let mut tasks: Vec<(TaskName, usize, String)> = Vec::new();
        let mut dirs = Vec::new();
        for (i, (dir, names)) in listed.into_iter().enumerate() {
            tasks.extend(
                names
                    .into_iter()
                    .filter_map(|n| Some((layout::task_of_cgroup_entry(&n)?, i, n))),
            );
            dirs.push(dir);
        }
        tasks.sort_by(|a, b| a.0.cmp(&b.0));
        let proc_dir = fs::File::open("/proc").ok();
        let read =
            |tasks: &[(TaskName, usize, String)]| read_tasks(&dirs, proc_dir.as_ref(), tasks);
        // The work is ~3 system calls per task and per process, each
        // independent of the others: with many tasks, two threads read
        // half each (ls of 1000 tasks on 2 cores: 46 → 35 ms median here).
        let mut out = if tasks.len() < PARALLEL_LS {
            read(&tasks)?
        } else {
            read_in_two(&tasks, read)?
        };
        // Tasks with a cgroup but no process: supervised ones between two
        // runs are listed as such; the rest (a run that just ended, a
        // monitor that died) are not running.
        if out.len() < tasks.len() {
            let mut quiet: Vec<&TaskName> = tasks.iter().map(|t| &t.0).collect();
            quiet.retain(|t| out.binary_search_by(|i| i.task.cmp(t)).is_err());
            for task in quiet {
                // Unreadable: not listed, as any task that is not running.
                let Some(state) = self.between_runs(task).ok().flatten() else {
                    continue;
                };
                let i = out.partition_point(|i| i.task < *task);
                out.insert(
                    i,
                    TaskInfo {
                        task: task.clone(),
                        processes: Vec::new(),
                        restarting_at_ms: state.next_restart_ms(),
                        waiting_for: state.waiting_for,
                        unreadable: None,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The state of a task between two runs (a supervised task's restart
    /// delay, or waiting for a need), if it is one.
    fn between_runs(&self, task: &TaskName) -> Result<Option<TaskState>> {
        let Some(found) = self.find(task)? else {
            return Ok(None);
        };
        let state: Option<TaskState> = record::read_json(
            &self.state_dir_of(&found)?,
            &layout::state_name(task),
            found.owner,
        )?;
        Ok(state.filter(|s| s.next_restart_ms().is_some() || s.waiting_for.is_some()))
    }

    /// Whether `task` runs, with its run's state file or, once it has
    /// ended, its last run's exit record. Asked right after a run ended (its
    /// monitor may still be writing the record), it waits up to 5 s for that
    /// run's record rather than give the previous run's.
    pub fn status(&self, task: &TaskName) -> Result<Status> {
        let Some(found) = self.find(task)? else {
            return Ok(Status::NotRunning { last: None });
        };
        let dir = self.state_dir_of(&found)?;
        let cg = &found.cgroup;
        let running = || -> Result<Status> {
            let info: Option<TaskState> =
                record::read_json(&dir, &layout::state_name(task), found.owner)?;
            Ok(Status::Running {
                info,
                monitor_alive: self.connect_monitor(task, &found)?.is_some(),
                processes: cg.procs_recursive().map(|p| p.len()).unwrap_or(0),
            })
        };
        if cg.populated()? {
            return running();
        }
        // Not running. A state file left means the task is between two runs
        // (its monitor waits to restart it), or the run has just ended (its
        // monitor is writing the record and deciding what comes next), or
        // its monitor died. `wait` gives that run's record, never the
        // previous run's.
        let state = || record::read_json::<TaskState>(&dir, &layout::state_name(task), found.owner);
        let listening = || Ok::<_, Error>(self.connect_monitor(task, &found)?.is_some());
        let between = |s: &TaskState| s.next_restart_ms().is_some() || s.waiting_for.is_some();
        if let Some(info) = state()? {
            if between(&info) && listening()? {
                let last = record::read_json(&dir, &layout::exit_name(task), found.owner)?;
                return Ok(Status::Restarting {
                    info,
                    last: last.map(Box::new),
                });
            }
            if let Some(rec) = self.wait(task, Some(ENDING))? {
                // The monitor writes what comes next right after the
                // record: the state file gone (the end), a restart delay or
                // a need to wait for, or a next run (a fast loop may be past
                // it already). Looked at for up to 100 ms.
                for _ in 0..50 {
                    let Some(info) = state()? else { break };
                    if cg.populated()? {
                        return running();
                    }
                    if !listening()? {
                        break;
                    }
                    if info.run_id != rec.run_id || between(&info) {
                        return Ok(Status::Restarting {
                            info,
                            last: Some(Box::new(rec)),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                return Ok(Status::NotRunning { last: Some(rec) });
            }
        }
        let last = record::read_json(&dir, &layout::exit_name(task), found.owner)?;
        Ok(Status::NotRunning { last })
    }

    /// Where `task`'s output goes or went: the file its current run writes
    /// (its state file says), else the file its last run wrote (its exit
    /// record says), else the namespace's default log for the name. `None`
    /// if the name was never used.
    pub fn log_path(&self, task: &TaskName) -> Result<Option<PathBuf>> {
        match self.find(task)? {
            Some(found) => Ok(Some(self.log_path_of(task, &found)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn log_path_of(&self, task: &TaskName, found: &Found) -> Result<PathBuf> {
        let dir = self.state_dir_of(found)?;
        // A state file (the running run's, or one whose monitor died) is
        // newer than the exit record. A record from before lanco kept the
        // path has an empty one: that run wrote the default log, unless it
        // had -l (that is lost).
        let run = record::read_json::<TaskState>(&dir, &layout::state_name(task), found.owner)
            .ok()
            .flatten()
            .map(|s| s.log);
        let last = || {
            record::read_json::<ExitRecord>(&dir, &layout::exit_name(task), found.owner)
                .ok()
                .flatten()
                .map(|r| r.log)
        };
        Ok(run
            .or_else(last)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.layout.task_log(&self.ns, task)))
    }

    /// The task's log (see `log_path`), opened for reading: a regular file
    /// of the name's owner, never a link or FIFO someone planted. `None` if
    /// the name was never used or its log is not there.
    pub fn open_log(&self, task: &TaskName) -> Result<Option<(PathBuf, fs::File)>> {
        let Some(found) = self.find(task)? else {
            return Ok(None);
        };
        let path = self.log_path_of(task, &found)?;
        Ok(self
            .open_log_at(&path, found.owner)?
            .map(|l| (path, l.file)))
    }

    /// `path` opened beneath its parent directory, as a file of `owner`. A
    /// `-l` file may be anywhere: its parent is opened by path, as the
    /// monitor did to create it, and only the last component is resolved
    /// beneath it.
    pub(crate) fn open_log_at(&self, path: &Path, owner: u32) -> Result<Option<OpenLog>> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Ok(None);
        };
        let dir = match Dir::open(parent) {
            Ok(d) => d,
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => return Ok(None),
            Err(e) if e.io_kind() == Some(ErrorKind::PermissionDenied) => {
                return Err(Error::NotMember(self.ns.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(dir.open_read(name, owner)?.map(|file| OpenLog {
            file,
            name: name.to_owned(),
            dir,
        }))
    }
}

/// A task's log file, with the directory it was opened beneath (a follower
/// reopens the name there).
#[derive(Debug)]
pub(crate) struct OpenLog {
    pub dir: Dir,
    pub name: String,
    pub file: fs::File,
}

/// From this many tasks on, `list` reads them on two threads.
const PARALLEL_LS: usize = 64;

/// `read` of `tasks` by two threads, half each.
fn read_in_two(
    tasks: &[(TaskName, usize, String)],
    read: impl Fn(&[(TaskName, usize, String)]) -> Result<Vec<TaskInfo>> + Sync,
) -> Result<Vec<TaskInfo>> {
    let (first, second) = tasks.split_at(tasks.len() / 2);
    let (out, rest) = std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn_scoped(s, || read(second));
        let mine = read(first);
        match other {
            Ok(h) => (
                mine,
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            ),
            // No thread to be had: the caller's own does it all.
            Err(_) => (mine, read(second)),
        }
    });
    let mut out = out?;
    out.extend(rest?);
    Ok(out)
}

/// The processes of `tasks` (each: its name, the index in `dirs` of the
/// directory holding its cgroup, the cgroup's entry there), skipping those
/// that hold none.
fn read_tasks(
    dirs: &[CgroupDir],
    proc_dir: Option<&fs::File>,
    tasks: &[(TaskName, usize, String)],
) -> Result<Vec<TaskInfo>> {
    let mut buf = Vec::new();
    let mut text = String::new();
    let mut out = Vec::new();
    for (task, dir, name) in tasks {
        let mut pids = Vec::new();
        match dirs[*dir].procs_recursive_of(name, &mut buf, &mut pids) {
            Ok(()) => {}
            // Ended between the listing and the read.
            Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => continue,
            // One task the caller cannot read costs that task only.
            Err(e) => {
                out.push(TaskInfo {
                    task: task.clone(),
                    processes: Vec::new(),
                    restarting_at_ms: None,
                    waiting_for: None,
                    unreadable: Some(e.to_string()),
                });
                continue;
            }
        }
        if pids.is_empty() {
            continue;
        }
        let processes = pids
            .into_iter()
            .map(|pid| Process {
                pid,
                cmdline: cmdline(proc_dir, pid, &mut buf, &mut text),
            })
            .collect();
        out.push(TaskInfo {
            task: task.clone(),
            processes,
            restarting_at_ms: None,
            waiting_for: None,
            unreadable: None,
        });
    }
    Ok(out)
}

/// A process's command line as `ls` shows it: its arguments shell-quoted
/// (`sh -c 'while true; do sleep 1; done'`), or, for a process that
/// rewrote its command line as one title (`nginx: worker process`, no NUL
/// between words), that title as it is; `[comm]` for a process that has
/// none (a kernel thread, a zombie); empty if it is gone. Read relative to
/// an open `/proc`; `buf` and `path` are scratch space reused across
/// processes.
fn cmdline(proc_dir: Option<&fs::File>, pid: i32, buf: &mut Vec<u8>, path: &mut String) -> String {
    let mut n = read_proc(proc_dir, pid, "cmdline", 64 * 1024, buf, path).unwrap_or(0);
    while n > 0 && buf[n - 1] == 0 {
        n -= 1;
    }
    if n > 0 {
        let text = String::from_utf8_lossy(&buf[..n]);
        if !text.contains('\0') {
            return text.into_owned();
        }
        let args: Vec<&str> = text.split('\0').collect();
        return crate::quote::words(&args);
    }
    // Kernel threads and zombies have no command line.
    read_proc(proc_dir, pid, "comm", usize::MAX, buf, path)
        .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
        .map(|c| format!("[{}]", c.trim()))
        .unwrap_or_default()
}

/// `/proc/PID/FILE`, at most `limit` bytes of it, into `buf[..n]`.
pub(crate) fn read_proc(
    proc_dir: Option<&fs::File>,
    pid: i32,
    file: &str,
    limit: usize,
    buf: &mut Vec<u8>,
    path: &mut String,
) -> Option<usize> {
    use std::fmt::Write;
    use std::os::fd::AsFd;
    path.clear();
    let _ = write!(path, "{pid}/{file}");
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(proc_dir?.as_fd(), path.as_str(), flags, Mode::empty()).ok()?;
    // A read of `cmdline` fills the whole request unless the arguments end
    // (get_mm_cmdline; a setproctitle'd title is at most a page and comes
    // whole), and the read that would return 0 costs the kernel a walk of
    // the process's page tables: a short read is the end. `comm` is small.
    cgroupfs::read_into(&fs::File::from(fd), buf, limit, true).ok()
}
