//! What bad input gets: start failures and bad names are refused with one
//! line and a documented status, and change nothing.

use lanco_e2e::{setup, ALICE, OPS};

#[test]
fn start_failures_leave_nothing_behind() {
    let Some(inst) = setup("start_failures") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "t", "nosuchcmd"])
        .fails(6, "cannot execute nosuchcmd: No such file or directory");
    let not_exec = inst.dir.join("not-executable");
    std::fs::write(&not_exec, "data").unwrap();
    let not_exec = not_exec.to_str().unwrap();
    inst.lanco(a, &["ns", "run", "t", not_exec])
        .fails(6, &format!("cannot execute {not_exec}: Permission denied"));
    inst.lanco(a, &["ns", "run", "--cwd", "/root", "t", "true"])
        .fails(6, "cannot change directory to /root: Permission denied");
    // A member is told the same about a missing namespace as a stranger
    // about a foreign one.
    inst.lanco(a, &["nons", "run", "t", "true"])
        .fails(4, "no such namespace nons, or you are not a member of it");
    inst.lanco(a, &["ns", "run", "t"]).fails(2, "required");
    assert!(!inst.task_cgroup("ns", "t").exists(), "no half-made cgroup");
    // A monitor that failed to start exits right after saying why.
    assert!(
        lanco_e2e::wait_for(std::time::Duration::from_secs(5), || inst
            .monitors("ns")
            .is_empty()),
        "no orphan monitor"
    );
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
