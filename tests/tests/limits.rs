//! Limits on the ordinary test host, whose cgroup v2 hierarchy has no
//! controllers (a hybrid layout: memory, pids, cpu and io sit on cgroup v1).
//! Every limit option must fail there with one line naming the controller
//! and the layout, exit 2, and change nothing; only root and the admin group
//! change a namespace's ceilings, whose files members cannot write. What the
//! limits do is tested where the controllers exist: tests/vm.

use lanco_e2e::{setup_with, Cgroup, Install, ADMINS, ALICE, EVE, OPS};

/// The options, each with a valid value.
const OPTIONS: [[&str; 2]; 6] = [
    ["--memory", "64M"],
    ["--memory-high", "32M"],
    ["--pids", "10"],
    ["--cpu", "0.5"],
    ["--cpu-weight", "200"],
    ["--io-weight", "200"],
];

fn install(test: &str) -> Option<Install> {
    let inst = setup_with(test, &format!("admin_group = \"{ADMINS}\"\n"))?;
    let root = Cgroup::new(&inst.cgroup_root);
    let have = root.controllers().unwrap_or_default();
    if have
        .iter()
        .any(|c| ["memory", "pids", "cpu", "io"].contains(&c.as_str()))
    {
        eprintln!(
            "SKIP {test}: this host's cgroup v2 has controllers ({have:?}); tests/vm covers it"
        );
        return None;
    }
    Some(inst)
}

#[test]
fn every_limit_fails_cleanly_where_its_controller_is_missing() {
    let Some(inst) = install("limits_missing") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    for [opt, value] in OPTIONS {
        let controller = match opt {
            "--memory" | "--memory-high" => "memory",
            "--pids" => "pids",
            "--cpu" | "--cpu-weight" => "cpu",
            _ => "io",
        };
        let why = format!("the {controller} controller is not available in cgroup v2 here");
        inst.lanco(a, &["ns", "run", opt, value, "t", "sleep", "60"])
            .fails(2, &why);
        assert!(!inst.task_cgroup("ns", "t").exists(), "{opt}: no cgroup");
        assert!(
            inst.monitors("ns").is_empty() || {
                lanco_e2e::wait_for(std::time::Duration::from_secs(5), || {
                    inst.monitors("ns").is_empty()
                })
            },
            "{opt}: no monitor left"
        );
        // A definition may carry the limit (the host may change); starting
        // it fails the same way.
        inst.lanco(a, &["ns", "define", opt, value, "d", "sleep", "60"])
            .ok();
        inst.lanco(a, &["ns", "start", "d"]).fails(2, &why);
        assert_eq!(
            inst.lanco(a, &["ns", "check", "d"]).code(),
            1,
            "{opt}: d started"
        );
        // Root: a new namespace with the ceiling is not made at all, and an
        // existing one keeps its ceilings.
        inst.lanco(None, &["new", "init", "-u", ALICE, "-g", OPS, opt, value])
            .fails(2, &why);
        assert!(
            !inst.ns_cgroup("new").exists(),
            "{opt}: no half-made namespace"
        );
        inst.lanco(None, &["ns", "limit", opt, value])
            .fails(2, &why);
    }
    assert!(
        inst.lanco(a, &["ns", "limit"])
            .ok()
            .stdout()
            .contains("memory       -"),
        "no ceiling was recorded"
    );
    inst.lanco(a, &["new", "check", "t"])
        .fails(4, "no such namespace new");
    assert!(!inst.state_file("ns", "task-t.exit.json").exists());
    // The hint names the layout where that is the reason.
    let o = inst.lanco(a, &["ns", "run", "--memory", "1G", "t", "true"]);
    let hybrid = std::fs::read_to_string("/proc/cgroups")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("memory\t") && !l.starts_with("memory\t0\t"));
    if hybrid {
        assert!(o.stderr().contains("hybrid layout"), "{o}");
    }
}

#[test]
fn bad_limit_values_are_refused_with_one_line() {
    let Some(inst) = install("limits_bad") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    for [opt, value, why] in [
        ["--memory", "0", "must be more than 0"],
        ["--memory", "12Q", "bad size"],
        ["--memory-high", "1.2.3M", "bad size"],
        ["--pids", "0", "bad process count"],
        ["--cpu", "0", "bad CPU count"],
        ["--cpu", "many", "bad CPU count"],
        ["--cpu-weight", "0", "bad weight"],
        ["--io-weight", "10001", "bad weight"],
    ] {
        inst.lanco(a, &["ns", "run", opt, value, "t", "true"])
            .fails(2, why);
        inst.lanco(None, &["ns", "limit", opt, value]).fails(2, why);
    }
    inst.lanco(None, &["ns", "limit", "--clear", "swap"])
        .fails(2, "no limit \"swap\"");
    inst.lanco(None, &["ns", "limit", "--pids", "5", "--clear", "pids"])
        .fails(2, "set it or clear it");
    // In a definitions file: the file, the line, the key.
    let file = inst.dir.join("defs.toml");
    std::fs::write(&file, "[task.x]\ncmd = [\"true\"]\nmemory = \"lots\"\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    inst.lanco(a, &["ns", "apply", file.to_str().unwrap()])
        .fails(2, ":3: task.x.memory: bad size");
    assert!(!inst.task_cgroup("ns", "t").exists());
}

#[test]
fn definitions_keep_their_limits() {
    let Some(inst) = install("limits_defs") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(
        a,
        &[
            "ns",
            "define",
            "--memory",
            "1536K",
            "--pids",
            "64",
            "--cpu",
            "0.25",
            "--io-weight",
            "300",
            "web",
            "sleep",
            "60",
        ],
    )
    .ok();
    let shown = inst.lanco(a, &["ns", "show", "web"]).ok().stdout();
    for line in [
        "memory = \"1536K\"",
        "pids = \"64\"",
        "cpu = \"0.25\"",
        "io_weight = \"300\"",
    ] {
        assert!(shown.contains(line), "show lacks {line}: {shown}");
    }
    // What show prints, apply reads back unchanged.
    let file = inst.dir.join("web.toml");
    std::fs::write(&file, &shown).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    inst.lanco(a, &["ns", "apply", file.to_str().unwrap()]).ok();
    assert_eq!(inst.lanco(a, &["ns", "show", "web"]).ok().stdout(), shown);
}

#[test]
fn only_root_and_the_admin_group_change_ceilings() {
    let Some(inst) = install("limits_who") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "limit", "--pids", "5"])
        .fails(4, "only root or the admin group may manage namespaces");
    inst.lanco(Some(ALICE), &["ns", "limit", "--clear", "memory"])
        .fails(4, "only root or the admin group may manage namespaces");
    inst.lanco(Some(EVE), &["ns", "limit"])
        .fails(4, "no such namespace ns, or you are not a member of it");
    // Members read them (JSON: every key, null where unset).
    let o = inst.lanco(Some(ALICE), &["ns", "limit", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.ok().stdout()).unwrap();
    for k in [
        "memory",
        "memory_high",
        "pids",
        "cpu",
        "cpu_weight",
        "io_weight",
    ] {
        assert!(v[k].is_null(), "{k}: {v}");
    }
    // The namespace cgroup's files are root's: a member can neither write
    // a ceiling nor enable a controller there.
    let ns = inst.ns_cgroup("ns");
    for file in [
        "cgroup.subtree_control",
        "cgroup.max.descendants",
        "cgroup.max.depth",
    ] {
        let path = ns.file(file);
        let before = std::fs::read_to_string(&path).unwrap();
        let o = lanco_e2e::sh_as(ALICE, &format!("echo 1 > {}", path.display()));
        assert_ne!(o.code(), 0, "alice wrote {file}: {o}");
        assert!(o.stderr().contains("Permission denied"), "{file}: {o}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }
}

#[test]
fn namespaces_lists_what_each_caller_may_use() {
    let Some(inst) = install("namespaces_cmd") else {
        return;
    };
    inst.init("shop", ALICE, OPS);
    inst.lanco(None, &["eves", "init", "-u", EVE]).ok();
    inst.lanco(Some(ALICE), &["shop", "run", "web", "sleep", "60"])
        .ok();
    let list = |who: Option<&str>| -> Vec<(String, u64)> {
        let o = inst.lanco(who, &["namespaces", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&o.ok().stdout()).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["namespace"].as_str().unwrap().to_owned(),
                    n["running"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(list(Some(ALICE)), [("shop".to_owned(), 1)]);
    assert_eq!(list(Some(EVE)), [("eves".to_owned(), 0)]);
    let mut all = list(Some(lanco_e2e::ADMIN));
    all.sort();
    assert_eq!(all, [("eves".to_owned(), 0), ("shop".to_owned(), 1)]);
    let text = inst.lanco(Some(ALICE), &["namespaces"]).ok().stdout();
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert!(
        text.contains(&format!("shop       {ALICE}  {OPS}")),
        "{text}"
    );
    // A reserved word, and the command takes no namespace.
    inst.lanco(None, &["namespaces", "init"])
        .fails(2, "unexpected argument");
    inst.lanco(Some(ALICE), &["shop", "namespaces"])
        .fails(2, "namespaces takes no namespace");
    inst.lanco(Some(ALICE), &["ls"])
        .fails(2, "ls needs a namespace");
    inst.lanco(Some(ALICE), &["shop", "stop", "web"]).ok();
}
