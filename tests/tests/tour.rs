//! The quick tour of the README and a namespace shared by two members, as
//! real users on the real kernel.

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
        out.contains("sh -c 'while true; do echo tick; sleep 0.2; done'"),
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
    // Every one alive before and after the listing must be in it. Tried a
    // few times: on a loaded machine a snapshot can catch fewer than three.
    let mut checked = 0;
    for _ in 0..5 {
        assert!(wait_for(Duration::from_secs(10), || sleeps().len() >= 3));
        let before = sleeps();
        let ls = inst.lanco(a, &["testns", "ls", "-l"]).stdout();
        let section = ls
            .split("second-task\n")
            .nth(1)
            .expect("second-task listed");
        checked = 0;
        for pid in before.into_iter().filter(|p| lanco_e2e::alive(*p)) {
            assert!(
                section.contains(&format!("→ {pid} ")),
                "process {pid} of the task not listed:\n{ls}"
            );
            checked += 1;
        }
        if checked >= 3 {
            break;
        }
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
