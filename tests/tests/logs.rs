//! A task's log after its end, `logs -f` (the library's follower) across a
//! rotation, a restart and the end of the run, and lanco's own lines kept
//! out of the task's output (in the exit record instead).

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lanco_e2e::{setup, wait_for, Install, ALICE, BOB, OPS};

/// `lanco logs -f` as `user`, its output gathered as it comes.
struct Follower {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Follower {
    fn start(inst: &Install, user: &str, args: &[&str]) -> Self {
        let mut child = inst
            .cmd(Some(user), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lanco logs -f");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Follower {
            child,
            out,
            reader: Some(reader),
        }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits at most `limit` for it to exit; its status and how long it took.
    fn finish(&mut self, limit: Duration) -> (i32, Duration) {
        let t0 = Instant::now();
        let ended = wait_for(limit, || matches!(self.child.try_wait(), Ok(Some(_))));
        if !ended {
            let _ = self.child.kill();
        }
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        assert!(
            ended,
            "logs -f still running after {limit:?}: {}",
            self.output()
        );
        (status.code().unwrap_or(-1), t0.elapsed())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_finds_the_last_runs_log_after_the_end() {
    let Some(inst) = setup("logs_after_end") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    std::fs::set_permissions(
        &inst.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let custom = inst.dir.join("custom.log");
    let custom = custom.to_str().unwrap();
    inst.lanco(a, &["ns", "run", "-f", "-l", custom, "c", "echo", "custom"])
        .ok();
    // The record keeps where the output went; logs, logs -n and logs -f
    // (the run has ended: what it wrote, then the end) find it. (A -l file
    // is its owner's, with her own group: other members may not read it,
    // unlike the files in the shared log directory.)
    let st = inst.status("ns", "c");
    assert_eq!(st["last"]["log"], custom, "{st}");
    for args in [&["logs"][..], &["logs", "-n", "1"], &["logs", "-f"]] {
        let args: Vec<&str> = [&["ns"][..], args, &["c"]].concat();
        assert_eq!(inst.lanco(a, &args).ok().stdout(), "custom\n", "{args:?}");
    }
    let human = inst.lanco(a, &["ns", "status", "c"]).stdout();
    assert!(human.contains(&format!("log:         {custom}")), "{human}");
    // The next run without -l writes the default log, and logs follows it.
    inst.lanco(a, &["ns", "run", "-f", "c", "echo", "default"])
        .ok();
    assert_eq!(
        inst.status("ns", "c")["last"]["log"],
        inst.log_path("ns", "c").to_str().unwrap()
    );
    assert_eq!(
        inst.lanco(a, &["ns", "logs", "c"]).ok().stdout(),
        "default\n"
    );
    // A custom log someone else put in its place is not read as the task's.
    inst.lanco(a, &["ns", "run", "-f", "-l", custom, "c", "echo", "again"])
        .ok();
    std::fs::remove_file(custom).unwrap();
    lanco_e2e::sh_as(BOB, &format!("echo planted > {custom}")).ok();
    let o = inst.lanco(a, &["ns", "logs", "c"]);
    assert_ne!(o.code(), 0, "{o}");
    assert!(o.stderr().contains(BOB), "the error names the planter: {o}");
    assert!(!o.stdout().contains("planted"), "{o}");
}

#[test]
fn follow_survives_a_copytruncate_rotation() {
    if !lanco_e2e::can_run("logs_follow_rotation") {
        return;
    }
    let inst = Install::new(
        "logs_follow_rotation",
        "log_max_bytes = 4096\nlog_keep = 2\n",
    );
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    // About 3 KiB a second for 13 s: the monitor's check at 10 s finds the
    // log past 4 KiB and rotates it once (the next check would be at 20 s).
    const LINES: u32 = 650;
    let pad = "x".repeat(40);
    let cmd = format!(
        "i=0; while [ $i -lt {LINES} ]; do echo \"line $i {pad}\"; i=$((i+1)); sleep 0.02; done"
    );
    inst.lanco(a, &["ns", "run", "chatty", "sh", "-c", &cmd])
        .ok();
    let mut f = Follower::start(&inst, BOB, &["ns", "logs", "-f", "chatty"]);
    let (code, _) = f.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    let rotated = format!("{}.1", inst.log_path("ns", "chatty").display());
    let old = std::fs::read_to_string(&rotated).expect("the log was rotated");
    let out = f.output();
    let numbers: Vec<u32> = out
        .lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|l| l.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a line of the task: {l:?} in {out}"))
        })
        .collect();
    // In order, none twice, on to the last line: the follower went back to
    // the start of the truncated file rather than waiting for it to grow
    // past where it was. Lines written between the monitor's copy and its
    // truncate are lost by design (a few at most).
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated: {numbers:?}"
    );
    assert_eq!(numbers.first(), Some(&0));
    assert_eq!(numbers.last(), Some(&(LINES - 1)), "{out}");
    let missing = LINES as usize - numbers.len();
    assert!(missing <= 10, "{missing} lines missing: {numbers:?}");
    assert!(
        old.lines().count() > 100,
        "rotated after the 10 s check: {} lines",
        old.lines().count()
    );
}

#[test]
fn follow_ends_with_its_run_and_a_restart_is_a_new_follow() {
    let Some(inst) = setup("logs_follow_restart") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "t",
            "sh",
            "-c",
            // (No "Terminated" from sh when the stop's SIGTERM hits sleep.)
            "exec 2>/dev/null; trap 'exit 0' TERM; echo first; while :; do sleep 0.05; done",
        ],
    )
    .ok();
    let mut f = Follower::start(&inst, BOB, &["ns", "logs", "-f", "t"]);
    assert!(wait_for(Duration::from_secs(5), || f.output() == "first\n"));
    // Stopped and at once run again: the follower followed the first run;
    // it ends with it (its log read to the end) and shows nothing of the
    // second, although that one took the log's name.
    inst.lanco(a, &["ns", "stop", "t"]).ok();
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "t",
            "sh",
            "-c",
            "echo second; sleep 3; echo third",
        ],
    )
    .ok();
    // (Well before the second run ends: it did not wait for that one.)
    let (code, took) = f.finish(Duration::from_secs(5));
    assert_eq!((code, f.output().as_str()), (0, "first\n"));
    assert!(
        took < Duration::from_secs(2),
        "ended {took:?} after the stop"
    );
    // A new follow follows the new run, from the start of its log.
    let mut g = Follower::start(&inst, ALICE, &["ns", "logs", "-f", "t"]);
    g.finish(Duration::from_secs(10));
    assert_eq!(g.output(), "second\nthird\n");
}

#[test]
fn follow_returns_promptly_when_the_run_ends() {
    let Some(inst) = setup("logs_follow_end") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    // A task that is silent at its end: no write wakes the follower, its
    // monitor's exit does. The on-exit command's output is part of the run.
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "-c",
            "echo bye",
            "quiet",
            "sh",
            "-c",
            "echo hi; sleep 1",
        ],
    )
    .ok();
    let t0 = Instant::now();
    let mut f = Follower::start(&inst, BOB, &["ns", "logs", "-f", "quiet"]);
    f.finish(Duration::from_secs(10));
    assert_eq!(f.output(), "hi\nbye\n");
    // (1 s of the task, then the start of two processes: no timeout.)
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");

    // Its monitor killed, the task runs on: the follower sees the end in
    // cgroup.events.
    inst.lanco(
        a,
        &["ns", "run", "orphan", "sh", "-c", "echo hi; sleep 1.5"],
    )
    .ok();
    inst.signal_monitor("ns", "orphan", nix::sys::signal::Signal::SIGKILL);
    let mut f = Follower::start(&inst, ALICE, &["ns", "logs", "-f", "orphan"]);
    let (code, took) = f.finish(Duration::from_secs(10));
    assert_eq!((code, f.output().as_str()), (0, "hi\n"));
    assert!(took < Duration::from_millis(3000), "took {took:?}");

    // -n with -f: the last lines, then what comes.
    inst.lanco(
        a,
        &["ns", "run", "n", "sh", "-c", "seq 1 5; sleep 2; echo 6"],
    )
    .ok();
    assert!(wait_for(Duration::from_secs(5), || inst
        .read_log("ns", "n")
        .starts_with("1\n2\n3\n4\n5\n")));
    let o = inst.lanco(a, &["ns", "logs", "-f", "-n", "2", "n"]);
    assert_eq!(o.ok().stdout(), "4\n5\n6\n");
}

#[test]
fn lancos_own_lines_go_to_the_record_not_the_tasks_log() {
    let Some(inst) = setup("logs_notes") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    // A task that ignores SIGTERM: the stop notes the SIGTERM and, after
    // the timeout, the kill.
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "stubborn",
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    )
    .ok();
    assert!(wait_for(Duration::from_secs(5), || inst
        .read_log("ns", "stubborn")
        .contains("ready")));
    inst.lanco(Some(BOB), &["ns", "stop", "--timeout", "0.5", "stubborn"])
        .ok();
    assert_eq!(
        inst.read_log("ns", "stubborn"),
        "ready\n",
        "only the task's output"
    );
    let st = inst.status("ns", "stubborn");
    let last = &st["last"];
    assert_eq!(last["killed_after_timeout"], true, "{st}");
    let notes: Vec<&str> = last["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes: {st}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains("stop (lanco stop): SIGTERM to every process"),
        "{notes:?}"
    );
    assert!(notes[1].contains("stop timeout reached"), "{notes:?}");
    // Each with its time: "2025-01-02T03:04:05Z stop …".
    assert!(
        notes.iter().all(|n| n.as_bytes().get(19) == Some(&b'Z')),
        "{notes:?}"
    );
    let human = inst.lanco(a, &["ns", "status", "stubborn"]).stdout();
    assert!(human.contains("  notes:\n    "), "{human}");
    assert!(human.contains("stop timeout reached"), "{human}");
    // The same record in the accounting journal.
    let acct = std::fs::read_to_string(inst.state_file("ns", "accounting.jsonl")).unwrap();
    assert!(acct.contains("stop timeout reached"), "{acct}");
    // A run with nothing to say has no notes.
    inst.lanco(a, &["ns", "run", "-f", "quiet", "true"]).ok();
    assert_eq!(
        inst.status("ns", "quiet")["last"]["notes"],
        serde_json::json!([])
    );
}
