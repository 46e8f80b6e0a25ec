//! After a busy scenario — two members running, restarting, rotating and
//! orphaning tasks, stopping each other's — every cgroup, directory and file
//! a namespace holds has the owner, group and mode of the layout table
//! (docs/DESIGN.md, "Layout", "Every cgroup, directory and file"): each file belongs to the member whose process
//! wrote it, nothing below a member's directory is root's, and nothing is
//! writable by the group or others but the sticky directories, the control
//! sockets and a task cgroup's cgroup.kill and cgroup.freeze.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lanco_e2e::{can_run, uid, unique_sleep, wait_for, Install, ALICE, BOB, OPS};
use nix::sys::signal::Signal;

const NS: &str = "shared";
const LOG_KEEP: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Socket,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Exactly these bits (of 0o7777).
    Is(u32),
    /// Whatever the kernel gave, but not writable by group or others
    /// (cgroupfs interface files: their read bits vary by file).
    NoGroupOrOtherWrite,
    /// Writable by the owner and the group, not by others.
    OwnerAndGroupWrite,
}

/// What one entry must be.
#[derive(Debug, Clone, Copy)]
struct Want {
    uid: u32,
    /// `None`: any group (root's own files, whose group grants nothing).
    gid: Option<u32>,
    mode: Mode,
    kind: Kind,
}

fn want(uid: u32, gid: Option<u32>, mode: Mode, kind: Kind) -> Want {
    Want {
        uid,
        gid,
        mode,
        kind,
    }
}

/// Everything walked, and what was wrong.
#[derive(Default)]
struct Walk {
    seen: Vec<String>,
    bad: Vec<String>,
}

impl Walk {
    fn fail(&mut self, p: &Path, what: String) {
        self.bad.push(format!("{}: {what}", p.display()));
    }

    /// Checks `p` against `w`; returns false if it is missing.
    fn check(&mut self, p: &Path, w: Want) -> bool {
        let m = match fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) => {
                self.fail(p, format!("cannot stat: {e}"));
                return false;
            }
        };
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Some(Kind::Dir)
        } else if ft.is_file() {
            Some(Kind::File)
        } else if ft.is_socket() {
            Some(Kind::Socket)
        } else {
            None
        };
        let mode = m.mode() & 0o7777;
        let found = format!(
            "{}:{} {:04o} {} nlink {}",
            m.uid(),
            m.gid(),
            mode,
            kind.map_or("other".to_owned(), |k| format!("{k:?}")),
            m.nlink()
        );
        self.seen.push(format!("{} {found}", p.display()));
        let mut errs = Vec::new();
        if kind != Some(w.kind) {
            errs.push(format!("kind: expected {:?}", w.kind));
        }
        if m.uid() != w.uid {
            errs.push(format!("owner: expected {}", w.uid));
        }
        if let Some(g) = w.gid {
            if m.gid() != g {
                errs.push(format!("group: expected {g}"));
            }
        }
        let mode_ok = match w.mode {
            Mode::Is(x) => mode == x,
            Mode::NoGroupOrOtherWrite => mode & 0o022 == 0,
            Mode::OwnerAndGroupWrite => mode & 0o222 == 0o220,
        };
        if !mode_ok {
            errs.push(match w.mode {
                Mode::Is(x) => format!("mode: expected {x:04o}"),
                Mode::NoGroupOrOtherWrite => "mode: expected no group or other write".into(),
                Mode::OwnerAndGroupWrite => "mode: expected owner and group write only".into(),
            });
        }
        if w.kind == Kind::File && !p.starts_with("/sys") && m.nlink() != 1 {
            errs.push("a file with more than one link".into());
        }
        if !errs.is_empty() {
            self.fail(p, format!("{} (found {found})", errs.join(", ")));
        }
        true
    }

    fn entries(&mut self, dir: &Path) -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(rd) => {
                let mut v: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            }
            Err(e) => {
                self.fail(dir, format!("cannot list: {e}"));
                Vec::new()
            }
        }
    }

    fn unexpected(&mut self, p: &Path) {
        let m = fs::symlink_metadata(p)
            .map(|m| format!("{}:{} {:04o}", m.uid(), m.gid(), m.mode() & 0o7777))
            .unwrap_or_default();
        self.seen.push(format!("{} {m} UNEXPECTED", p.display()));
        self.fail(p, format!("unexpected entry ({m})"));
    }
}

/// Who is who in the scenario, and which member owns each task name.
struct Who {
    alice: u32,
    bob: u32,
    ops: u32,
    /// task name -> the member who first ran it (and so owns it).
    names: HashMap<&'static str, u32>,
    /// Names whose log is elsewhere (`run -l`).
    custom_log: BTreeSet<&'static str>,
}

impl Who {
    fn members(&self) -> [u32; 2] {
        [self.alice, self.bob]
    }

    fn primary_gid(&self, uid: u32) -> u32 {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no user {uid}"))
            .gid
            .as_raw()
    }
}

/// The task name in `entry` = `task-NAME{suffix}`, if it is one of the
/// scenario's names.
fn task_of<'a>(who: &'a Who, entry: &str, suffix: &str) -> Option<(&'a str, u32)> {
    let name = entry.strip_prefix("task-")?.strip_suffix(suffix)?;
    who.names.get_key_value(name).map(|(k, v)| (*k, *v))
}

const DELEGATED: [&str; 3] = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

/// `<root>/`, `<root>/ns-NS/` and everything below it.
fn walk_cgroups(w: &mut Walk, inst: &Install, who: &Who) {
    let root = &inst.cgroup_root;
    w.check(root, want(0, Some(0), Mode::Is(0o711), Kind::Dir));
    let ns = inst.ns_cgroup(NS).path().to_owned();
    // The namespace's own cgroup: root:group 0750, nothing in it writable by
    // anyone but root (its cgroup.procs too: only root moves processes
    // between members' subtrees).
    w.check(&ns, want(0, Some(who.ops), Mode::Is(0o750), Kind::Dir));
    for e in w.entries(&ns) {
        let p = ns.join(&e);
        if p.is_dir() {
            let uid = e
                .strip_prefix("user-")
                .and_then(|u| u.parse::<u32>().ok())
                .filter(|u| who.members().contains(u));
            match uid {
                Some(uid) => walk_user_cgroup(w, &p, uid, who),
                None => w.unexpected(&p),
            }
        } else if DELEGATED.contains(&e.as_str()) {
            w.check(&p, want(0, Some(who.ops), Mode::Is(0o644), Kind::File));
        } else {
            w.check(&p, want(0, None, Mode::NoGroupOrOtherWrite, Kind::File));
        }
    }
    for m in who.members() {
        if !ns.join(format!("user-{m}")).is_dir() {
            w.fail(&ns.join(format!("user-{m}")), "missing".into());
        }
    }
}

/// `user-UID/`: UID:group 2750; UID owns the three delegation files, root
/// every other interface file (cgroup.max.descendants among them, root:root
/// 0644: the member may not lift its bound).
fn walk_user_cgroup(w: &mut Walk, dir: &Path, uid: u32, who: &Who) {
    w.check(dir, want(uid, Some(who.ops), Mode::Is(0o2750), Kind::Dir));
    for e in w.entries(dir) {
        let p = dir.join(&e);
        if p.is_dir() {
            if e == "monitors" {
                walk_monitor_cgroup(w, &p, uid, who);
            } else if let Some((_, owner)) = task_of(who, &e, "") {
                if owner == uid {
                    walk_task_cgroup(w, &p, uid, who);
                } else {
                    w.fail(
                        &p,
                        format!("a task cgroup of {owner}'s name in {uid}'s subtree"),
                    );
                    walk_task_cgroup(w, &p, uid, who);
                }
            } else {
                w.unexpected(&p);
            }
        } else if DELEGATED.contains(&e.as_str()) {
            w.check(&p, want(uid, Some(who.ops), Mode::Is(0o644), Kind::File));
        } else if e == "cgroup.max.descendants" {
            w.check(&p, want(0, Some(0), Mode::Is(0o644), Kind::File));
        } else {
            w.check(&p, want(0, None, Mode::NoGroupOrOtherWrite, Kind::File));
        }
    }
    if !dir.join("monitors").is_dir() {
        w.fail(&dir.join("monitors"), "missing".into());
    }
}

/// `user-UID/monitors/`: made by lancod; UID owns its cgroup.procs only,
/// the rest is root's (in the group G, from the setgid parent).
fn walk_monitor_cgroup(w: &mut Walk, dir: &Path, uid: u32, who: &Who) {
    w.check(dir, want(uid, Some(who.ops), Mode::Is(0o2750), Kind::Dir));
    for e in w.entries(dir) {
        let p = dir.join(&e);
        if p.is_dir() {
            w.unexpected(&p);
        } else if e == "cgroup.procs" {
            w.check(&p, want(uid, Some(who.ops), Mode::Is(0o644), Kind::File));
        } else {
            w.check(
                &p,
                want(0, Some(who.ops), Mode::NoGroupOrOtherWrite, Kind::File),
            );
        }
    }
}

/// `user-UID/task-NAME/`: made by UID's monitor, so all of it is UID's;
/// cgroup.kill (0220) and cgroup.freeze (0664) are the only group-writable
/// files. (The scenario's tasks make no cgroups of their own, so a
/// directory inside is reported.)
fn walk_task_cgroup(w: &mut Walk, dir: &Path, uid: u32, who: &Who) {
    w.check(dir, want(uid, Some(who.ops), Mode::Is(0o2750), Kind::Dir));
    for e in w.entries(dir) {
        let p = dir.join(&e);
        if p.is_dir() {
            w.unexpected(&p);
        } else if e == "cgroup.kill" || e == "cgroup.freeze" {
            w.check(
                &p,
                want(uid, Some(who.ops), Mode::OwnerAndGroupWrite, Kind::File),
            );
        } else {
            w.check(
                &p,
                want(uid, Some(who.ops), Mode::NoGroupOrOtherWrite, Kind::File),
            );
        }
    }
}

/// `state_dir/`, the registry, `state_dir/ns/` and the namespace's state.
fn walk_state(w: &mut Walk, inst: &Install, who: &Who) {
    let l = inst.layout();
    w.check(&l.state_dir, want(0, Some(0), Mode::Is(0o755), Kind::Dir));
    let reg = l.registry_dir();
    w.check(&reg, want(0, Some(0), Mode::Is(0o700), Kind::Dir));
    for e in w.entries(&reg) {
        let p = reg.join(&e);
        if e == format!("{NS}.toml") {
            w.check(&p, want(0, Some(0), Mode::Is(0o600), Kind::File));
        } else {
            w.unexpected(&p);
        }
    }
    // Root's billing journal (no admin group here: root's alone).
    let billing = l.billing_dir();
    w.check(&billing, want(0, Some(0), Mode::Is(0o700), Kind::Dir));
    for e in w.entries(&billing) {
        let p = billing.join(&e);
        if e == "usage.jsonl" {
            w.check(&p, want(0, Some(0), Mode::Is(0o640), Kind::File));
        } else {
            w.unexpected(&p);
        }
    }
    let all = l.ns_state_root();
    w.check(&all, want(0, Some(0), Mode::Is(0o711), Kind::Dir));
    for e in w.entries(&all) {
        if e != NS {
            w.unexpected(&all.join(&e));
        }
    }
    let nsd = l.ns_state_dir(&lanco_e2e::nsname(NS));
    w.check(&nsd, want(0, Some(who.ops), Mode::Is(0o750), Kind::Dir));
    for e in w.entries(&nsd) {
        let p = nsd.join(&e);
        if e == "names" {
            walk_names(w, &p, who);
            continue;
        }
        let uid = e
            .strip_prefix("user-")
            .and_then(|u| u.parse::<u32>().ok())
            .filter(|u| who.members().contains(u));
        match uid {
            Some(uid) => walk_user_state(w, &p, uid, who),
            None => w.unexpected(&p),
        }
    }
}

/// `names/`: sticky and group-writable; one lock per name ever run, owned
/// by the member who first ran it, in its creator's group (no setgid here:
/// the member's primary group, as the tests run `lanco` with it).
fn walk_names(w: &mut Walk, dir: &Path, who: &Who) {
    w.check(dir, want(0, Some(who.ops), Mode::Is(0o1770), Kind::Dir));
    let mut locks = BTreeSet::new();
    for e in w.entries(dir) {
        let p = dir.join(&e);
        match task_of(who, &e, ".lock") {
            Some((name, owner)) => {
                locks.insert(name);
                let gid = who.primary_gid(owner);
                w.check(&p, want(owner, Some(gid), Mode::Is(0o640), Kind::File));
            }
            None => w.unexpected(&p),
        }
    }
    for name in who.names.keys() {
        if !locks.contains(name) {
            w.fail(&dir.join(format!("task-{name}.lock")), "missing".into());
        }
    }
}

/// `user-UID/`: UID's alone. Every file in it is UID's (a task's files are
/// written by its owner's monitor or its owner's client), in the
/// namespace's group (setgid), 0640; control sockets 0660; the spawner's
/// lock and socket and the journal's lock 0600, a standby's socket 0660.
/// Root owns nothing here.
fn walk_user_state(w: &mut Walk, dir: &Path, uid: u32, who: &Who) {
    w.check(dir, want(uid, Some(who.ops), Mode::Is(0o2750), Kind::Dir));
    for e in w.entries(dir) {
        let p = dir.join(&e);
        let part = e
            .strip_prefix("accounting.jsonl.")
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if e == "accounting.jsonl" || part {
            w.check(&p, want(uid, Some(who.ops), Mode::Is(0o640), Kind::File));
            continue;
        }
        // The member's warm spawner (its lock and socket) and its journal's
        // lock: its own only.
        if e == "spawner.lock" || e == "spawner.sock" || e == "accounting.lock" {
            let kind = if e != "spawner.sock" {
                Kind::File
            } else {
                Kind::Socket
            };
            w.check(&p, want(uid, Some(who.ops), Mode::Is(0o600), kind));
            continue;
        }
        // A standby's socket, bound for the next start under a temporary
        // name (renamed task-NAME.sock then).
        if e.starts_with(".standby.") {
            w.check(&p, want(uid, Some(who.ops), Mode::Is(0o660), Kind::Socket));
            continue;
        }
        let file = [".state.json", ".exit.json"]
            .into_iter()
            .find_map(|s| task_of(who, &e, s));
        let sock = task_of(who, &e, ".sock");
        match (file, sock) {
            (Some((name, owner)), _) | (_, Some((name, owner))) if owner != uid => {
                w.check(&p, want(uid, Some(who.ops), Mode::Is(0o640), Kind::File));
                w.fail(
                    &p,
                    format!("a file of {name} (a name of uid {owner}) in uid {uid}'s directory"),
                );
            }
            (Some(_), _) => {
                w.check(&p, want(uid, Some(who.ops), Mode::Is(0o640), Kind::File));
            }
            (_, Some(_)) => {
                w.check(&p, want(uid, Some(who.ops), Mode::Is(0o660), Kind::Socket));
            }
            _ => w.unexpected(&p),
        }
    }
}

/// `log_dir/lanco-NS/`: sticky and group-writable, and setgid (3770) so
/// that every log is in the group G and every member can read it. Logs are
/// their name's owner's, 0640, at most `log_keep` old ones.
fn walk_logs(w: &mut Walk, inst: &Install, who: &Who) {
    let dir = inst.layout().ns_log_dir(&lanco_e2e::nsname(NS));
    w.check(&dir, want(0, Some(who.ops), Mode::Is(0o3770), Kind::Dir));
    for e in w.entries(&dir) {
        let p = dir.join(&e);
        let (base, n) = match e.rsplit_once(".log.") {
            Some((b, n)) => (format!("{b}.log"), n.parse::<u32>().ok()),
            None => (e.clone(), Some(0)),
        };
        match (task_of(who, &base, ".log"), n) {
            (Some((name, owner)), Some(n)) if n <= LOG_KEEP && !who.custom_log.contains(name) => {
                w.check(&p, want(owner, Some(who.ops), Mode::Is(0o640), Kind::File));
            }
            _ => w.unexpected(&p),
        }
    }
}

/// Walks everything; panics listing every problem and everything walked.
fn walk_all(inst: &Install, who: &Who, when: &str) {
    let mut w = Walk::default();
    walk_cgroups(&mut w, inst, who);
    walk_state(&mut w, inst, who);
    walk_logs(&mut w, inst, who);
    assert!(
        w.seen.len() > 40,
        "{when}: walked too little:\n{}",
        w.seen.join("\n")
    );
    assert!(
        w.bad.is_empty(),
        "{when}: {} entries disagree with the layout table:\n  {}\n\nwalked (path uid:gid mode kind):\n  {}",
        w.bad.len(),
        w.bad.join("\n  "),
        w.seen.join("\n  ")
    );
    eprintln!("{when}: {} entries match the table", w.seen.len());
    if std::env::var_os("LANCO_E2E_SHOW_WALK").is_some() {
        eprintln!("  {}", w.seen.join("\n  "));
    }
}

#[test]
fn a_busy_namespace_matches_the_ownership_table() {
    if !can_run("ownership") {
        return;
    }
    let inst = Install::new(
        "ownership",
        &format!("log_max_bytes = 4096\nlog_keep = {LOG_KEEP}\n"),
    );
    inst.init(NS, ALICE, OPS);
    let who = Who {
        alice: uid(ALICE),
        bob: uid(BOB),
        ops: lanco_e2e::gid(OPS),
        names: [
            ("a-sleep", uid(ALICE)),
            ("a-again", uid(ALICE)),
            ("a-chatty", uid(ALICE)),
            ("a-custom", uid(ALICE)),
            ("b-sleep", uid(BOB)),
            ("b-again", uid(BOB)),
            ("b-orphan", uid(BOB)),
            ("b-done", uid(BOB)),
        ]
        .into_iter()
        .collect(),
        custom_log: ["a-custom"].into_iter().collect(),
    };
    let (a, b) = (Some(ALICE), Some(BOB));
    let s = unique_sleep();
    let run = |user, task: &str, cmd: &str| {
        inst.lanco(user, &[NS, "run", task, "sh", "-c", cmd]).ok();
    };

    // A chatty task, rotated by its monitor while it runs (every 10 s).
    let line = "0123456789".repeat(8);
    run(
        a,
        "a-chatty",
        &format!("while :; do echo {line}; sleep 0.01; done"),
    );
    run(a, "a-sleep", &format!("echo a; exec sleep {s}"));
    run(b, "b-sleep", &format!("echo b; exec sleep {s}"));
    // Restarts by the name's owner; the second one stopped by the other
    // member in between.
    run(a, "a-again", &format!("echo first; exec sleep {s}"));
    inst.lanco(a, &[NS, "stop", "a-again"]).ok();
    run(a, "a-again", &format!("echo second; exec sleep {s}"));
    run(b, "b-again", &format!("echo first; exec sleep {s}"));
    inst.lanco(a, &[NS, "stop", "b-again"]).ok();
    run(b, "b-again", &format!("echo second; exec sleep {s}"));
    // A task whose monitor is killed: it runs on, its files stay.
    run(b, "b-orphan", &format!("echo orphan; exec sleep {s}"));
    inst.signal_monitor(NS, "b-orphan", Signal::SIGKILL);
    // A task that ran to its end.
    inst.lanco(b, &[NS, "run", "-f", "b-done", "sh", "-c", "echo done"])
        .ok();
    // A log elsewhere (-l), in a directory of alice's.
    let elsewhere = inst.dir.join("alice-logs");
    fs::create_dir(&elsewhere).unwrap();
    nix::unistd::chown(
        &elsewhere,
        Some(nix::unistd::Uid::from_raw(who.alice)),
        None,
    )
    .unwrap();
    let custom = elsewhere.join("custom.log");
    inst.lanco(
        a,
        &[
            NS,
            "run",
            "-l",
            custom.to_str().unwrap(),
            "a-custom",
            "sh",
            "-c",
            &format!("echo custom; exec sleep {s}"),
        ],
    )
    .ok();
    // bob may not run alice's name, and his refused try leaves nothing.
    inst.lanco(b, &[NS, "run", "a-sleep", "true"])
        .fails(3, &format!("task a-sleep belongs to {ALICE}"));

    let rotated = PathBuf::from(format!("{}.1", inst.log_path(NS, "a-chatty").display()));
    assert!(
        wait_for(Duration::from_secs(30), || rotated.exists()),
        "a-chatty's log was not rotated"
    );
    // Members read each other's logs (the logs' group is the namespace's).
    // (a-chatty's may just have been truncated by a rotation.)
    inst.lanco(b, &[NS, "logs", "a-chatty"]).ok();
    assert_eq!(inst.lanco(b, &[NS, "logs", "a-sleep"]).ok().stdout(), "a\n");
    assert!(inst.lanco(a, &[NS, "logs", "b-orphan"]).ok().stdout() == "orphan\n");
    assert_eq!(
        inst.lanco(a, &[NS, "logs", "a-custom"]).ok().stdout(),
        "custom\n"
    );
    // No rotation under way while walking.
    inst.lanco(b, &[NS, "stop", "a-chatty"]).ok();
    // Root reads everything and writes nothing.
    inst.lanco(None, &[NS, "ls"]).ok();
    for t in who.names.keys() {
        inst.lanco(None, &[NS, "status", t]);
        inst.lanco(None, &[NS, "check", t]);
    }

    walk_all(&inst, &who, "with tasks running");

    // Everything stopped, each by the other member; the orphan's run is
    // recorded by its owner's next look.
    for (user, t) in [
        (b, "a-sleep"),
        (b, "a-again"),
        (b, "a-custom"),
        (a, "b-sleep"),
        (a, "b-again"),
        (a, "b-orphan"),
    ] {
        inst.lanco(user, &[NS, "stop", t]).ok();
    }
    assert_eq!(
        inst.status_as(b, NS, "b-orphan")["last"]["exit"]["kind"],
        "lost"
    );
    // Nothing runs but the members' warm spawners and their standbys.
    let left = inst.ns_cgroup(NS).procs_recursive().unwrap();
    let mut warm = inst.spawners(NS);
    warm.extend(inst.standbys(NS));
    assert!(left.iter().all(|p| warm.contains(p)), "{left:?} {warm:?}");
    let m = fs::symlink_metadata(&custom).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (who.alice, 0o640),
        "{}",
        custom.display()
    );

    walk_all(&inst, &who, "after every task stopped");
}
