//! The warm spawner (the start path without a cgroup migration): a member's
//! first `run` is admitted by lancod and leaves a spawner in the member's
//! monitors cgroup; later runs are forked there, never admitted. It serves
//! only its own user in its own context, is nobody's parent and no task,
//! exits when idle or upgraded, and killing it at any moment loses nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lanco_e2e::{
    alive, as_user, comm, nsname, setup, setup_with, sh_as, wait_for, Install, ALICE, BOB, OPS,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(10);

fn socket(inst: &Install, ns: &str, user: &str) -> PathBuf {
    inst.user_state_dir(ns, user).join("spawner.sock")
}

fn ppid(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn status_line(pid: i32, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

#[test]
fn later_runs_are_forked_by_the_spawner_not_admitted() {
    let Some(inst) = setup("spawner_warm") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "first", "sleep", "1000"]).ok();
    assert_eq!(inst.admissions(), 1);
    let sp = inst.spawner("ns");
    let mode = fs::metadata(socket(&inst, "ns", ALICE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only its user may connect");

    for t in ["second", "third"] {
        inst.lanco(a, &["ns", "run", t, "sleep", "1000"]).ok();
    }
    assert_eq!(inst.admissions(), 1, "warm runs are never admitted");
    assert_eq!(inst.spawners("ns"), vec![sp], "one spawner, the same");
    // The spawner is nobody's parent: its monitors are its siblings.
    let third = inst.status("ns", "third");
    let monitor = third["info"]["monitor_pid"].as_i64().unwrap() as i32;
    assert!(inst.monitors("ns").contains(&monitor));
    assert_eq!(ppid(monitor), ppid(sp));
    assert_eq!(comm(monitor).as_deref(), Some("lanco-monitor"));

    // It is no task: not in ls, and nothing of it in status.
    let ls = inst.lanco(a, &["ns", "ls"]).ok().stdout();
    assert!(!ls.contains(&sp.to_string()), "{ls}");
    assert!(!ls.contains("spawner"), "{ls}");
    let o = inst.lanco(a, &["ns", "status", "spawner"]);
    assert_eq!(
        (o.code(), o.stdout().as_str()),
        (1, "task spawner is not running\n")
    );

    // The task gets the spec's environment, never the spawner's, and the
    // caller's limits, nice value and CPUs.
    let o = inst.lanco_sh(
        ALICE,
        "prlimit --nofile=100:200 nice -n 5 taskset -c 0",
        "ns run -f env sh -c \
         'env; ulimit -n; ulimit -Hn; nice; grep Cpus_allowed_list /proc/self/status'",
    );
    assert_eq!(o.code(), 0, "{o}");
    assert_eq!(inst.admissions(), 1, "still warm");
    let log = inst.read_log("ns", "env");
    assert!(!log.contains("LANCO_SPAWNER"), "{log}");
    assert!(log.contains("\n100\n200\n5\n"), "{log}");
    assert!(log.contains("Cpus_allowed_list:\t0\n"), "{log}");

    // Stopped, nothing of the spawner is in the accounting journal.
    for t in ["first", "second", "third"] {
        inst.lanco(a, &["ns", "stop", t]).ok();
    }
    let journal =
        fs::read_to_string(inst.user_state_dir("ns", ALICE).join("accounting.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 4, "{journal}");
    assert!(alive(sp), "the spawner outlives the tasks");
}

/// Every fd of `pid`, as the targets of its /proc/PID/fd links.
fn fd_targets(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_standby_becomes_the_next_monitor_and_holds_nothing_of_the_spawner() {
    let Some(inst) = setup("spawner_standby") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "first", "sleep", "1000"]).ok();
    let sp = inst.spawner("ns");
    // One fork of the spawner waits for the next caller: its sibling.
    assert!(wait_for(WAIT, || inst.standbys("ns").len() == 1));
    let standby = inst.standbys("ns")[0];
    assert_eq!(ppid(standby), ppid(sp));
    inst.lanco(a, &["ns", "run", "second", "sleep", "1000"])
        .ok();
    let monitor = inst.status("ns", "second")["info"]["monitor_pid"]
        .as_i64()
        .unwrap() as i32;
    assert_eq!(monitor, standby, "the standby became the monitor");
    assert_eq!(comm(monitor).as_deref(), Some("lanco-monitor"));
    // Its start over, the spawner forks the next one.
    assert!(wait_for(WAIT, || inst
        .standbys("ns")
        .iter()
        .any(|p| *p != standby)));
    assert_eq!(inst.admissions(), 1, "warm");
    // A monitor holds neither the spawner's lock (the next spawner could
    // never start) nor its state directory.
    let lock = inst.user_state_dir("ns", ALICE).join("spawner.lock");
    let held = fd_targets(monitor);
    assert!(
        !held.iter().any(|t| t == &lock.display().to_string()),
        "{held:?}"
    );
    // A standby holds SIGTERM blocked for the monitor it may become, and
    // still ends at one (what `lancod stop-all` sends): the spawner then
    // forks another.
    let standby = inst.standbys("ns")[0];
    kill(Pid::from_raw(standby), Signal::SIGTERM).unwrap();
    assert!(
        wait_for(WAIT, || !alive(standby)),
        "SIGTERM left the standby"
    );
    assert!(wait_for(WAIT, || inst
        .standbys("ns")
        .iter()
        .any(|p| *p != standby)));
    assert!(alive(sp));
    // The spawner killed, its standby goes too; the monitors stay, and
    // none of them holds the spawner's listening socket: its file (left by
    // the SIGKILL) refuses connections.
    let standby = inst.standbys("ns")[0];
    kill(Pid::from_raw(sp), Signal::SIGKILL).unwrap();
    assert!(
        wait_for(WAIT, || !alive(standby) && !alive(sp)),
        "the standby outlived its spawner"
    );
    assert!(alive(monitor));
    let refused = std::os::unix::net::UnixStream::connect(socket(&inst, "ns", ALICE));
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    for t in ["first", "second"] {
        inst.lanco(a, &["ns", "stop", t]).ok();
    }
}

/// The unnamed files (O_TMPFILE) a standby holds, by directory: their
/// /proc/PID/fd links read `DIR/#INODE`.
fn unnamed_files(pid: i32) -> Vec<(PathBuf, u64)> {
    fd_targets(pid)
        .iter()
        .filter_map(|t| {
            let (dir, ino) = t.trim_end_matches(" (deleted)").rsplit_once("/#")?;
            Some((PathBuf::from(dir), ino.parse().ok()?))
        })
        .collect()
}

/// The temporary names of sockets standbys bound in a member's state
/// directory.
fn standby_sockets(inst: &Install) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(inst.user_state_dir("ns", ALICE))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".standby."))
        .collect();
    names.sort();
    names
}

#[test]
fn a_standby_makes_a_starts_files_ahead_and_leaves_none_behind() {
    use std::os::unix::fs::MetadataExt;
    let Some(inst) = setup("spawner_prepared") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "first", "sleep", "1000"]).ok();
    // A standby makes its socket last.
    let ready = || inst.standbys("ns").len() == 1 && standby_sockets(&inst).len() == 1;
    assert!(wait_for(WAIT, ready));
    let standby = inst.standbys("ns")[0];
    // Ready: a file for the log, one for the state file, one for a first
    // run's lock, and a socket under a temporary name.
    let state = inst.user_state_dir("ns", ALICE);
    let names = inst.layout().ns_state_dir(&nsname("ns")).join("names");
    let logs = inst.layout().ns_log_dir(&nsname("ns"));
    let ahead = unnamed_files(standby);
    let ino_in = |dir: &PathBuf| {
        ahead
            .iter()
            .find(|(d, _)| d == dir)
            .map(|(_, ino)| *ino)
            .unwrap_or_else(|| panic!("no unnamed file in {}: {ahead:?}", dir.display()))
    };
    let (log, lock, state_file) = (ino_in(&logs), ino_in(&names), ino_in(&state));
    let bound = standby_sockets(&inst);
    assert_eq!(bound.len(), 1, "{bound:?}");

    // The next run's files are those: nothing made on its way.
    inst.lanco(a, &["ns", "run", "second", "sleep", "1000"])
        .ok();
    assert_eq!(inst.admissions(), 1, "warm");
    let ino = |p: PathBuf| {
        fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .ino()
    };
    assert_eq!(ino(inst.log_path("ns", "second")), log);
    assert_eq!(ino(names.join("task-second.lock")), lock);
    assert_eq!(ino(state.join("task-second.state.json")), state_file);
    assert!(state.join("task-second.sock").exists());
    assert!(!state.join(&bound[0]).exists(), "the socket was renamed");
    assert_eq!(inst.lanco(a, &["ns", "check", "second"]).code(), 0);
    inst.lanco(a, &["ns", "stop", "second"]).ok();
    assert_eq!(inst.lanco(a, &["ns", "check", "second"]).code(), 1);

    // A log elsewhere (-l) is made where asked; the prepared one, unused,
    // leaves nothing.
    assert!(wait_for(WAIT, || ready() && !inst.standbys("ns").contains(&standby)));
    let other = inst.dir.join("elsewhere");
    fs::create_dir_all(&other).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o777)).unwrap();
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "-f",
            "-l",
            other.join("out.log").to_str().unwrap(),
            "third",
            "echo",
            "hi",
        ],
    )
    .ok();
    assert_eq!(fs::read_to_string(other.join("out.log")).unwrap(), "hi\n");
    assert_eq!(inst.admissions(), 1, "warm");
    let mut in_logs: Vec<_> = fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    in_logs.sort();
    assert_eq!(in_logs, ["task-first.log", "task-second.log"]);

    // A standby that ends removes its socket's temporary name; one killed
    // cannot, and the next spawner does.
    assert!(wait_for(WAIT, || inst.standbys("ns").len() == 1));
    let standby = inst.standbys("ns")[0];
    let mine = standby_sockets(&inst);
    kill(Pid::from_raw(standby), Signal::SIGTERM).unwrap();
    assert!(wait_for(WAIT, || !alive(standby)));
    assert!(wait_for(WAIT, || ready() && standby_sockets(&inst) != mine));
    let now = standby_sockets(&inst);
    // (The spawner stopped first: it would fork another standby.)
    let sp = inst.spawner("ns");
    kill(Pid::from_raw(sp), Signal::SIGSTOP).unwrap();
    for p in [inst.standbys("ns")[0], sp] {
        kill(Pid::from_raw(p), Signal::SIGKILL).unwrap();
        assert!(wait_for(WAIT, || !alive(p)));
    }
    assert_eq!(standby_sockets(&inst), now, "left by the SIGKILL");
    inst.lanco(a, &["ns", "run", "fourth", "sleep", "1000"])
        .ok();
    assert_eq!(inst.admissions(), 2, "cold: no spawner");
    // The new spawner removed the dead standby's; its own has one.
    assert!(
        wait_for(WAIT, || ready() && standby_sockets(&inst) != now),
        "{:?}",
        standby_sockets(&inst)
    );
    for t in ["first", "fourth"] {
        inst.lanco(a, &["ns", "stop", t]).ok();
    }
}

#[test]
fn a_caller_the_spawner_cannot_copy_takes_the_cold_path() {
    let Some(inst) = setup("spawner_cold") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // The first caller's hard limit is low: the spawner it leaves has it.
    inst.lanco_sh(ALICE, "prlimit --nofile=64:64", "ns run low sleep 1000")
        .ok();
    inst.spawner("ns");
    assert_eq!(inst.admissions(), 1);
    // A caller with a higher hard limit: a monitor forked by that spawner
    // cannot raise it, so it declines and the run is admitted; the task has
    // the caller's limit.
    let o = inst.lanco_sh(
        ALICE,
        "prlimit --nofile=100:4096",
        "ns run -f high sh -c 'ulimit -Hn'",
    );
    assert_eq!(o.code(), 0, "{o}");
    assert_eq!(inst.admissions(), 2);
    assert_eq!(inst.read_log("ns", "high"), "4096\n");
    // A caller under no_new_privs (as a hardened service runs) is not
    // served: its task must keep the flag, which the spawner has not.
    let o = inst.lanco_sh(
        ALICE,
        "setpriv --no-new-privs",
        "ns run -f nnp grep NoNewPrivs /proc/self/status",
    );
    assert_eq!(o.code(), 0, "{o}");
    assert_eq!(inst.admissions(), 3);
    assert_eq!(inst.read_log("ns", "nnp"), "NoNewPrivs:\t1\n");
    // Cold starts while a spawner lives start no second one (its lock).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inst.spawners("ns").len(), 1);
}

#[test]
fn a_spawner_serves_no_other_user() {
    let Some(inst) = setup("spawner_users") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "run", "a", "sleep", "1000"])
        .ok();
    let sp = inst.spawner("ns");
    let sock = socket(&inst, "ns", ALICE);
    // Bob, a member, may search Alice's directory but not connect (0600).
    let probe = r#"use Socket; socket(S, PF_UNIX, SOCK_STREAM, 0) or die;
        connect(S, pack_sockaddr_un($ARGV[0])) or do { print "refused: $!"; exit 0 };
        my $n = sysread(S, my $b, 1); print defined $n && $n > 0 ? "answered" : "closed";"#;
    let run_probe = || {
        let o = as_user(BOB, "perl")
            .args(["-e", probe])
            .arg(&sock)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        run_probe().starts_with("refused: Permission denied"),
        "{}",
        run_probe()
    );
    // Even with the socket opened to everyone by its owner, Bob's connection
    // is closed unanswered (SO_PEERCRED), and nothing is forked for him.
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    let before = inst.monitors("ns");
    assert_eq!(run_probe(), "closed");
    assert_eq!(inst.monitors("ns"), before);
    assert!(alive(sp));
    // Bob's runs are admitted and leave his own spawner; each serves its own.
    let admitted = inst.admissions();
    inst.lanco(Some(BOB), &["ns", "run", "b", "sleep", "1000"])
        .ok();
    assert_eq!(inst.admissions(), admitted + 1);
    assert!(wait_for(WAIT, || inst.spawners("ns").len() == 2));
    let uids: Vec<String> = inst
        .spawners("ns")
        .iter()
        .map(|p| status_line(*p, "Uid:"))
        .collect();
    assert_ne!(uids[0], uids[1]);
    inst.lanco(Some(BOB), &["ns", "run", "b2", "sleep", "1000"])
        .ok();
    assert_eq!(inst.admissions(), admitted + 1, "Bob's second run is warm");
}

#[test]
fn killing_the_spawner_mid_request_costs_only_a_cold_start() {
    let Some(inst) = setup("spawner_killed") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "one", "sleep", "1000"]).ok();
    let sp = inst.spawner("ns");
    // Stopped, the spawner and its standby (which accepts callers) cannot
    // answer; the run waits for them, and they are then killed.
    let warm = stop_warm_side(&inst);
    let mut run = inst
        .cmd(a, &["ns", "run", "two", "sleep", "1000"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for p in warm {
        kill(Pid::from_raw(p), Signal::SIGKILL).unwrap();
    }
    assert!(run.wait().unwrap().success());
    assert_eq!(inst.admissions(), 2, "the run went cold");
    assert_eq!(inst.lanco(a, &["ns", "check", "two"]).code(), 0);
    // Nothing leaked: two monitors, one new spawner, no other process in
    // the member's subtree, and every name claimed is a running task's.
    let sp2 = inst.spawner("ns");
    assert_ne!(sp2, sp);
    assert_eq!(inst.monitors("ns").len(), 2);
    let (_, user) = inst.user_cgroups("ns").remove(0);
    assert!(wait_for(WAIT, || inst.standbys("ns").len() == 1));
    assert_eq!(
        user.procs_recursive().unwrap().len(),
        2 + 1 + 1 + 2,
        "2 monitors, 1 spawner and its standby, 2 sleeps"
    );
    // A spawner and standby that stay stopped cost a run one second, then
    // the cold path.
    let warm = stop_warm_side(&inst);
    let t0 = Instant::now();
    inst.lanco(a, &["ns", "run", "three", "sleep", "1000"]).ok();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(inst.admissions(), 3);
    for p in warm {
        kill(Pid::from_raw(p), Signal::SIGKILL).unwrap();
    }
    for t in ["one", "two", "three"] {
        inst.lanco(a, &["ns", "stop", t]).ok();
    }
    let names = fs::read_dir(inst.state_dir.join("ns/ns/names"))
        .unwrap()
        .count();
    assert_eq!(names, 3, "one lock per name, none stale");
}

#[test]
fn a_caller_that_sends_nothing_holds_up_no_other_run() {
    let Some(inst) = setup("spawner_silent") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "one", "sleep", "1000"]).ok();
    inst.spawner("ns");
    assert!(wait_for(WAIT, || inst.standbys("ns").len() == 1));
    // Alice's own process connects and sends nothing: the standby that
    // accepted it waits for a spec (10 s at most).
    let mut silent = as_user(ALICE, "perl")
        .args([
            "-e",
            "use Socket; socket(S, PF_UNIX, SOCK_STREAM, 0) or die; \
             connect(S, pack_sockaddr_un($ARGV[0])) or die; $| = 1; \
             print \"up\\n\"; sleep 8",
        ])
        .arg(socket(&inst, "ns", ALICE))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(silent.stdout.as_mut().unwrap()),
        &mut up,
    )
    .unwrap();
    assert_eq!(up, "up\n");
    // Her next run gets a standby of its own at once: warm, not held.
    let t0 = Instant::now();
    inst.lanco(a, &["ns", "run", "two", "sleep", "1000"]).ok();
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(inst.admissions(), 1, "the second run was warm");
    silent.kill().unwrap();
    silent.wait().unwrap();
    for t in ["one", "two"] {
        inst.lanco(a, &["ns", "stop", t]).ok();
    }
}

/// Stops the namespace's spawner and its standby (SIGSTOP), once a
/// standby is ready; returns their pids.
fn stop_warm_side(inst: &Install) -> Vec<i32> {
    assert!(wait_for(WAIT, || inst.standbys("ns").len() == 1));
    let warm: Vec<i32> = inst
        .spawners("ns")
        .into_iter()
        .chain(inst.standbys("ns"))
        .collect();
    for &p in &warm {
        kill(Pid::from_raw(p), Signal::SIGSTOP).unwrap();
    }
    warm
}

#[test]
fn an_idle_spawner_exits_and_the_next_run_starts_another() {
    let Some(inst) = setup_with("spawner_idle", "spawner_idle_secs = 1\n") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "-f", "t", "true"]).ok();
    let sp = inst.spawner("ns");
    assert!(wait_for(WAIT, || !alive(sp)), "idle spawner still there");
    assert!(
        !socket(&inst, "ns", ALICE).exists(),
        "its socket is removed"
    );
    inst.lanco(a, &["ns", "run", "-f", "t", "true"]).ok();
    assert_eq!(inst.admissions(), 2);
    assert_ne!(inst.spawner("ns"), sp);
}

#[test]
fn a_thousand_runs_leave_the_spawner_as_they_found_it() {
    let Some(inst) = setup("spawner_flat") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // One shell runs them all: 1000 execs of lanco, not 1000 setprivs.
    let script = |n: u32| {
        format!(
            "export LANCO_CONFIG={}; i=0; while [ $i -lt {n} ]; do {} ns run -f t true || exit 1; i=$((i+1)); done",
            inst.config.display(),
            inst.bin.join("lanco").display()
        )
    };
    // Warm-up: the allocator's caches settle over the first ~2000 starts
    // (release build, RssAnon every 300 starts: 136, 228, 240, 252, 256, 260,
    // 264, 264 kB, then 264 kB for 3000 more). A leak grows with every start.
    sh_as(ALICE, &script(1000)).ok();
    let sp = inst.spawner("ns");
    let rss = || {
        status_line(sp, "RssAnon:")
            .trim_end_matches(" kB")
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    // Its fds, once settled: a standby ready (one channel), none serving
    // (right after a start the spawner holds the serving one's channel,
    // then, for a moment, neither).
    let fds = || {
        assert!(wait_for(WAIT, || inst.standbys("ns").len() == 1));
        // (the fork's other end is closed in the spawner just after)
        std::thread::sleep(Duration::from_millis(50));
        fs::read_dir(format!("/proc/{sp}/fd")).unwrap().count()
    };
    let (rss0, fds0) = (rss(), fds());
    sh_as(ALICE, &script(1000)).ok();
    assert_eq!(inst.spawners("ns"), vec![sp]);
    assert_eq!(inst.admissions(), 1, "all 2000 runs were warm");
    assert_eq!(fds(), fds0, "fds");
    // Its heap and stack (file pages faulted in by new code paths aside):
    // less than 32 bytes per start, i.e. nothing kept per start.
    assert!(rss() <= rss0 + 32, "RssAnon {rss0} kB -> {} kB", rss());
}

#[test]
fn destroy_and_stop_all_end_the_spawner() {
    let Some(inst) = setup("spawner_destroy") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "-f", "t", "true"]).ok();
    let sp = inst.spawner("ns");
    // No task runs: a spawner alone does not make the namespace busy.
    kill(Pid::from_raw(sp), Signal::SIGSTOP).unwrap();
    inst.lanco(None, &["ns", "destroy"]).ok();
    assert!(
        wait_for(WAIT, || !alive(sp)),
        "the spawner outlived destroy"
    );
    // The same name again, maybe another tenant's: nothing of the old one.
    inst.init("ns", ALICE, OPS);
    inst.lanco(a, &["ns", "run", "t", "sleep", "1000"]).ok();
    assert_eq!(inst.admissions(), 2);
    let sp = inst.spawner("ns");
    let o = inst
        .lancod_cmd()
        .args(["stop-all", "--timeout", "10"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        wait_for(WAIT, || !alive(sp)),
        "the spawner outlived stop-all"
    );
    assert!(inst.spawners("ns").is_empty());
}

#[test]
fn an_upgraded_monitor_replaces_the_spawner() {
    let Some(inst) = setup("spawner_upgrade") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "-f", "t", "true"]).ok();
    let old = inst.spawner("ns");
    // What a package upgrade does: a new file renamed over the old path.
    let m = inst.bin.join("lanco-monitor");
    let new = inst.bin.join("lanco-monitor.new");
    fs::copy(&m, &new).unwrap();
    fs::rename(&new, &m).unwrap();
    inst.lanco(a, &["ns", "run", "-f", "t", "true"]).ok();
    assert_eq!(inst.admissions(), 2, "the old spawner sent the run cold");
    assert!(wait_for(WAIT, || !alive(old)));
    let fresh = inst.spawner("ns");
    assert_ne!(fresh, old);
    inst.lanco(a, &["ns", "run", "-f", "t", "true"]).ok();
    assert_eq!(inst.admissions(), 2, "and the new one serves");
}

/// A warm start takes a name within a millisecond of the call: right after
/// `wait` said the last run was over (its state file gone, its cgroup
/// empty), its monitor may still hold the name's lock for a moment while it
/// removes the cgroup. A start waits for that (at most half a second)
/// instead of saying "already running". Here the member holds the lock
/// herself, with no task running, for 200 ms, then for 3 s.
#[test]
fn a_start_waits_for_a_name_being_given_back() {
    let Some(inst) = setup("spawner_rerun") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
    let lock = inst.state_dir.join("ns/ns/names/task-t.lock");
    let held = |secs: &str| {
        inst.lanco_sh(
            ALICE,
            &format!("flock {} sleep {secs} & sleep 0.05;", lock.display()),
            "ns run -f t true",
        )
    };
    held("0.2").ok();
    held("3").fails(3, "task t is already running");
    assert_eq!(inst.admissions(), 1);
}
