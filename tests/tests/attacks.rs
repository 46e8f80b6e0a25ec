//! The tenant-isolation attacks, each done the way a hostile member or a
//! stranger would do it on a real system (real users, real cgroups, real
//! files), asserting that it fails and that nothing outside the attacker's
//! reach changed. The attacks plant their traps at the paths of both layouts
//! (this one and lanco 0.1's group-writable one) where the directory lets
//! them, so the same test shows the attack working against 0.1 binaries
//! (`LANCO_E2E_BIN=<0.1 target>/debug`) and failing against these.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanco_e2e::{
    can_run, pids_with, sh_as, uid, unique_sleep, Install, Out, ADMIN, ADMINS, ALICE, BOB, EVE, OPS,
};
use nix::sys::signal::Signal;

fn install(test: &str, extra: &str) -> Option<Install> {
    can_run(test).then(|| Install::new(test, extra))
}

/// A private file of `user`'s, in a directory only that user can enter,
/// standing for `~/.bashrc`.
fn private_file(inst: &Install, user: &str, text: &str) -> PathBuf {
    let home = inst.dir.join(format!("home-{user}"));
    fs::create_dir_all(&home).unwrap();
    let f = home.join(".bashrc");
    fs::write(&f, text).unwrap();
    let (u, g) = (
        uid(user),
        nix::unistd::User::from_name(user).unwrap().unwrap().gid,
    );
    for p in [&home, &f] {
        nix::unistd::chown(p.as_path(), Some(u.into()), Some(g)).unwrap();
    }
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    f
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Runs `lanco` as `user` and fails the test if it takes more than 10 s
/// (a FIFO opened without O_NONBLOCK blocks forever).
fn lanco_within(inst: &Install, user: Option<&str>, args: &[&str]) -> Out {
    let mut child = inst
        .cmd(user, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("lanco {args:?} as {user:?} hung for 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Out(child.wait_with_output().unwrap())
}

/// Every directory a member's state files may be in, in either layout.
fn state_dirs(inst: &Install, ns: &str, user: &str) -> Vec<PathBuf> {
    vec![
        inst.user_state_dir(ns, user),
        inst.state_dir.join(format!("ns-{ns}")),
    ]
}

/// Finding 1: a member made another member's monitor "rotate" her running
/// task's log over a file of hers (symlinks and hard links named like rotated
/// logs, lines of shell appended to her log), and her next shell ran them.
#[test]
fn a_member_cannot_make_another_members_monitor_overwrite_her_files() {
    let Some(inst) = install("attack_rotation", "log_max_bytes = 4096\nlog_keep = 5\n") else {
        return;
    };
    inst.init("shared", ALICE, OPS);
    let bashrc = private_file(&inst, ALICE, "# alice's own\n");
    let chatty = "while :; do head -c 2000 /dev/zero | tr '\\0' x; echo; sleep 0.2; done";
    inst.lanco(Some(ALICE), &["shared", "run", "web", "sh", "-c", chatty])
        .ok();
    let started = Instant::now();
    let log = inst.log_path("shared", "web");
    let logs = log.parent().unwrap().display().to_string();
    let b = bashrc.display();
    // The attack, as bob: a symlink and hard links where the rotation
    // writes, a line of shell in her log, a symlinked lock for a name she
    // will run next.
    let planted = sh_as(
        BOB,
        &format!(
            "ln -s {b} {logs}/task-web.log.1; \
             for i in 2 3 4 5; do ln {b} {logs}/task-web.log.$i; done; \
             printf 'echo owned-by-bob\\n' >> {log}; \
             for d in {names} {legacy}; do ln -s {b} $d/task-api.lock; done; \
             ln -s {b} {logs}/task-api.log; true",
            log = log.display(),
            names = inst
                .layout()
                .ns_state_dir(&lanco_e2e::nsname("shared"))
                .join("names")
                .display(),
            legacy = inst.state_dir.join("ns-shared").display(),
        ),
    );
    assert!(
        !fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("owned-by-bob"),
        "bob wrote into alice's log: {planted}"
    );
    // The running log passes log_max_bytes: the monitor's check (10 s after
    // the start) meets bob's symlink and refuses, naming him — a note in
    // the run's record (and the journal), not a line in her log.
    std::thread::sleep(Duration::from_millis(11_500).saturating_sub(started.elapsed()));
    assert_eq!(fs::read_to_string(&bashrc).unwrap(), "# alice's own\n");
    inst.lanco(Some(ALICE), &["shared", "stop", "web"]).ok();
    let st = inst.status("shared", "web");
    assert!(
        st["last"]["notes"].as_array().is_some_and(|n| n
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains(BOB)))),
        "no refused rotation naming {BOB} in the record: {st}"
    );
    // A restart rotates too: refused, naming bob, and nothing started.
    let o = inst.lanco(Some(ALICE), &["shared", "run", "web", "true"]);
    assert_ne!(o.code(), 0, "{o}");
    assert!(o.stderr().contains(BOB), "the error names the planter: {o}");
    let o = inst.lanco(Some(ALICE), &["shared", "run", "api", "true"]);
    assert_ne!(o.code(), 0, "{o}");
    assert!(o.stderr().contains(BOB), "the error names the planter: {o}");
    // Her file is as it was.
    assert_eq!(fs::read_to_string(&bashrc).unwrap(), "# alice's own\n");
    assert_eq!(mode(&bashrc), 0o600);
    assert_eq!(fs::metadata(&bashrc).unwrap().nlink(), 1);
}

/// Finding 2: a member made root (or another member) write a file of the
/// member's choosing — a symlinked temporary exit record, a state file whose
/// "command" is shell, a symlinked accounting journal — through `status`
/// and `destroy --force`, run by root, on a task whose monitor she killed.
#[test]
fn a_member_cannot_make_root_or_another_member_write_a_file() {
    let Some(inst) = install("attack_root_write", "") else {
        return;
    };
    inst.init("shared", ALICE, OPS);
    let s = unique_sleep();
    inst.lanco(Some(BOB), &["shared", "run", "job", "sleep", &s])
        .ok();
    inst.signal_monitor("shared", "job", Signal::SIGKILL);
    let rootonly = inst.dir.join("rootonly");
    fs::create_dir(&rootonly).unwrap();
    fs::set_permissions(&rootonly, fs::Permissions::from_mode(0o700)).unwrap();
    let target = rootonly.join("pwned");
    for dir in state_dirs(&inst, "shared", BOB) {
        let d = dir.display();
        let t = target.display();
        // Quoted shell in the command; every name a writer might use, linked
        // to the target.
        sh_as(
            BOB,
            &format!(
                "cd {d} || exit 0; \
                 if [ -f task-job.state.json ]; then \
                   sed -i 's|\"sleep\"|\"$(id > {t})\"|' task-job.state.json; fi; \
                 for n in task-job.exit.tmp task-job.exit.json.tmp accounting.jsonl.tmp; do \
                   ln -sf {t} $n; done; \
                 rm -f accounting.jsonl; ln -s {t} accounting.jsonl; true"
            ),
        );
    }
    lanco_within(&inst, None, &["shared", "status", "job"]);
    lanco_within(&inst, Some(ALICE), &["shared", "status", "job"]);
    lanco_within(&inst, None, &["shared", "ls"]);
    lanco_within(&inst, None, &["shared", "destroy", "--force"]).ok();
    assert!(!target.exists(), "root wrote {}", target.display());
    assert_eq!(fs::read_dir(&rootonly).unwrap().count(), 0);
    assert!(pids_with(&s).is_empty(), "the task was stopped anyway");
}

/// Finding 4 (the monitor's side; the logrotate snippet is gone): a FIFO
/// named like a rotated log hangs nothing and is an error naming its owner.
#[test]
fn a_fifo_named_like_a_rotated_log_hangs_nothing() {
    let Some(inst) = install("attack_fifo_log", "") else {
        return;
    };
    inst.init("shared", ALICE, OPS);
    inst.lanco(
        Some(ALICE),
        &["shared", "run", "-f", "web", "sh", "-c", "echo one"],
    )
    .ok();
    let logs = inst.log_path("shared", "web").parent().unwrap().to_owned();
    sh_as(BOB, &format!("mkfifo {}/task-web.log.2", logs.display())).ok();
    let o = lanco_within(&inst, Some(ALICE), &["shared", "run", "web", "true"]);
    assert_ne!(o.code(), 0, "{o}");
    assert!(
        o.stderr().contains(BOB) && o.stderr().contains("FIFO"),
        "{o}"
    );
    for user in [Some(ALICE), Some(BOB), None] {
        lanco_within(&inst, user, &["shared", "logs", "web"]);
        lanco_within(&inst, user, &["shared", "status", "web"]);
    }
    // Her previous log is untouched by the refused run.
    assert_eq!(inst.read_log("shared", "web"), "one\n");
}

/// Finding 5: kept records of a destroyed namespace must stay root's,
/// whatever namespace names an administrator picks afterwards; init refuses
/// a directory it did not make instead of adopting it.
#[test]
fn kept_records_of_a_destroyed_namespace_stay_root_only() {
    let Some(inst) = install("attack_kept", &format!("admin_group = \"{ADMINS}\"\n")) else {
        return;
    };
    inst.init("x", ALICE, OPS);
    inst.lanco(
        Some(ALICE),
        &["x", "run", "-f", "secret", "sh", "-c", "echo s3cret"],
    )
    .ok();
    inst.lanco(None, &["x", "destroy"]).ok();
    // Every kept directory, whatever the layout calls it.
    let mut kept = Vec::new();
    for top in [&inst.state_dir, &inst.log_dir] {
        for e in fs::read_dir(top).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains("destroyed") {
                kept.push(e.path());
                if e.path().is_dir() {
                    kept.extend(fs::read_dir(e.path()).unwrap().flatten().map(|e| e.path()));
                }
            }
        }
    }
    assert!(!kept.is_empty(), "destroy keeps the records");
    // An admin-group member inits a namespace named after each of them, for
    // a tenant of theirs.
    for p in &kept {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        for cand in [
            name.clone(),
            name.trim_start_matches("ns-").to_owned(),
            name.trim_start_matches("lanco-").to_owned(),
        ] {
            inst.lanco(Some(ADMIN), &[&cand, "init", "-u", EVE, "-g", EVE]);
        }
    }
    let files: Vec<PathBuf> = kept
        .iter()
        .flat_map(|p| walk(p))
        .filter(|p| p.is_file())
        .collect();
    assert!(files.iter().any(|p| p.to_string_lossy().contains("secret")));
    for f in &files {
        sh_as(EVE, &format!("cat {}", f.display())).fails_quietly();
    }
    for d in kept.iter().flat_map(|p| walk(p)).filter(|p| p.is_dir()) {
        sh_as(EVE, &format!("touch {}/eve-was-here", d.display())).fails_quietly();
    }
    // A directory lanco did not make is refused, not adopted.
    let planted = inst.layout().ns_state_dir(&lanco_e2e::nsname("y"));
    fs::create_dir_all(&planted).unwrap();
    nix::unistd::chown(&planted, Some(uid(ALICE).into()), None).unwrap();
    let o = inst.lanco(None, &["y", "init", "-u", EVE, "-g", EVE]);
    o.fails(3, "belongs to lanco-t-alice");
    assert!(
        !inst.ns_cgroup("y").exists(),
        "a refused init makes nothing"
    );
    assert!(!inst.state_dir.join("namespaces/y.toml").exists());
    assert_eq!(fs::metadata(&planted).unwrap().uid(), uid(ALICE));
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_owned()];
    if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        for e in fs::read_dir(p).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

trait FailsQuietly {
    fn fails_quietly(&self);
}
impl FailsQuietly for Out {
    /// Asserts a non-zero exit and nothing on stdout.
    fn fails_quietly(&self) {
        assert_ne!(self.code(), 0, "expected a refusal: {self}");
        assert!(self.stdout().is_empty(), "{self}");
    }
}

/// Finding 7: a member moved another member's task's processes into a
/// cgroup of his own: `check` said not running, `ls` and `stop` missed them.
#[test]
fn a_member_cannot_hide_another_members_task() {
    let Some(inst) = install("attack_hide", "") else {
        return;
    };
    inst.init("shared", ALICE, OPS);
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["shared", "run", "victim", "sleep", &s])
        .ok();
    let s2 = unique_sleep();
    inst.lanco(Some(BOB), &["shared", "run", "mine", "sleep", &s2])
        .ok();
    let pid = pids_with(&s)[0];
    let nscg = inst.ns_cgroup("shared").path().to_owned();
    let bob_sub = nscg.join(format!("user-{}", uid(BOB)));
    let o = sh_as(
        BOB,
        &format!(
            "for d in {bob_sub}/hide {nscg}/hide; do mkdir $d 2>/dev/null; \
               echo {pid} > $d/cgroup.procs && echo MOVED $d; done; \
             for d in {bob_sub}/task-mine {bob_sub}/monitors {nscg}; do \
               echo {pid} > $d/cgroup.procs && echo MOVED $d; done; true",
            bob_sub = bob_sub.display(),
            nscg = nscg.display()
        ),
    );
    assert!(!o.stdout().contains("MOVED"), "{o}");
    assert!(inst
        .task_cgroup("shared", "victim")
        .procs()
        .unwrap()
        .contains(&pid));
    inst.lanco(Some(ALICE), &["shared", "check", "victim"]).ok();
    let ls = inst.lanco(Some(BOB), &["shared", "ls"]);
    assert!(ls.ok().stdout().contains(&pid.to_string()), "{ls}");
    inst.lanco(Some(BOB), &["shared", "stop", "victim"]).ok();
    assert!(pids_with(&s).is_empty());
    inst.lanco(Some(BOB), &["shared", "stop", "mine"]).ok();
}

/// Finding 8: strangers listed the cgroup root, state and log directories,
/// and told a foreign namespace from a missing one by the exit status.
#[test]
fn strangers_learn_no_names() {
    let Some(inst) = install("attack_names", "") else {
        return;
    };
    inst.init("alicens", ALICE, OPS);
    inst.lanco(Some(ALICE), &["alicens", "run", "-f", "t", "true"])
        .ok();
    let l = inst.layout();
    let ns = lanco_e2e::nsname("alicens");
    for dir in [
        l.cgroup_root.clone(),
        l.ns_state_root(),
        l.ns_state_dir(&ns),
        l.registry_dir(),
        l.ns_log_dir(&ns),
        inst.state_dir.join("ns-alicens"),
    ] {
        let o = sh_as(EVE, &format!("ls {}", dir.display()));
        assert!(
            !o.stdout().contains("alicens") && !o.stdout().contains("task-t"),
            "eve listed {}: {o}",
            dir.display()
        );
    }
    for args in [["check", "t"], ["status", "t"], ["ls", "-l"]] {
        let foreign = inst.lanco(Some(EVE), &[&["alicens"], &args[..]].concat());
        let missing = inst.lanco(Some(EVE), &[&["nosuchns"], &args[..]].concat());
        assert_eq!(foreign.code(), missing.code(), "{foreign} vs {missing}");
        assert_ne!(foreign.code(), 0);
        assert_eq!(
            strip_time(&foreign.stderr()).replace("alicens", "NS"),
            strip_time(&missing.stderr()).replace("nosuchns", "NS")
        );
    }
}

fn strip_time(s: &str) -> String {
    s.split_once(' ')
        .map(|(_, r)| r.to_owned())
        .unwrap_or_default()
}

/// Finding 9: members rewrote each other's state files, exit records and the
/// shared accounting journal, could fill the disk and the cgroup tree without
/// bound, and a failed start left its log behind.
#[test]
fn members_cannot_rewrite_each_others_records() {
    let Some(inst) = install("attack_records", "") else {
        return;
    };
    inst.init("shared", ALICE, OPS);
    inst.lanco(Some(ALICE), &["shared", "run", "-f", "rec", "true"])
        .ok();
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["shared", "run", "live", "sleep", &s])
        .ok();
    inst.lanco(Some(BOB), &["shared", "run", "-f", "his", "true"])
        .ok();
    let mut files: Vec<PathBuf> = state_dirs(&inst, "shared", ALICE)
        .iter()
        .flat_map(|d| walk(d))
        .filter(|p| p.is_file() && fs::metadata(p).unwrap().uid() == uid(ALICE))
        .collect();
    files.push(inst.log_path("shared", "live"));
    assert!(files.len() >= 4, "{files:?}");
    let before: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    for f in &files {
        let f = f.display();
        let o = sh_as(
            BOB,
            &format!(
                "echo x >> {f} && echo WROTE; : > {f} && echo WROTE; \
                 mv {f} {f}.x && echo WROTE; rm -f {f} && [ ! -e {f} ] && echo WROTE; \
                 ln -s /tmp {f}.link && echo WROTE; touch $(dirname {f})/bob-was-here && echo WROTE; true"
            ),
        );
        // The shared log directory lets bob make files of his own there,
        // not touch hers.
        let wrote = o.stdout().lines().filter(|l| *l == "WROTE").count();
        let shared_dir = f.to_string().contains("/log/");
        assert!(
            wrote == 0 || (shared_dir && wrote <= 2),
            "bob wrote to {f}: {o}"
        );
    }
    let after: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    assert_eq!(before, after, "alice's files changed");
    // Each member's journal has that member's runs only.
    let journal = |user| {
        fs::read_to_string(inst.user_state_dir("shared", user).join("accounting.jsonl")).unwrap()
    };
    assert!(journal(ALICE).contains("\"rec\"") && !journal(ALICE).contains("\"his\""));
    assert!(journal(BOB).contains("\"his\"") && !journal(BOB).contains("\"rec\""));
    // A failed start leaves no log.
    inst.lanco(
        Some(ALICE),
        &["shared", "run", "broken", "/nonexistent/prog"],
    )
    .fails(
        6,
        "cannot execute /nonexistent/prog: No such file or directory",
    );
    let logs = inst
        .log_path("shared", "broken")
        .parent()
        .unwrap()
        .to_owned();
    let left: Vec<String> = fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("broken"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    inst.lanco(Some(ALICE), &["shared", "stop", "live"]).ok();
}

/// Finding 9, continued: one member cannot make cgroups without bound.
#[test]
fn a_members_cgroups_are_bounded() {
    let Some(inst) = install("attack_cgroups", "user_max_cgroups = 20\n") else {
        return;
    };
    inst.init("shared", ALICE, OPS);
    inst.lanco(Some(BOB), &["shared", "run", "-f", "his", "true"])
        .ok();
    // A member's cgroups are bounded.
    let nscg = inst.ns_cgroup("shared").path().to_owned();
    let sub = nscg.join(format!("user-{}", uid(BOB)));
    let o = sh_as(
        BOB,
        &format!(
            "n=0; for d in {} {}; do for i in $(seq 1 40); do \
               mkdir $d/c$i 2>/dev/null && n=$((n+1)); done; done; echo $n",
            sub.display(),
            nscg.display()
        ),
    );
    let made: u32 = o.stdout().trim().parse().unwrap_or(999);
    assert!(made < 20, "bob made {made} cgroups with a bound of 20");
}
