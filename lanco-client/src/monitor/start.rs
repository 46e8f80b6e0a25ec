//! The monitor's start: claim the name, get admitted, make the cgroup, open
//! the new log and the control socket, start the payload, report.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use lanco_proto::files::Dir;
use lanco_proto::layout::{self, Layout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::needs;
use super::prepared::{Places, Prepared};
use super::{claim, start_process, Log, Monitor, Notes, Phase, Supervisor};
use crate::control;
use crate::error::{Error, Result};
use crate::handoff::{send, Report, Spec};
use crate::journal::Rotation;
use crate::record::{self, Counters, TaskState};

/// What a monitor sets up before it knows its task: a standby makes it
/// while it waits for a caller (spawner.rs), a cold monitor as it starts.
pub(super) struct Prelude {
    sigfd: SignalFd,
    /// This process's cgroup, if it could tell.
    cgroup: Option<PathBuf>,
    /// A standby's files, made ahead (prepared.rs).
    prepared: Prepared,
}

impl Prelude {
    pub fn new() -> Result<Prelude> {
        // SIGCHLD and SIGTERM arrive through a signalfd; block them first so
        // none is lost. SIGTERM to the monitor means "stop the task" (it is
        // what systemd sends every process when the task root is stopped),
        // so the exit record still gets the task's real status.
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        chld.add(Signal::SIGTERM);
        chld.thread_block()
            .map_err(|e| Error::system("sigprocmask", e))?;
        let sigfd = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| Error::system("signalfd", e))?;
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::system("PR_SET_CHILD_SUBREAPER", e))?;
        Ok(Prelude {
            sigfd,
            cgroup: own_cgroup(),
            prepared: Prepared::default(),
        })
    }

    /// Makes a start's files ahead, in `places` (a standby's).
    pub fn prepare(&mut self, places: &Places) {
        self.prepared = Prepared::make(places);
    }

    /// Readable once a signal is pending (a standby's SIGTERM).
    pub fn signalled(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sigfd.as_fd()
    }
}

impl Monitor {
    /// Claims the name, gets admitted, makes the cgroup, opens the new log
    /// and the control socket, and starts the payload. On failure, all of
    /// it is given back (the claim's and the log's Drop, the socket here):
    /// nothing runs in the cgroup yet.
    pub(super) fn start(spec: Spec, report: &mut File, prelude: Prelude) -> Result<Self> {
        let (ns, task) = (spec.ns.clone(), spec.task.clone());
        let layout = spec.layout();
        let Prelude {
            sigfd,
            cgroup,
            mut prepared,
        } = prelude;
        let names = layout.ns_state_dir(&ns).join(layout::NAMES);
        let mut claim = claim::claim(&layout, &ns, &task, prepared.lock_in(&names))?;
        let me = nix::unistd::geteuid().as_raw();
        // A monitor a spawner forked is born where admission would put it.
        // Wrong only towards "not there": then admission moves it there.
        let admitted = cgroup.as_deref() != Some(layout.monitor_cgroup(&ns, me).as_path());
        if admitted {
            crate::helper::admit(&spec.config.socket, &ns)?;
        }
        if !spec.limits.is_empty() {
            enable_controllers(&spec, &layout, me)?;
        }
        let cgroup_dir = claim.make_cgroup(&task, &spec.limits)?;
        let dir = Dir::open(&layout.user_state_dir(&ns, me))?;
        // A previous run whose monitor died left a state file: close its record.
        record::finalize_lost(
            &dir,
            &task,
            &claim.cgroup,
            Rotation::accounting(&spec.config),
        )?;
        let log_path = spec
            .log
            .clone()
            .unwrap_or_else(|| layout.task_log(&ns, &task));
        let unnamed_log = log_path.parent().and_then(|d| prepared.log_in(d));
        let mut log = Log::create(&log_path, spec.config.log_keep, unnamed_log)?;
        let sock = layout::socket_name(&task);
        let listener = match prepared.socket_as(&dir, &sock) {
            Some(l) => l,
            None => control::bind(&dir, &sock, 0o660)
                .map_err(|e| Error::system("cannot create the task's control socket", e))?,
        };
        let unnamed_state = prepared.state_in(dir.path());
        let mut run_env = spec.env.clone();
        let start = crate::time::now_secs();
        let state_for = |pid: i32, log: String| TaskState {
            namespace: ns.clone(),
            task: task.clone(),
            run_id: run_id(pid),
            uid: me,
            command: spec
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
            pid,
            monitor_pid: std::process::id() as i32,
            start,
            start_time: crate::time::utc(start),
            log,
            cwd: String::from_utf8_lossy(&spec.cwd).into_owned(),
            stop_timeout_ms: Some(spec.stop_timeout_ms),
            definition: spec.definition.clone(),
            explicit: spec.explicit,
            deps: spec.deps.clone(),
            waiting_for: None,
            supervised: None,
        };
        // A plain run (no dependencies, no mark, no supervision) has its
        // state file written while its process execs on another CPU: the
        // file is all `run` waits for after the exec. Any other run writes
        // it after its mark, as readers expect.
        let plain = spec.explicit && spec.deps.is_empty() && spec.supervision.is_plain();
        let state_name = layout::state_name(&task);
        let mut early: Option<TaskState> = None;
        let started = listener
            .set_nonblocking(true)
            .map_err(|e| Error::system("control socket", e))
            .and_then(|()| Ok(claim.cgroup.open_events()?))
            .and_then(|events| {
                let mut sup = Supervisor::new(spec.supervision)?;
                if let Some(var) = sup.channel.env() {
                    run_env.retain(|e| !e.starts_with(b"NOTIFY_SOCKET="));
                    run_env.push(var);
                }
                let pass = sup.channel.arm()?;
                let pid = start_process(
                    &cgroup_dir,
                    &spec.argv,
                    &run_env,
                    &spec.cwd,
                    &log.file,
                    pass.as_ref().map(|(fd, at)| (fd.as_fd(), *at)),
                    |pid| {
                        let log = log.installed_path().display().to_string();
                        early = plain.then(|| state_for(pid, log)).filter(|state| {
                            record::write_json_via(&dir, &state_name, state, unnamed_state).is_ok()
                        });
                    },
                )?;
                sup.run_began();
                Ok((events, pid, sup))
            });
        let (events, pid, sup) = match started {
            Ok(v) => v,
            Err(e) => {
                if early.is_some() {
                    let _ = dir.remove(&state_name);
                }
                let _ = dir.remove_socket(&sock);
                return Err(e);
            }
        };
        // From here the task runs: failures are noted, never undone.
        claim.keep();
        let installed = log.install();
        let state_early = early.is_some();
        // One run id: the one the early state file has, if written.
        let mut state = early.unwrap_or_else(|| state_for(pid, String::new()));
        state.log = log.path().display().to_string();
        let mut m = Monitor {
            admitted,
            claim,
            cgroup_dir,
            dir,
            state,
            log,
            main_pid: pid,
            main_exit: None,
            run_counters: Counters::default(),
            phase: Phase::Task,
            record: None,
            notes: RefCell::new(Notes::new(&ns, &task)),
            accounting: None,
            listener,
            stopping: None,
            killed_after_timeout: false,
            waiters: Vec::new(),
            sigfd,
            events,
            spec,
            sup,
            run_env,
            needs: None,
            report: None,
        };
        let installed_ok = installed.is_ok();
        if let Err(e) = installed {
            m.note(&format_args!(
                "the new log keeps its temporary name: {}",
                e.one_line()
            ));
        }
        m.needs = needs::Needs::new(&m.spec);
        let marked = !m.spec.deps.is_empty()
            || !m.spec.explicit
            || m.spec.supervision.ready != crate::supervision::Ready::Exec;
        m.set_mark(marked);
        if state_early && installed_ok {
            m.sup.state_written();
        } else {
            m.write_state();
        }
        let _ = send(
            report,
            &Report::Started {
                pid,
                monitor_pid: m.state.monitor_pid,
                run_id: m.state.run_id.clone(),
            },
        );
        Ok(m)
    }
}

/// Makes the controllers the task's limits need available to its cgroup:
/// lancod enables them above the member's subtree if they are not there
/// yet (only root may write the namespace's `cgroup.subtree_control`), and
/// the member, in its own subtree.
fn enable_controllers(spec: &Spec, layout: &Layout, uid: u32) -> Result<()> {
    let wanted = spec.limits.controllers();
    let user = lanco_proto::cgroupfs::Cgroup::new(layout.user_cgroup(&spec.ns, uid));
    if user.check_controllers(wanted.iter().copied()).is_err() {
        crate::helper::enable(&spec.config.socket, &spec.ns, &wanted)?;
    }
    Ok(user.enable_controllers(wanted.iter().copied())?)
}

/// This process's cgroup2 directory: the mount joined with
/// /proc/self/cgroup's path, which is relative to the cgroup namespace
/// (the caller's, which a spawner checked is its own; in another one the
/// path names something else or nothing).
fn own_cgroup() -> Option<PathBuf> {
    let mount = lanco_proto::cgroupfs::cgroup2_mount().ok()?;
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::/"))?;
    Some(mount.join(rel))
}

/// 16 hex digits no other run of the name will have: the time, the pid and
/// this process's random hash keys, hashed.
pub(super) fn run_id(pid: i32) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i32(pid);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}
