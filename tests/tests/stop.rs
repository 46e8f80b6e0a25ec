//! Stopping: every process ends, however it tried to escape, and nothing
//! outside the task does; the task outlives its caller and its monitor.

use std::time::{Duration, Instant};

use lanco_e2e::{alive, pids_with, script, setup, unique_sleep, wait_for, Cgroup, ALICE, OPS};

#[test]
fn escapes_are_tracked_and_killed() {
    let Some(inst) = setup("escapes") else { return };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    // Double fork, setsid, a new process group, and a process that ignores SIGTERM.
    let body = format!(
        "(sleep {s} &) ; setsid sleep {s} & setsid -f sleep {s}; \
         perl -e 'setpgrp(0,0); exec \"sleep\", \"{s}\"' & \
         sh -c 'trap \"\" TERM; sleep {s}' & exec sleep {s}"
    );
    let sc = script(&inst, "escape.sh", &body);
    inst.lanco(
        Some(ALICE),
        &["ns", "run", "--stop-timeout", "1", "esc", &sc],
    )
    .ok();
    assert!(
        wait_for(Duration::from_secs(10), || pids_with(&s).len() >= 6),
        "{:?}",
        pids_with(&s)
    );
    let before = pids_with(&s);
    let listed = inst.task_cgroup("ns", "esc").procs_recursive().unwrap();
    for p in &before {
        assert!(
            listed.contains(p),
            "escaped process {p} is not in the task's cgroup"
        );
    }
    let t0 = Instant::now();
    inst.lanco(Some(ALICE), &["ns", "stop", "esc"]).ok();
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "the TERM-ignoring one needed the timeout"
    );
    assert!(
        before.iter().all(|p| !alive(*p)),
        "survivors: {:?}",
        before.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
    let st = inst.status("ns", "esc");
    assert_eq!(st["last"]["stopped"], true, "{st}");
    assert_eq!(st["last"]["killed_after_timeout"], true, "{st}");
}

#[test]
fn sigterm_ignoring_task_is_killed_after_its_timeout() {
    let Some(inst) = setup("sigterm_ignoring") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    let cmd = format!("trap '' TERM; sleep {s}");
    inst.lanco(Some(ALICE), &["ns", "run", "stubborn", "sh", "-c", &cmd])
        .ok();
    // `run` returns at exec; the sleep exists once the trap is set.
    assert!(wait_for(Duration::from_secs(10), || !pids_with(&s).is_empty()));
    let t0 = Instant::now();
    inst.lanco(Some(ALICE), &["ns", "stop", "--timeout", "0.5", "stubborn"])
        .ok();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(pids_with(&s).is_empty());
    let st = inst.status("ns", "stubborn");
    assert_eq!(st["last"]["killed_after_timeout"], true, "{st}");
    assert_eq!(st["last"]["exit"]["value"], 9, "{st}");
    // A task that exits on SIGTERM is not waited for.
    inst.lanco(Some(ALICE), &["ns", "run", "polite", "sleep", &s])
        .ok();
    let t0 = Instant::now();
    inst.lanco(Some(ALICE), &["ns", "stop", "polite"]).ok();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        inst.status("ns", "polite")["last"]["killed_after_timeout"],
        false
    );
}

#[test]
fn fork_bomb_stops_with_no_survivor_50_times() {
    let Some(inst) = setup("fork_bomb") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    // Forks without end; every copy carries the marker. RLIMIT_NPROC (this
    // host has no pids controller) keeps the shared machine's pid space
    // alive: fork fails at the limit and the bomb keeps trying.
    let body = format!("b() {{ sleep {s} & b & b; }}; b");
    let sc = script(&inst, "bomb.sh", &body);
    for round in 0..50 {
        inst.lanco(
            Some(ALICE),
            &["ns", "run", "bomb", "prlimit", "--nproc=400", "sh", &sc],
        )
        .ok();
        let cg = inst.task_cgroup("ns", "bomb");
        assert!(
            wait_for(Duration::from_secs(20), || cg
                .procs()
                .map(|p| p.len())
                .unwrap_or(0)
                >= 100),
            "round {round}: the bomb did not grow"
        );
        inst.lanco(Some(ALICE), &["ns", "stop", "--timeout", "1", "bomb"])
            .ok();
        assert!(!cg.exists(), "round {round}: cgroup left behind");
        let survivors: Vec<i32> = pids_with(&s).into_iter().filter(|p| alive(*p)).collect();
        assert!(
            survivors.is_empty(),
            "round {round}: survivors {survivors:?}"
        );
        assert_eq!(
            inst.lanco(Some(ALICE), &["ns", "check", "bomb"]).code(),
            1,
            "round {round}"
        );
    }
}

#[test]
fn kill_delivers_a_signal_to_every_process() {
    let Some(inst) = setup("kill_signal") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let out = inst.dir.join("hups");
    std::fs::write(&out, "").unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let body = format!(
        "for i in 1 2 3; do sh -c 'trap \"echo hup >> {0}; exit 0\" HUP; while :; do sleep 0.05; done' & done; wait",
        out.display()
    );
    let sc = script(&inst, "hup.sh", &body);
    inst.lanco(Some(ALICE), &["ns", "run", "hup", &sc]).ok();
    assert!(wait_for(Duration::from_secs(5), || inst
        .task_cgroup("ns", "hup")
        .procs()
        .unwrap_or_default()
        .len()
        >= 4));
    std::thread::sleep(Duration::from_millis(200));
    inst.lanco(Some(ALICE), &["ns", "kill", "-s", "HUP", "hup"])
        .ok();
    assert!(wait_for(
        Duration::from_secs(5),
        || std::fs::read_to_string(&out).unwrap().lines().count() == 3
    ));
    inst.lanco(Some(ALICE), &["ns", "kill", "-s", "NOPE", "hup"])
        .fails(2, "unknown signal");
    inst.lanco(Some(ALICE), &["ns", "kill", "nothere"])
        .fails(3, "task nothere is not running");
}

#[test]
fn task_survives_its_monitor_being_killed() {
    let Some(inst) = setup("monitor_killed") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    let cmd = format!("sleep {s} & sleep {s}");
    inst.lanco(Some(ALICE), &["ns", "run", "orphan", "sh", "-c", &cmd])
        .ok();
    inst.signal_monitor("ns", "orphan", nix::sys::signal::Signal::SIGKILL);
    // Still listed, checkable and stoppable.
    inst.lanco(Some(ALICE), &["ns", "check", "orphan"]).ok();
    assert!(inst
        .lanco(Some(ALICE), &["ns", "ls"])
        .stdout()
        .contains(&format!("sleep {s}")));
    assert_eq!(inst.status("ns", "orphan")["monitor_alive"], false);
    inst.lanco(Some(ALICE), &["ns", "run", "orphan", "true"])
        .fails(3, "already running");
    inst.lanco(Some(ALICE), &["ns", "stop", "orphan"]).ok();
    assert!(pids_with(&s).is_empty());
    let st = inst.status("ns", "orphan");
    assert_eq!(st["last"]["exit"]["kind"], "lost", "{st}");
    let human = inst
        .lanco(Some(ALICE), &["ns", "status", "orphan"])
        .stdout();
    assert!(human.contains("exit status lost"), "{human}");
    // And the name can be used again.
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "orphan", "true"])
        .ok();
}

/// The cgroup a dead monitor's task leaves behind, once killed with
/// cgroup.kill (its user may), is made anew by the next run of the name: reused, the kernel
/// would kill every process born into it.
#[test]
fn a_killed_leftover_cgroup_is_not_reused() {
    let Some(inst) = setup("killed_leftover") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["ns", "run", "t", "sleep", &s])
        .ok();
    inst.signal_monitor("ns", "t", nix::sys::signal::Signal::SIGKILL);
    let cg = inst.task_cgroup("ns", "t");
    cg.kill().unwrap();
    assert!(cg
        .wait_events(Duration::from_secs(5), |e| !e.populated)
        .unwrap());
    assert!(cg.exists());
    inst.lanco(Some(ALICE), &["ns", "run", "t", "sleep", &s])
        .ok();
    inst.lanco(Some(ALICE), &["ns", "check", "t"]).ok();
    assert_eq!(pids_with(&s).len(), 1);
    let rec = std::fs::read_to_string(inst.state_file("ns", "task-t.exit.json")).unwrap();
    assert!(rec.contains("\"lost\""), "{rec}");
}

#[test]
fn task_survives_its_callers_cgroup_being_killed_and_a_hangup() {
    let Some(mut inst) = setup("caller_killed") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    // A login session: a cgroup outside lanco's root, killed whole at
    // logout (logind's KillUserProcesses=yes writes cgroup.kill), and a
    // terminal that hangs up.
    let session = inst.session_cgroup("session");
    let lanco = inst.bin.join("lanco");
    let inner = format!(
        "echo $$ > {procs}; exec setpriv --reuid={ALICE} --regid={ALICE} --init-groups {lanco} ns run survivor sleep {s}",
        procs = session.path().join("cgroup.procs").display(),
        lanco = lanco.display()
    );
    // `script` gives the caller a real controlling terminal, which goes away
    // (SIGHUP to the session) when it exits.
    let st = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("LANCO_CONFIG", &inst.config)
        .current_dir(&inst.dir)
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "run in a terminal failed: {st}");
    session.kill().unwrap();
    session
        .wait_events(Duration::from_secs(5), |e| !e.populated)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    inst.lanco(Some(ALICE), &["ns", "check", "survivor"]).ok();
    assert_eq!(pids_with(&s).len(), 1);
    assert_eq!(inst.status("ns", "survivor")["monitor_alive"], true);
    inst.lanco(Some(ALICE), &["ns", "stop", "survivor"]).ok();
}

#[test]
fn sigterm_to_the_monitor_stops_the_task_and_keeps_its_status() {
    let Some(inst) = setup("monitor_sigterm") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // What systemd does when the task root is stopped: SIGTERM to every
    // process of the cgroup, monitors included.
    inst.lanco(
        Some(ALICE),
        &[
            "ns",
            "run",
            "t",
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    )
    .ok();
    // `run` returns at exec, before the shell has set its trap.
    assert!(wait_for(Duration::from_secs(10), || inst
        .read_log("ns", "t")
        .contains("ready")));
    inst.signal_monitor("ns", "t", nix::sys::signal::Signal::SIGTERM);
    let st = inst.status("ns", "t");
    assert_eq!(
        st["last"]["exit"],
        serde_json::json!({"kind": "code", "value": 7}),
        "{st}"
    );
    assert_eq!(st["last"]["stopped"], true);
}

#[test]
fn a_task_that_makes_its_own_cgroups_is_still_one_task() {
    let Some(inst) = setup("nested_cgroups") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    // The task owns its cgroup, so it may make sub-cgroups and move into them.
    let mount = lanco_proto::cgroupfs::cgroup2_mount().unwrap();
    let body = format!(
        "cg={}$(sed -n 's/^0:://p' /proc/self/cgroup); mkdir \"$cg/inner\"; \
         sh -c 'echo $$ > \"$1/inner/cgroup.procs\"; exec sleep {s}' sh \"$cg\" & exec sleep {s}",
        mount.display()
    );
    let sc = script(&inst, "nest.sh", &body);
    inst.lanco(Some(ALICE), &["ns", "run", "nest", &sc]).ok();
    let cg = inst.task_cgroup("ns", "nest");
    let listed = || inst.lanco(Some(ALICE), &["ns", "ls"]).stdout();
    let both = |out: &str| out.matches(&format!(" sleep {s}\n")).count() == 2;
    assert!(
        wait_for(Duration::from_secs(5), || both(&listed())),
        "both sleeps, one in a nested cgroup, are listed: {}",
        listed()
    );
    assert_eq!(
        Cgroup::new(cg.path().join("inner")).procs().unwrap().len(),
        1
    );
    inst.lanco(Some(ALICE), &["ns", "stop", "nest"]).ok();
    assert!(pids_with(&s).is_empty());
    assert!(
        !cg.exists(),
        "the task's cgroup and the one it made are removed"
    );
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "nest", "true"])
        .ok();
}
