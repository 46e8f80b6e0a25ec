//! Enabled definitions at boot: `lancod restore` (as root, after the
//! namespaces) starts each member's enabled definitions as that member,
//! with a clean identity and environment, and skips, with one line saying
//! why, a member whose definitions another user could have written or who
//! is no longer a member.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use lanco_e2e::{
    gid, pids_with, script, setup, sh_as, uid, unique_sleep, wait_for, Install, Out, ALICE, BOB,
    OPS,
};

const A: Option<&str> = Some(ALICE);
const B: Option<&str> = Some(BOB);

/// `lancod restore` as root, with the installation's config; `wrap`: a
/// shell prefix (fds to leak, variables to set) before it.
fn restore(inst: &Install, wrap: &str, args: &str) -> Out {
    let lancod = inst.bin.join("lancod");
    let o = Out(Command::new("sh")
        .args([
            "-c",
            &format!("{wrap} exec {} restore {args}", lancod.display()),
        ])
        .env("LANCO_CONFIG", &inst.config)
        .env("LANCOD_LOG", "info")
        .current_dir(&inst.dir)
        .stdin(Stdio::null())
        .output()
        .expect("lancod restore"));
    eprintln!("restore: {o}");
    o
}

/// One field of /proc/PID/status.
fn status(pid: i32, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn environ(pid: i32) -> BTreeSet<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The user database's groups of `user`, as `id -G` lists them, sorted.
fn groups(user: &str) -> String {
    let o = std::process::Command::new("id")
        .args(["-G", user])
        .output()
        .unwrap();
    let mut g: Vec<u32> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    g.sort();
    g.dedup();
    g.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

fn running(pattern: &str) -> bool {
    wait_for(Duration::from_secs(10), || pids_with(pattern).len() == 1)
}

/// The one line of `o`'s log about member `user` of `ns` that contains `why`.
fn skipped(o: &Out, ns: &str, user: &str, why: &str) {
    let head = format!("lanco-{ns} user {}: ", uid(user));
    let lines: Vec<String> = o
        .stderr()
        .lines()
        .filter(|l| l.contains(&head))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1, "one line about {user} expected: {o}");
    assert!(
        lines[0].contains(&format!("{head}{why}"))
            && lines[0].ends_with("; enabled tasks not started"),
        "{lines:?} lacks {why:?}"
    );
}

fn stop_all(inst: &Install, tasks: &[(Option<&str>, &str, &str)]) {
    for (who, ns, task) in tasks {
        let o = inst.lanco(*who, &[ns, "stop", task]);
        assert!(matches!(o.code(), 0 | 3), "stop {task}: {o}");
    }
}

#[test]
fn enabled_definitions_start_as_their_definer_and_refusals_are_logged() {
    let Some(inst) = setup("boot_enabled") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (a_on, a_off, b_on, b_off) = (
        unique_sleep(),
        unique_sleep(),
        unique_sleep(),
        unique_sleep(),
    );
    for (who, task, enable, sleep) in [
        (A, "a-on", true, &a_on),
        (A, "a-off", false, &a_off),
        (B, "b-on", true, &b_on),
        (B, "b-off", false, &b_off),
    ] {
        let mut args = vec!["ns", "define", "--env", "FOO=bar baz", "--cwd", "/"];
        if enable {
            args.push("--enable");
        }
        args.extend([task, "sleep", sleep.as_str()]);
        inst.lanco(who, &args).ok();
    }
    // As after a reboot: nothing runs.
    for s in [&a_on, &a_off, &b_on, &b_off] {
        assert!(pids_with(s).is_empty());
    }
    // Root's environment, an open fd and an ignored signal must not reach
    // the tasks.
    let o = restore(
        &inst,
        "export SECRET=root; trap '' HUP; exec 7</etc/hostname;",
        "",
    );
    o.ok();
    assert!(running(&a_on) && running(&b_on), "{o}");
    assert!(pids_with(&a_off).is_empty() && pids_with(&b_off).is_empty());
    for (user, sleep) in [(ALICE, &a_on), (BOB, &b_on)] {
        let pid = pids_with(sleep)[0];
        let u = uid(user);
        assert_eq!(status(pid, "Uid"), format!("{u}\t{u}\t{u}\t{u}"));
        let g = nix::unistd::User::from_name(user).unwrap().unwrap().gid;
        assert_eq!(status(pid, "Gid"), format!("{g}\t{g}\t{g}\t{g}"));
        let mut got: Vec<u32> = status(pid, "Groups")
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        got.sort();
        assert_eq!(
            got.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
            groups(user)
        );
        assert!(got.contains(&gid(OPS)));
        // As unconfined as the root that started it (the test's own).
        for key in ["NoNewPrivs", "Seccomp", "CapPrm", "CapEff", "SigIgn"] {
            let mine = status(std::process::id() as i32, key);
            let want = if key.starts_with("Cap") || key == "SigIgn" {
                "0000000000000000".to_owned()
            } else {
                mine
            };
            assert_eq!(status(pid, key), want, "{key} of {user}'s task");
        }
        // The member's login basics and the definition's environment,
        // nothing of root's or of the start.
        let pw = nix::unistd::User::from_name(user).unwrap().unwrap();
        assert_eq!(
            environ(pid),
            BTreeSet::from([
                "FOO=bar baz".to_owned(),
                format!("HOME={}", pw.dir.display()),
                format!("USER={user}"),
                format!("LOGNAME={user}"),
                format!("SHELL={}", pw.shell.display()),
                "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
            ]),
            "{user}'s task"
        );
        assert!(
            o.stderr()
                .contains(&format!("lanco-ns user {u}: enabled tasks started")),
            "{o}"
        );
    }
    // Again: what runs is left alone.
    let before = (pids_with(&a_on), pids_with(&b_on));
    restore(&inst, "", "").ok();
    assert_eq!((pids_with(&a_on), pids_with(&b_on)), before);
    // --no-tasks: namespaces only.
    stop_all(&inst, &[(A, "ns", "a-on"), (B, "ns", "b-on")]);
    restore(&inst, "", "--no-tasks").ok();
    std::thread::sleep(Duration::from_millis(300));
    assert!(pids_with(&a_on).is_empty() && pids_with(&b_on).is_empty());

    // Refusals: each is bob's, alice's task still starts.
    let bob_dir = inst.user_state_dir("ns", BOB);
    let defs = bob_dir.join("defs.toml");
    let d = bob_dir.display();
    // (reason logged, who does it (None: root), what, in bob's directory)
    let refusals: [(String, Option<&str>, &str); 7] = [
        (
            "defs.toml is group-writable".into(),
            B,
            "chmod g+w defs.toml",
        ),
        (
            "defs.toml is world-writable".into(),
            B,
            "chmod o+w defs.toml",
        ),
        (
            format!("its state directory {d} is group-writable"),
            B,
            "chmod g+w .",
        ),
        (
            "defs.toml is a symbolic link, not a file".into(),
            B,
            "mv defs.toml real.toml && ln -s real.toml defs.toml",
        ),
        (
            "defs.toml is a hard link, not a file".into(),
            B,
            "ln defs.toml other.toml",
        ),
        (
            format!("defs.toml belongs to {ALICE}"),
            None,
            "chown lanco-t-alice defs.toml",
        ),
        (
            format!("its state directory {d} belongs to {ALICE}"),
            None,
            "chown lanco-t-alice .",
        ),
    ];
    let pristine = fs::read(&defs).unwrap();
    for (why, who, what) in &refusals {
        eprintln!("refusal: {what}");
        let script = format!("cd {d} && {what}");
        match who {
            Some(u) => sh_as(u, &script).ok(),
            None => Out(Command::new("sh").args(["-c", &script]).output().unwrap()).ok(),
        };
        let o = restore(&inst, "", "");
        o.ok();
        skipped(&o, "ns", BOB, why);
        assert!(running(&a_on), "{what}: alice's task did not start: {o}");
        assert!(pids_with(&b_on).is_empty(), "{what}: bob's task started");
        // Put bob's things back.
        std::os::unix::fs::chown(&bob_dir, Some(uid(BOB)), None).unwrap();
        fs::set_permissions(&bob_dir, fs::Permissions::from_mode(0o2750)).unwrap();
        for f in ["defs.toml", "real.toml", "other.toml"] {
            let _ = fs::remove_file(bob_dir.join(f));
        }
        fs::write(&defs, &pristine).unwrap();
        std::os::unix::fs::chown(&defs, Some(uid(BOB)), None).unwrap();
        fs::set_permissions(&defs, fs::Permissions::from_mode(0o640)).unwrap();
        stop_all(&inst, &[(A, "ns", "a-on")]);
    }
    // Put back, bob's starts again.
    restore(&inst, "", "").ok();
    assert!(running(&b_on));
    stop_all(&inst, &[(A, "ns", "a-on"), (B, "ns", "b-on")]);

    // A member no longer in the namespace's group (its record now names
    // alice's own group: the owner stays a member, bob is out), and a
    // user-UID directory of a user that no longer exists.
    let record = inst.state_dir.join("namespaces/ns.toml");
    let text = fs::read_to_string(&record).unwrap();
    let alice_gid = nix::unistd::User::from_name(ALICE).unwrap().unwrap().gid;
    let alice_group = nix::unistd::Group::from_gid(alice_gid)
        .unwrap()
        .unwrap()
        .name;
    let changed: String = text
        .lines()
        .map(|l| {
            if l.starts_with("group ") {
                format!("group = \"{alice_group}\"")
            } else if l.starts_with("gid ") {
                format!("gid = {alice_gid}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(changed, text);
    fs::write(&record, changed).unwrap();
    let gone = 3_999_999_u32;
    assert!(nix::unistd::User::from_uid(gone.into()).unwrap().is_none());
    let gone_dir = inst.layout().user_state_dir(&lanco_e2e::nsname("ns"), gone);
    fs::create_dir(&gone_dir).unwrap();
    fs::write(gone_dir.join("defs.toml"), &pristine).unwrap();
    for p in [&gone_dir, &gone_dir.join("defs.toml")] {
        std::os::unix::fs::chown(p, Some(gone), Some(gone)).unwrap();
    }
    fs::set_permissions(&gone_dir, fs::Permissions::from_mode(0o750)).unwrap();
    let o = restore(&inst, "", "");
    o.ok();
    skipped(
        &o,
        "ns",
        BOB,
        &format!("{BOB} is no longer a member of namespace ns (neither its owner {ALICE} nor in its group {alice_group})"),
    );
    assert!(
        o.stderr().contains(&format!(
            "lanco-ns user {gone}: no such user any more; enabled tasks not started"
        )),
        "{o}"
    );
    assert!(running(&a_on), "{o}");
    assert!(pids_with(&b_on).is_empty());
    let _ = fs::remove_dir_all(&gone_dir);
}

/// What the process root starts gets: the member's identity, HOME, USER,
/// LOGNAME, SHELL, PATH and LANCO_CONFIG only, stdin /dev/null, no other
/// fd, a session of its own, default signals; seen by a stand-in `lanco`.
#[test]
fn the_started_command_inherits_nothing_from_root() {
    let Some(inst) = setup("boot_clean") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(A, &["ns", "define", "--enable", "x", "true"])
        .ok();
    let out = inst.dir.join("seen");
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
    let fake = script(
        &inst,
        "fake-lanco",
        &format!(
            "o={}/$(id -u)\n{{ echo \"args $*\"; env | sort; echo \"cwd $(pwd)\"; ls /proc/self/fd | tr '\\n' ' '; echo;\n\
             echo \"stdin $(readlink /proc/self/fd/0)\"; grep -E '^(Uid|Gid|Groups|NoNewPrivs|Seccomp|SigIgn|SigBlk|CapEff|CapPrm):' /proc/self/status;\n\
             echo \"sid $(cut -d' ' -f6 /proc/self/stat) pid $$ tty $(cut -d' ' -f7 /proc/self/stat)\"; echo \"umask $(umask)\"; }} > $o.tmp; mv $o.tmp $o\necho a line; echo an error >&2; exit 3",
            out.display()
        ),
    );
    let config = inst.dir.join("fake.toml");
    fs::write(
        &config,
        fs::read_to_string(&inst.config)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("lanco ="))
            .map(|l| format!("{l}\n"))
            .chain([format!("lanco = \"{fake}\"\n")])
            .collect::<String>(),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let o = restore(
        &inst,
        &format!(
            "export SECRET=root LANCO_CONFIG={}; trap '' HUP INT; exec 7</etc/hostname;",
            config.display()
        ),
        "",
    );
    // A task that fails to start is logged, not the restore's failure.
    o.ok();
    let a = uid(ALICE);
    let seen = fs::read_to_string(out.join(a.to_string())).unwrap_or_else(|e| panic!("{e}: {o}"));
    eprintln!("{seen}");
    let home = nix::unistd::User::from_name(ALICE).unwrap().unwrap();
    let env: Vec<&str> = seen
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("cwd "))
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    assert_eq!(
        env,
        [
            format!("HOME={}", home.dir.display()),
            format!("LANCO_CONFIG={}", config.display()),
            format!("LOGNAME={ALICE}"),
            "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
            format!("SHELL={}", home.shell.display()),
            format!("USER={ALICE}"),
        ]
    );
    assert!(seen.starts_with("args ns start --enabled\n"), "{seen}");
    // Its home (/nonexistent for the test users) cannot be entered: /.
    assert!(seen.contains("\ncwd /\n"), "{seen}");
    // fds: 0 1 2 and the one ls opened for /proc/self/fd.
    assert!(seen.contains("\n0 1 2 3 \n"), "{seen}");
    assert!(seen.contains("stdin /dev/null"), "{seen}");
    let line = |k: &str| {
        seen.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{k}:"))
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {k}: {seen}"))
    };
    assert_eq!(line("Uid"), format!("{a}\t{a}\t{a}\t{a}"));
    for k in ["SigIgn", "SigBlk", "CapEff", "CapPrm"] {
        assert_eq!(line(k), "0000000000000000", "{k}");
    }
    assert_eq!(
        line("NoNewPrivs"),
        status(std::process::id() as i32, "NoNewPrivs")
    );
    let sid = seen.lines().find(|l| l.starts_with("sid ")).unwrap();
    let f: Vec<&str> = sid.split_whitespace().collect();
    assert_eq!(f[1], f[3], "a session of its own: {sid}");
    assert_eq!(f[5], "0", "no controlling terminal: {sid}");
    assert!(seen.contains("umask 0022"), "{seen}");
    // Its output and status are logged as alice's, one line each.
    let head = format!("lanco-ns user {a}: ");
    for want in [
        "a line",
        "an error",
        "starting its enabled tasks failed (exit status: 3)",
    ] {
        assert!(o.stderr().contains(&format!("{head}{want}")), "{want}: {o}");
    }
}
