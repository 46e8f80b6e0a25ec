//! Root's billing journal: the kernel's counters of each member's subtree,
//! sampled by root at admission, by `lancod account` and at destroy, into a
//! file no tenant can write (or, outside the admin group, read).

use std::os::unix::fs::MetadataExt;

use lanco_e2e::{gid, setup_with, uid, Install, ADMINS, ALICE, BOB, EVE, OPS};
use serde_json::Value;

fn journal(inst: &Install) -> Vec<Value> {
    let path = inst.state_dir.join("billing/usage.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn account(inst: &Install) {
    let o = inst.lancod_cmd().arg("account").output().unwrap();
    assert!(o.status.success(), "lancod account: {o:?}");
}

#[test]
fn root_samples_each_members_subtree() {
    let Some(inst) = setup_with("billing", &format!("admin_group = \"{ADMINS}\"\n")) else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // Some CPU as alice, a little as bob.
    inst.lanco(
        Some(ALICE),
        &[
            "ns",
            "run",
            "-f",
            "spin",
            "sh",
            "-c",
            "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done",
        ],
    )
    .ok();
    inst.lanco(Some(BOB), &["ns", "run", "-f", "b", "true"])
        .ok();
    let admitted = journal(&inst);
    let mine = |lines: &[Value], who: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["uid"] == uid(who) && l["namespace"] == "ns")
            .cloned()
            .collect()
    };
    // Each admission was sampled (a warm start has none: at least one each).
    assert!(!mine(&admitted, ALICE).is_empty(), "{admitted:?}");
    assert!(
        admitted.iter().all(|l| l["event"] == "admit"),
        "{admitted:?}"
    );
    account(&inst);
    let all = journal(&inst);
    let last = |who: &str| mine(&all, who).last().cloned().unwrap();
    let a = last(ALICE);
    assert_eq!(a["event"], "sample");
    assert_eq!(a["user"], ALICE);
    // The kernel kept what the removed task cgroup used: at least the
    // task's own record, which its monitor wrote as alice.
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(inst.state_file("ns", "task-spin.exit.json")).unwrap(),
    )
    .unwrap();
    let task_cpu = rec["cpu_usec"].as_u64().unwrap();
    assert!(task_cpu >= 10_000, "the spin used {task_cpu} µs");
    assert!(
        a["cpu_usec"].as_u64().unwrap() >= task_cpu,
        "{a} vs record {task_cpu}"
    );
    assert_ne!(a["cgroup_id"], last(BOB)["cgroup_id"]);
    // root's, readable by the admin group only; tenants can neither read
    // nor plant anything there.
    let dir = inst.state_dir.join("billing");
    let (dm, fm) = (
        std::fs::metadata(&dir).unwrap(),
        std::fs::metadata(dir.join("usage.jsonl")).unwrap(),
    );
    assert_eq!(
        (dm.uid(), dm.gid(), dm.mode() & 0o7777),
        (0, gid(ADMINS), 0o2750)
    );
    assert_eq!(
        (fm.uid(), fm.gid(), fm.mode() & 0o7777),
        (0, gid(ADMINS), 0o640)
    );
    for who in [ALICE, EVE] {
        let o = lanco_e2e::sh_as(
            who,
            &format!("cat {0}/usage.jsonl || touch {0}/x", dir.display()),
        );
        assert_ne!(o.code(), 0, "{who} reached the billing journal: {o}");
    }
    // Destroy samples the members' last counters before their cgroups go.
    inst.lanco(None, &["ns", "destroy"]).ok();
    let after = journal(&inst);
    let gone = mine(&after, ALICE).last().cloned().unwrap();
    assert_eq!(gone["event"], "destroy");
    assert!(gone["cpu_usec"].as_u64() >= a["cpu_usec"].as_u64());
}
