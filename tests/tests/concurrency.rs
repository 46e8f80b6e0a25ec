//! Many starters racing for one name: exactly one wins, nothing leaks.

use std::time::Duration;

use lanco_e2e::{pids_with, setup, unique_sleep, wait_for, ALICE, BOB, OPS};

#[test]
fn fifty_concurrent_runs_of_one_name_start_exactly_one() {
    let Some(inst) = setup("concurrent_runs") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    let children: Vec<_> = (0..50)
        .map(|i| {
            let user = if i % 2 == 0 { ALICE } else { BOB };
            inst.cmd(Some(user), &["ns", "run", "contested", "sleep", &s])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| lanco_e2e::Out(c.wait_with_output().unwrap()))
        .collect();
    let won = outs.iter().filter(|o| o.code() == 0).count();
    assert_eq!(won, 1, "exactly one run must start");
    // The name belongs to whoever claimed it first: the other member is
    // told so, the same member that it runs.
    for o in outs.iter().filter(|o| o.code() != 0) {
        assert_eq!(o.code(), 3, "{o}");
        assert!(
            o.stderr().contains("task contested is already running")
                || o.stderr().contains("task contested belongs to"),
            "{o}"
        );
    }
    assert_eq!(pids_with(&s).len(), 1, "one payload");
    assert!(
        wait_for(Duration::from_secs(5), || inst.monitors("ns").len() == 1),
        "one monitor: {:?}",
        inst.monitors("ns")
    );
    let users = inst.user_cgroups("ns");
    assert_eq!(users.len(), 1, "one member's subtree: {users:?}");
    let tasks: Vec<_> = users[0].1.children().unwrap();
    assert_eq!(
        tasks.len(),
        2,
        "monitors and task-contested only: {tasks:?}"
    );
    inst.lanco(Some(BOB), &["ns", "stop", "contested"]).ok();
    assert!(wait_for(Duration::from_secs(5), || inst
        .monitors("ns")
        .is_empty()));
    let acct = std::fs::read_to_string(inst.state_file("ns", "accounting.jsonl")).unwrap();
    assert_eq!(acct.lines().count(), 1, "one run, one accounting line");
}

#[test]
fn one_user_runs_more_tasks_than_it_has_inotify_instances() {
    let Some(inst) = setup("many_tasks") else {
        return;
    };
    inst.init("many", BOB, OPS);
    // Monitors wait on cgroup.events with poll(2), not inotify, whose
    // instances are limited per user (128 by default).
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .map(|s| s.trim().parse().unwrap_or(128))
        .unwrap_or(128);
    let n = (limit + 20).min(300);
    if n <= limit {
        eprintln!("note: max_user_instances is {limit} here; running {n} tasks proves less");
    }
    let s = unique_sleep();
    for i in 0..n {
        inst.lanco(Some(BOB), &["many", "run", &format!("t{i}"), "sleep", &s])
            .ok();
    }
    let ls = inst.lanco(Some(BOB), &["many", "ls", "--json"]);
    let tasks: serde_json::Value = serde_json::from_str(&ls.stdout()).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), n);
    assert_eq!(inst.monitors("many").len(), n);
    inst.lanco(None, &["many", "destroy", "--force"]).ok();
    assert!(pids_with(&s).is_empty());
}
