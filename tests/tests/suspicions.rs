//! Suspicions about the tenant-isolation layout, each written out as the
//! attack a member would make (real users, real cgroups, real files) and
//! asserting both that it fails and that nothing outside the attacker's
//! reach changed. Both attacks work against lanco 0.1 (970ec59, run with
//! LANCO_E2E_BIN): its stop-all returned at the first namespace that stayed
//! populated, and its `status` opened the lock file with a blocking open.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lanco_e2e::{
    alive, nsname, pids_with, setup, sh_as, uid, unique_sleep, wait_for, Cgroup, Install, Out,
    ALICE, BOB, OPS,
};
use nix::sys::signal::Signal;

/// Runs `cmd` (output to files, so no descendant can hold a pipe of ours
/// open); if it has not ended within `limit`, kills it and fails the test.
fn within(inst: &Install, mut cmd: Command, what: &str, limit: Duration) -> Out {
    let tag = what.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let (out, err) = (
        inst.dir.join(format!("out-{tag}")),
        inst.dir.join(format!("err-{tag}")),
    );
    let mut child = cmd
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} hangs: killed after {limit:?}; stderr so far: {:?}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out(Output {
        status,
        stdout: fs::read(&out).unwrap(),
        stderr: fs::read(&err).unwrap(),
    })
}

/// Identity and contents of a directory entry, not followed.
fn snapshot(p: &Path) -> (u64, u32, u32, u32, i64, i64, String, Vec<u8>) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let kind = if m.file_type().is_fifo() {
        "fifo".to_owned()
    } else if m.file_type().is_symlink() {
        format!("symlink to {}", fs::read_link(p).unwrap().display())
    } else if m.is_file() {
        "file".to_owned()
    } else {
        "other".to_owned()
    };
    let bytes = if m.is_file() {
        fs::read(p).unwrap()
    } else {
        Vec::new()
    };
    (
        m.ino(),
        m.uid(),
        m.gid(),
        m.mode(),
        m.mtime(),
        m.mtime_nsec(),
        kind,
        bytes,
    )
}

/// The paths a task's lock file is looked up at, where a member can plant
/// one: this layout's `names/`, and lanco 0.1's group-writable state
/// directory if the namespace has one (so that run against 0.1 binaries,
/// with LANCO_E2E_BIN, the test shows the attack working there).
fn lock_paths(inst: &Install, ns: &str, task: &str) -> Vec<PathBuf> {
    let (l, n) = (inst.layout(), nsname(ns));
    let paths: Vec<PathBuf> = [l.ns_state_dir(&n).join("names"), l.legacy_state_dir(&n)]
        .into_iter()
        .filter(|d| d.is_dir())
        .map(|d| d.join(format!("task-{task}.lock")))
        .collect();
    assert!(!paths.is_empty(), "no directory for lock files");
    paths
}

/// `lancod stop-all` (ExecStop of lanco-tasks.service) signals every
/// namespace's monitors, then waits for and kills what is left namespace by
/// namespace. Attack: alice hides one of her task's processes in a cgroup
/// of her own subtree, outside any task cgroup. lanco 0.1's stop-all left it,
/// so namespace `a` stayed populated, and gave up there. Now it must end it
/// and still end namespace `b`'s tasks — among them one whose monitor is
/// dead and one that ignores SIGTERM with a long stop timeout: only
/// stop-all's own cgroup.kill, after it has dealt with `a`, ends those.
#[test]
fn stop_all_does_not_give_up_at_the_first_namespace_that_stays_populated() {
    let Some(inst) = setup("stop_all_stray") else {
        return;
    };
    inst.init("a", ALICE, OPS);
    // bob's own primary group: init takes it (he is in it).
    inst.init("b", BOB, BOB);
    let (sa, sb) = (unique_sleep(), unique_sleep());

    // alice's task: a main process and a child she is about to hide.
    inst.lanco(
        Some(ALICE),
        &[
            "a",
            "run",
            "leaky",
            "sh",
            "-c",
            &format!("sleep {sa} & exec sleep {sa}"),
        ],
    )
    .ok();
    assert!(wait_for(Duration::from_secs(5), || pids_with(&sa).len() == 2));
    let main = inst.status_as(Some(ALICE), "a", "leaky")["info"]["pid"]
        .as_i64()
        .unwrap() as i32;
    let stray_pid = *pids_with(&sa).iter().find(|p| **p != main).unwrap();
    // (lanco 0.1 kept tasks straight below the namespace's cgroup.)
    let task = [
        inst.task_cgroup("a", "leaky"),
        Cgroup::new(inst.ns_cgroup("a").path().join("task-leaky")),
    ]
    .into_iter()
    .find(Cgroup::exists)
    .unwrap();
    assert!(task.procs().unwrap().contains(&stray_pid));
    // The attack, by alice's hand: a cgroup of her own in her subtree (in
    // 0.1, in the namespace's cgroup, which was hers), and the child moved
    // into it (she owns both cgroup.procs involved).
    let mine = inst.layout().user_cgroup(&nsname("a"), uid(ALICE));
    let stray = if mine.is_dir() {
        mine
    } else {
        inst.ns_cgroup("a").path().to_owned()
    }
    .join("stray");
    sh_as(
        ALICE,
        &format!(
            "mkdir {d} && echo {stray_pid} > {d}/cgroup.procs",
            d = stray.display()
        ),
    )
    .ok();
    let stray_cg = Cgroup::new(&stray);
    assert_eq!(stray_cg.procs().unwrap(), vec![stray_pid]);
    assert!(!task.procs().unwrap().contains(&stray_pid));

    // bob's namespace: a task whose monitor died, and one that ignores
    // SIGTERM and would wait ten minutes before its monitor kills it.
    inst.lanco(Some(BOB), &["b", "run", "orphan", "sleep", &sb])
        .ok();
    inst.signal_monitor("b", "orphan", Signal::SIGKILL);
    inst.lanco(
        Some(BOB),
        &[
            "b",
            "run",
            "--stop-timeout",
            "600",
            "stubborn",
            "sh",
            "-c",
            &format!("trap '' TERM; sleep {sb}; sleep {sb}"),
        ],
    )
    .ok();
    // orphan's sleep, stubborn's shell and its sleep.
    assert!(wait_for(Duration::from_secs(5), || pids_with(&sb).len() == 3));
    let victims = pids_with(&sb);

    let mut cmd = inst.lancod_cmd();
    cmd.args(["stop-all", "--timeout", "3"]);
    let o = within(&inst, cmd, "lancod stop-all", Duration::from_secs(90));
    eprintln!("stop-all: {o}");
    // Every namespace is dealt with (0.1 gave up at `a` and left `b`
    // running), and what alice hid ends too.
    assert_eq!(o.code(), 0, "{o}");
    assert!(
        wait_for(Duration::from_secs(5), || !alive(stray_pid)),
        "the process alice hid outlived stop-all"
    );

    // b is stopped: every process gone, both tasks not running for bob.
    assert!(
        victims.iter().all(|p| !alive(*p)),
        "b's processes outlived stop-all: {:?} ({o})",
        victims.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
    assert!(!inst.ns_cgroup("b").populated().unwrap(), "{o}");
    for t in ["orphan", "stubborn"] {
        assert_eq!(inst.lanco(Some(BOB), &["b", "check", t]).code(), 1, "{t}");
        let st = inst.status_as(Some(BOB), "b", t);
        assert_eq!(st["state"], "not_running", "{t}: {st}");
    }
    let st = inst.status_as(Some(BOB), "b", "stubborn");
    assert_eq!(st["last"]["stopped"], true, "{st}");
    let st = inst.status_as(Some(BOB), "b", "orphan");
    assert_eq!(st["last"]["exit"]["kind"], "lost", "{st}");
    // a's task itself was stopped by its monitor.
    assert!(!alive(main));
    assert_eq!(
        inst.status_as(Some(ALICE), "a", "leaky")["last"]["stopped"],
        true
    );
    assert!(
        !stray_cg.exists(),
        "alice's subtree is made anew at her next run"
    );
    inst.lanco(Some(ALICE), &["a", "run", "-f", "again", "true"])
        .ok();
}

/// Attack: bob, a member, plants a FIFO named like the lock file of a task
/// name alice has never used (`names/` is group-writable). Opening a FIFO
/// without O_NONBLOCK waits for a writer for ever; every command that looks
/// the name up must return at once, `run` must refuse naming bob, and the
/// FIFO stays as bob made it. Then a symlink named like a lock, pointing to
/// a file of alice's: her `run` must refuse naming bob, and her file must
/// not change.
#[test]
fn a_fifo_planted_as_a_lock_file_does_not_hang_status() {
    let Some(inst) = setup("fifo_lock") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // alice has used the namespace before, just never the name x.
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "warmup", "true"])
        .ok();
    let fifos = lock_paths(&inst, "ns", "x");
    for fifo in &fifos {
        sh_as(BOB, &format!("mkfifo {}", fifo.display())).ok();
    }
    let planted: Vec<_> = fifos.iter().map(|f| snapshot(f)).collect();
    assert!(planted.iter().all(|p| p.1 == uid(BOB)));

    let limit = Duration::from_secs(10);
    let a = Some(ALICE);
    for (user, args) in [
        (a, vec!["status", "x"]),
        (a, vec!["status", "--json", "x"]),
        (a, vec!["check", "x"]),
        (a, vec!["stop", "x"]),
        (a, vec!["kill", "x"]),
        (a, vec!["logs", "x"]),
        (a, vec!["ls"]),
        (None, vec!["status", "x"]),
        (None, vec!["logs", "x"]),
        (a, vec!["run", "x", "true"]),
    ] {
        let mut full = vec!["ns"];
        full.extend(&args);
        let what = format!("{} {}", user.unwrap_or("root"), full.join(" "));
        let o = within(&inst, inst.cmd(user, &full), &what, limit);
        eprintln!("{what}: {o}");
        if o.code() != 0 && o.code() != 1 {
            assert_eq!(o.stderr().lines().count(), 1, "{what}: one-line error: {o}");
        }
        if args[0] == "run" {
            assert_ne!(o.code(), 0, "{what}: {o}");
            assert_eq!(o.stderr().lines().count(), 1, "{what}: one-line error: {o}");
            assert!(o.stderr().contains(BOB), "{what}: names bob: {o}");
        }
        let now: Vec<_> = fifos.iter().map(|f| snapshot(f)).collect();
        assert_eq!(now, planted, "{what} changed the FIFO");
    }
    // The refused run left nothing behind.
    assert!(!inst.task_cgroup("ns", "x").exists());
    assert!(!inst.log_path("ns", "x").exists());
    assert!(!inst
        .user_state_dir("ns", ALICE)
        .join("task-x.state.json")
        .exists());

    // A symlink named like a lock, to a private file of alice's.
    let home = inst.dir.join("home-alice");
    fs::create_dir(&home).unwrap();
    let file = home.join("notes");
    fs::write(&file, "alice's notes\n").unwrap();
    for p in [&home, &file] {
        nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(uid(ALICE))), None).unwrap();
    }
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let links = lock_paths(&inst, "ns", "y");
    for link in &links {
        sh_as(BOB, &format!("ln -s {} {}", file.display(), link.display())).ok();
    }
    let snap_links = || links.iter().map(|l| snapshot(l)).collect::<Vec<_>>();
    let (file_before, links_before) = (snapshot(&file), snap_links());
    for args in [
        vec!["ns", "run", "y", "true"],
        vec!["ns", "status", "y"],
        vec!["ns", "stop", "y"],
    ] {
        let what = format!("{ALICE} {}", args.join(" "));
        let o = within(&inst, inst.cmd(a, &args), &what, limit);
        eprintln!("{what}: {o}");
        if args[1] == "run" {
            assert_ne!(o.code(), 0, "{what}: {o}");
            assert_eq!(o.stderr().lines().count(), 1, "{what}: one-line error: {o}");
            assert!(o.stderr().contains(BOB), "{what}: names bob: {o}");
        }
        assert_eq!(snapshot(&file), file_before, "{what} changed alice's file");
        assert_eq!(snap_links(), links_before, "{what} changed the link");
    }
    assert!(!inst.task_cgroup("ns", "y").exists());
    assert!(!inst.log_path("ns", "y").exists());
}
