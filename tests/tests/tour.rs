//! The quick tour of the README, refusals, start failures and the options
//! of `run`, as real users on the real kernel.

use std::time::Duration;

use lanco_e2e::{pids_with, setup, unique_sleep, wait_for, ALICE, BOB, OPS};

#[test]
fn quick_tour() {
    let Some(inst) = setup("quick_tour") else {
        return;
    };
    inst.init("testns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(
        a,
        &[
            "testns",
            "run",
            "first-task",
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.2; done",
        ],
    )
    .ok();
    inst.lanco(a, &["testns", "check", "first-task"]).ok();
    assert!(
        inst.lanco(a, &["testns", "check", "first-task"])
            .stdout()
            .is_empty(),
        "check is silent"
    );
    let ls = inst.lanco(a, &["testns", "ls"]);
    ls.ok();
    let out = ls.stdout();
    assert!(out.starts_with("first-task\n → "), "tree format: {out}");
    assert!(
        out.contains("sh -c while true; do echo tick; sleep 0.2; done"),
        "{out}"
    );
    assert!(wait_for(Duration::from_secs(5), || inst
        .read_log("testns", "first-task")
        .starts_with("tick\n")));

    inst.lanco(a, &["testns", "run", "first-task", "true"])
        .fails(3, "[WARN/run] task first-task is already running");
    inst.lanco(a, &["testns", "stop", "second-task"])
        .fails(3, "[WARN/stop] task second-task is not running");

    let s = unique_sleep();
    let loop_cmd = format!("while true; do (sleep {s} &)& sleep 0.1; done");
    inst.lanco(a, &["testns", "run", "second-task", "sh", "-c", &loop_cmd])
        .ok();
    // The `sleep S` copies (not the loop's short-lived subshells, whose
    // command line names S too) live on: each must be in the listing.
    let sleeps = || {
        pids_with(&s)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
            })
            .collect::<Vec<_>>()
    };
    assert!(wait_for(Duration::from_secs(10), || sleeps().len() >= 3));
    let before = sleeps();
    let ls = inst.lanco(a, &["testns", "ls", "-l"]).stdout();
    let section = ls
        .split("second-task\n")
        .nth(1)
        .expect("second-task listed");
    let mut checked = 0;
    for pid in before.into_iter().filter(|p| lanco_e2e::alive(*p)) {
        assert!(
            section.contains(&format!("→ {pid} ")),
            "process {pid} of the task not listed:\n{ls}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "too few processes to check: {checked}");
    inst.lanco(a, &["testns", "stop", "second-task"]).ok();
    assert_eq!(
        inst.lanco(a, &["testns", "check", "second-task"]).code(),
        1,
        "Killed!"
    );
    assert!(
        pids_with(&s).iter().all(|p| !lanco_e2e::alive(*p)),
        "a sleep survived the stop"
    );
    assert!(
        !inst.task_cgroup("testns", "second-task").exists(),
        "cgroup removed"
    );

    // first-task is still running; stopping it leaves nothing either.
    inst.lanco(a, &["testns", "check", "first-task"]).ok();
    inst.lanco(a, &["testns", "stop", "first-task"]).ok();
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .monitors("testns")
            .is_empty()),
        "a monitor outlived its task"
    );
}

#[test]
fn start_failures_leave_nothing_behind() {
    let Some(inst) = setup("start_failures") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "t", "nosuchcmd"])
        .fails(6, "unable to run nosuchcmd: No such file or directory");
    let not_exec = inst.dir.join("not-executable");
    std::fs::write(&not_exec, "data").unwrap();
    let not_exec = not_exec.to_str().unwrap();
    inst.lanco(a, &["ns", "run", "t", not_exec])
        .fails(6, &format!("unable to run {not_exec}: Permission denied"));
    inst.lanco(a, &["ns", "run", "--cwd", "/root", "t", "true"])
        .fails(6, "unable to run true: Permission denied");
    // A member is told the same about a missing namespace as a stranger
    // about a foreign one.
    inst.lanco(a, &["nons", "run", "t", "true"])
        .fails(4, "no such namespace nons, or you are not a member of it");
    inst.lanco(a, &["ns", "run", "t"]).fails(2, "required");
    assert!(!inst.task_cgroup("ns", "t").exists(), "no half-made cgroup");
    assert!(inst.monitors("ns").is_empty(), "no orphan monitor");
    assert!(!inst.state_file("ns", "task-t.state.json").exists());
    assert!(
        !inst.state_file("ns", "task-t.exit.json").exists(),
        "a run that never started has no exit record"
    );
    // The name is free again.
    inst.lanco(a, &["ns", "run", "-f", "t", "true"]).ok();
}

#[test]
fn bad_names_are_rejected_and_change_nothing() {
    let Some(inst) = setup("bad_names") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let long = "a".repeat(300);
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        &long,
        "nul\0x",
        "new\nline",
        "cgroup.procs",
        "-x",
    ] {
        if bad.contains('\0') {
            // No argv can carry a NUL; the validator's unit tests cover it.
            continue;
        }
        let o = inst.lanco(Some(ALICE), &["ns", "run", bad, "true"]);
        assert_eq!(o.code(), 2, "task name {bad:?}: {o}");
        assert_eq!(o.stderr().lines().count(), 1, "{o}");
        let o = inst.lanco(Some(ALICE), &["ns", "check", bad]);
        assert_eq!(o.code(), 2, "check of task name {bad:?}: {o}");
        let o = inst.lanco(None, &[bad, "init", "-u", ALICE]);
        assert_eq!(o.code(), 2, "namespace name {bad:?}: {o}");
    }
    let dirs = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    // A member's subtree comes with its first admission; no run got there.
    assert_eq!(
        dirs(inst.ns_cgroup("ns").path()),
        Vec::<String>::new(),
        "no cgroup was made"
    );
    assert_eq!(
        std::fs::read_dir(&inst.cgroup_root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .count(),
        1
    );
}

#[test]
fn run_options_foreground_on_exit_env_cwd_logs() {
    let Some(inst) = setup("run_options") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    // -f exits with the task's status; 128+N for a signal.
    assert_eq!(
        inst.lanco(a, &["ns", "run", "-f", "t", "sh", "-c", "exit 7"])
            .code(),
        7
    );
    assert_eq!(
        inst.lanco(a, &["ns", "run", "-f", "t", "sh", "-c", "kill -USR1 $$"])
            .code(),
        128 + 10
    );
    // --env, --cwd, -c with the exit status in its environment, output to the log.
    let o = inst.lanco(
        a,
        &[
            "ns",
            "run",
            "-f",
            "--env",
            "GREETING=hello",
            "--cwd",
            "/tmp",
            "-c",
            "echo on-exit $LANCO_NAMESPACE $LANCO_TASK $LANCO_EXIT_STATUS",
            "t",
            "sh",
            "-c",
            "echo $GREETING from $(pwd); exit 3",
        ],
    );
    assert_eq!(o.code(), 3, "{o}");
    let log = inst.read_log("ns", "t");
    assert!(log.contains("hello from /tmp\n"), "{log}");
    assert!(log.contains("on-exit ns t 3\n"), "{log}");
    // Each run of a name rotates the previous run's log.
    inst.lanco(a, &["ns", "run", "-f", "rot", "echo", "first"])
        .ok();
    inst.lanco(a, &["ns", "run", "-f", "rot", "echo", "second"])
        .ok();
    assert_eq!(inst.read_log("ns", "rot"), "second\n");
    let rotated =
        std::fs::read_to_string(format!("{}.1", inst.log_path("ns", "rot").display())).unwrap();
    assert_eq!(rotated, "first\n");
    // logs -n
    inst.lanco(a, &["ns", "run", "-f", "lines", "sh", "-c", "seq 1 100"])
        .ok();
    assert_eq!(
        inst.lanco(a, &["ns", "logs", "-n", "3", "lines"]).stdout(),
        "98\n99\n100\n"
    );
    assert!(inst
        .lanco(a, &["ns", "logs", "lines"])
        .stdout()
        .starts_with("1\n2\n"));
    // -l LOGFILE
    let custom = inst.dir.join("custom.log");
    std::fs::set_permissions(
        &inst.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "-f",
            "-l",
            custom.to_str().unwrap(),
            "c",
            "echo",
            "custom",
        ],
    )
    .ok();
    assert_eq!(std::fs::read_to_string(&custom).unwrap(), "custom\n");
    // Exit record and accounting line, one per run.
    let st = inst.status("ns", "t");
    assert_eq!(st["state"], "not_running");
    assert_eq!(st["last"]["exit"]["kind"], "code");
    assert_eq!(st["last"]["exit"]["value"], 3);
    let acct = std::fs::read_to_string(inst.state_file("ns", "accounting.jsonl")).unwrap();
    assert_eq!(acct.lines().count(), 7, "one line per run: {acct}");
    for l in acct.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for k in [
            "namespace",
            "task",
            "user",
            "command",
            "start_time",
            "end_time",
            "exit",
            "cpu_usec",
        ] {
            assert!(!v[k].is_null(), "accounting line lacks {k}: {l}");
        }
        assert_eq!(v["user"], ALICE);
    }
}

#[test]
fn group_members_share_a_namespace() {
    let Some(inst) = setup("group_members") else {
        return;
    };
    inst.init("shared", ALICE, OPS);
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["shared", "run", "a-task", "sleep", &s])
        .ok();
    // bob, in the group, sees, reads, signals and stops alice's task.
    let b = Some(BOB);
    assert!(inst
        .lanco(b, &["shared", "ls"])
        .stdout()
        .contains(&format!("sleep {s}")));
    inst.lanco(b, &["shared", "check", "a-task"]).ok();
    inst.lanco(b, &["shared", "logs", "a-task"]).ok();
    inst.lanco(b, &["shared", "status", "a-task"]).ok();
    inst.lanco(b, &["shared", "stop", "a-task"]).ok();
    assert!(pids_with(&s).is_empty());
    // bob can run tasks there too, and alice can stop them.
    inst.lanco(b, &["shared", "run", "b-task", "sleep", &s])
        .ok();
    inst.lanco(Some(ALICE), &["shared", "kill", "-s", "KILL", "b-task"])
        .ok();
    assert!(wait_for(Duration::from_secs(5), || inst
        .lanco(b, &["shared", "check", "b-task"])
        .code()
        == 1));
    let st = inst.status("shared", "b-task");
    assert_eq!(st["last"]["exit"]["value"], 9, "{st}");
}

#[test]
fn logs_follow_and_rotation_of_a_running_task() {
    if !lanco_e2e::can_run("logs_follow") {
        return;
    }
    let inst = lanco_e2e::Install::new("logs_follow", "log_max_bytes = 4096\nlog_keep = 2\n");
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    // logs -f prints as the task writes and returns once it has ended.
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "lf",
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; sleep 0.3; done",
        ],
    )
    .ok();
    let o = inst.lanco(a, &["ns", "logs", "-f", "lf"]);
    o.ok();
    assert_eq!(o.stdout(), "line1\nline2\nline3\n");
    // A chatty task's log is rotated while it runs (checked every 10 s) and
    // the task writes on at the start of the truncated file.
    let line = "0123456789".repeat(8);
    let cmd = format!("while :; do echo {line}; sleep 0.01; done");
    inst.lanco(a, &["ns", "run", "chatty", "sh", "-c", &cmd])
        .ok();
    let rotated =
        std::path::PathBuf::from(format!("{}.1", inst.log_path("ns", "chatty").display()));
    assert!(
        wait_for(Duration::from_secs(30), || rotated.exists()),
        "not rotated"
    );
    let old = std::fs::read(&rotated).unwrap();
    assert!(old.len() >= 4096, "rotated at {} bytes", old.len());
    assert!(wait_for(Duration::from_secs(5), || inst
        .read_log("ns", "chatty")
        .len()
        > 200));
    let cur = std::fs::read(inst.log_path("ns", "chatty")).unwrap();
    assert!(!cur.contains(&0), "no hole of NULs after the truncation");
    assert!(
        cur.len() < old.len() + 4096,
        "the log was truncated ({} bytes)",
        cur.len()
    );
    inst.lanco(a, &["ns", "stop", "chatty"]).ok();
}
