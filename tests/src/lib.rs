//! Harness for lanco's end-to-end tests. Each test gets a private
//! installation — its own lancod socket, cgroup root, state and log
//! directories, copies of the binaries — under a unique temporary directory,
//! removed (cgroups included) by a Drop guard even when the test fails.
//! Clients run as real unprivileged users through setpriv.
//!
//! Tests need root (to create users and cgroups and to run lancod) and
//! cgroup2. Without them a test prints SKIP and passes — unless
//! LANCO_E2E_REQUIRED=1 (CI sets it), when it fails instead.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use lanco_proto::cgroupfs::Cgroup;
use lanco_proto::layout::{self, Layout};
use lanco_proto::{NamespaceName, TaskName};

pub fn nsname(s: &str) -> NamespaceName {
    NamespaceName::try_from(s).expect("namespace name")
}

pub fn taskname(s: &str) -> TaskName {
    TaskName::try_from(s).expect("task name")
}

/// The uid of a test account.
pub fn uid(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {user}"))
        .uid
        .as_raw()
}

/// Test accounts: alice and bob share the namespace group; eve is outside;
/// admin is in the admin group only.
pub const ALICE: &str = "lanco-t-alice";
pub const BOB: &str = "lanco-t-bob";
pub const EVE: &str = "lanco-t-eve";
pub const ADMIN: &str = "lanco-t-admin";
pub const OPS: &str = "lanco-t-ops";
pub const ADMINS: &str = "lanco-t-admins";

/// Returns false (after printing SKIP) when this machine cannot run
/// end-to-end tests and they are not required.
pub fn can_run(test: &str) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("needs root (to create test users and cgroups, and to run lancod)".to_string())
    } else if let Err(e) = lanco_proto::cgroupfs::cgroup2_mount() {
        Some(e.to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if std::env::var("LANCO_E2E_REQUIRED").as_deref() == Ok("1") => {
            panic!("{test}: cannot run and LANCO_E2E_REQUIRED=1: {why}")
        }
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            false
        }
    }
}

/// Start of every e2e test: `let Some(mut inst) = lanco_e2e::setup("name") else { return };`
pub fn setup(test: &str) -> Option<Install> {
    can_run(test).then(|| Install::new(test, ""))
}

/// As [`setup`], then namespace `ns` owned by Alice (group ops) with one
/// task of hers running (`first`, a sleep), so that she has a warm spawner:
/// the installation and the spawner's pid.
pub fn setup_warm(test: &str) -> Option<(Install, i32)> {
    let inst = setup(test)?;
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "run", "first", "sleep", "1000"])
        .ok();
    let sp = inst.spawner("ns");
    Some((inst, sp))
}

/// As [`setup`], with TOML lines added to the installation's config.
pub fn setup_with(test: &str, extra_config: &str) -> Option<Install> {
    can_run(test).then(|| Install::new(test, extra_config))
}

/// Config for a test about admission: no warm spawner, so every `run` is
/// admitted by lancod.
pub const NO_SPAWNER: &str = "spawner_idle_secs = 0\n";

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Creates the test users and groups once per machine (idempotent, and
/// serialised across test processes by a lock file).
pub fn ensure_users() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let lock = fs::File::create("/tmp/lanco-e2e-users.lock").expect("lock file");
        let _guard =
            nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("flock");
        for g in [OPS, ADMINS] {
            if !sh("getent", &["group", g]).status.success() {
                let o = sh("groupadd", &[g]);
                assert!(
                    o.status.success(),
                    "groupadd {g}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        for (u, groups) in [(ALICE, OPS), (BOB, OPS), (EVE, ""), (ADMIN, ADMINS)] {
            if !sh("id", &[u]).status.success() {
                let mut args = vec!["-M", "-s", "/bin/sh", "-d", "/nonexistent"];
                if !groups.is_empty() {
                    args.extend(["-G", groups]);
                }
                args.push(u);
                let o = sh("useradd", &args);
                assert!(
                    o.status.success(),
                    "useradd {u}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    });
}

/// The directory cargo put the workspace binaries in (the test executable
/// lives in its `deps/`).
///
/// `LANCO_E2E_BIN` names another directory of binaries instead (e.g. an
/// older release's, to show that an attack test fails there); nothing is
/// built then.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LANCO_E2E_BIN") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

/// Builds the workspace binaries once per test process, so the tests never
/// run stale copies (cargo test builds only this crate's own targets).
fn build_binaries() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("LANCO_E2E_BIN").is_some() {
            return;
        }
        cargo_build(&["-p", "lancod", "-p", "lanco-client", "--bins"]);
    });
}

/// `cargo build --quiet ARGS` into the target directory these tests were
/// built in (whatever --target-dir or CARGO_TARGET_DIR said), with their
/// profile; asserts it succeeded.
pub fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"]).args(args);
    let dir = target_dir();
    if let Some(top) = dir.parent() {
        cmd.arg("--target-dir").arg(top);
    }
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("cargo build");
    assert!(st.success(), "cargo build {args:?} failed");
}

/// Installs the executable `from` at `to`: a hard link, else a copy made by
/// a child process. A copy's write fd in this (threaded) process, inherited
/// by a child another test thread forks at that moment, would make exec of
/// the file fail with ETXTBSY until that child execs.
pub fn install_file(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        let st = Command::new("install")
            .args(["-m", "0755"])
            .arg(from)
            .arg(to)
            .status()
            .expect("install");
        assert!(st.success(), "install {}: {st}", from.display());
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One private installation.
pub struct Install {
    pub name: String,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub cgroup_root: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    lancod: Option<Child>,
    /// Extra cgroups (e.g. a simulated login session) to clean up.
    pub extra_cgroups: Vec<PathBuf>,
}

impl Install {
    /// `extra_config`: TOML lines appended to the generated config.
    pub fn new(test: &str, extra_config: &str) -> Self {
        ensure_users();
        build_binaries();
        let uniq = format!(
            "{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            test.replace('_', "-")
        );
        let dir = PathBuf::from(format!("/tmp/lanco-e2e-{uniq}"));
        let mount = lanco_proto::cgroupfs::cgroup2_mount().expect("cgroup2");
        // The guard exists before anything is made: a set-up that fails
        // half-way is cleaned up like a failed test.
        let mut inst = Install {
            name: test.to_owned(),
            bin: dir.join("bin"),
            state_dir: dir.join("state"),
            log_dir: dir.join("log"),
            config: dir.join("lanco.toml"),
            socket: dir.join("lancod.sock"),
            cgroup_root: mount.join(format!("lanco-e2e-{uniq}")),
            dir,
            lancod: None,
            extra_cgroups: Vec::new(),
        };
        let _ = fs::remove_dir_all(&inst.dir);
        fs::create_dir_all(&inst.bin).expect("install dir");
        fs::set_permissions(&inst.dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        for b in ["lanco", "lancod", "lanco-monitor"] {
            install_file(&target_dir().join(b), &inst.bin.join(b));
        }
        // The monitor is the installation's, named in its config (lanco
        // never looks beside the running binary), and so is the lanco that
        // `lancod restore` runs as each member.
        let mut text = format!(
            "socket = \"{}\"\ncgroup_root = \"{}\"\nstate_dir = \"{}\"\nlog_dir = \"{}\"\nidle_timeout = 0\nmonitor = \"{}\"\nlanco = \"{}\"\n",
            inst.socket.display(),
            inst.cgroup_root.display(),
            inst.state_dir.display(),
            inst.log_dir.display(),
            inst.bin.join("lanco-monitor").display(),
            inst.bin.join("lanco").display()
        );
        text.push_str(extra_config);
        fs::write(&inst.config, text).expect("config");
        fs::set_permissions(&inst.config, fs::Permissions::from_mode(0o644)).expect("chmod");
        inst.start_lancod();
        inst
    }

    pub fn lancod_cmd(&self) -> Command {
        let mut c = Command::new(self.bin.join("lancod"));
        c.env("LANCO_CONFIG", &self.config)
            .env("LANCOD_LOG", "debug")
            .current_dir(&self.dir);
        c
    }

    /// Starts lancod bound to the private socket and waits until it accepts.
    pub fn start_lancod(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("lancod.log"))
            .expect("log");
        let child = self
            .lancod_cmd()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lancod");
        self.lancod = Some(child);
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "lancod did not come up"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn lancod_pid(&self) -> Option<i32> {
        self.lancod.as_ref().map(|c| c.id() as i32)
    }

    /// Sends `sig` to lancod and reaps it.
    pub fn kill_lancod(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(mut c) = self.lancod.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            let _ = c.wait();
        }
        let _ = fs::remove_file(&self.socket);
    }

    /// A command running `lanco` as `user` (None: root).
    pub fn cmd(&self, user: Option<&str>, args: &[&str]) -> Command {
        let lanco = self.bin.join("lanco");
        let mut c = match user {
            Some(u) => as_user(u, &lanco),
            None => Command::new(&lanco),
        };
        c.args(args)
            .env("LANCO_CONFIG", &self.config)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    pub fn lanco(&self, user: Option<&str>, args: &[&str]) -> Out {
        Out(self.cmd(user, args).output().expect("run lanco"))
    }

    /// As root: `lanco NS init -u OWNER -g GROUP`, asserted to succeed.
    pub fn init(&self, ns: &str, owner: &str, group: &str) {
        self.lanco(None, &[ns, "init", "-u", owner, "-g", group])
            .ok();
    }

    /// The installation's layout, as lanco computes it.
    pub fn layout(&self) -> Layout {
        Layout {
            cgroup_root: self.cgroup_root.clone(),
            state_dir: self.state_dir.clone(),
            log_dir: self.log_dir.clone(),
        }
    }

    pub fn ns_cgroup(&self, ns: &str) -> Cgroup {
        Cgroup::new(self.layout().ns_cgroup(&nsname(ns)))
    }

    /// The members' subtrees of a namespace.
    pub fn user_cgroups(&self, ns: &str) -> Vec<(u32, Cgroup)> {
        layout::user_cgroups(&self.layout(), &nsname(ns)).unwrap_or_default()
    }

    /// The cgroup of task `task`, in whichever member's subtree holds it
    /// (a path that does not exist if none does).
    pub fn task_cgroup(&self, ns: &str, task: &str) -> Cgroup {
        let (l, n, t) = (self.layout(), nsname(ns), taskname(task));
        self.user_cgroups(ns)
            .into_iter()
            .map(|(uid, _)| Cgroup::new(l.task_cgroup(&n, uid, &t)))
            .find(Cgroup::exists)
            .unwrap_or_else(|| Cgroup::new(l.user_cgroup(&n, u32::MAX).join(task)))
    }

    /// Pids of the namespace's monitors (every member's), not counting the
    /// spawners that share their cgroups.
    pub fn monitors(&self, ns: &str) -> Vec<i32> {
        // Neither the spawners nor their standbys (forks of a spawner kept
        // ready for the next caller) are any task's monitor.
        self.monitor_cgroup_procs(ns)
            .into_iter()
            .filter(|p| !matches!(comm(*p).as_deref(), Some("lanco-spawner" | "lanco-standby")))
            .collect()
    }

    /// Pids of the namespace's warm spawners (one per member at most).
    /// A fork of a spawner has its comm for a few microseconds, until it
    /// names itself (a standby, a monitor): of a member's processes named
    /// so, the spawner is the oldest.
    pub fn spawners(&self, ns: &str) -> Vec<i32> {
        let mut oldest: std::collections::BTreeMap<u32, (u64, i32)> = Default::default();
        for p in self.monitor_cgroup_procs(ns) {
            if comm(p).as_deref() != Some("lanco-spawner") {
                continue;
            }
            let Ok(meta) = fs::metadata(format!("/proc/{p}")) else {
                continue;
            };
            let Some(start) = start_time(p) else { continue };
            let e = oldest.entry(meta.uid()).or_insert((start, p));
            if start < e.0 {
                *e = (start, p);
            }
        }
        oldest.into_values().map(|(_, p)| p).collect()
    }

    /// Pids of the spawners' standbys (the fork each keeps ready for the
    /// next caller; at most one per spawner).
    pub fn standbys(&self, ns: &str) -> Vec<i32> {
        self.monitor_cgroup_procs(ns)
            .into_iter()
            .filter(|p| comm(*p).as_deref() == Some("lanco-standby"))
            .collect()
    }

    fn monitor_cgroup_procs(&self, ns: &str) -> Vec<i32> {
        let (l, n) = (self.layout(), nsname(ns));
        self.user_cgroups(ns)
            .into_iter()
            .flat_map(|(uid, _)| {
                Cgroup::new(l.monitor_cgroup(&n, uid))
                    .procs()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The namespace's one spawner, once it listens (waits up to 10 s).
    pub fn spawner(&self, ns: &str) -> i32 {
        let mut found = Vec::new();
        assert!(
            wait_for(Duration::from_secs(10), || {
                found = self.spawners(ns);
                found.len() == 1 && listens_on(found[0], "/spawner.sock")
            }),
            "no single listening spawner: {found:?}"
        );
        found[0]
    }

    /// `sh -c` as `user`: `before`, then `lanco ARGS` with the
    /// installation's config; `$L` is lanco's path (`before` may set up the
    /// shell: `exec 7<FILE;`, `ulimit`, a wrapper such as `prlimit …`).
    pub fn lanco_sh(&self, user: &str, before: &str, args: &str) -> Out {
        sh_as(
            user,
            &format!(
                "export LANCO_CONFIG={} L={}; {before} $L {args}",
                self.config.display(),
                self.bin.join("lanco").display()
            ),
        )
    }

    /// How many admissions lancod granted so far (its log's lines).
    pub fn admissions(&self) -> usize {
        fs::read_to_string(self.dir.join("lancod.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("lancod::request: admitted"))
            .count()
    }

    pub fn log_path(&self, ns: &str, task: &str) -> PathBuf {
        self.layout().task_log(&nsname(ns), &taskname(task))
    }

    pub fn read_log(&self, ns: &str, task: &str) -> String {
        fs::read_to_string(self.log_path(ns, task)).unwrap_or_default()
    }

    /// The file `name` in the state directory of whichever member has one
    /// (a path that does not exist if none does).
    pub fn state_file(&self, ns: &str, name: &str) -> PathBuf {
        let dir = self.layout().ns_state_dir(&nsname(ns));
        fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| dir.join("user-none").join(name))
    }

    /// A member's state directory.
    pub fn user_state_dir(&self, ns: &str, user: &str) -> PathBuf {
        self.layout().user_state_dir(&nsname(ns), uid(user))
    }

    /// `status --json` of a task, as root.
    pub fn status(&self, ns: &str, task: &str) -> serde_json::Value {
        self.status_as(None, ns, task)
    }

    /// `status --json` of a task, as `user` (None: root).
    pub fn status_as(&self, user: Option<&str>, ns: &str, task: &str) -> serde_json::Value {
        let o = self.lanco(user, &[ns, "status", "--json", task]);
        serde_json::from_slice(&o.0.stdout).unwrap_or_else(|e| panic!("status json: {e}: {o}"))
    }

    /// Sends `sig` to the monitor of a running task and waits until it is
    /// gone; returns its pid.
    pub fn signal_monitor(&self, ns: &str, task: &str, sig: nix::sys::signal::Signal) -> i32 {
        let st = self.status(ns, task);
        let pid = st["info"]["monitor_pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no monitor pid: {st}")) as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("kill the monitor");
        assert!(
            wait_for(Duration::from_secs(10), || !alive(pid)),
            "monitor {pid} outlived {sig}"
        );
        pid
    }

    /// A cgroup outside lanco's root, as a login session would be.
    pub fn session_cgroup(&mut self, tag: &str) -> Cgroup {
        let p = PathBuf::from(format!("{}-{tag}", self.cgroup_root.display()));
        let cg = Cgroup::new(&p);
        cg.create().expect("session cgroup");
        self.extra_cgroups.push(p);
        cg
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let roots: Vec<PathBuf> = std::iter::once(self.cgroup_root.clone())
            .chain(self.extra_cgroups.clone())
            .collect();
        for r in &roots {
            let cg = Cgroup::new(r);
            if cg.exists() {
                let _ = cg.kill();
                let _ = cg.wait_events(Duration::from_secs(10), |e| !e.populated);
                let _ = cg.remove_tree();
            }
        }
        self.kill_lancod(nix::sys::signal::Signal::SIGKILL);
        if std::thread::panicking() {
            eprintln!(
                "{}: keeping {} for inspection (lancod.log there)",
                self.name,
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A finished `lanco` invocation with helpers for assertions.
pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts exit 0.
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code(), 0, "expected success: {self}");
        self
    }
    /// Asserts the exit status and that stderr is exactly one line containing `needle`.
    pub fn fails(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(self.code(), code, "wrong exit status: {self}");
        let err = self.stderr();
        assert_eq!(err.lines().count(), 1, "expected a one-line error: {self}");
        assert!(err.contains(needle), "stderr lacks {needle:?}: {self}");
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?}, stdout {:?}, stderr {:?}",
            self.0.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes. For waiting
/// on things the test itself cannot be notified of (a process appearing).
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids of every process whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(marker) && !c.contains("lanco ") {
                out.push(pid);
            }
        }
    }
    out
}

/// Whether `pid` holds a Unix socket bound to a path ending in `suffix`:
/// one of its fds is a socket whose inode /proc/net/unix lists with such a
/// path (other processes' sockets of the same name do not count).
fn listens_on(pid: i32, suffix: &str) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: Vec<String> = fds
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    fs::read_to_string(format!("/proc/{pid}/net/unix")).is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8 && f[7].ends_with(suffix) && inodes.iter().any(|i| i == f[6])
        })
    })
}

/// When `pid` started, in clock ticks since boot (/proc/PID/stat field 22).
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the comm's closing parenthesis: state is field 3, start 22.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// A process's command name (comm), if it exists.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

pub fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes, and so is a process already in
    // exit(2) (PF_EXITING in the flags field): the kernel has taken it out of
    // its cgroup's cgroup.procs before it turns into a zombie.
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    fields.first().is_some_and(|s| *s != "Z") && flags & PF_EXITING == 0
}

/// A unique `sleep` duration: a payload of `sleep <it>` (and every copy it
/// forks) can be found in /proc by [`pids_with`], and by nothing else.
pub fn unique_sleep() -> String {
    format!(
        "{}.{:06}{}",
        100_000 + SEQ.fetch_add(1, Ordering::SeqCst),
        std::process::id() % 1_000_000,
        1
    )
}

/// `program` run as `user`: a real process of that user (uid, gid and its
/// groups, through setpriv), so the kernel and lancod see that identity.
pub fn as_user(user: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={user}"),
        &format!("--regid={user}"),
        "--init-groups",
        "--",
    ])
    .arg(program);
    c
}

/// The gid of a test group.
pub fn gid(group: &str) -> u32 {
    nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no group {group}"))
        .gid
        .as_raw()
}

/// Runs `sh -c script` as `user`, for attacks done by hand: planting
/// links, writing files.
pub fn sh_as(user: &str, script: &str) -> Out {
    Out(as_user(user, "sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv sh"))
}

/// Writes a small shell script into the installation and returns its path.
pub fn script(inst: &Install, name: &str, body: &str) -> String {
    let p = inst.dir.join(name);
    let mut f = fs::File::create(&p).expect("script");
    writeln!(f, "#!/bin/sh\n{body}").expect("write script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    p.display().to_string()
}

/// Sends raw bytes to a unix socket as `user` (a Perl one-liner run through
/// setpriv: the connecting process really is that user, so lancod sees that
/// identity through SO_PEERCRED) and returns everything it answers.
pub fn raw_request_as(user: &str, socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let perl = r#"use Socket; socket(S, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
        connect(S, pack_sockaddr_un($ARGV[0])) or die "connect: $!";
        syswrite(S, pack("H*", $ARGV[1])); my $b = "";
        while (sysread(S, my $c, 4096)) { $b .= $c } print unpack("H*", $b);"#;
    let o = as_user(user, "perl")
        .args(["-e", perl])
        .arg(socket)
        .arg(hex)
        .output()
        .expect("perl");
    assert!(
        o.status.success(),
        "perl probe: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Builds the binary `bin` of the workspace package `package` and installs
/// it into `{inst.dir}/{package}/` (once per installation), a directory with
/// no lanco-monitor in it, as a daemon's own directory; returns its path
/// there.
///
/// The package is built alone (`cargo build -p PACKAGE --bin BIN`), so its
/// dependencies get the features it asks for and no others — a crate that
/// depends on lanco-client with `default-features = false` gets the library
/// without the CLI — once per test process, into the target directory these
/// tests were built in, as [`build_binaries`] does. With `LANCO_E2E_BIN`
/// nothing is built: the binary is taken from there.
pub fn install_workspace_bin(inst: &Install, package: &str, bin: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let dir = target_dir();
    if std::env::var_os("LANCO_E2E_BIN").is_none() {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{package}/{bin}");
        if !built.contains(&key) {
            cargo_build(&["-p", package, "--bin", bin]);
            built.push(key);
        }
    }
    let to_dir = inst.dir.join(package);
    fs::create_dir_all(&to_dir).expect("install dir");
    let (from, to) = (dir.join(bin), to_dir.join(bin));
    if !to.exists() {
        install_file(&from, &to);
    }
    to
}
