//! What a new user meets (issue 14): a working directory the task cannot
//! enter named as such; what exists and what happened (`status` without a
//! task, `ls -a`, the hint of an empty `ls`, `logs` of a `-l` file, `run -f`
//! showing the output); one exit-status table, true for every row; `kill
//! --main`; one version; UTC timestamps with their zone; argv shell-quoted;
//! a stop on a terminal that says what it waits for.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use lanco_e2e::{
    alive, pids_with, script, setup, sh_as, unique_sleep, wait_for, Install, ALICE, BOB, EVE, OPS,
};

const A: Option<&str> = Some(ALICE);
const B: Option<&str> = Some(BOB);
const E: Option<&str> = Some(EVE);

/// A stamp as lanco's messages begin: `2026-11-27T09:29:44Z [`.
fn stamped_utc(line: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 22
        && b.iter().take(19).enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
        && &line[19..22] == "Z ["
}

/// A directory `user` owns, in the installation.
fn own_dir(inst: &Install, user: &str, name: &str) -> std::path::PathBuf {
    let d = inst.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let uid = lanco_e2e::uid(user);
    std::os::unix::fs::chown(&d, Some(uid), Some(lanco_e2e::gid(OPS))).unwrap();
    d
}

#[test]
fn a_working_directory_the_task_cannot_enter_is_named() {
    let Some(inst) = setup("usab_cwd") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(A, &["ns", "run", "--cwd", "/nonexistent", "c", "/bin/true"])
        .fails(
            6,
            "cannot change directory to /nonexistent: No such file or directory",
        );
    // `cd /root; lanco NS run …` as a user: the current directory is the
    // one the task cannot enter, and --cwd the way out.
    let o = lanco_e2e::Out(
        inst.cmd(A, &["ns", "run", "sx", "sleep", "5"])
            .current_dir("/root")
            .output()
            .unwrap(),
    );
    o.fails(
        6,
        "cannot change directory to /root (the current directory): Permission denied; use --cwd",
    );
    assert!(!o.stderr().contains("unable to run"), "{o}");
    assert!(!inst.lanco(A, &["ns", "check", "sx"]).0.status.success());
    // Nothing was left: the name starts at once from a directory it can use.
    let o = lanco_e2e::Out(
        inst.cmd(A, &["ns", "run", "--cwd", "/", "-f", "-q", "sx", "true"])
            .current_dir("/root")
            .output()
            .unwrap(),
    );
    o.ok();
}

#[test]
fn status_without_a_task_and_ls_all_show_what_happened() {
    let Some(inst) = setup("usab_summary") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // An empty namespace: ls prints nothing on stdout and says why on
    // stderr; status is a summary, not a usage error.
    let o = inst.lanco(A, &["ns", "ls"]);
    o.ok();
    assert_eq!(o.stdout(), "", "{o}");
    assert_eq!(o.stderr().lines().count(), 1, "{o}");
    assert!(o.stderr().contains("no task runs in namespace ns"), "{o}");
    assert!(o.stderr().contains("ls -a"), "{o}");
    let o = inst.lanco(A, &["ns", "ls", "-a"]);
    assert!(o.stderr().contains("has no task yet"), "{o}");
    assert!(o.stderr().contains("lanco ns run TASK CMD"), "{o}");
    let o = inst.lanco(A, &["ns", "ls", "--json"]);
    assert_eq!(o.stderr(), "", "JSON output has no hint: {o}");
    let o = inst.lanco(A, &["ns", "status"]);
    o.ok();
    assert!(o.stdout().contains("namespace ns: no task yet"), "{o}");

    let s = unique_sleep();
    inst.lanco(A, &["ns", "run", "long", "sleep", &s]).ok();
    inst.lanco(A, &["ns", "run", "-f", "-q", "bad", "sh", "-c", "exit 3"]);
    inst.lanco(A, &["ns", "run", "-f", "-q", "good", "true"])
        .ok();
    inst.lanco(A, &["ns", "run", "gone", "sleep", "1000"]).ok();
    inst.lanco(A, &["ns", "stop", "gone"]).ok();
    // Never ready within its start timeout: a failed run.
    let o = inst.lanco(
        A,
        &[
            "ns",
            "run",
            "--ready",
            "notify",
            "--start-timeout",
            "300ms",
            "broken",
            "sleep",
            "100",
        ],
    );
    assert_eq!(o.code(), 6, "{o}");

    // ls shows what runs; -a also what ended, and how.
    let ls = inst.lanco(A, &["ns", "ls"]).ok().stdout();
    assert!(ls.starts_with("long\n"), "{ls}");
    assert!(!ls.contains("bad"), "{ls}");
    let all = inst.lanco(Some(BOB), &["ns", "ls", "-a"]).ok().stdout();
    let line = |name: &str| {
        all.lines()
            .find(|l| l.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("no line for {name}: {all}"))
            .to_owned()
    };
    assert!(line("bad").contains("ended 20"), "{all}");
    assert!(line("bad").ends_with("Z: exited with code 3)"), "{all}");
    assert!(line("good").contains("exited with code 0"), "{all}");
    assert!(line("gone").contains("stopped"), "{all}");
    assert!(line("broken").starts_with("broken (failed 20"), "{all}");
    assert!(
        all.contains(&format!("sleep {s}")),
        "running ones too: {all}"
    );

    // status without a task: a summary, for any member.
    let sum = inst.lanco(Some(BOB), &["ns", "status"]).ok().stdout();
    assert!(
        sum.starts_with("namespace ns: 5 tasks: 1 running, 1 failed, 3 ended\n"),
        "{sum}"
    );
    let row = |name: &str| {
        sum.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {sum}"))
            .to_owned()
    };
    assert!(row("long").contains("running"), "{sum}");
    assert!(row("bad").contains("exited with code 3"), "{sum}");
    assert!(row("broken").contains("failed"), "{sum}");
    let v: serde_json::Value =
        serde_json::from_str(&inst.lanco(A, &["ns", "status", "--json"]).ok().stdout()).unwrap();
    assert_eq!(v["namespace"], "ns");
    let tasks = v["tasks"].as_array().unwrap();
    let state = |name: &str| {
        tasks
            .iter()
            .find(|t| t["task"] == name)
            .map(|t| t["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("long").as_deref(), Some("running"));
    assert_eq!(state("bad").as_deref(), Some("ended"));
    assert_eq!(state("broken").as_deref(), Some("failed"));
    // Strangers learn nothing.
    inst.lanco(Some(EVE), &["ns", "status"])
        .fails(4, "no such namespace ns, or you are not a member of it");

    // A run whose monitor was killed left a state file and no record: it
    // is "lost" in the listings too (not "never started"), for any member.
    let s2 = unique_sleep();
    inst.lanco(A, &["ns", "run", "victim", "sleep", &s2]).ok();
    let monitor = inst.status("ns", "victim")["info"]["monitor_pid"]
        .as_i64()
        .unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let cg = inst.task_cgroup("ns", "victim");
    cg.kill().unwrap();
    assert!(wait_for(Duration::from_secs(5), || !alive(monitor)
        && !cg.populated().unwrap_or(true)));
    let all = inst.lanco(B, &["ns", "ls", "-a"]).ok().stdout();
    assert!(
        all.lines().any(|l| l.starts_with("victim (ended 20")
            && l.ends_with("exit status lost (its monitor was killed))")),
        "{all}"
    );
    let sum = inst.lanco(B, &["ns", "status"]).ok().stdout();
    assert!(
        sum.lines()
            .any(|l| l.starts_with("victim ") && l.contains("exit status lost")),
        "{sum}"
    );
    inst.lanco(A, &["ns", "stop", "long"]).ok();
}

#[test]
fn run_f_shows_the_output_and_logs_follow_the_log_file() {
    let Some(inst) = setup("usab_output") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(A, &["ns", "run", "-f", "t", "sh", "-c", "echo first"])
        .ok();
    let o = inst.lanco(
        A,
        &[
            "ns",
            "run",
            "-f",
            "t",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ],
    );
    assert_eq!(o.code(), 4, "{o}");
    let out = o.stdout();
    assert!(out.contains("out\n") && out.contains("err\n"), "{o}");
    assert!(!out.contains("first"), "only this run's output: {o}");
    assert!(inst.read_log("ns", "t").contains("out\n"), "the log too");
    let o = inst.lanco(A, &["ns", "run", "-f", "-q", "t", "sh", "-c", "echo hush"]);
    o.ok();
    assert_eq!(o.stdout(), "", "-q keeps it quiet: {o}");
    assert!(inst.read_log("ns", "t").contains("hush"));
    inst.lanco(A, &["ns", "run", "-q", "t", "true"])
        .fails(2, "--foreground");

    // logs reads the -l file, while the task runs and after.
    let dir = own_dir(&inst, ALICE, "alice-logs");
    let file = dir.join("own.log");
    let file = file.to_str().unwrap();
    let s = unique_sleep();
    inst.lanco(
        A,
        &[
            "ns",
            "run",
            "-l",
            file,
            "own",
            "sh",
            "-c",
            &format!("echo mine; exec sleep {s}"),
        ],
    )
    .ok();
    assert!(wait_for(Duration::from_secs(5), || inst
        .lanco(A, &["ns", "logs", "own"])
        .stdout()
        == "mine\n"));
    inst.lanco(A, &["ns", "stop", "own"]).ok();
    assert_eq!(
        inst.lanco(A, &["ns", "logs", "own"]).ok().stdout(),
        "mine\n"
    );
    assert!(
        !inst.log_path("ns", "own").exists(),
        "nothing went to the default log"
    );
}

/// One row per case: who, what, the status, the words. Every row of the
/// table in --help and the README has a case here.
#[test]
fn every_exit_status_is_as_the_table_says() {
    let Some(mut inst) = setup("usab_exit") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    inst.lanco(A, &["ns", "run", "long", "sleep", &s]).ok();
    inst.lanco(A, &["ns", "define", "--cwd", "/", "d", "sleep", "1000"])
        .ok();
    let root: Option<&str> = None;
    let cases: &[(Option<&str>, &[&str], i32, &str)] = &[
        (A, &["ns", "check", "long"], 0, ""),
        (A, &["ns", "status", "long"], 0, ""),
        (A, &["ns", "status"], 0, ""),
        (A, &["ns", "check", "nosuch"], 1, ""),
        (A, &["ns", "status", "nosuch"], 1, ""),
        (A, &["ns", "run", "t"], 2, "required"),
        (A, &["ns", "run", "--env", "X", "t", "true"], 2, "KEY=VALUE"),
        (
            A,
            &["ns", "kill", "-s", "NOPE", "long"],
            2,
            "unknown signal",
        ),
        (A, &["ns", "run", "long", "true"], 3, "already running"),
        (A, &["ns", "stop", "nosuch"], 3, "not running"),
        (A, &["ns", "kill", "nosuch"], 3, "not running"),
        (A, &["ns", "kill", "--main", "nosuch"], 3, "not running"),
        (A, &["ns", "wait", "nosuch"], 3, "not running"),
        (B, &["ns", "run", "long", "true"], 3, "belongs to"),
        (root, &["ns", "init", "-u", EVE], 3, "already belongs to"),
        (root, &["ns", "destroy"], 3, "running tasks"),
        (E, &["ns", "ls"], 4, "or you are not a member of it"),
        (E, &["nons", "ls"], 4, "or you are not a member of it"),
        (A, &["x", "init"], 4, "only root or the admin group"),
        (B, &["ns", "start", "d"], 4, ""),
        (
            root,
            &["nons", "status", "t"],
            5,
            "namespace nons does not exist",
        ),
        (
            root,
            &["y", "init", "-u", "no-such-user-here"],
            5,
            "no such user: no-such-user-here",
        ),
        (
            root,
            &["y", "init", "-u", ALICE, "-g", "no-such-group-here"],
            5,
            "no such group: no-such-group-here",
        ),
        (A, &["ns", "logs", "nosuch"], 5, "task nosuch has no log"),
        (A, &["ns", "show", "nosuch"], 5, "not defined"),
        (A, &["ns", "start", "nosuch"], 5, "not defined"),
        (
            A,
            &["ns", "run", "t", "nosuchcmd"],
            6,
            "cannot execute nosuchcmd",
        ),
        (
            A,
            &["ns", "run", "--cwd", "/root", "t", "true"],
            6,
            "cannot change directory to /root",
        ),
        (A, &["ns", "wait", "--timeout", "0.2", "long"], 124, ""),
        (
            A,
            &["ns", "run", "-f", "-q", "t", "sh", "-c", "exit 7"],
            7,
            "-",
        ),
        (
            A,
            &["ns", "run", "-f", "-q", "t", "sh", "-c", "kill -9 $$"],
            137,
            "",
        ),
    ];
    for (user, args, code, needle) in cases {
        let o = inst.lanco(*user, args);
        assert_eq!(o.code(), *code, "{user:?} lanco {}: {o}", args.join(" "));
        // Lanco's own refusals are one line; a task's status is its own.
        if *needle != "-" && (2..=8).contains(code) {
            o.fails(*code, needle);
        }
    }
    assert!(
        !inst.ns_cgroup("y").exists(),
        "a failed init leaves nothing"
    );

    // 8: the status of a run whose monitor was killed is lost.
    let waiter = inst
        .cmd(A, &["ns", "wait", "long"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    inst.signal_monitor("ns", "long", nix::sys::signal::Signal::SIGKILL);
    inst.lanco(A, &["ns", "stop", "long"]).ok();
    let o = lanco_e2e::Out(waiter.wait_with_output().unwrap());
    assert_eq!(o.code(), 8, "wait of a lost run: {o}");

    // 7: lancod unreachable.
    inst.kill_lancod(nix::sys::signal::Signal::SIGTERM);
    inst.lanco(None, &["z", "init", "-u", ALICE])
        .fails(7, "cannot reach lancod");
}

/// The table is one: --help's rows are the README's, and they name what
/// the issue found missing.
#[test]
fn the_exit_status_table_is_the_same_everywhere() {
    let Some(inst) = setup("usab_table") else {
        return;
    };
    let help = inst.lanco(None, &["--help"]).ok().stdout();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let table = &readme[readme.find("**Exit status**").unwrap()..];
    let readme_codes: Vec<String> = table
        .lines()
        .skip_while(|l| !l.starts_with("| status"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap().trim().to_owned())
        .collect();
    let help_table = &help[help.find("Exit status:").unwrap()..];
    let help_codes: Vec<String> = help_table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w = l.strip_prefix("  ")?.split_whitespace().next()?;
            w.parse::<u32>().ok().map(|n| n.to_string())
        })
        .collect();
    assert_eq!(readme_codes, help_codes, "README vs --help:\n{help_table}");
    assert_eq!(
        help_codes,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "124"]
    );
    for words in [
        "namespace busy",
        "owned by",
        "a user or",
        "lancod unreachable",
    ] {
        assert!(help_table.contains(words), "--help lacks {words:?}");
    }
    let run_help = inst.lanco(None, &["x", "run", "--help"]).ok().stdout();
    assert!(run_help.contains("LANCO_EXIT "), "{run_help}");
    assert!(run_help.contains("LANCO_EXIT_STATUS"), "{run_help}");
}

#[test]
fn kill_main_signals_the_main_process_only() {
    let Some(inst) = setup("usab_kill_main") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let helper = unique_sleep();
    // A daemon that reloads on HUP, and a helper that dies of it.
    // (In a script, so that only the helper's command line names it.)
    let daemon = script(
        &inst,
        "daemon.sh",
        &format!("trap 'echo reloaded' HUP; sleep {helper} & while :; do sleep 0.1; done"),
    );
    inst.lanco(A, &["ns", "run", "d", &daemon]).ok();
    assert!(wait_for(Duration::from_secs(5), || pids_with(&helper)
        .len()
        == 1));
    let main = inst.status("ns", "d")["info"]["pid"].as_i64().unwrap() as i32;
    // Another member may, as with kill: the monitor sends it.
    inst.lanco(Some(BOB), &["ns", "kill", "--main", "-s", "HUP", "d"])
        .ok();
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .read_log("ns", "d")
            .contains("reloaded")),
        "the main process got HUP"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pids_with(&helper).len(), 1, "the helper did not");
    assert!(alive(main));
    // Without --main, every process gets it: the helper dies.
    inst.lanco(A, &["ns", "kill", "-s", "HUP", "d"]).ok();
    assert!(wait_for(Duration::from_secs(5), || pids_with(&helper).is_empty()));
    assert!(alive(main), "the main process handles HUP");

    // The main process gone, its helper living: --main is refused by state.
    let helper = unique_sleep();
    let forks = script(
        &inst,
        "forks.sh",
        &format!("sleep {helper} & exec sleep 1000"),
    );
    inst.lanco(A, &["ns", "run", "e", &forks]).ok();
    assert!(wait_for(Duration::from_secs(5), || pids_with(&helper)
        .len()
        == 1));
    let main = inst.status("ns", "e")["info"]["pid"].as_i64().unwrap() as i32;
    inst.lanco(A, &["ns", "kill", "--main", "-s", "KILL", "e"])
        .ok();
    assert!(wait_for(Duration::from_secs(5), || !alive(main)));
    assert_eq!(pids_with(&helper).len(), 1, "the helper lives on");
    inst.lanco(A, &["ns", "check", "e"]).ok();
    inst.lanco(A, &["ns", "kill", "--main", "e"])
        .fails(3, "main process has exited");
    inst.lanco(A, &["ns", "stop", "e"]).ok();
    inst.lanco(A, &["ns", "stop", "d"]).ok();
}

#[test]
fn versions_timestamps_quoting_and_a_stop_that_says_what_it_waits_for() {
    let Some(inst) = setup("usab_small") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // One version: the workspace's.
    let v = inst.lanco(A, &["--version"]).ok().stdout();
    assert_eq!(v, format!("lanco {}\n", env!("CARGO_PKG_VERSION")));
    // Messages and status both in UTC, with the Z.
    let o = inst.lanco(A, &["ns", "stop", "nosuch"]);
    assert!(stamped_utc(&o.stderr()), "{o}");
    let s = unique_sleep();
    let body = format!("trap '' TERM; echo \"it's up\"; while :; do sleep {s}; done");
    inst.lanco(
        A,
        &["ns", "run", "--stop-timeout", "3", "t", "sh", "-c", &body],
    )
    .ok();
    let st = inst.lanco(A, &["ns", "status", "t"]).ok().stdout();
    let started = st.lines().find(|l| l.contains("started:")).unwrap();
    assert!(started.contains("Z by"), "{st}");
    // argv shell-quoted, in ls and status.
    let quoted =
        format!("sh -c 'trap '\\'''\\'' TERM; echo \"it'\\''s up\"; while :; do sleep {s}; done'");
    assert!(
        inst.lanco(A, &["ns", "ls", "-l"])
            .ok()
            .stdout()
            .contains(&quoted),
        "ls: {quoted}"
    );
    assert!(st.contains(&quoted), "status: {st}");

    // A stop on a terminal says what it waits for and when it kills.
    let o = sh_as(
        ALICE,
        &format!(
            "LANCO_CONFIG={} script -qec '{} ns stop t' /dev/null",
            inst.config.display(),
            inst.bin.join("lanco").display()
        ),
    );
    let said = o.stdout();
    let waiting = said
        .lines()
        .find(|l| l.contains("[INFO/stop] waiting for task t's"))
        .unwrap_or_else(|| panic!("no word of the wait: {o}"));
    assert!(stamped_utc(waiting), "{waiting}");
    assert!(
        waiting.contains("to end after SIGTERM; cgroup.kill at 20"),
        "{waiting}"
    );
    // 3 s from the stop, told after about 1 s (later on a loaded host).
    assert!(
        waiting.contains("(in 2 s)") || waiting.contains("(in 1 s)"),
        "{waiting}"
    );
    assert!(
        said.contains("outlived its stop timeout and was killed"),
        "{o}"
    );
    // Not on a terminal: no such line.
    inst.lanco(
        A,
        &["ns", "run", "--stop-timeout", "2", "t", "sh", "-c", &body],
    )
    .ok();
    let o = inst.lanco(A, &["ns", "stop", "t"]);
    o.ok();
    assert!(!o.stderr().contains("waiting for task"), "{o}");
}

/// build-deb.sh packages binaries only under the version they say (a
/// +SUFFIX allowed, as the test packages have).
#[test]
fn a_package_has_the_version_of_its_binaries() {
    let Some(inst) = setup("usab_deb") else {
        return;
    };
    let has = std::process::Command::new("sh")
        .args(["-c", "command -v dpkg-deb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        println!("SKIP: no dpkg-deb");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/build-deb.sh");
    let build = |version: &str| {
        lanco_e2e::Out(
            std::process::Command::new(&script)
                .args(["--no-build", version])
                .env("LANCO_BIN_DIR", lanco_e2e::target_dir())
                .env("LANCO_DEB_DIR", inst.dir.join("deb"))
                .output()
                .unwrap(),
        )
    };
    let o = build("99.0.0");
    assert_eq!(o.code(), 2, "{o}");
    assert!(
        o.stderr()
            .contains(&format!("is version '{}'", env!("CARGO_PKG_VERSION"))),
        "{o}"
    );
    build(&format!("{}+usab1", env!("CARGO_PKG_VERSION"))).ok();
}

/// Whether an ELF64 executable names a dynamic loader (a PT_INTERP
/// program header): a static-pie names none.
fn has_interpreter(path: &Path) -> bool {
    let b = std::fs::read(path).unwrap();
    assert!(
        b.starts_with(b"\x7fELF\x02\x01"),
        "{path:?}: not a 64-bit LE ELF"
    );
    let at = |o: usize, n: usize| {
        b[o..o + n]
            .iter()
            .rev()
            .fold(0, |v, &x| v << 8 | x as usize)
    };
    let (phoff, phentsize, phnum) = (at(0x20, 8), at(0x36, 2), at(0x38, 2));
    (0..phnum).any(|i| at(phoff + i * phentsize, 4) == 3)
}

/// `lanco` and `lanco-monitor` are linked statically by the workspace's
/// rustc wrapper (scripts/rustc-static-bins: the dynamic loader was ~0.3
/// ms of every `lanco` here), lancod is not; and a static `lanco` still
/// resolves names (`status` says who started the task).
#[test]
fn the_command_and_the_monitor_are_static_and_still_resolve_names() {
    let Some(inst) = setup("usab_static") else {
        return;
    };
    let libc_a = std::process::Command::new("cc")
        .arg("-print-file-name=libc.a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !libc_a.starts_with('/') {
        println!("SKIP: no static libc.a here, so the wrapper links dynamically");
        return;
    }
    for bin in ["lanco", "lanco-monitor"] {
        assert!(!has_interpreter(&inst.bin.join(bin)), "{bin} is dynamic");
    }
    assert!(
        has_interpreter(&inst.bin.join("lancod")),
        "lancod is static"
    );
    inst.init("ns", ALICE, OPS);
    inst.lanco(A, &["ns", "run", "t", "sleep", "100"]).ok();
    let o = inst.lanco(A, &["ns", "status", "t"]);
    assert!(o.stdout().contains(&format!(" by {ALICE}\n")), "{o}");
    inst.lanco(A, &["ns", "stop", "t"]).ok();
}
