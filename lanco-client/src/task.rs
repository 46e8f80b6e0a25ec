//! The library: open a namespace and run, check, stop, kill, list, inspect
//! and wait for its tasks, unprivileged, from the cgroup directories and
//! state files the namespace's members were granted. The `lanco` command is
//! a thin layer over this.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use lanco_proto::cgroupfs::{self, Cgroup};
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

impl Namespace {
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
            Err(nix::errno::Errno::ENOENT) => Err(Error::NoNamespace(ns)),
            Err(nix::errno::Errno::EACCES) => Err(not_member(&ns)),
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

    fn cgroup(&self, task: &TaskName) -> Cgroup {
        Cgroup::new(self.layout.task_cgroup(&self.ns, task))
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
        Ok(self.cgroup(task).populated()?)
    }

    /// Is the task's monitor alive (listening on its control socket)? Asked
    /// without touching the name's lock, so it never disturbs a starter.
    fn monitor_alive(&self, task: &TaskName) -> bool {
        control::connect(&self.layout.ns_state_dir(&self.ns), task).is_ok()
    }

    fn ask_monitor(
        &self,
        task: &TaskName,
        req: &ControlRequest,
        wait: Option<Duration>,
    ) -> Option<Result<ControlReply>> {
        let mut conn = match control::connect(&self.layout.ns_state_dir(&self.ns), task) {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Some(Err(not_member(&self.ns)))
            }
            // No monitor listening: it was killed.
            Err(_) => return None,
        };
        if control::send_line(&mut conn, req).is_err() {
            return None;
        }
        Some(
            control::read_line(&conn, wait).map_err(|e| {
                Error::System(format!("no answer from the monitor of task {task}: {e}"))
            }),
        )
    }

    /// Graceful and race-free stop: SIGTERM to every process (frozen while
    /// the pids are read), cgroup.kill after `timeout`. Returns once every
    /// process of the task is gone.
    pub fn stop(&self, task: &TaskName, timeout: Option<Duration>) -> Result<()> {
        if !self.check(task)? {
            return Err(Error::NotRunning(task.clone()));
        }
        let req = ControlRequest::Stop {
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        };
        // The monitor answers once the cgroup is empty; give it the task's
        // full stop timeout (unknown here when not given) plus a margin.
        let wait = timeout.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(30);
        // Freeze at once (members may: cgroup.freeze is delegated), so a
        // task that forks without end stops eating CPU before the monitor is
        // even scheduled; the monitor's sweep thaws it.
        let cg = self.cgroup(task);
        let _ = cg.write(cgroupfs::CGROUP_FREEZE, "1");
        let r = match self.ask_monitor(task, &req, Some(wait)) {
            Some(Ok(ControlReply::Done { .. })) => return Ok(()),
            Some(Ok(ControlReply::Error { message })) => Err(Error::System(message)),
            Some(Err(e)) => Err(e),
            None => return self.stop_orphan(task, timeout.unwrap_or(DEFAULT_STOP_TIMEOUT)),
        };
        let _ = cg.thaw();
        r
    }

    /// Stop a task whose monitor was killed. Nobody reaps its orphans but
    /// init, so the sweep is as good as freezing makes it; cgroup.kill after
    /// the timeout is exact regardless.
    fn stop_orphan(&self, task: &TaskName, timeout: Duration) -> Result<()> {
        let cg = self.cgroup(task);
        cg.signal_frozen(nix::sys::signal::Signal::SIGTERM, &mut HashSet::new())?;
        let mut killed = false;
        if !cg.wait_events(timeout, |e| !e.populated)? {
            cg.kill()?;
            killed = true;
            cg.wait_events(Duration::from_secs(10), |e| !e.populated)?;
        }
        finalize_lost_with(&self.layout, &self.ns, task, true, killed)?;
        let _ = cg.remove_tree();
        Ok(())
    }

    /// Delivers `signal` to every process of the task.
    pub fn kill(&self, task: &TaskName, signal: nix::sys::signal::Signal) -> Result<()> {
        if !self.check(task)? {
            return Err(Error::NotRunning(task.clone()));
        }
        match self.ask_monitor(
            task,
            &ControlRequest::Kill {
                signal: signal as i32,
            },
            Some(Duration::from_secs(30)),
        ) {
            Some(Ok(ControlReply::Done { .. })) => Ok(()),
            Some(Ok(ControlReply::Error { message })) => Err(Error::System(message)),
            Some(Err(e)) => Err(e),
            None => Ok(self
                .cgroup(task)
                .signal_frozen(signal, &mut HashSet::new())?),
        }
    }

    /// Running tasks (cgroups holding a process) and their processes.
    pub fn list(&self) -> Result<Vec<TaskInfo>> {
        let mut out = Vec::new();
        for cg in Cgroup::new(self.layout.ns_cgroup(&self.ns)).children()? {
            let entry = cg
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(task) = layout::task_of_cgroup_entry(&entry) else {
                continue;
            };
            let pids = match cg.procs_recursive() {
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
                task: task.to_string(),
                processes,
            });
        }
        Ok(out)
    }

    pub fn status(&self, task: &TaskName) -> Result<Status> {
        let cg = self.cgroup(task);
        if cg.populated()? {
            let info: Option<TaskState> =
                record::read_json(&self.layout.task_state(&self.ns, task))?;
            return Ok(Status::Running {
                info,
                monitor_alive: self.monitor_alive(task),
                processes: cg.procs_recursive().map(|p| p.len()).unwrap_or(0),
            });
        }
        // A run whose monitor died left its state file: record it now, under
        // the name's lock, so neither a finishing monitor nor a new run can
        // race with us.
        let lock = fs::File::open(self.layout.task_lock(&self.ns, task));
        if let Ok(Ok(_held)) = lock.map(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock)) {
            finalize_lost(&self.layout, &self.ns, task)?;
        }
        let last = record::read_json(&self.layout.task_exit(&self.ns, task))?;
        Ok(Status::NotRunning { last })
    }

    /// Waits until the task is no longer running (poll on cgroup.events).
    pub fn wait(&self, task: &TaskName, timeout: Option<Duration>) -> Result<bool> {
        let t = timeout.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        Ok(self.cgroup(task).wait_events(t, |e| !e.populated)?)
    }

    pub fn log_path(&self, task: &TaskName) -> PathBuf {
        // A task started with -l logs elsewhere; its state file says where.
        record::read_json::<TaskState>(&self.layout.task_state(&self.ns, task))
            .ok()
            .flatten()
            .map(|s| PathBuf::from(s.log))
            .unwrap_or_else(|| self.layout.task_log(&self.ns, task))
    }
}

pub(crate) fn not_member(ns: &NamespaceName) -> Error {
    Error::Denied(format!("you are not a member of namespace {ns}"))
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
/// accounting line, so no run goes unrecorded.
pub fn finalize_lost(layout: &Layout, ns: &NamespaceName, task: &TaskName) -> Result<()> {
    finalize_lost_with(layout, ns, task, false, false)
}

fn finalize_lost_with(
    layout: &Layout,
    ns: &NamespaceName,
    task: &TaskName,
    stopped: bool,
    killed: bool,
) -> Result<()> {
    let state_path = layout.task_state(ns, task);
    let Some(s) = record::read_json::<TaskState>(&state_path)? else {
        return Ok(());
    };
    let cg = Cgroup::new(layout.task_cgroup(ns, task));
    let rec = ExitRecord::ended(&s, &cg, Exit::Lost, stopped, killed, None);
    record::write_json(&layout.task_exit(ns, task), &rec)?;
    record::append_accounting(&layout.accounting_file(ns), &rec)?
        .sync_data()
        .map_err(|e| Error::system("cannot sync the accounting journal", e))?;
    record::remove_if_exists(&state_path)
}

/// The last `n` lines of a file, read backwards in chunks.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    const CHUNK: u64 = 64 * 1024;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut f = fs::File::open(path)?;
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
        f.seek(SeekFrom::Start(pos))?;
        let mut part = vec![0u8; step as usize];
        f.read_exact(&mut part)?;
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
        assert_eq!(tail_lines(&p, 2).unwrap(), b"line 99999\nline 100000\n");
        assert_eq!(tail_lines(&p, 0).unwrap(), b"");
        assert_eq!(tail_lines(&p, 200_000).unwrap().len(), text.len());
        fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail_lines(&p, 1).unwrap(), b"b");
        fs::remove_file(&p).unwrap();
    }
}
