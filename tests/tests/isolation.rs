//! Tenants are isolated: a user outside a namespace can neither be admitted
//! to it nor stop, kill, list, inspect or read the logs of its tasks.

use lanco_e2e::{pids_with, setup, unique_sleep, ALICE, EVE, OPS};

#[test]
fn another_tenant_can_do_nothing_to_this_namespace() {
    let Some(inst) = setup("isolation") else {
        return;
    };
    inst.init("alicens", ALICE, OPS);
    inst.init("evens", EVE, EVE);
    let s = unique_sleep();
    inst.lanco(
        Some(ALICE),
        &[
            "alicens",
            "run",
            "private",
            "sh",
            "-c",
            &format!("echo secret; exec sleep {s}"),
        ],
    )
    .ok();
    let e = Some(EVE);
    for args in [
        vec!["run", "intruder", "true"],
        vec!["stop", "private"],
        vec!["kill", "-s", "KILL", "private"],
        vec!["ls"],
        vec!["logs", "private"],
        vec!["status", "private"],
        vec!["check", "private"],
    ] {
        let mut full = vec!["alicens"];
        full.extend(args.iter());
        let o = inst.lanco(e, &full);
        o.fails(
            4,
            "no such namespace alicens, or you are not a member of it",
        );
        assert!(
            !o.stdout().contains("secret") && !o.stdout().contains(&s),
            "{o}"
        );
    }
    // Nothing happened to alice's task.
    inst.lanco(Some(ALICE), &["alicens", "check", "private"])
        .ok();
    assert_eq!(pids_with(&s).len(), 1);
    // Not through the filesystem either.
    assert!(lanco_e2e::as_user(EVE, "ls")
        .arg(inst.ns_cgroup("alicens").path())
        .output()
        .map(|o| !o.status.success())
        .unwrap());
    // The reverse holds too, and eve's own namespace works for eve.
    inst.lanco(e, &["evens", "run", "-f", "mine", "true"]).ok();
    inst.lanco(Some(ALICE), &["evens", "ls"])
        .fails(4, "no such namespace evens, or you are not a member of it");
    inst.lanco(Some(ALICE), &["alicens", "stop", "private"])
        .ok();
}
