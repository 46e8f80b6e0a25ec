//! What lanco writes down about tasks: the running task's state file, the
//! exit record of its last run, and the namespace's accounting journal (one
//! JSON line per finished run), each in the state directory of the member
//! whose monitor wrote it. Files are replaced atomically (write, rename) so a
//! reader never sees half a record; all of it goes through
//! `lanco_proto::files`.

use std::fs::File;

use lanco_proto::cgroupfs::{self, Cgroup};
use lanco_proto::files::Dir;
use lanco_proto::{NamespaceName, TaskName};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::Deps;
use crate::journal::{self, Rotation};

/// A running task's state file, written by its monitor once the payload has
/// exec'd ([`Status::Running`](crate::Status::Running)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// The namespace.
    pub namespace: NamespaceName,
    /// The task.
    pub task: TaskName,
    /// This run, among all runs of the name (its `Started::run_id`; empty
    /// in the states of lanco 0.1).
    #[serde(default)]
    pub run_id: String,
    /// The member who runs it.
    pub uid: u32,
    /// The command and its arguments (lossily UTF-8).
    pub command: Vec<String>,
    /// The pid of the task's main process.
    pub pid: i32,
    /// The pid of the run's monitor.
    pub monitor_pid: i32,
    /// When the command was exec'd, in UNIX seconds.
    pub start: i64,
    /// The same, in RFC 3339 UTC (`2013-06-09T22:50:34Z`).
    pub start_time: String,
    /// The file the task's output goes to.
    pub log: String,
    /// The task's working directory.
    pub cwd: String,
    /// Its stop timeout: how long a stop waits after SIGTERM before
    /// cgroup.kill, in milliseconds (`None` in the states older monitors
    /// wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_ms: Option<u64>,
    /// The definition this run was started from (its digest), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Restarts and readiness, for a supervised task (a restart policy or
    /// a readiness other than exec); `None` for a plain run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervised: Option<Supervised>,
    /// Started on purpose (`start`, `run`), not pulled in by a task that
    /// depends on it: it stays until stopped or released. (`true` in the
    /// states of lanco before dependencies.)
    #[serde(default = "yes")]
    pub explicit: bool,
    /// Its dependencies, as this run was started with them.
    #[serde(default, skip_serializing_if = "Deps::is_empty")]
    pub deps: Deps,
    /// Stopped because this task it needs went down: it starts again, by
    /// itself, once that one is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<TaskName>,
}

fn yes() -> bool {
    true
}

impl TaskState {
    /// When a supervised task between two runs starts again (Unix time in
    /// milliseconds); `None` while a run goes on, or for a plain run.
    pub fn next_restart_ms(&self) -> Option<i64> {
        self.supervised.as_ref()?.next_restart_ms
    }
}

/// A supervised task's state, as its monitor last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervised {
    /// The restart policy (`no`, `on-failure`, `always`).
    pub restart: String,
    /// `COUNT/INTERVAL`.
    pub restart_limit: String,
    /// How it says it is ready (`exec`, `notify`, `fd:N`).
    pub ready: String,
    /// `starting` (not ready yet), `running` (ready), `stopping` (it said
    /// STOPPING=1) or `restarting` (waiting for its next start: nothing of
    /// it runs).
    pub phase: String,
    /// Restarts so far under this monitor.
    pub restarts: u32,
    /// How the previous run ended, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<Exit>,
    /// When the next start is due (`restarting`), Unix time in
    /// milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_ms: Option<i64>,
    /// The task's own words (sd_notify `STATUS=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// How a run ended: its main process's status, as a shell would tell it.
/// The JSON form (records, `status --json`) is `{"kind": "code", "value":
/// 0}`, `{"kind": "signal", "value": 9}` or `{"kind": "lost"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Exit {
    /// exit(2) status of the task's main process.
    Code(i32),
    /// The signal that killed the main process.
    Signal(i32),
    /// The monitor was killed, so nobody collected the main process's status.
    Lost,
}

impl From<std::process::ExitStatus> for Exit {
    /// A status waitpid(2) gave for an ended process (one that stopped or
    /// continued is none of these: `Lost`).
    fn from(s: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Lost,
        }
    }
}

impl Exit {
    /// As a shell reports it: the code, or 128 + the signal.
    pub fn shell_status(&self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(*c),
            Exit::Signal(s) => Some(128 + s),
            Exit::Lost => None,
        }
    }
}

/// Signal `s`'s name (`SIGKILL`, `SIGRTMIN+2` as glibc and kill -l number
/// the real-time ones), if it has one.
pub fn signal_name(s: i32) -> Option<String> {
    match nix::sys::signal::Signal::try_from(s) {
        Ok(sig) => Some(sig.as_str().to_owned()),
        Err(_) if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&s) => {
            Some(format!("SIGRTMIN+{}", s - libc::SIGRTMIN()))
        }
        Err(_) => None,
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => match signal_name(*s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
            Exit::Lost => f.write_str("exit status lost (its monitor was killed)"),
        }
    }
}

/// One finished run: its exit record (the last run's is kept per name) and
/// its line in the accounting journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The namespace.
    pub namespace: NamespaceName,
    /// The task.
    pub task: TaskName,
    /// The run this records (its `Started::run_id`).
    #[serde(default)]
    pub run_id: String,
    /// The member who ran it: their user name, or the uid if they have none.
    pub user: String,
    /// Their uid.
    pub uid: u32,
    /// The command and its arguments (lossily UTF-8).
    pub command: Vec<String>,
    /// The pid its main process had.
    pub pid: i32,
    /// When the command was exec'd, in UNIX seconds.
    pub start: i64,
    /// The same, in RFC 3339 UTC.
    pub start_time: String,
    /// When the last process of the task was gone (before its on-exit
    /// command), in UNIX seconds.
    pub end: i64,
    /// The same, in RFC 3339 UTC.
    pub end_time: String,
    /// How the main process ended.
    pub exit: Exit,
    /// A stop ended it (`lanco stop`, [`Namespace::stop`](crate::Namespace::stop),
    /// or a SIGTERM to its monitor).
    pub stopped: bool,
    /// It outlived the stop timeout and was killed with cgroup.kill.
    pub killed_after_timeout: bool,
    /// CPU time of every process the task ever had (cgroup cpu.stat).
    pub cpu_usec: u64,
    /// Peak memory in bytes: `memory.peak` of the task's cgroup, or
    /// `max_rss` (the largest single process) where the memory controller
    /// is not available; `None` if neither was.
    pub peak_memory_bytes: Option<u64>,
    /// Where `peak_memory_bytes` came from: `"memory.peak"` or `"max_rss"`.
    pub peak_memory_source: Option<String>,
    /// The file the task's output went to (its `-l` file or the default
    /// log, or a temporary name if the log could not be installed). Empty in
    /// records written before lanco kept it.
    #[serde(default)]
    pub log: String,
    /// lanco's own lines about the run (a stop, the kill at the timeout,
    /// errors of the monitor), oldest first, each with its UTC time: the
    /// last 20 of them, each at most 512 bytes.
    /// They never go into the task's output. The accounting line has those
    /// made until the task ended; the exit record also those of the on-exit
    /// command and the clean-up.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Restarts under this monitor before this run (0: its first run).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// Processes of the task the kernel's OOM killer killed
    /// (`memory.events` `oom_kill`, this cgroup and below): a memory limit —
    /// the task's own, its namespace's — or the host ran out. 0, and absent
    /// from the JSON, where the memory controller is not enabled.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub oom_kills: u64,
    /// The memory limit that bound the task when it ended: the least
    /// `memory.max` of its cgroup and of its namespace's, if either had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// Forks the task's pids limit refused (`pids.events` `max`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub forks_refused: u64,
    /// Time its cpu limit held it back (`cpu.stat` `throttled_usec`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub throttled_usec: u64,
    /// Set when this end made the task failed: its restart limit was
    /// reached, or it never got ready ("restarted 3 times within 10s;
    /// last exit status 1", "not ready after 60s; stopped").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// How many of a run's notes its exit record keeps (the last ones). Told in
/// `ExitRecord::notes`' documentation.
pub const MAX_NOTES: usize = 20;
/// The longest note an exit record keeps, in bytes (longer ones are cut).
/// Told in `ExitRecord::notes`' documentation.
pub const MAX_NOTE_BYTES: usize = 512;

/// A task cgroup's cumulative counters. A supervised task's runs share one
/// cgroup, so each run's record tells the counters' growth since its start
/// (`memory.peak` cannot be told apart: it is the cgroup's).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) cpu_usec: u64,
    pub(crate) oom_kills: u64,
    pub(crate) forks_refused: u64,
    pub(crate) throttled_usec: u64,
}

impl Counters {
    pub(crate) fn read(cg: &Cgroup) -> Self {
        let keyed = |file, key| cg.keyed_u64(file, key).ok().flatten().unwrap_or(0);
        Counters {
            cpu_usec: cg.cpu_usage_usec().unwrap_or(0),
            oom_kills: keyed(cgroupfs::MEMORY_EVENTS, "oom_kill"),
            forks_refused: keyed(cgroupfs::PIDS_EVENTS, "max"),
            throttled_usec: keyed(cgroupfs::CPU_STAT, "throttled_usec"),
        }
    }
}

impl ExitRecord {
    /// The record of a run that has just ended, from its state file and its
    /// (now empty) cgroup, whose counters stood at `since` when the run
    /// began. Peak memory comes from `memory.peak` where the
    /// memory controller offers it, else from `max_rss` if the caller has it.
    /// The log path is the state file's; the notes are the caller's to add.
    pub(crate) fn ended(
        s: &TaskState,
        cg: &Cgroup,
        since: Counters,
        exit: Exit,
        stopped: bool,
        killed_after_timeout: bool,
        max_rss: Option<u64>,
    ) -> Self {
        let (peak_memory_bytes, source) = match cg.optional_u64(cgroupfs::MEMORY_PEAK) {
            Ok(Some(p)) => (Some(p), Some("memory.peak")),
            _ => (max_rss, max_rss.map(|_| "max_rss")),
        };
        let end = crate::time::now_secs();
        let now = Counters::read(cg);
        ExitRecord {
            namespace: s.namespace.clone(),
            task: s.task.clone(),
            run_id: s.run_id.clone(),
            // Resolved now, off the start path: name lookups can be slow (NSS).
            user: user_name(s.uid),
            uid: s.uid,
            command: s.command.clone(),
            pid: s.pid,
            start: s.start,
            start_time: s.start_time.clone(),
            end,
            end_time: crate::time::utc(end),
            exit,
            stopped,
            killed_after_timeout,
            cpu_usec: now.cpu_usec.saturating_sub(since.cpu_usec),
            peak_memory_bytes,
            peak_memory_source: source.map(str::to_owned),
            log: s.log.clone(),
            notes: Vec::new(),
            restarts: s.supervised.as_ref().map_or(0, |v| v.restarts),
            oom_kills: now.oom_kills.saturating_sub(since.oom_kills),
            memory_limit: memory_limit(cg),
            forks_refused: now.forks_refused.saturating_sub(since.forks_refused),
            throttled_usec: now.throttled_usec.saturating_sub(since.throttled_usec),
            failed: None,
        }
    }
}

/// The least `memory.max` of the task's cgroup, its member's subtree and
/// its namespace's cgroup (`R/ns-NS/user-UID/task-NAME`).
fn memory_limit(cg: &Cgroup) -> Option<u64> {
    cg.path()
        .ancestors()
        .take(3)
        .filter_map(|p| {
            Cgroup::new(p)
                .limit_u64(cgroupfs::MEMORY_MAX)
                .ok()
                .flatten()
        })
        .min()
}

impl ExitRecord {
    /// How the run ended, as `status` tells it: the OOM killer named where
    /// it acted (`memory.events`), not a bare SIGKILL.
    pub fn ending(&self) -> String {
        if self.oom_kills == 0 {
            return self.exit.to_string();
        }
        let limit = match self.memory_limit {
            Some(b) => format!("memory limit {}", lanco_proto::limits::human_size(b)),
            None => "no memory limit of its own: the host ran out".into(),
        };
        match self.exit {
            Exit::Signal(9) => format!("killed by the OOM killer ({limit})"),
            e => format!(
                "{e}; the OOM killer killed {} of its processes ({limit})",
                self.oom_kills
            ),
        }
    }
}

/// Largest state file or exit record read (they are a few hundred bytes).
const MAX_RECORD: u64 = 1 << 20;

/// Reads `name` in `dir`, a JSON file that must belong to `owner`.
pub fn read_json<T: DeserializeOwned>(dir: &Dir, name: &str, owner: u32) -> Result<Option<T>> {
    match dir.read(name, owner, MAX_RECORD)? {
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::system(dir.join(name).display(), e)),
        None => Ok(None),
    }
}

/// Replaces `name` in this user's `dir` atomically (a temporary file under
/// an unpredictable name, then rename), mode 0640: members read it, nobody
/// else writes it. Not fsync'ed: these files describe the current or last
/// run and are rewritten by the next; the accounting journal is the durable
/// record.
pub fn write_json<T: Serialize>(dir: &Dir, name: &str, value: &T) -> Result<()> {
    write_json_via(dir, name, value, None)
}

/// [`write_json`] through `unnamed`, a file made ahead in `dir`
/// (`Dir::create_unnamed`), if given.
pub fn write_json_via<T: Serialize>(
    dir: &Dir,
    name: &str,
    value: &T,
    unnamed: Option<std::fs::File>,
) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| Error::system(dir.join(name).display(), e))?;
    bytes.push(b'\n');
    match unnamed.map(|f| dir.replace_unnamed(name, &bytes, f)) {
        Some(Ok(())) => Ok(()),
        _ => Ok(dir.replace(name, &bytes, 0o640)?),
    }
}

/// The name of `uid`, or the number if it has none.
pub fn user_name(uid: u32) -> String {
    uzers::get_user_by_uid(uid)
        .map(|u| u.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| uid.to_string())
}

/// Appends one line to this user's accounting journal in `dir` with a
/// single O_APPEND write, rotating the journal first if the line would take
/// it past its bound (`crate::journal::append`). Returns the file so the
/// caller can `sync_data` it when it suits (the monitor does so after
/// answering `stop`).
pub fn append_accounting(dir: &Dir, rec: &ExitRecord, rot: Rotation) -> Result<File> {
    let path = dir.join(lanco_proto::layout::ACCOUNTING);
    let mut line = serde_json::to_vec(rec).map_err(|e| Error::system(path.display(), e))?;
    line.push(b'\n');
    use lanco_proto::layout::{ACCOUNTING, ACCOUNTING_LOCK};
    journal::append(dir, ACCOUNTING, ACCOUNTING_LOCK, &line, rot)
}

/// If a run's monitor died (its state file remains, the cgroup is empty and
/// nobody holds the lock), write its exit record — "exit status lost" — and
/// accounting line, so no run goes unrecorded. Only by the name's owner, in
/// its own directory.
pub(crate) fn finalize_lost(dir: &Dir, task: &TaskName, cg: &Cgroup, rot: Rotation) -> Result<()> {
    finalize(dir, task, cg, false, false, rot)
}

pub(crate) fn finalize(
    dir: &Dir,
    task: &TaskName,
    cg: &Cgroup,
    stopped: bool,
    killed: bool,
    rot: Rotation,
) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let state = lanco_proto::layout::state_name(task);
    let Some(s) = read_json::<TaskState>(dir, &state, me)? else {
        return Ok(());
    };
    let rec = ExitRecord::ended(
        &s,
        cg,
        Counters::default(),
        Exit::Lost,
        stopped,
        killed,
        None,
    );
    write_json(dir, &lanco_proto::layout::exit_name(task), &rec)?;
    append_accounting(dir, &rec, rot)?
        .sync_data()
        .map_err(|e| Error::system("cannot sync the accounting journal", e))?;
    Ok(dir.remove(&state)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_wording_and_json() {
        assert_eq!(Exit::Signal(9).to_string(), "killed by signal 9 (SIGKILL)");
        let rt = libc::SIGRTMIN() + 2;
        assert_eq!(
            Exit::Signal(rt).to_string(),
            format!("killed by signal {rt} (SIGRTMIN+2)")
        );
        assert_eq!(Exit::Signal(32).to_string(), "killed by signal 32");
        assert_eq!(Exit::Code(3).shell_status(), Some(3));
        assert_eq!(Exit::Signal(15).shell_status(), Some(143));
        assert_eq!(
            serde_json::to_string(&Exit::Code(0)).unwrap(),
            r#"{"kind":"code","value":0}"#
        );
        assert_eq!(
            serde_json::to_string(&Exit::Lost).unwrap(),
            r#"{"kind":"lost"}"#
        );
    }
}
