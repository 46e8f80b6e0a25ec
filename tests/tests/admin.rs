//! The administrator's side as a new administrator meets it (issue 14):
//! init with an owner outside the group, `ls` of a namespace with a task the
//! caller cannot read, a config edited while lancod runs, and the records of
//! destroyed namespaces through `lancod destroyed`. lancod's journal lines
//! name the namespace and the uid.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use lanco_e2e::*;
use lanco_proto::wire::{self, Request, Response};

fn lancod_log(inst: &Install) -> String {
    fs::read_to_string(inst.dir.join("lancod.log")).unwrap_or_default()
}

/// `lancod ARGS` of the installation, as root or as `user`.
fn lancod(inst: &Install, user: Option<&str>, args: &[&str]) -> Out {
    let bin = inst.bin.join("lancod");
    let mut c = match user {
        Some(u) => as_user(u, &bin),
        None => Command::new(&bin),
    };
    Out(c
        .args(args)
        .env("LANCO_CONFIG", &inst.config)
        .env_remove("JOURNAL_STREAM")
        .current_dir(&inst.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run lancod"))
}

#[test]
fn init_refuses_an_owner_outside_the_group_and_says_how_to_fix_it() {
    let Some(inst) = setup("owner_outside_group") else {
        return;
    };
    // eve is not in ops: her tasks' cgroups could not be shared with ops.
    inst.lanco(None, &["x", "init", "-u", EVE, "-g", OPS])
        .fails(2, &format!("usermod -aG {OPS} {EVE}"));
    assert!(!inst.ns_cgroup("x").exists(), "nothing made");
    assert!(!inst.layout().registry_file(&nsname("x")).exists());
    assert!(!inst.layout().ns_state_dir(&nsname("x")).exists());
    // The README's form, with the owner in the group, works.
    inst.lanco(None, &["x", "init", "-u", ALICE, "-g", OPS])
        .ok();
    let log = lancod_log(&inst);
    assert!(
        log.contains(&format!(
            "init of x allowed for uid 0 (owner {ALICE}, group {OPS})"
        )),
        "{log}"
    );
}

#[test]
fn ls_shows_a_task_it_cannot_read_and_lists_the_rest() {
    let Some(inst) = setup("ls_unreadable") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "run", "hers", "sleep", "1000"])
        .ok();
    inst.lanco(Some(BOB), &["ns", "run", "his", "sleep", "1000"])
        .ok();
    // A task cgroup bob cannot enter (as the owner-outside-the-group case
    // left them: the owner's, closed to the group).
    let hers = inst.task_cgroup("ns", "hers");
    let dir = hers.path().to_owned();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let ls = inst.lanco(Some(BOB), &["ns", "ls"]);
    ls.ok();
    let out = ls.stdout();
    assert!(out.lines().any(|l| l == "his"), "{out}");
    assert!(out.contains(" → "), "his processes are listed: {out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("hers ("))
        .unwrap_or_else(|| panic!("hers is listed: {out}"));
    assert!(
        line.contains("unreadable") && line.contains("Permission denied"),
        "{line}"
    );
    let json = inst.lanco(Some(BOB), &["ns", "ls", "--json"]);
    json.ok();
    let rows: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    let rows = rows.as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["task"] == name)
            .unwrap_or_else(|| panic!("{name} in {rows:?}"))
    };
    assert!(row("hers")["unreadable"]
        .as_str()
        .is_some_and(|w| w.contains("Permission denied")));
    assert!(row("his").get("unreadable").is_none());
    assert!(!row("his")["processes"].as_array().unwrap().is_empty());
    // Its owner still sees it whole.
    let alice = inst.lanco(Some(ALICE), &["ns", "ls"]);
    alice.ok();
    assert!(alice.stdout().lines().any(|l| l == "hers"), "{alice}");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o2750)).unwrap();
    inst.lanco(Some(ALICE), &["ns", "stop", "hers"]).ok();
    inst.lanco(Some(BOB), &["ns", "stop", "his"]).ok();
}

#[test]
fn a_config_edit_applies_at_the_next_request_and_a_bad_one_is_kept_out() {
    let Some(inst) = setup("config_reload") else {
        return;
    };
    let pid = inst.lancod_pid();
    let original = fs::read_to_string(&inst.config).unwrap();
    inst.lanco(Some(ADMIN), &["a", "init", "-u", ALICE, "-g", OPS])
        .fails(4, "only root or the admin group");
    // The README's step: admin_group set while lancod runs (no restart, no
    // idle exit: idle_timeout is 0 here).
    fs::write(
        &inst.config,
        format!("{original}admin_group = \"{ADMINS}\"\n"),
    )
    .unwrap();
    inst.lanco(Some(ADMIN), &["a", "init", "-u", ALICE, "-g", OPS])
        .ok();
    assert!(lancod_log(&inst).contains("changed: re-read"));
    // A broken edit (a typo'd key) and one naming no group: lancod keeps
    // serving with the last good configuration, and says why. (Asked
    // directly: the lanco command reads the same file and refuses a bad
    // one itself.)
    for (bad, ns) in [
        ("admn_group = \"x\"\n", "b"),
        ("admin_group = \"no-such-group-here\"\n", "c"),
    ] {
        fs::write(&inst.config, format!("{original}{bad}")).unwrap();
        let init = Request::Init {
            ns: nsname(ns),
            owner: Some(ALICE.into()),
            group: Some(OPS.into()),
        };
        let bytes = raw_request_as(ADMIN, &inst.socket, &wire::encode(&init).unwrap());
        let answer: Response = wire::read_frame(&mut &bytes[..]).unwrap();
        assert!(
            matches!(answer, Response::Initialized { .. }),
            "{answer:?}: {}",
            lancod_log(&inst)
        );
    }
    let log = lancod_log(&inst);
    assert_eq!(
        log.matches("cannot be used, keeping the previous one")
            .count(),
        2,
        "each bad version is logged once: {log}"
    );
    assert!(
        log.contains("admn_group") && log.contains("no-such-group-here"),
        "{log}"
    );
    // admin_group removed again: refused at once.
    fs::write(&inst.config, &original).unwrap();
    inst.lanco(Some(ADMIN), &["d", "init", "-u", ALICE, "-g", OPS])
        .fails(4, "only root or the admin group");
    assert_eq!(inst.lancod_pid(), pid, "the same lancod throughout");
    assert!(
        lanco_e2e::alive(pid.unwrap()),
        "lancod still serves: {}",
        lancod_log(&inst)
    );
    let log = lancod_log(&inst);
    let admin = uid(ADMIN);
    assert!(
        log.contains(&format!("init of a allowed for uid {admin}"))
            && log.contains(&format!("init of c allowed for uid {admin}"))
            && log.contains(&format!("init of d denied for uid {admin}")),
        "{log}"
    );
}

#[test]
fn destroyed_records_are_listed_shown_and_removed_by_root_only() {
    let Some(inst) = setup_with("destroyed_cmd", NO_SPAWNER) else {
        return;
    };
    inst.init("web", ALICE, OPS);
    inst.lanco(Some(ALICE), &["web", "run", "-f", "hello", "echo", "hello"])
        .ok();
    inst.lanco(Some(ALICE), &["web", "run", "long", "sleep", "1000"])
        .ok();
    let log = lancod_log(&inst);
    assert!(
        log.contains("admitted pid ") && log.contains(&format!(" of uid {} into web", uid(ALICE))),
        "{log}"
    );
    inst.lanco(None, &["web", "destroy", "--force"]).ok();
    // The same name again, destroyed again: two kept sets.
    inst.init("web", ALICE, OPS);
    std::thread::sleep(Duration::from_millis(10));
    inst.lanco(None, &["web", "destroy"]).ok();
    inst.init("other", BOB, OPS);
    inst.lanco(None, &["other", "destroy"]).ok();

    let list = lancod(&inst, None, &["destroyed", "list"]);
    list.ok();
    let out = list.stdout();
    let names: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names.len(), 3, "{out}");
    assert!(
        names[0].starts_with("web-") && names[1].starts_with("web-"),
        "{out}"
    );
    assert!(names[2].starts_with("other-"), "{out}");
    let kept_state = inst.layout().kept_state_dir();
    let kept_logs = inst.layout().kept_log_dir();
    assert!(
        out.contains(&kept_state.join(names[0]).display().to_string())
            && out.contains(&kept_logs.join(names[0]).display().to_string()),
        "records and logs of one destroy under one name: {out}"
    );
    // `lancod destroyed` alone lists.
    assert_eq!(lancod(&inst, None, &["destroyed"]).ok().stdout(), out);

    // show: every file, with the paths to read them at.
    let show = lancod(&inst, None, &["destroyed", "show", names[0]]);
    show.ok();
    let s = show.stdout();
    let journal = s
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|p| p.ends_with("/accounting.jsonl"))
        .unwrap_or_else(|| panic!("the accounting journal is shown: {s}"));
    let lines = fs::read_to_string(journal).unwrap();
    assert!(
        lines.contains("\"hello\"") && lines.contains("\"long\""),
        "{lines}"
    );
    assert!(s.contains("task-hello.log") && s.contains(ALICE), "{s}");
    // By namespace: both of web's, not other's.
    let both = lancod(&inst, None, &["destroyed", "show", "web"]);
    both.ok();
    assert!(
        both.stdout().contains(names[0]) && both.stdout().contains(names[1]),
        "{both}"
    );
    assert!(!both.stdout().contains(names[2]), "{both}");

    // Nobody but root; bad names change nothing.
    lancod(&inst, Some(ALICE), &["destroyed", "list"]).fails(1, "only root");
    lancod(&inst, Some(ADMIN), &["destroyed", "remove", "web"]).fails(1, "only root");
    lancod(&inst, None, &["destroyed", "show", "nosuch"]).fails(1, "nothing kept is named nosuch");
    lancod(&inst, None, &["destroyed", "remove", "../destroyed"])
        .fails(1, "neither a namespace name");

    // A link planted inside (by a tenant that kept a directory open across
    // the destroy) is removed, never followed.
    let victim = inst.dir.join("victim");
    fs::write(&victim, "keep me").unwrap();
    let user_dir = fs::read_dir(kept_state.join(names[0]))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("user-"))
        .unwrap()
        .path();
    std::os::unix::fs::symlink(&victim, user_dir.join("planted")).unwrap();
    std::os::unix::fs::symlink(&inst.dir, user_dir.join("planted-dir")).unwrap();

    let rm = lancod(&inst, None, &["destroyed", "remove", "web"]);
    rm.ok();
    assert_eq!(rm.stdout().lines().count(), 2, "{rm}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(inst.dir.join("lanco.toml").exists());
    for n in &names[..2] {
        assert!(!kept_state.join(n).exists() && !kept_logs.join(n).exists());
    }
    let left = lancod(&inst, None, &["destroyed", "list"]);
    left.ok();
    assert!(
        left.stdout().contains(names[2]) && !left.stdout().contains("web-"),
        "{left}"
    );
    lancod(&inst, None, &["destroyed", "show", "web"]).fails(1, "nothing kept is named web");
}
