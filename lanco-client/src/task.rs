//! The library: open a namespace and run, check, stop, kill, list, inspect
//! and wait for its tasks, unprivileged, from the cgroup directories and
//! state files the namespace's members were granted. The `lanco` command is
//! a thin layer over this.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use lanco_proto::cgroupfs::{self, Cgroup};
use lanco_proto::files::{self, Dir, FileError};
use lanco_proto::layout;
use lanco_proto::{Config, Layout, NamespaceName, TaskName};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use crate::control::{self, ControlReply, ControlRequest};
use crate::error::{Error, Result};
use crate::monitor::{self, Report, Spec};
use crate::record::{self, Exit, ExitRecord, TaskState};

/// Default time a task gets between SIGTERM and cgroup.kill (as in Dinit).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const MONITOR_NAME: &str = "lanco-monitor";
const MONITOR_INSTALLED: &str = "/usr/libexec/lanco/lanco-monitor";

/// What to run. Environment and working directory default to the caller's,
/// as with nohup.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub name: TaskName,
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// Instead of `{log_dir}/lanco-NS/task-NAME.log`.
    pub log: Option<PathBuf>,
    /// Run with /bin/sh after the task ends.
    pub on_exit: Option<String>,
    pub stop_timeout: Duration,
}

impl TaskSpec {
    pub fn new(name: TaskName, argv: Vec<OsString>) -> Result<Self> {
        Ok(Self {
            name,
            argv,
            env: std::env::vars_os().collect(),
            cwd: std::env::current_dir()
                .map_err(|e| Error::system("cannot read the current directory", e))?,
            log: None,
            on_exit: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        })
    }
}

/// A started task. Keep it to wait for the end (`lanco run -f`).
pub struct Started {
    pub pid: i32,
    pub monitor_pid: i32,
    report: ChildStdout,
}

impl Started {
    /// Blocks until the task and its on-exit command are over.
    pub fn wait(mut self) -> Result<Exit> {
        match monitor::recv::<Report>(&mut self.report, 1 << 20) {
            Ok(Report::Finished { code: Some(c), .. }) => Ok(Exit::Code(c)),
            Ok(Report::Finished {
                signal: Some(s), ..
            }) => Ok(Exit::Signal(s)),
            Ok(_) | Err(_) => Ok(Exit::Lost),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: i32,
    pub cmdline: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub task: String,
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Running {
        /// None when the monitor died and the state file is gone or stale.
        info: Option<TaskState>,
        monitor_alive: bool,
        processes: usize,
    },
    NotRunning {
        last: Option<ExitRecord>,
    },
}

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
    /// Opens a namespace the caller may use. A namespace that does not
    /// exist and one the caller is not a member of get the same answer
    /// (exit status 4), as from lancod: names of other tenants' namespaces
    /// are not for everyone. Root is told which it is.
    pub fn open(config: Config, ns: NamespaceName) -> Result<Self> {
        let cgroup_root = cgroupfs::resolve_root(&config.cgroup_root)?;
        let layout = Layout {
            cgroup_root,
            state_dir: config.state_dir.clone(),
            log_dir: config.log_dir.clone(),
        };
        let dir = layout.ns_cgroup(&ns);
        use nix::unistd::{access, AccessFlags};
        match access(&dir, AccessFlags::R_OK | AccessFlags::X_OK) {
            Ok(()) => Ok(Self { config, layout, ns }),
            Err(nix::errno::Errno::ENOENT) if nix::unistd::geteuid().is_root() => {
                Err(Error::NoNamespace(ns))
            }
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EACCES) => Err(not_member(&ns)),
            Err(e) => Err(Error::system(dir.display(), e)),
        }
    }

    pub fn name(&self) -> &NamespaceName {
        &self.ns
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn ns_dir(&self) -> Result<Dir> {
        Dir::open(&self.layout.ns_state_dir(&self.ns)).map_err(|e| match e.io_kind() {
            Some(ErrorKind::PermissionDenied | ErrorKind::NotFound) => not_member(&self.ns),
            _ => e.into(),
        })
    }

    /// The member who owns `task`'s name: the owner of its lock file.
    pub(crate) fn name_owner(&self, task: &TaskName) -> Result<Option<u32>> {
        let names = self.ns_dir()?.sub(layout::NAMES)?;
        match names.entry(&layout::lock_name(task))? {
            None => Ok(None),
            Some(e) if e.is_file() => Ok(Some(e.uid)),
            Some(e) => Err(Error::System(
                FileError::Planted {
                    path: names.join(&layout::lock_name(task)),
                    what: e.kind,
                    owner: files::user_name(e.uid),
                    expected: "a member".into(),
                }
                .to_string(),
            )),
        }
    }

    /// Where `task` is, if its name was ever used (or a 0.1 task of that
    /// name still has a cgroup).
    pub(crate) fn find(&self, task: &TaskName) -> Result<Option<Found>> {
        let legacy = Cgroup::new(self.layout.legacy_task_cgroup(&self.ns, task));
        if let Ok(m) = fs::symlink_metadata(legacy.path()) {
            if m.is_dir() {
                use std::os::unix::fs::MetadataExt;
                return Ok(Some(Found {
                    owner: m.uid(),
                    legacy: true,
                    cgroup: legacy,
                }));
            }
        }
        Ok(self.name_owner(task)?.map(|owner| Found {
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

    fn monitor_path(&self) -> PathBuf {
        if !self.config.monitor.as_os_str().is_empty() {
            return self.config.monitor.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(MONITOR_NAME)))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| MONITOR_INSTALLED.into())
    }

    /// Starts a task; returns once its command has been exec'd inside the
    /// task's cgroup, or with the reason it could not be.
    pub fn run(&self, spec: &TaskSpec) -> Result<Started> {
        if spec.argv.is_empty() {
            return Err(Error::Usage("no command given".into()));
        }
        if nix::unistd::geteuid().is_root() {
            return Err(Error::Denied(
                "root runs no tasks in a namespace (its directories are its members'); run as a member, e.g. with sudo -u".into(),
            ));
        }
        let env = spec
            .env
            .iter()
            .map(|(k, v)| {
                let mut e = k.as_bytes().to_vec();
                e.push(b'=');
                e.extend_from_slice(v.as_bytes());
                e
            })
            .collect();
        let mspec = Spec {
            config: self.config.clone(),
            cgroup_root: self.layout.cgroup_root.clone(),
            ns: self.ns.clone(),
            task: spec.name.clone(),
            argv: spec.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env,
            cwd: spec.cwd.as_os_str().as_bytes().to_vec(),
            log: spec.log.clone(),
            on_exit: spec.on_exit.clone(),
            stop_timeout_ms: spec.stop_timeout.as_millis() as u64,
        };
        let monitor = self.monitor_path();
        let mut child = Command::new(&monitor)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::system(format!("cannot start the monitor {}", monitor.display()), e)
            })?;
        let sent = child
            .stdin
            .take()
            .map(|mut w| monitor::send(&mut w, &mspec));
        let mut report = child
            .stdout
            .take()
            .ok_or_else(|| Error::System("monitor has no stdout".into()))?;
        // The first process forks the real monitor and exits at once.
        let status = child
            .wait()
            .map_err(|e| Error::system("wait for the monitor", e))?;
        if !matches!(sent, Some(Ok(()))) || !status.success() {
            return Err(Error::System(format!(
                "the monitor {} failed to start ({status})",
                monitor.display()
            )));
        }
        match monitor::recv::<Report>(&mut report, 1 << 20) {
            Ok(Report::Started { pid, monitor_pid }) => Ok(Started {
                pid,
                monitor_pid,
                report,
            }),
            Ok(Report::Failed(e)) => Err(e),
            Ok(Report::Finished { .. }) => Err(Error::System(
                "the monitor reported an end before a start".into(),
            )),
            Err(e) => Err(Error::System(format!(
                "the monitor died before starting the task: {e}"
            ))),
        }
    }

    /// Is any process of the task alive?
    pub fn check(&self, task: &TaskName) -> Result<bool> {
        match self.find(task)? {
            Some(f) => Ok(f.cgroup.populated()?),
            None => Ok(false),
        }
    }

    /// The running task, or `NotRunning`.
    fn running(&self, task: &TaskName) -> Result<Found> {
        match self.find(task)? {
            Some(f) if f.cgroup.populated()? => Ok(f),
            _ => Err(Error::NotRunning(task.clone())),
        }
    }

    /// The task's monitor's control socket, connected; `None` if no monitor
    /// listens (it was killed). The socket must be the name owner's: a
    /// planted one is an error, never connected to.
    fn connect_monitor(&self, task: &TaskName, found: &Found) -> Result<Option<UnixStream>> {
        let dir = self.state_dir_of(found)?;
        let Some(fd) = dir.open_socket(&layout::socket_name(task), found.owner)? else {
            return Ok(None);
        };
        match UnixStream::connect(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(not_member(&self.ns)),
            Err(_) => Ok(None),
        }
    }

    fn ask_monitor(
        &self,
        task: &TaskName,
        found: &Found,
        req: &ControlRequest,
        wait: Option<Duration>,
    ) -> Result<Option<ControlReply>> {
        let Some(mut conn) = self.connect_monitor(task, found)? else {
            return Ok(None);
        };
        if control::send_line(&mut conn, req).is_err() {
            return Ok(None);
        }
        control::read_line(&conn, wait)
            .map(Some)
            .map_err(|e| Error::System(format!("no answer from the monitor of task {task}: {e}")))
    }

    /// Graceful and race-free stop: SIGTERM to every process (frozen while
    /// the pids are read), cgroup.kill after `timeout`. Returns once every
    /// process of the task is gone.
    pub fn stop(&self, task: &TaskName, timeout: Option<Duration>) -> Result<()> {
        let found = self.running(task)?;
        let req = ControlRequest::Stop {
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        };
        // The monitor answers once the cgroup is empty; give it the task's
        // full stop timeout (unknown here when not given) plus a margin.
        let wait = timeout.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(30);
        // Freeze at once (members may: cgroup.freeze is shared), so a task
        // that forks without end stops eating CPU before the monitor is even
        // scheduled; the monitor's sweep thaws it.
        let cg = &found.cgroup;
        let _ = cg.write(cgroupfs::CGROUP_FREEZE, "1");
        let r = match self.ask_monitor(task, &found, &req, Some(wait)) {
            Ok(Some(ControlReply::Done { .. })) => return Ok(()),
            Ok(Some(ControlReply::Error { message })) => Err(Error::System(message)),
            Err(e) => Err(e),
            Ok(None) => {
                return self.stop_orphan(task, &found, timeout.unwrap_or(DEFAULT_STOP_TIMEOUT))
            }
        };
        let _ = cg.thaw();
        r
    }

    /// Stop a task whose monitor was killed, through the cgroup's shared
    /// files: SIGTERM to each process (pinned by pidfds while frozen),
    /// cgroup.kill after the timeout. Only the name's owner writes the
    /// record of the lost run (in its own directory).
    fn stop_orphan(&self, task: &TaskName, found: &Found, timeout: Duration) -> Result<()> {
        let cg = &found.cgroup;
        cg.signal_frozen(nix::sys::signal::Signal::SIGTERM, &mut HashSet::new())?;
        let mut killed = false;
        if !cg.wait_events(timeout, |e| !e.populated)? {
            cg.kill()?;
            killed = true;
            cg.wait_events(Duration::from_secs(10), |e| !e.populated)?;
        }
        if self.is_mine(found) {
            finalize_lost_with(self, task, found, true, killed)?;
            let _ = cg.remove_tree();
        }
        Ok(())
    }

    /// Is the caller the member whose name `found` is (and so the one who
    /// may write its records)?
    fn is_mine(&self, found: &Found) -> bool {
        !found.legacy && found.owner == nix::unistd::geteuid().as_raw()
    }

    /// Delivers `signal` to every process of the task.
    pub fn kill(&self, task: &TaskName, signal: nix::sys::signal::Signal) -> Result<()> {
        let found = self.running(task)?;
        match self.ask_monitor(
            task,
            &found,
            &ControlRequest::Kill {
                signal: signal as i32,
            },
            Some(Duration::from_secs(30)),
        )? {
            Some(ControlReply::Done { .. }) => Ok(()),
            Some(ControlReply::Error { message }) => Err(Error::System(message)),
            None => Ok(found.cgroup.signal_frozen(signal, &mut HashSet::new())?),
        }
    }

    /// Running tasks (cgroups holding a process) and their processes.
    pub fn list(&self) -> Result<Vec<TaskInfo>> {
        let mut out = Vec::new();
        for t in layout::task_cgroups(&self.layout, &self.ns)? {
            let pids = match t.cgroup.procs_recursive() {
                Ok(p) => p,
                // Ended between the listing and the read.
                Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            if pids.is_empty() {
                continue;
            }
            let processes = pids
                .into_iter()
                .map(|pid| Process {
                    pid,
                    cmdline: cmdline(pid),
                })
                .collect();
            out.push(TaskInfo {
                task: t.task.to_string(),
                processes,
            });
        }
        Ok(out)
    }

    pub fn status(&self, task: &TaskName) -> Result<Status> {
        let Some(found) = self.find(task)? else {
            return Ok(Status::NotRunning { last: None });
        };
        let dir = self.state_dir_of(&found)?;
        let cg = &found.cgroup;
        if cg.populated()? {
            let info: Option<TaskState> =
                record::read_json(&dir, &layout::state_name(task), found.owner)?;
            return Ok(Status::Running {
                info,
                monitor_alive: self.connect_monitor(task, &found)?.is_some(),
                processes: cg.procs_recursive().map(|p| p.len()).unwrap_or(0),
            });
        }
        // A run whose monitor died left its state file: its owner records
        // it now, under the name's lock, so neither a finishing monitor nor
        // a new run can race with it.
        if self.is_mine(&found) {
            let names = self.ns_dir()?.sub(layout::NAMES)?;
            if let Some(f) = names.open_read(&layout::lock_name(task), found.owner)? {
                if let Ok(_held) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    finalize_lost_with(self, task, &found, false, false)?;
                }
            }
        }
        let last = record::read_json(&dir, &layout::exit_name(task), found.owner)?;
        Ok(Status::NotRunning { last })
    }

    /// Waits until the task is no longer running (poll on cgroup.events).
    pub fn wait(&self, task: &TaskName, timeout: Option<Duration>) -> Result<bool> {
        let Some(found) = self.find(task)? else {
            return Ok(true);
        };
        let t = timeout.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        Ok(found.cgroup.wait_events(t, |e| !e.populated)?)
    }

    /// The task's log, opened for reading: a regular file of the name's
    /// owner, never a link or FIFO someone planted.
    pub fn open_log(&self, task: &TaskName) -> Result<Option<(PathBuf, fs::File)>> {
        let Some(found) = self.find(task)? else {
            return Ok(None);
        };
        // A task started with -l logs elsewhere; its state file says where.
        let custom = record::read_json::<TaskState>(
            &self.state_dir_of(&found)?,
            &layout::state_name(task),
            found.owner,
        )
        .ok()
        .flatten()
        .map(|s| PathBuf::from(s.log));
        let path = custom.unwrap_or_else(|| self.layout.task_log(&self.ns, task));
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Ok(None);
        };
        let dir = Dir::open(parent).map_err(|e| match e.io_kind() {
            Some(ErrorKind::PermissionDenied) => not_member(&self.ns),
            _ => e.into(),
        })?;
        Ok(dir.open_read(name, found.owner)?.map(|f| (path.clone(), f)))
    }
}

pub(crate) fn not_member(ns: &NamespaceName) -> Error {
    Error::Denied(format!(
        "no such namespace {ns}, or you are not a member of it"
    ))
}

fn cmdline(pid: i32) -> String {
    let mut buf = Vec::with_capacity(4096);
    let _ = fs::File::open(format!("/proc/{pid}/cmdline"))
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut buf));
    while buf.last() == Some(&0) {
        buf.pop();
    }
    let s: Vec<u8> = buf
        .into_iter()
        .map(|b| if b == 0 { b' ' } else { b })
        .collect();
    let s = String::from_utf8_lossy(&s).into_owned();
    if s.is_empty() {
        // Kernel threads and zombies have no command line.
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_default()
    } else {
        s
    }
}

/// If a run's monitor died (its state file remains, the cgroup is empty and
/// nobody holds the lock), write its exit record — "exit status lost" — and
/// accounting line, so no run goes unrecorded. Only by the name's owner, in
/// its own directory.
pub(crate) fn finalize_lost(dir: &Dir, task: &TaskName, cg: &Cgroup) -> Result<()> {
    finalize(dir, task, cg, false, false)
}

fn finalize_lost_with(
    ns: &Namespace,
    task: &TaskName,
    found: &Found,
    stopped: bool,
    killed: bool,
) -> Result<()> {
    finalize(
        &ns.state_dir_of(found)?,
        task,
        &found.cgroup,
        stopped,
        killed,
    )
}

fn finalize(dir: &Dir, task: &TaskName, cg: &Cgroup, stopped: bool, killed: bool) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let state = layout::state_name(task);
    let Some(s) = record::read_json::<TaskState>(dir, &state, me)? else {
        return Ok(());
    };
    let rec = ExitRecord::ended(&s, cg, Exit::Lost, stopped, killed, None);
    record::write_json(dir, &layout::exit_name(task), &rec)?;
    record::append_accounting(dir, &rec)?
        .sync_data()
        .map_err(|e| Error::system("cannot sync the accounting journal", e))?;
    Ok(dir.remove(&state)?)
}

/// The last `n` lines of a file, read backwards in chunks.
pub fn tail_lines(f: &fs::File, n: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 * 1024;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut pos = f.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let cut = body
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 1)
            .map(|(i, _)| i);
        if let Some(i) = cut {
            return Ok(buf[i + 1..].to_vec());
        }
        if pos == 0 {
            return Ok(buf);
        }
        let step = CHUNK.min(pos);
        pos -= step;
        let mut part = vec![0u8; step as usize];
        f.read_exact_at(&mut part, pos)?;
        part.extend_from_slice(&buf);
        buf = part;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail() {
        let p = std::env::temp_dir().join(format!("lanco-tail-{}", std::process::id()));
        let text: String = (1..=100_000).map(|i| format!("line {i}\n")).collect();
        fs::write(&p, &text).unwrap();
        let f = || fs::File::open(&p).unwrap();
        assert_eq!(tail_lines(&f(), 2).unwrap(), b"line 99999\nline 100000\n");
        assert_eq!(tail_lines(&f(), 0).unwrap(), b"");
        assert_eq!(tail_lines(&f(), 200_000).unwrap().len(), text.len());
        fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail_lines(&f(), 1).unwrap(), b"b");
        fs::remove_file(&p).unwrap();
    }
}
