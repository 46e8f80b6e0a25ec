//! The options of `run` (-f, -c, --env, --cwd, -l, --stop-timeout) and the
//! logs of a running task (follow, rotation).

use std::time::Duration;

use lanco_e2e::{setup, wait_for, ALICE, OPS};

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
