//! Task definitions: define, apply, show, undefine, defs, enable/disable,
//! start and restart; one name defined by one member, started only by them;
//! a broken file changes nothing; readiness makes start wait.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lanco_e2e::{pids_with, setup, unique_sleep, wait_for, Install, Out, ALICE, BOB, EVE, OPS};

const A: Option<&str> = Some(ALICE);
const B: Option<&str> = Some(BOB);

/// A file of `text` that the test users can read.
fn file(inst: &Install, name: &str, text: &str) -> String {
    let p = inst.dir.join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p.display().to_string()
}

fn defs_file(inst: &Install, user: &str) -> PathBuf {
    inst.user_state_dir("ns", user).join("defs.toml")
}

fn defs_json(inst: &Install, user: Option<&str>) -> Vec<serde_json::Value> {
    let o = inst.lanco(user, &["ns", "defs", "--json"]);
    o.ok();
    serde_json::from_str(&o.stdout()).unwrap()
}

#[test]
fn define_start_check_stop_show_restart_undefine() {
    let Some(inst) = setup("defs_lifecycle") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let sleep = unique_sleep();
    let body = format!("echo \"$GREETING from $(pwd) [$HOME]\"; exec sleep {sleep}");
    inst.lanco(
        A,
        &[
            "ns",
            "define",
            "--env",
            "GREETING=hi",
            "--cwd",
            "/tmp",
            "--enable",
            "svc",
            "sh",
            "-c",
            &body,
        ],
    )
    .ok();
    // Defining starts nothing.
    assert_eq!(inst.lanco(A, &["ns", "check", "svc"]).code(), 1);
    let o = inst.lanco(A, &["ns", "start", "svc"]);
    o.ok();
    assert!(o.stderr().contains("task svc is ready"), "{o}");
    inst.lanco(A, &["ns", "check", "svc"]).ok();
    // The definition's environment over the definer's login basics (HOME
    // from the user database: alice's is /nonexistent), not the caller's.
    assert!(wait_for(Duration::from_secs(5), || inst
        .read_log("ns", "svc")
        .contains("hi from /tmp [/nonexistent]\n")));
    assert!(wait_for(Duration::from_secs(5), || pids_with(&sleep).len() == 1));
    let first = pids_with(&sleep);
    // Started again while it runs: left alone, exit 0, said on stderr.
    let o = inst.lanco(A, &["ns", "start", "svc"]);
    o.ok();
    assert!(o.stderr().contains("svc is already running"), "{o}");
    assert_eq!(pids_with(&sleep), first);
    // restart: a new run.
    inst.lanco(A, &["ns", "restart", "svc"]).ok();
    // (sh execs sleep after start returned.)
    assert!(wait_for(Duration::from_secs(5), || {
        let now = pids_with(&sleep);
        now.len() == 1 && now != first
    }));
    let predates = |inst: &Install| {
        inst.lanco(A, &["ns", "status", "svc"])
            .stdout()
            .contains("the running process predates its definition")
    };
    assert!(!predates(&inst));
    // Redefining a running task changes its next start, not the running
    // process, and status says so.
    inst.lanco(
        A,
        &[
            "ns",
            "define",
            "--env",
            "GREETING=hello",
            "--cwd",
            "/tmp",
            "--enable",
            "svc",
            "sh",
            "-c",
            &body,
        ],
    )
    .ok();
    assert!(predates(&inst));
    let st = inst.status("ns", "svc");
    assert!(
        st["definition_changed"]
            .as_str()
            .is_some_and(|w| w.starts_with("redefined")),
        "{st}"
    );
    assert_eq!(pids_with(&sleep).len(), 1);
    // defs: the owner, the command, the state.
    let d = defs_json(&inst, A);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["task"], "svc");
    assert_eq!(d[0]["owner"], ALICE);
    assert_eq!(d[0]["state"], "running");
    assert_eq!(d[0]["enable"], true);
    assert_eq!(d[0]["command"][0], "sh");
    inst.lanco(A, &["ns", "disable", "svc"]).ok();
    assert_eq!(defs_json(&inst, A)[0]["enable"], false);
    inst.lanco(A, &["ns", "enable", "svc"]).ok();
    assert_eq!(defs_json(&inst, A)[0]["enable"], true);
    // show prints what apply takes back unchanged.
    let shown = inst.lanco(A, &["ns", "show", "svc"]);
    shown.ok();
    assert!(shown.stdout().starts_with("[task.svc]\n"), "{shown}");
    assert!(shown.stdout().contains("cwd = \"/tmp\""), "{shown}");
    let stored = fs::read(defs_file(&inst, ALICE)).unwrap();
    let f = file(&inst, "shown.toml", &shown.stdout());
    inst.lanco(A, &["ns", "apply", &f]).ok();
    assert_eq!(fs::read(defs_file(&inst, ALICE)).unwrap(), stored);
    assert_eq!(
        inst.lanco(A, &["ns", "show", "svc"]).stdout(),
        shown.stdout()
    );
    // undefine: refused while it runs, unless --stop.
    inst.lanco(A, &["ns", "undefine", "svc"])
        .fails(3, "task svc is running");
    inst.lanco(A, &["ns", "check", "svc"]).ok();
    inst.lanco(A, &["ns", "undefine", "--stop", "svc"]).ok();
    assert_eq!(inst.lanco(A, &["ns", "check", "svc"]).code(), 1);
    inst.lanco(A, &["ns", "show", "svc"])
        .fails(5, "task svc is not defined");
    inst.lanco(A, &["ns", "start", "svc"])
        .fails(5, "task svc is not defined");
    // --no-wait: back once exec'd.
    let sleep2 = unique_sleep();
    inst.lanco(A, &["ns", "define", "quick", "sleep", &sleep2])
        .ok();
    inst.lanco(A, &["ns", "start", "--no-wait", "quick"]).ok();
    inst.lanco(A, &["ns", "check", "quick"]).ok();
    inst.lanco(A, &["ns", "stop", "quick"]).ok();
    // A command that cannot start: exit 6 with the reason.
    inst.lanco(A, &["ns", "define", "bad", "/nonexistent/cmd"])
        .ok();
    inst.lanco(A, &["ns", "start", "bad"])
        .fails(6, "cannot execute /nonexistent/cmd");
    // Without a cwd a definition runs in its definer's home (here
    // /nonexistent).
    let f = file(&inst, "home.toml", "[task.home]\ncmd = [\"true\"]\n");
    inst.lanco(A, &["ns", "apply", &f]).ok();
    inst.lanco(A, &["ns", "start", "home"])
        .fails(6, "cannot change directory to /nonexistent");
    // Several at once: each reported, the first failure's status.
    let o = inst.lanco(A, &["ns", "start", "quick", "bad"]);
    assert_eq!(o.code(), 6, "{o}");
    assert!(o.stderr().contains("task quick is ready"), "{o}");
    inst.lanco(A, &["ns", "stop", "quick"]).ok();
}

#[test]
fn a_broken_file_changes_nothing_and_is_named_by_line_and_key() {
    let Some(inst) = setup("defs_broken") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let good = file(&inst, "good.toml", "[task.a]\ncmd = [\"true\"]\n");
    inst.lanco(A, &["ns", "apply", &good]).ok();
    let before = fs::read(defs_file(&inst, ALICE)).unwrap();
    for (name, line3, want) in [
        (
            "key.toml",
            "colour = \"red\"",
            ":3: task.b.colour: unknown key",
        ),
        (
            "dur.toml",
            "restart_delay = \"10x\"",
            ":3: task.b.restart_delay: invalid duration \"10x\"",
        ),
        (
            "needs.toml",
            "needs = \"a\"",
            ":3: task.b.needs: must be an array of task names, not string",
        ),
        (
            "cwd.toml",
            "cwd = \"relative\"",
            ":3: task.b.cwd: must be an absolute path",
        ),
    ] {
        // A good table first: nothing of the file is applied.
        let text = format!("[task.b]\ncmd = [\"true\"]\n{line3}\n\n[task.c]\ncmd = [\"true\"]\n");
        let f = file(&inst, name, &text);
        inst.lanco(A, &["ns", "apply", &f])
            .fails(2, &format!("{f}{want}"));
        assert_eq!(fs::read(defs_file(&inst, ALICE)).unwrap(), before, "{name}");
    }
    inst.lanco(A, &["ns", "show", "c"]).fails(5, "not defined");
    // define's own checks: one line, exit 2, nothing stored.
    inst.lanco(A, &["ns", "define", "--restart", "sometimes", "b", "true"])
        .fails(2, "invalid restart policy");
    inst.lanco(
        A,
        &[
            "ns",
            "define",
            "--restart-delay",
            "1m",
            "--restart-delay-max",
            "1s",
            "b",
            "true",
        ],
    )
    .fails(
        2,
        "restart_delay (1m) is longer than restart_delay_max (1s)",
    );
    inst.lanco(A, &["ns", "define", "--env", "=x", "b", "true"])
        .fails(2, "--env takes KEY=VALUE");
    assert_eq!(fs::read(defs_file(&inst, ALICE)).unwrap(), before);
    // apply adds and replaces; the caller's other definitions stay.
    let more = file(
        &inst,
        "more.toml",
        "[task.b]\ncmd = [\"false\"]\nrestart = \"on-failure\"\n",
    );
    inst.lanco(A, &["ns", "apply", &more]).ok();
    let d = defs_json(&inst, A);
    let tasks: Vec<_> = d.iter().map(|r| r["task"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["a", "b"]);
    assert_eq!(d[1]["restart"], "on-failure");
}

#[test]
fn a_name_is_defined_and_started_by_one_member_only() {
    let Some(inst) = setup("defs_members") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(A, &["ns", "define", "db", "sleep", &unique_sleep()])
        .ok();
    inst.lanco(B, &["ns", "define", "db", "true"])
        .fails(3, "task db is defined by lanco-t-alice");
    let f = file(
        &inst,
        "bob.toml",
        "[task.db]\ncmd = [\"true\"]\ncwd = \"/\"\n",
    );
    inst.lanco(B, &["ns", "apply", &f])
        .fails(3, "task db is defined by lanco-t-alice");
    inst.lanco(B, &["ns", "start", "db"]).fails(
        4,
        "task db is defined by lanco-t-alice; only they may start it",
    );
    inst.lanco(B, &["ns", "restart", "db"])
        .fails(4, "only they may restart it");
    inst.lanco(B, &["ns", "undefine", "db"])
        .fails(4, "only they may undefine it");
    inst.lanco(B, &["ns", "disable", "db"])
        .fails(4, "only they may change it");
    assert_eq!(inst.lanco(A, &["ns", "check", "db"]).code(), 1);
    // A name another member ran is theirs too.
    inst.lanco(A, &["ns", "run", "-f", "adhoc", "true"]).ok();
    inst.lanco(B, &["ns", "define", "adhoc", "true"])
        .fails(3, "task adhoc belongs to lanco-t-alice");
    // And a defined name is its definer's: bob cannot run it either.
    inst.lanco(B, &["ns", "run", "db", "true"])
        .fails(3, "task db belongs to lanco-t-alice");
    // Everyone's definitions, by any member; show of another's too.
    inst.lanco(B, &["ns", "define", "web", "sleep", &unique_sleep()])
        .ok();
    inst.lanco(B, &["ns", "start", "web"]).ok();
    for user in [A, B] {
        let d = defs_json(&inst, user);
        let rows: Vec<_> = d
            .iter()
            .map(|r| {
                (
                    r["task"].as_str().unwrap().to_owned(),
                    r["owner"].as_str().unwrap().to_owned(),
                    r["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("db".into(), ALICE.into(), "not running".into()),
                ("web".into(), BOB.into(), "running".into())
            ]
        );
    }
    let text = inst.lanco(A, &["ns", "defs"]);
    text.ok();
    assert!(text.stdout().contains(BOB), "{text}");
    inst.lanco(A, &["ns", "show", "web"]).ok();
    // Control stays shared: alice may stop bob's task.
    inst.lanco(A, &["ns", "stop", "web"]).ok();
    // A member who breaks its own file (by hand) breaks nobody else's
    // definitions: alice still defines, lists and starts hers.
    let broken = lanco_e2e::sh_as(
        BOB,
        &format!("echo 'not [toml' > {}", defs_file(&inst, BOB).display()),
    );
    assert_eq!(broken.code(), 0, "{broken}");
    inst.lanco(A, &["ns", "define", "after-break", "true"]).ok();
    inst.lanco(A, &["ns", "start", "after-break"]).ok();
    inst.lanco(A, &["ns", "defs"]).ok();
    inst.lanco(B, &["ns", "defs"]).fails(2, "defs.toml");
    // Not a member: the namespace's usual answer.
    inst.lanco(Some(EVE), &["ns", "define", "x", "true"])
        .fails(4, "no such namespace ns, or you are not a member of it");
    inst.lanco(Some(EVE), &["ns", "defs"])
        .fails(4, "not a member");
}

/// `lanco ARGS` as alice, failed if it takes longer than 30 s (a start
/// waiting for a readiness that never comes).
fn within(inst: &Install, args: &[&str]) -> Out {
    let mut child = inst
        .cmd(A, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if !wait_for(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("lanco {args:?} still waits after 30 s");
    }
    Out(child.wait_with_output().unwrap())
}

/// Passes once the monitor supervises readiness.
#[test]
fn start_waits_until_a_notify_task_is_ready() {
    let Some(inst) = setup("defs_notify") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // sd_notify by hand: READY=1 in a datagram to $NOTIFY_SOCKET (abstract
    // if it starts with @). The sender stays a moment: a datagram whose
    // sender is gone when it is read cannot be told from an outsider's.
    let notify = r#"perl -MSocket -e 'socket(S, PF_UNIX, SOCK_DGRAM, 0) or die; my $p = $ENV{NOTIFY_SOCKET}; $p =~ s/^@/\0/; send(S, "READY=1", 0, pack_sockaddr_un($p)) or die "send: $!"; sleep 2'"#;
    let sleep = unique_sleep();
    let body = format!("sleep 1; {notify}; exec sleep {sleep}");
    inst.lanco(
        A,
        &["ns", "define", "--ready", "notify", "n", "sh", "-c", &body],
    )
    .ok();
    let t0 = Instant::now();
    within(&inst, &["ns", "start", "n"]).ok();
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    inst.lanco(A, &["ns", "check", "n"]).ok();
    inst.lanco(A, &["ns", "stop", "n"]).ok();
    // --no-wait: back at once.
    let t0 = Instant::now();
    inst.lanco(A, &["ns", "start", "--no-wait", "n"]).ok();
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    inst.lanco(A, &["ns", "stop", "n"]).ok();
    // Never ready: the start timeout ends it, and start says so (exit 6).
    inst.lanco(
        A,
        &[
            "ns",
            "define",
            "--ready",
            "notify",
            "--start-timeout",
            "1s",
            "never",
            "sleep",
            &unique_sleep(),
        ],
    )
    .ok();
    let o = within(&inst, &["ns", "start", "never"]);
    assert_eq!(o.code(), 6, "{o}");
    assert!(o.stderr().contains("never"), "{o}");
    assert_eq!(inst.lanco(A, &["ns", "check", "never"]).code(), 1);
}
