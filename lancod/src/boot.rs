//! Enabled definitions at boot: the one place where a root process starts
//! tasks. Root decides only *whom* to run `lanco NS start --enabled` as,
//! from the kernel (owners and modes, never following a link) and the user
//! database, and never reads what a member wrote: the member's own `lanco`
//! reads the member's `defs.toml`, as the member.
//!
//! A member is run only if its state directory and its `defs.toml` are its
//! own and writable by no one else (so no other member chose what runs as
//! it), and it is still a member of the namespace (its owner, or in its
//! group by the user database). Each skip is one log line saying why. The
//! child gets the member's uid, primary and supplementary groups, a clean
//! environment, `/dev/null` as stdin, a pipe as stdout and stderr (each
//! line logged here, prefixed with the namespace and uid), its own session,
//! default signal handling and no other fd (`sys::become_user`). Every
//! member of every namespace is started at once; all are waited for at
//! most `DEADLINE`, then killed.

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lanco_proto::files::{self, Dir};
use lanco_proto::layout::{self, Layout};
use lanco_proto::{Config, NamespaceName};
use nix::unistd::{Gid, Uid, User};

use crate::namespace::Record;
use crate::sys::{self, Identity};

/// How long all members' `lanco start --enabled` may take together.
pub const DEADLINE: Duration = Duration::from_secs(300);
/// What is logged of one child's output: lines cut at `MAX_LINE` bytes,
/// at most `MAX_OUTPUT` bytes in all (the rest is read and dropped).
const MAX_LINE: usize = 1024;
const MAX_OUTPUT: usize = 64 * 1024;
/// The environment's PATH.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const DEFAULT_LANCO: &str = "/usr/bin/lanco";

/// A member to start the enabled definitions of.
#[derive(Debug)]
pub struct Member {
    pub ns: NamespaceName,
    pub uid: u32,
    user: User,
    groups: Vec<Gid>,
}

/// Why a member's definitions are not started (logged as one line).
#[derive(Debug, PartialEq, Eq)]
pub struct Skip(pub String);

/// The members of namespace `ns` (registered as `rec`) whose enabled
/// definitions may be started, each one with `defs.toml`; every member
/// refused is logged, with the reason, as one line.
pub fn members(layout: &Layout, ns: &NamespaceName, rec: &Record) -> Vec<Member> {
    let dir = match Dir::open(&layout.ns_state_dir(ns)) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("lanco-{ns}: {e}; enabled tasks not started");
            return Vec::new();
        }
    };
    let entries = match dir.list() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("lanco-{ns}: {e}; enabled tasks not started");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for uid in entries.iter().filter_map(|e| layout::uid_of_user_entry(e)) {
        match check(&dir, ns, rec, uid) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            Err(Skip(why)) => {
                tracing::warn!("lanco-{ns} user {uid}: {why}; enabled tasks not started")
            }
        }
    }
    out
}

fn writable_by_others(mode: u32) -> Option<&'static str> {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (_, true) => Some("world-writable"),
        (true, false) => Some("group-writable"),
        _ => None,
    }
}

/// Member `uid` of `ns`, if its `defs.toml` (in `ns_dir`, the namespace's
/// state directory) may be started as it; `None` if it has none.
pub fn check(
    ns_dir: &Dir,
    ns: &NamespaceName,
    rec: &Record,
    uid: u32,
) -> Result<Option<Member>, Skip> {
    if uid == 0 {
        return Err(Skip("root runs no tasks in a namespace".into()));
    }
    let entry = layout::user_entry(uid);
    // Beneath the root-owned namespace directory, no symlink followed.
    let dir = ns_dir
        .sub(&entry)
        .map_err(|e| Skip(format!("cannot open its state directory: {e}")))?;
    let meta = dir
        .meta()
        .map_err(|e| Skip(format!("cannot open its state directory: {e}")))?;
    if meta.uid != uid {
        return Err(Skip(format!(
            "its state directory {} belongs to {}",
            dir.path().display(),
            files::user_name(meta.uid)
        )));
    }
    if let Some(how) = writable_by_others(meta.mode) {
        return Err(Skip(format!(
            "its state directory {} is {how}",
            dir.path().display()
        )));
    }
    // Not followed, not opened: its owner, kind, links and mode only.
    let defs = layout::DEFINITIONS;
    let Some(file) = dir
        .entry(defs)
        .map_err(|e| Skip(format!("cannot look at {defs}: {e}")))?
    else {
        return Ok(None);
    };
    if !file.is_file() {
        return Err(Skip(format!("{defs} is {}, not a file", file.kind)));
    }
    if file.uid != uid {
        return Err(Skip(format!(
            "{defs} belongs to {}",
            files::user_name(file.uid)
        )));
    }
    if let Some(how) = writable_by_others(file.mode) {
        return Err(Skip(format!("{defs} is {how}")));
    }
    let user = match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u,
        Ok(None) => return Err(Skip("no such user any more".into())),
        Err(e) => return Err(Skip(format!("cannot look the user up: {e}"))),
    };
    let name = CString::new(user.name.as_bytes())
        .map_err(|_| Skip("the user's name holds a NUL byte".into()))?;
    let groups = nix::unistd::getgrouplist(&name, user.gid)
        .map_err(|e| Skip(format!("cannot list {}'s groups: {e}", user.name)))?;
    if !is_member(uid, &groups, rec) {
        return Err(Skip(format!(
            "{} is no longer a member of namespace {ns} (neither its owner {} nor in its group {})",
            user.name, rec.owner, rec.group
        )));
    }
    Ok(Some(Member {
        ns: ns.clone(),
        uid,
        user,
        groups,
    }))
}

/// The rule of `auth::authorize` for admission, on the user database's
/// groups instead of a peer's: the owner, or in the namespace's group.
fn is_member(uid: u32, groups: &[Gid], rec: &Record) -> bool {
    uid == rec.uid || groups.contains(&Gid::from_raw(rec.gid))
}

/// The command run as `m`: `LANCO NS start --enabled` with only HOME, USER,
/// LOGNAME, SHELL, PATH (and LANCO_CONFIG, if lancod was given one).
fn command(m: &Member, lanco: &Path, config: Option<&OsString>) -> Command {
    let mut cmd = Command::new(lanco);
    cmd.arg(m.ns.as_str())
        .args(["start", "--enabled"])
        .env_clear()
        .env("HOME", &m.user.dir)
        .env("USER", &m.user.name)
        .env("LOGNAME", &m.user.name)
        .env("SHELL", &m.user.shell)
        .env("PATH", PATH)
        .stdin(Stdio::null());
    if let Some(c) = config {
        cmd.env(lanco_proto::config::ENV_VAR, c);
    }
    let cwd = CString::new(m.user.dir.as_os_str().as_bytes()).unwrap_or_else(|_| c"/".into());
    sys::become_user(
        &mut cmd,
        Identity {
            uid: m.uid,
            gid: m.user.gid.as_raw(),
            groups: m.groups.iter().map(|g| g.as_raw()).collect(),
            cwd,
        },
    );
    cmd
}

/// The `lanco` binary the configuration names.
pub fn lanco_path(cfg: &Config) -> Result<PathBuf, String> {
    if cfg.lanco.as_os_str().is_empty() {
        Ok(DEFAULT_LANCO.into())
    } else if cfg.lanco.is_absolute() {
        Ok(cfg.lanco.clone())
    } else {
        Err(format!(
            "lanco = {:?} in the configuration is not an absolute path",
            cfg.lanco
        ))
    }
}

struct Running {
    label: String,
    child: Arc<Mutex<Child>>,
}

/// Starts every member's enabled definitions at once, waits for them all
/// (at most `deadline`, then kills what is left) and logs each outcome;
/// returns how many failed.
pub fn start(members: Vec<Member>, lanco: &Path, deadline: Duration) -> usize {
    let config = std::env::var_os(lanco_proto::config::ENV_VAR).filter(|c| !c.is_empty());
    let t0 = Instant::now();
    let mut failed = 0;
    // Every fork before any thread.
    let mut spawned = Vec::new();
    for m in &members {
        let label = format!("lanco-{} user {}", m.ns, m.uid);
        match spawn(command(m, lanco, config.as_ref())) {
            Ok((child, out)) => spawned.push((
                Running {
                    label,
                    child: Arc::new(Mutex::new(child)),
                },
                out,
            )),
            Err(e) => {
                failed += 1;
                tracing::error!(
                    "{label}: cannot run {} as {}: {e}; enabled tasks not started",
                    lanco.display(),
                    m.user.name
                );
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    let mut running = Vec::new();
    for (i, (r, out)) in spawned.into_iter().enumerate() {
        let (tx, label, child) = (tx.clone(), r.label.clone(), r.child.clone());
        std::thread::spawn(move || {
            let _ = tx.send((i, relay(&label, out, &child)));
        });
        running.push(Some(r));
    }
    drop(tx);
    let mut left = running.len();
    while left > 0 {
        let Some(wait) = deadline.checked_sub(t0.elapsed()) else {
            break;
        };
        match rx.recv_timeout(wait) {
            Ok((i, status)) => {
                left -= 1;
                let Some(r) = running.get_mut(i).and_then(Option::take) else {
                    continue;
                };
                match status {
                    Ok(s) if s.success() => {
                        tracing::info!("{}: enabled tasks started", r.label)
                    }
                    Ok(s) => {
                        failed += 1;
                        tracing::error!("{}: starting its enabled tasks failed ({s})", r.label)
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::error!("{}: cannot wait for `lanco start`: {e}", r.label)
                    }
                }
            }
            Err(_) => break,
        }
    }
    for r in running.into_iter().flatten() {
        failed += 1;
        let mut child = r.child.lock().unwrap_or_else(|e| e.into_inner());
        // Not reaped yet (checked under the lock): the pid is still its.
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
        tracing::error!(
            "{}: starting its enabled tasks took longer than {} s; stopped waiting (tasks already started go on)",
            r.label,
            deadline.as_secs()
        );
    }
    failed
}

/// Spawns `cmd` with stdout and stderr on one pipe; the child and the
/// pipe's read end.
fn spawn(mut cmd: Command) -> std::io::Result<(Child, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    cmd.stdout(Stdio::from(write.try_clone()?))
        .stderr(Stdio::from(write));
    let child = cmd.spawn()?;
    // `cmd` (holding the write end) is dropped here: EOF once the child
    // and whatever inherited its stdout are gone.
    Ok((child, read))
}

/// Logs `child`'s output line by line (bounded, control characters
/// replaced) until it has exited and its output is read; its status.
fn relay(
    label: &str,
    out: OwnedFd,
    child: &Mutex<Child>,
) -> std::io::Result<std::process::ExitStatus> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut pipe = std::fs::File::from(out);
    let mut line = Vec::new();
    let mut logged = 0usize;
    let mut buf = [0u8; 4096];
    let mut exited = None;
    loop {
        let ready = {
            let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(250u16)).unwrap_or(0) > 0
        };
        if ready {
            let n = match pipe.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    emit(label, &mut line, &mut logged);
                } else if line.len() < MAX_LINE {
                    line.push(b);
                }
            }
        } else if exited.is_none() {
            // Output of a descendant that kept the pipe is not waited for.
            exited = child.lock().unwrap_or_else(|e| e.into_inner()).try_wait()?;
            if exited.is_some() {
                break;
            }
        }
    }
    emit(label, &mut line, &mut logged);
    loop {
        if let Some(s) = exited {
            return Ok(s);
        }
        // Never blocked in wait() under the lock: the deadline takes it.
        std::thread::sleep(Duration::from_millis(50));
        exited = child.lock().unwrap_or_else(|e| e.into_inner()).try_wait()?;
    }
}

fn emit(label: &str, line: &mut Vec<u8>, logged: &mut usize) {
    if line.is_empty() {
        return;
    }
    if *logged < MAX_OUTPUT {
        *logged += line.len();
        let text: String = String::from_utf8_lossy(line)
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        tracing::info!("{label}: {text}");
    }
    line.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            owner: "alice".into(),
            uid: 1000,
            group: "ops".into(),
            gid: 2000,
            limits: Default::default(),
        }
    }

    #[test]
    fn members_are_the_owner_and_the_group() {
        let g = |v: &[u32]| v.iter().map(|g| Gid::from_raw(*g)).collect::<Vec<_>>();
        assert!(is_member(1000, &g(&[1000]), &rec()));
        assert!(is_member(1001, &g(&[1001, 2000]), &rec()));
        assert!(!is_member(1001, &g(&[1001, 2001]), &rec()));
        assert!(!is_member(0, &g(&[0]), &rec()));
    }

    #[test]
    fn writable_modes_are_named() {
        assert_eq!(writable_by_others(0o640), None);
        assert_eq!(writable_by_others(0o2750), None);
        assert_eq!(writable_by_others(0o660), Some("group-writable"));
        assert_eq!(writable_by_others(0o602), Some("world-writable"));
        assert_eq!(writable_by_others(0o1777), Some("world-writable"));
    }
}
