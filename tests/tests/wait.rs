//! Waiting for a run: `wait` never misses the end of a run, however short,
//! and always gives that run's record; `status` right after the end never
//! answers with the previous run's record.

use std::time::{Duration, Instant};

use lanco_e2e::{setup, unique_sleep, ALICE, BOB, OPS};
use nix::sys::signal::Signal;

#[test]
fn wait_never_misses_a_run_that_ends_at_once() {
    let Some(inst) = setup("wait_short") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    let mut slowest = Duration::ZERO;
    for round in 0..100 {
        let code = round % 50;
        inst.lanco(a, &["ns", "run", "q", "sh", "-c", &format!("exit {code}")])
            .ok();
        let t0 = Instant::now();
        let o = inst.lanco(a, &["ns", "wait", "q"]);
        let took = t0.elapsed();
        slowest = slowest.max(took);
        assert_eq!(o.code(), code, "round {round}: {o}");
        // 0.1 missed the end and slept 10 to 65 s; this is no benchmark,
        // just far below what a missed wake-up costs.
        assert!(took < Duration::from_secs(3), "round {round}: {took:?}");
    }
    eprintln!("wait: slowest of 100 runs that end at once: {slowest:?}");
}

#[test]
fn a_run_killed_by_a_real_time_signal_keeps_its_status() {
    let Some(inst) = setup("wait_rt_signal") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    // glibc's SIGRTMIN+2; the kernel numbers it 36 (kill -l).
    let sig = libc::SIGRTMIN() + 2;
    let o = inst.lanco(
        a,
        &[
            "ns",
            "run",
            "-f",
            "q",
            "sh",
            "-c",
            &format!("kill -{sig} $$"),
        ],
    );
    assert_eq!(o.code(), 128 + sig, "as a shell says it: {o}");
    let st = inst.status_as(a, "ns", "q");
    assert_eq!(st["last"]["exit"]["kind"], "signal", "{st}");
    assert_eq!(st["last"]["exit"]["value"], sig, "{st}");
    // (status of a task not running exits 1, as check)
    let human = inst.lanco(a, &["ns", "status", "q"]).stdout();
    let said = format!("killed by signal {sig} (SIGRTMIN+2)");
    assert!(human.contains(&said), "{human}");
    inst.lanco(
        a,
        &["ns", "run", "q", "sh", "-c", &format!("kill -{sig} $$")],
    )
    .ok();
    assert_eq!(inst.lanco(a, &["ns", "wait", "q"]).code(), 128 + sig);
}

#[test]
fn status_right_after_the_end_is_this_runs_record() {
    let Some(inst) = setup("status_after_end") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    for round in 0..30 {
        let code = 10 + round;
        inst.lanco(
            Some(ALICE),
            &["ns", "run", "q", "sh", "-c", &format!("exit {code}")],
        )
        .ok();
        // As soon as it is not running, the record must be this run's.
        let t0 = Instant::now();
        loop {
            // Another member asks: it cannot record anything itself.
            let st = inst.status_as(Some(BOB), "ns", "q");
            if st["state"] == "not_running" {
                assert_eq!(st["last"]["exit"]["value"], code, "round {round}: {st}");
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "round {round}: {st}"
            );
        }
        inst.lanco(Some(ALICE), &["ns", "wait", "q"]);
    }
}

#[test]
fn wait_times_out_follows_a_dead_monitor_and_stop_says_it_killed() {
    let Some(inst) = setup("wait_timeout") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (a, b) = (Some(ALICE), Some(BOB));
    let s = unique_sleep();
    inst.lanco(a, &["ns", "run", "long", "sleep", &s]).ok();
    let t0 = Instant::now();
    inst.lanco(b, &["ns", "wait", "--timeout", "0.3", "long"])
        .fails(124, "task long is still running after 0.3 s");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Waits given up under a timeout do not pile up in the monitor.
    let monitor = inst.status("ns", "long")["info"]["monitor_pid"]
        .as_i64()
        .unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{monitor}/fd"))
            .unwrap()
            .count()
    };
    let before = fds();
    for _ in 0..100 {
        inst.lanco(b, &["ns", "wait", "--timeout", "0.01", "long"])
            .fails(124, "still running");
    }
    assert!(fds() <= before + 2, "monitor fds {before} -> {}", fds());
    // Its monitor dies: wait watches the cgroup instead, and the run's
    // record says its status was lost.
    inst.signal_monitor("ns", "long", Signal::SIGKILL);
    inst.lanco(b, &["ns", "wait", "--timeout", "0.3", "long"])
        .fails(124, "still running");
    let waiter = inst
        .cmd(b, &["ns", "wait", "long"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    inst.lanco(a, &["ns", "stop", "long"]).ok();
    // A lost status is a system error, as for run -f, and said.
    lanco_e2e::Out(waiter.wait_with_output().unwrap()).fails(8, "task long: exit status lost");
    let st = inst.status_as(a, "ns", "long");
    assert_eq!(st["last"]["exit"]["kind"], "lost", "{st}");
    // stop reports a kill at the timeout.
    inst.lanco(
        a,
        &[
            "ns",
            "run",
            "--stop-timeout",
            "0.3",
            "stubborn",
            "sh",
            "-c",
            &format!("trap '' TERM; sleep {s}"),
        ],
    )
    .ok();
    // `run` returns at exec; the sleep exists once the trap is set.
    assert!(lanco_e2e::wait_for(Duration::from_secs(10), || {
        !lanco_e2e::pids_with(&s).is_empty()
    }));
    let o = inst.lanco(a, &["ns", "stop", "stubborn"]);
    o.ok();
    assert!(o.stderr().contains("was killed"), "{o}");
    // Several tasks: the first non-zero status.
    inst.lanco(a, &["ns", "run", "-f", "zero", "true"]).ok();
    inst.lanco(a, &["ns", "run", "five", "sh", "-c", "exit 5"])
        .ok();
    assert_eq!(inst.lanco(a, &["ns", "wait", "zero", "five"]).code(), 5);
    inst.lanco(a, &["ns", "wait", "never-ran"])
        .fails(3, "task never-ran is not running");
}
