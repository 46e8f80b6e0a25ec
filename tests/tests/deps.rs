//! Task dependencies (issue 11), against the contract in deps-contract.md:
//! needs, milestone, waits_for, wants and after in definitions; what start,
//! stop, release and restart do with them; a need that goes down by
//! itself; another member's definitions; ls and deps; and a randomised run
//! of two members' concurrent starts and stops checked against a model.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use lanco_e2e::{alive, pids_with, setup, unique_sleep, wait_for, Install, Out, ALICE, BOB, OPS};

const A: Option<&str> = Some(ALICE);
const B: Option<&str> = Some(BOB);

/// `lanco ARGS` as `user`, failed if it takes longer than 30 s (a start or
/// stop that waits for something that never comes).
fn lanco(inst: &Install, user: Option<&str>, args: &[&str]) -> Out {
    let mut child = inst
        .cmd(user, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lanco");
    if !wait_for(Duration::from_secs(30), || {
        child.try_wait().expect("try_wait").is_some()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("lanco {args:?} as {user:?} still runs after 30 s");
    }
    Out(child.wait_with_output().expect("lanco output"))
}

/// `lanco ns ARGS` as alice.
fn alice(inst: &Install, args: &[&str]) -> Out {
    let mut all = vec!["ns"];
    all.extend_from_slice(args);
    lanco(inst, A, &all)
}

/// Asserts the exit status, and that stderr contains each of `needles`.
fn expect(o: &Out, code: i32, needles: &[&str]) {
    assert_eq!(o.code(), code, "wrong exit status: {o}");
    for n in needles {
        assert!(o.stderr().contains(n), "stderr lacks {n:?}: {o}");
    }
}

/// A file of `text` that the test users can read.
fn file(inst: &Install, name: &str, text: &str) -> String {
    let p = inst.dir.join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p.display().to_string()
}

/// A directory every test user may write marker files in.
fn marks(inst: &Install) -> PathBuf {
    let p = inst.dir.join("marks");
    fs::create_dir_all(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o1777)).unwrap();
    p
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A `[task.NAME]` table running `sh -c SCRIPT` in `/`, with `extra` lines.
fn sh_task(name: &str, script: &str, extra: &str) -> String {
    format!(
        "[task.{name}]\ncmd = [\"sh\", \"-c\", {}]\ncwd = \"/\"\n{extra}\n",
        toml_str(script)
    )
}

/// A `[task.NAME]` table running `sleep SECS` in `/`, with `extra` lines.
fn sleep_task(name: &str, secs: &str, extra: &str) -> String {
    format!("[task.{name}]\ncmd = [\"sleep\", \"{secs}\"]\ncwd = \"/\"\n{extra}\n")
}

/// Alice's `db` (a sleep, with `db_extra` lines) and `web` (a sleep that
/// needs db), started with `start web`; their sleeps' markers.
fn db_and_web(inst: &Install, db_extra: &str) -> (String, String) {
    let (sdb, sweb) = (unique_sleep(), unique_sleep());
    apply(
        inst,
        A,
        "defs.toml",
        &format!(
            "{}{}",
            sleep_task("db", &sdb, db_extra),
            sleep_task("web", &sweb, "needs = [\"db\"]")
        ),
    );
    alice(inst, &["start", "web"]).ok();
    (sdb, sweb)
}

/// Applies `text` as `user`, asserted to succeed.
fn apply(inst: &Install, user: Option<&str>, name: &str, text: &str) {
    let f = file(inst, name, text);
    lanco(inst, user, &["ns", "apply", &f]).ok();
}

fn defs_json(inst: &Install) -> serde_json::Value {
    let o = alice(inst, &["defs", "--json"]);
    o.ok();
    serde_json::from_str(&o.stdout()).unwrap_or_else(|e| panic!("defs json: {e}: {o}"))
}

/// `ls --json`, by task name; a task it does not list is `null`.
#[derive(Debug)]
struct Ls(BTreeMap<String, serde_json::Value>);

impl std::ops::Deref for Ls {
    type Target = BTreeMap<String, serde_json::Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::Index<&str> for Ls {
    type Output = serde_json::Value;
    fn index(&self, task: &str) -> &serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        self.0.get(task).unwrap_or(&NULL)
    }
}

/// `ls --json` (as alice).
fn ls_json(inst: &Install) -> Ls {
    let o = alice(inst, &["ls", "--json"]);
    o.ok();
    let v: serde_json::Value =
        serde_json::from_str(&o.stdout()).unwrap_or_else(|e| panic!("ls json: {e}: {o}"));
    Ls(v.as_array()
        .unwrap_or_else(|| panic!("ls --json is not an array: {v}"))
        .iter()
        .map(|t| (t["task"].as_str().expect("task name").to_owned(), t.clone()))
        .collect())
}

/// The lines of `ls` that name tasks (not the ` → PID CMD` lines).
fn ls_lines(inst: &Install) -> Vec<String> {
    let o = alice(inst, &["ls"]);
    o.ok();
    o.stdout()
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(str::to_owned)
        .collect()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("a name").to_owned())
        .collect()
}

fn runs(inst: &Install, task: &str) -> bool {
    alice(inst, &["check", task]).code() == 0
}

/// The main pid of a running task (`status --json`), if it runs.
fn pid(inst: &Install, task: &str) -> Option<i32> {
    let st = inst.status("ns", task);
    if st["state"] != "running" {
        return None;
    }
    st["info"]["pid"].as_i64().map(|p| p as i32)
}

/// Live processes whose command line contains `marker`.
fn live(marker: &str) -> Vec<i32> {
    pids_with(marker)
        .into_iter()
        .filter(|p| alive(*p))
        .collect()
}

fn kill9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
}

/// 1. define and apply refuse an undefined dependency and a cycle, with
///    exit 2 and the contract's words, and change nothing.
#[test]
fn undefined_dependencies_and_cycles_are_refused_and_change_nothing() {
    let Some(inst) = setup("deps_refusals") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    apply(
        &inst,
        A,
        "base.toml",
        &format!(
            "{}{}",
            sleep_task("db", &s, ""),
            sleep_task("web", &s, "needs = [\"db\"]")
        ),
    );
    let defs_path = inst.user_state_dir("ns", ALICE).join("defs.toml");
    let (before, stored) = (defs_json(&inst), fs::read(&defs_path).unwrap());

    // define: each option, its key word in the message.
    for (opt, key) in [
        ("--needs", "needs"),
        ("--milestone", "milestone"),
        ("--waits-for", "waits_for"),
        ("--wants", "wants"),
        ("--after", "after"),
    ] {
        let o = alice(
            &inst,
            &["define", "--cwd", "/", opt, "nosuch", "api", "sleep", &s],
        );
        expect(
            &o,
            2,
            &[&format!("api: {key} nosuch, which is not defined")],
        );
    }
    // apply: each key; a good table in the same file is not applied either.
    for key in ["needs", "milestone", "waits_for", "wants", "after"] {
        let text = format!(
            "{}{}",
            sleep_task("fine", &s, ""),
            sleep_task("api", &s, &format!("{key} = [\"nosuch\"]"))
        );
        let f = file(&inst, &format!("undef-{key}.toml"), &text);
        let o = alice(&inst, &["apply", &f]);
        expect(
            &o,
            2,
            &[&format!("api: {key} nosuch, which is not defined")],
        );
    }
    // Cycles within a file, printed from the alphabetically smallest task
    // whatever the file's order, through each ordering key.
    for (name, text, want) in [
        (
            "two.toml",
            format!(
                "{}{}",
                sleep_task("b", &s, "needs = [\"a\"]"),
                sleep_task("a", &s, "needs = [\"b\"]")
            ),
            "cycle: a → b → a",
        ),
        (
            "three.toml",
            format!(
                "{}{}{}",
                sleep_task("c", &s, "waits_for = [\"a\"]"),
                sleep_task("b", &s, "milestone = [\"c\"]"),
                sleep_task("a", &s, "needs = [\"b\"]")
            ),
            "cycle: a → b → c → a",
        ),
        (
            "after.toml",
            format!(
                "{}{}",
                sleep_task("y", &s, "after = [\"x\"]"),
                sleep_task("x", &s, "after = [\"y\"]")
            ),
            "cycle: x → y → x",
        ),
        // With a stored definition: web needs db already.
        (
            "stored.toml",
            sleep_task("db", &s, "needs = [\"web\"]"),
            "cycle: db → web → db",
        ),
    ] {
        let f = file(&inst, name, &text);
        let o = alice(&inst, &["apply", &f]);
        expect(&o, 2, &[want]);
    }
    // define closing a cycle through the stored definitions.
    let o = alice(
        &inst,
        &["define", "--cwd", "/", "--needs", "web", "db", "sleep", &s],
    );
    expect(&o, 2, &["cycle: db → web → db"]);
    let o = alice(
        &inst,
        &["define", "--cwd", "/", "--after", "web", "db", "sleep", &s],
    );
    expect(&o, 2, &["cycle: db → web → db"]);

    // Nothing changed.
    assert_eq!(defs_json(&inst), before);
    assert_eq!(fs::read(&defs_path).unwrap(), stored);
    let show = alice(&inst, &["show", "db"]);
    show.ok();
    assert!(!show.stdout().contains("needs"), "{show}");
    alice(&inst, &["show", "api"]).fails(5, "not defined");
    alice(&inst, &["show", "fine"]).fails(5, "not defined");

    // The same dependencies, well-formed, are accepted: a name defined
    // later in the same file, and one already stored.
    apply(
        &inst,
        A,
        "good.toml",
        &format!(
            "{}{}",
            sleep_task("api", &s, "needs = [\"cache\"]\nafter = [\"db\"]"),
            sleep_task("cache", &s, "")
        ),
    );
    alice(
        &inst,
        &[
            "define", "--cwd", "/", "--wants", "api", "front", "sleep", &s,
        ],
    )
    .ok();
    let d = defs_json(&inst);
    let tasks: Vec<_> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tasks, ["api", "cache", "db", "front", "web"]);
}

/// 2. A need is started first and stopped after its dependent.
#[test]
fn a_need_is_started_first_and_stopped_with_its_dependent() {
    let Some(inst) = setup("deps_need") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let m = marks(&inst).display().to_string();
    let (sdb, sweb) = (unique_sleep(), unique_sleep());
    // web refuses to get ready unless db got ready before it started.
    apply(
        &inst,
        A,
        "defs.toml",
        &format!(
            "{}{}",
            sh_task(
                "db",
                &format!("touch {m}/db-up; echo >&3; exec sleep {sdb}"),
                "ready = \"fd:3\""
            ),
            sh_task(
                "web",
                &format!("[ -e {m}/db-up ] || exit 1; echo >&3; exec sleep {sweb}"),
                "ready = \"fd:3\"\nneeds = [\"db\"]"
            )
        ),
    );
    let o = alice(&inst, &["start", "web"]);
    expect(
        &o,
        0,
        &["task db is ready (pulled in by web)", "task web is ready"],
    );
    let err = o.stderr();
    assert!(
        err.find("task db is ready") < err.find("task web is ready"),
        "{o}"
    );
    assert!(runs(&inst, "db") && runs(&inst, "web"));
    assert_eq!(live(&sdb).len(), 1);
    assert_eq!(live(&sweb).len(), 1);
    let ls = ls_json(&inst);
    assert_eq!(ls.keys().collect::<Vec<_>>(), ["db", "web"], "{ls:?}");
    assert_eq!(ls["db"]["explicit"], false, "{ls:?}");
    assert_eq!(names(&ls["db"]["pulled_in_by"]), ["web"], "{ls:?}");
    assert_eq!(ls["db"]["state"], "ready", "{ls:?}");
    assert_eq!(ls["web"]["explicit"], true, "{ls:?}");
    assert!(names(&ls["web"]["pulled_in_by"]).is_empty(), "{ls:?}");
    assert_eq!(ls["web"]["state"], "ready", "{ls:?}");
    let lines = ls_lines(&inst);
    assert!(
        lines.contains(&"db (pulled in by web)".to_owned()),
        "{lines:?}"
    );

    // Stopping web stops db too, before stop returns.
    alice(&inst, &["stop", "web"]).ok();
    assert!(!runs(&inst, "web"));
    assert!(!runs(&inst, "db"), "db outlived the stop of web");
    assert!(live(&sdb).is_empty() && live(&sweb).is_empty());
    assert!(ls_json(&inst).is_empty());
}

/// 3. A needs (or milestone) dependency that fails to start fails the
///    start of its dependent, and what that start pulled in is stopped.
#[test]
fn a_failed_need_fails_the_start_and_undoes_it() {
    let Some(inst) = setup("deps_fail") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (sweb, smet) = (unique_sleep(), unique_sleep());
    apply(
        &inst,
        A,
        "defs.toml",
        &[
            // Fail late, so that what is started alongside is up by then:
            // one ready by a readiness fd, one by sd_notify.
            sh_task("db", "sleep 0.5; exit 1", "ready = \"fd:3\""),
            sh_task("ndb", "sleep 0.5; exit 1", "ready = \"notify\""),
            sleep_task("metrics", &smet, ""),
            sleep_task("web", &sweb, "needs = [\"db\"]\nwants = [\"metrics\"]"),
            sleep_task(
                "report",
                &sweb,
                "milestone = [\"db\"]\nwants = [\"metrics\"]",
            ),
            sleep_task("api", &sweb, "needs = [\"ndb\"]\nwants = [\"metrics\"]"),
        ]
        .concat(),
    );
    // The reason is checked last: what the failure does comes first.
    let mut reasons = Vec::new();
    for (task, dep) in [("web", "db"), ("report", "db"), ("api", "ndb")] {
        let o = alice(&inst, &["start", task]);
        expect(&o, 6, &[&format!("{task}: dependency {dep} failed: ")]);
        assert!(
            !o.stderr().contains(&format!("task {task} is ready")),
            "{o}"
        );
        for t in ["web", "report", "api", "db", "ndb", "metrics"] {
            assert!(!runs(&inst, t), "{t} runs after the failed start of {task}");
        }
        assert!(live(&sweb).is_empty(), "{task} was started");
        assert!(live(&smet).is_empty(), "metrics left running");
        assert!(ls_json(&inst).is_empty());
        reasons.push(o);
    }
    for o in &reasons {
        expect(o, 6, &["exited with status 1 before it was ready"]);
    }
}

/// 4. A waits_for or wants dependency that fails does not fail the start;
///    waits_for still orders.
#[test]
fn a_failed_soft_dependency_does_not_fail_the_start() {
    let Some(inst) = setup("deps_soft") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let m = marks(&inst).display().to_string();
    let (sweb, sw2, sw3, sslow) = (
        unique_sleep(),
        unique_sleep(),
        unique_sleep(),
        unique_sleep(),
    );
    let fd = "ready = \"fd:3\"";
    apply(
        &inst,
        A,
        "defs.toml",
        &[
            sh_task("cache", "exit 1", fd),
            sh_task("metrics", "exit 1", fd),
            sleep_task(
                "web",
                &sweb,
                "waits_for = [\"cache\"]\nwants = [\"metrics\"]",
            ),
            // waits_for orders: web2 gets ready only if slow was ready first,
            sh_task(
                "slow",
                &format!("sleep 0.5; touch {m}/slow-up; echo >&3; exec sleep {sslow}"),
                fd,
            ),
            sh_task(
                "web2",
                &format!("[ -e {m}/slow-up ] || exit 1; echo >&3; exec sleep {sw2}"),
                "ready = \"fd:3\"\nwaits_for = [\"slow\"]",
            ),
            // and web3 only if late had failed first.
            sh_task(
                "late",
                &format!("sleep 0.5; touch {m}/late-tried; exit 1"),
                fd,
            ),
            sh_task(
                "web3",
                &format!("[ -e {m}/late-tried ] || exit 1; echo >&3; exec sleep {sw3}"),
                "ready = \"fd:3\"\nwaits_for = [\"late\"]",
            ),
        ]
        .concat(),
    );
    let o = alice(&inst, &["start", "web"]);
    expect(&o, 0, &["task web is ready"]);
    assert!(runs(&inst, "web"));
    assert_eq!(live(&sweb).len(), 1);
    assert!(!runs(&inst, "cache") && !runs(&inst, "metrics"));
    alice(&inst, &["start", "web2"]).ok();
    assert!(runs(&inst, "web2") && runs(&inst, "slow"));
    alice(&inst, &["start", "web3"]).ok();
    assert!(runs(&inst, "web3"));
    assert!(!runs(&inst, "late"));
    let ls = ls_json(&inst);
    assert_eq!(
        ls.keys().collect::<Vec<_>>(),
        ["slow", "web", "web2", "web3"],
        "{ls:?}"
    );
}

/// 5. A milestone must be ready before its dependent starts; after that it
///    may end, and the dependent stays.
#[test]
fn a_milestone_may_end_after_it_was_ready() {
    let Some(inst) = setup("deps_milestone") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let m = marks(&inst).display().to_string();
    let sweb = unique_sleep();
    apply(
        &inst,
        A,
        "defs.toml",
        &format!(
            "{}{}",
            sh_task(
                "migrate",
                &format!("touch {m}/migrated; echo >&3; sleep 0.3; exit 0"),
                "ready = \"fd:3\""
            ),
            sh_task(
                "web",
                &format!("[ -e {m}/migrated ] || exit 1; echo >&3; exec sleep {sweb}"),
                "ready = \"fd:3\"\nmilestone = [\"migrate\"]"
            )
        ),
    );
    let o = alice(&inst, &["start", "web"]);
    expect(&o, 0, &["task web is ready"]);
    let first = pid(&inst, "web").expect("web runs");
    assert!(
        wait_for(Duration::from_secs(5), || !runs(&inst, "migrate")),
        "migrate did not end"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(runs(&inst, "web"), "web stopped when its milestone ended");
    assert_eq!(pid(&inst, "web"), Some(first), "web was restarted");
    assert_eq!(live(&sweb).len(), 1);
    let ls = ls_json(&inst);
    assert_eq!(ls.keys().collect::<Vec<_>>(), ["web"], "{ls:?}");
    assert_eq!(ls["web"]["state"], "ready");
}

/// 6. An explicitly started dependency stays after its dependent stops;
///    release drops the mark, and it stops once nothing needs it.
#[test]
fn an_explicit_dependency_stays_until_released() {
    let Some(inst) = setup("deps_release") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (sdb, sweb) = (unique_sleep(), unique_sleep());
    apply(
        &inst,
        A,
        "defs.toml",
        &format!(
            "{}{}",
            sleep_task("db", &sdb, ""),
            sleep_task("web", &sweb, "needs = [\"db\"]")
        ),
    );
    alice(&inst, &["start", "db"]).ok();
    let db = pid(&inst, "db").expect("db runs");
    let o = alice(&inst, &["start", "web"]);
    expect(&o, 0, &["task web is ready"]);
    assert!(
        !o.stderr().contains("task db is ready"),
        "db was started again: {o}"
    );
    assert_eq!(pid(&inst, "db"), Some(db));
    assert_eq!(ls_json(&inst)["db"]["explicit"], true);
    alice(&inst, &["stop", "web"]).ok();
    assert!(!runs(&inst, "web"));
    assert_eq!(pid(&inst, "db"), Some(db), "the explicit db was stopped");

    // Released while web needs it: it stays, as pulled in.
    alice(&inst, &["start", "web"]).ok();
    alice(&inst, &["release", "db"]).ok();
    assert_eq!(pid(&inst, "db"), Some(db));
    let ls = ls_json(&inst);
    assert_eq!(ls["db"]["explicit"], false, "{ls:?}");
    assert_eq!(names(&ls["db"]["pulled_in_by"]), ["web"], "{ls:?}");
    alice(&inst, &["stop", "web"]).ok();
    assert!(!runs(&inst, "db"), "the released db outlived web");
    assert!(live(&sdb).is_empty());

    // Released while nothing needs it: it stops before release returns.
    alice(&inst, &["start", "db"]).ok();
    assert!(runs(&inst, "db"));
    alice(&inst, &["release", "db"]).ok();
    assert!(!runs(&inst, "db"), "release left an unneeded db running");
    assert!(live(&sdb).is_empty());
    assert!(ls_json(&inst).is_empty());
}

/// 7. stop of a task something running needs is refused; --force stops
///    the dependents first, then it.
#[test]
fn stop_is_refused_while_dependents_run_unless_forced() {
    let Some(inst) = setup("deps_stop_force") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let m = marks(&inst).display().to_string();
    let (sdb, sweb) = (unique_sleep(), unique_sleep());
    // web, on SIGTERM, waits a moment and notes whether db got its SIGTERM
    // meanwhile (it must not: web is stopped first).
    apply(
        &inst,
        A,
        "defs.toml",
        &format!(
            "{}{}",
            sh_task(
                "db",
                &format!("trap 'touch {m}/db-term; exit 0' TERM; sleep {sdb} & wait"),
                ""
            ),
            sh_task(
                "web",
                &format!(
                    "trap 'sleep 0.3; [ -e {m}/db-term ] && touch {m}/db-first; touch {m}/web-term; exit 0' TERM; sleep {sweb} & wait"
                ),
                "needs = [\"db\"]"
            )
        ),
    );
    alice(&inst, &["start", "web"]).ok();
    // Two processes each carry the marker: the shell and its sleep.
    assert!(wait_for(Duration::from_secs(5), || live(&sdb).len() == 2
        && live(&sweb).len() == 2));
    let o = alice(&inst, &["stop", "db"]);
    expect(&o, 3, &["web", "--force"]);
    assert!(
        runs(&inst, "db") && runs(&inst, "web"),
        "refused, yet stopped"
    );
    assert_eq!(live(&sdb).len(), 2);
    assert_eq!(live(&sweb).len(), 2);

    let o = alice(&inst, &["stop", "--force", "db"]);
    o.ok();
    assert!(
        o.stderr().lines().any(|l| l.contains("web")),
        "no line names web: {o}"
    );
    assert!(!runs(&inst, "web") && !runs(&inst, "db"));
    assert!(live(&sdb).is_empty() && live(&sweb).is_empty());
    let marks = PathBuf::from(&m);
    assert!(marks.join("web-term").exists(), "web got no SIGTERM");
    assert!(marks.join("db-term").exists(), "db got no SIGTERM");
    assert!(
        !marks.join("db-first").exists(),
        "db was stopped before (or with) its dependent web"
    );
    assert!(ls_json(&inst).is_empty());
}

/// 8. A need killed from outside: its dependent stops and waits, and runs
///    again once the need is started again.
#[test]
fn a_need_going_down_stops_its_dependent_until_it_is_back() {
    let Some(inst) = setup("deps_need_down") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (sdb, sweb) = db_and_web(&inst, "");
    let db = pid(&inst, "db").expect("db runs");
    assert!(runs(&inst, "web"));
    kill9(db);
    assert!(
        wait_for(Duration::from_secs(5), || !runs(&inst, "web")
            && ls_lines(&inst).contains(&"web (waiting for db)".to_owned())),
        "web did not stop and wait: ls {:?}, check web {}",
        ls_lines(&inst),
        runs(&inst, "web")
    );
    assert!(live(&sweb).is_empty(), "web's process outlived db");
    let ls = ls_json(&inst);
    assert_eq!(ls["web"]["state"], "waiting for db", "{ls:?}");
    assert!(!runs(&inst, "db"));

    alice(&inst, &["start", "db"]).ok();
    assert!(
        wait_for(Duration::from_secs(5), || runs(&inst, "web")
            && live(&sweb).len() == 1),
        "web did not come back after db: ls {:?}",
        ls_lines(&inst)
    );
    assert!(wait_for(Duration::from_secs(5), || ls_json(&inst)["web"]
        ["state"]
        == "ready"));
    assert_eq!(live(&sdb).len(), 1);
}

/// 9. A need that restarts takes its dependents down and back up with it:
///    by its restart policy, and by restart --force (plain restart is
///    refused while dependents run).
#[test]
fn a_restarting_need_restarts_its_dependents() {
    let Some(inst) = setup("deps_need_restart") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (sdb, sweb) = db_and_web(&inst, "restart = \"on-failure\"\nrestart_delay = \"200ms\"");
    let (db1, web1) = (pid(&inst, "db").unwrap(), pid(&inst, "web").unwrap());
    kill9(db1);
    let both_new = |db_old: i32, web_old: i32| {
        wait_for(Duration::from_secs(10), || {
            matches!(pid(&inst, "db"), Some(p) if p != db_old)
                && matches!(pid(&inst, "web"), Some(p) if p != web_old)
                && live(&sweb).len() == 1
                && live(&sdb).len() == 1
        })
    };
    assert!(
        both_new(db1, web1),
        "after db's restart: db {:?}, web {:?}, ls {:?}",
        pid(&inst, "db"),
        pid(&inst, "web"),
        ls_lines(&inst)
    );
    let (db2, web2) = (pid(&inst, "db").unwrap(), pid(&inst, "web").unwrap());

    let o = alice(&inst, &["restart", "db"]);
    assert_eq!(o.code(), 3, "restart without --force: {o}");
    assert_eq!(pid(&inst, "db"), Some(db2));
    assert_eq!(pid(&inst, "web"), Some(web2));

    alice(&inst, &["restart", "--force", "db"]).ok();
    assert!(
        both_new(db2, web2),
        "after restart --force: db {:?}, web {:?}, ls {:?}",
        pid(&inst, "db"),
        pid(&inst, "web"),
        ls_lines(&inst)
    );
}

/// 10. A dependency on another member's definition is used only if it
///     runs: the caller cannot start it.
#[test]
fn another_members_need_must_already_run() {
    let Some(inst) = setup("deps_members") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (sdb, sweb) = (unique_sleep(), unique_sleep());
    apply(&inst, B, "bob.toml", &sleep_task("db", &sdb, ""));
    apply(
        &inst,
        A,
        "alice.toml",
        &sleep_task("web", &sweb, "needs = [\"db\"]"),
    );
    let o = alice(&inst, &["start", "web"]);
    expect(&o, 4, &["db", BOB]);
    assert!(!runs(&inst, "web") && !runs(&inst, "db"));
    assert!(live(&sdb).is_empty() && live(&sweb).is_empty());
    assert!(ls_json(&inst).is_empty());

    lanco(&inst, B, &["ns", "start", "db"]).ok();
    let db = pid(&inst, "db").unwrap();
    let o = alice(&inst, &["start", "web"]);
    expect(&o, 0, &["task web is ready"]);
    assert!(runs(&inst, "web"));
    assert_eq!(pid(&inst, "db"), Some(db));
    // Bob's db stays after alice's web stops (he started it).
    alice(&inst, &["stop", "web"]).ok();
    assert_eq!(pid(&inst, "db"), Some(db));
    // Bob may not stop it under alice's web, unless he forces it.
    alice(&inst, &["start", "web"]).ok();
    let o = lanco(&inst, B, &["ns", "stop", "db"]);
    expect(&o, 3, &["web", "--force"]);
    assert!(runs(&inst, "web"));
    lanco(&inst, B, &["ns", "stop", "--force", "db"]).ok();
    assert!(!runs(&inst, "web") && !runs(&inst, "db"));
    assert!(ls_json(&inst).is_empty());
}

/// 11. What ls, ls --json, deps, deps --json and show say.
#[test]
fn ls_deps_and_show_describe_the_relations() {
    let Some(inst) = setup("deps_visibility") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    apply(
        &inst,
        A,
        "defs.toml",
        &[
            sleep_task("disk", &s, ""),
            sleep_task("db", &s, "needs = [\"disk\"]"),
            sh_task("metrics", "exit 1", "ready = \"fd:3\""),
            sleep_task("logger", &s, ""),
            sleep_task(
                "web",
                &s,
                "needs = [\"db\"]\nwants = [\"metrics\"]\nafter = [\"logger\"]",
            ),
            sh_task(
                "slow",
                &format!("sleep 3; echo >&3; exec sleep {s}"),
                "ready = \"fd:3\"",
            ),
        ]
        .concat(),
    );
    // show prints the keys back, and only those that are set.
    let show = alice(&inst, &["show", "web"]);
    show.ok();
    for line in [
        "needs = [\"db\"]",
        "wants = [\"metrics\"]",
        "after = [\"logger\"]",
    ] {
        assert!(show.stdout().contains(line), "{show}");
    }
    for key in ["milestone", "waits_for"] {
        assert!(!show.stdout().contains(key), "{show}");
    }
    let disk = alice(&inst, &["show", "disk"]);
    assert!(!disk.stdout().contains("needs"), "{disk}");
    let f = file(&inst, "shown.toml", &show.stdout());
    alice(&inst, &["apply", &f]).ok();
    assert_eq!(alice(&inst, &["show", "web"]).stdout(), show.stdout());

    // deps before anything runs.
    let d = alice(&inst, &["deps", "web"]);
    d.ok();
    assert_eq!(d.stdout().lines().next(), Some("web: not running"), "{d}");

    alice(&inst, &["start", "web"]).ok();
    assert!(!runs(&inst, "logger"), "after started logger");
    assert!(!runs(&inst, "metrics"));
    let lines = ls_lines(&inst);
    assert!(
        lines.contains(&"db (pulled in by web)".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("disk (pulled in by ")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("web")), "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let ls = ls_json(&inst);
    assert_eq!(
        ls.keys().collect::<Vec<_>>(),
        ["db", "disk", "web"],
        "{ls:?}"
    );
    for (t, explicit) in [("web", true), ("db", false), ("disk", false)] {
        assert_eq!(ls[t]["explicit"], explicit, "{t}: {ls:?}");
        assert_eq!(ls[t]["state"], "ready", "{t}: {ls:?}");
    }
    assert!(names(&ls["web"]["pulled_in_by"]).is_empty());
    assert_eq!(names(&ls["db"]["pulled_in_by"]), ["web"]);
    let by_disk = names(&ls["disk"]["pulled_in_by"]);
    assert!(
        !by_disk.is_empty() && by_disk.iter().all(|t| t == "db" || t == "web"),
        "{by_disk:?}"
    );

    // deps: one node per line, two spaces per level.
    let d = alice(&inst, &["deps", "web"]);
    d.ok();
    let text = d.stdout();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.first(), Some(&"web: ready"), "{d}");
    let want = [
        "web: ready",
        "  needs db: ready",
        "    needs disk: ready",
        // It exited before it was ready: its record says failed.
        "  wants metrics: failed",
        "  after logger: not running",
    ];
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        want.iter().copied().collect::<BTreeSet<_>>(),
        "{d}"
    );
    let at = got.iter().position(|l| *l == "  needs db: ready").unwrap();
    assert_eq!(got.get(at + 1), Some(&"    needs disk: ready"), "{d}");

    let d = alice(&inst, &["deps", "--json", "web"]);
    d.ok();
    let v: serde_json::Value =
        serde_json::from_str(&d.stdout()).unwrap_or_else(|e| panic!("deps json: {e}: {d}"));
    assert_eq!(v["task"], "web", "{v}");
    assert_eq!(v["state"], "ready", "{v}");
    let kids: BTreeMap<String, &serde_json::Value> = v["deps"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|k| (k["task"].as_str().unwrap().to_owned(), k))
        .collect();
    assert_eq!(
        kids.keys().collect::<Vec<_>>(),
        ["db", "logger", "metrics"],
        "{v}"
    );
    for (t, kind, state) in [
        ("db", "needs", "ready"),
        ("metrics", "wants", "failed"),
        ("logger", "after", "not running"),
    ] {
        assert_eq!(kids[t]["kind"], kind, "{v}");
        assert_eq!(kids[t]["state"], state, "{v}");
    }
    let disk = &kids["db"]["deps"][0];
    assert_eq!(kids["db"]["deps"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(disk["kind"], "needs", "{v}");
    assert_eq!(disk["task"], "disk", "{v}");
    assert_eq!(disk["state"], "ready", "{v}");

    // A task that is not ready yet is starting.
    alice(&inst, &["start", "--no-wait", "slow"]).ok();
    assert!(
        ls_lines(&inst).contains(&"slow (starting)".to_owned()),
        "{:?}",
        ls_lines(&inst)
    );
    assert_eq!(ls_json(&inst)["slow"]["state"], "starting");
    alice(&inst, &["stop", "slow"]).ok();
}

// ---------------------------------------------------------------------------
// 12. Two members' concurrent starts and stops against a model.

/// Task i's owner: 0 alice, 1 bob; tasks are named a0..a4 and b0..b4.
const PER_MEMBER: usize = 5;
const USERS: [&str; 2] = [ALICE, BOB];

/// A small LCG (Knuth's MMIX constants), the high bits.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

struct Graph {
    names: Vec<String>,
    owner: Vec<usize>,
    needs: Vec<Vec<usize>>,
    wants: Vec<Vec<usize>>,
}

impl Graph {
    /// Task index of member `m`'s i-th task.
    fn idx(m: usize, i: usize) -> usize {
        m * PER_MEMBER + i
    }

    /// Edges go from a later task to an earlier one in the order a0 b0 a1
    /// b1 …, so there is no cycle: needs/wants within a member, and a few
    /// cross-member needs.
    fn random(rng: &mut Lcg) -> Graph {
        let n = 2 * PER_MEMBER;
        let mut g = Graph {
            names: (0..n)
                .map(|t| format!("{}{}", ["a", "b"][t / PER_MEMBER], t % PER_MEMBER))
                .collect(),
            owner: (0..n).map(|t| t / PER_MEMBER).collect(),
            needs: vec![Vec::new(); n],
            wants: vec![Vec::new(); n],
        };
        let mut cross = 0;
        for i in 0..PER_MEMBER {
            for m in 0..2 {
                let t = Graph::idx(m, i);
                for j in 0..i {
                    let u = Graph::idx(m, j);
                    if rng.pct(30) {
                        g.needs[t].push(u);
                    } else if rng.pct(15) {
                        g.wants[t].push(u);
                    }
                }
                // Another member's earlier task: theirs j < i, or j == i
                // when this is bob's (a_i comes before b_i).
                let other = 1 - m;
                let earlier = if m == 1 { i + 1 } else { i };
                if earlier > 0 && rng.pct(20) {
                    g.needs[t].push(Graph::idx(other, rng.below(earlier)));
                    cross += 1;
                }
            }
        }
        // A few cross-member needs at least.
        if cross < 2 {
            for (t, u) in [
                (Graph::idx(0, 2), Graph::idx(1, 1)),
                (Graph::idx(1, 3), Graph::idx(0, 1)),
            ] {
                if !g.needs[t].contains(&u) {
                    g.needs[t].push(u);
                }
            }
        }
        g
    }

    /// Member `m`'s definitions as TOML, with or without its cross-member
    /// needs.
    fn toml(&self, m: usize, sleeps: &[String], cross: bool) -> String {
        let list = |v: &[usize]| {
            v.iter()
                .filter(|u| cross || self.owner[**u] == m)
                .map(|u| format!("\"{}\"", self.names[*u]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        (0..PER_MEMBER)
            .map(|i| {
                let t = Graph::idx(m, i);
                sleep_task(
                    &self.names[t],
                    &sleeps[t],
                    &format!(
                        "needs = [{}]\nwants = [{}]",
                        list(&self.needs[t]),
                        list(&self.wants[t])
                    ),
                )
            })
            .collect()
    }

    fn describe(&self) -> String {
        (0..self.names.len())
            .map(|t| {
                let l = |v: &[usize]| {
                    v.iter()
                        .map(|u| self.names[*u].as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!(
                    "{} needs [{}] wants [{}]",
                    self.names[t],
                    l(&self.needs[t]),
                    l(&self.wants[t])
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Clone, Copy, Debug)]
enum Cmd {
    Start(usize),
    Stop(usize),
}

/// What runs, and what was started explicitly.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct Model {
    running: BTreeSet<usize>,
    explicit: BTreeSet<usize>,
}

impl Model {
    /// Applies `cmd` run by member `by`; returns the expected exit status.
    ///
    /// start T: a running T is only marked explicit. Else T and what it
    /// needs or wants, transitively, that does not run yet (a running
    /// dependency is used as it is) are started, and T is marked explicit —
    /// unless that includes another member's definition, when nothing
    /// changes (exit 4).
    ///
    /// stop --force T: T and every running task that needs it
    /// (transitively) stop and lose their explicit marks; then every
    /// running task neither explicit nor needed or wanted by a running task
    /// stops, until none is left. A T that does not run: exit 3.
    fn apply(&mut self, g: &Graph, by: usize, cmd: Cmd) -> i32 {
        match cmd {
            Cmd::Start(t) => {
                if self.running.contains(&t) {
                    self.explicit.insert(t);
                    return 0;
                }
                let mut new = BTreeSet::new();
                let mut stack = vec![t];
                while let Some(n) = stack.pop() {
                    if self.running.contains(&n) || !new.insert(n) {
                        continue;
                    }
                    if g.owner[n] != by {
                        return 4;
                    }
                    stack.extend(g.needs[n].iter().chain(&g.wants[n]));
                }
                self.running.extend(new);
                self.explicit.insert(t);
                0
            }
            Cmd::Stop(t) => {
                if !self.running.contains(&t) {
                    return 3;
                }
                let mut down = BTreeSet::from([t]);
                loop {
                    let more: Vec<usize> = self
                        .running
                        .iter()
                        .copied()
                        .filter(|x| {
                            !down.contains(x) && g.needs[*x].iter().any(|u| down.contains(u))
                        })
                        .collect();
                    if more.is_empty() {
                        break;
                    }
                    down.extend(more);
                }
                self.running.retain(|x| !down.contains(x));
                self.explicit.retain(|x| !down.contains(x));
                loop {
                    let unneeded: Vec<usize> = self
                        .running
                        .iter()
                        .copied()
                        .filter(|x| {
                            !self.explicit.contains(x)
                                && !self
                                    .running
                                    .iter()
                                    .any(|y| g.needs[*y].contains(x) || g.wants[*y].contains(x))
                        })
                        .collect();
                    if unneeded.is_empty() {
                        break;
                    }
                    self.running.retain(|x| !unneeded.contains(x));
                }
                0
            }
        }
    }

    fn show(&self, g: &Graph) -> String {
        let l = |s: &BTreeSet<usize>| {
            s.iter()
                .map(|t| g.names[*t].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "running [{}] explicit [{}]",
            l(&self.running),
            l(&self.explicit)
        )
    }
}

fn cmd_text(g: &Graph, by: usize, c: Cmd) -> String {
    match c {
        Cmd::Start(t) => format!("{} start {}", USERS[by], g.names[t]),
        Cmd::Stop(t) => format!("{} stop --force {}", USERS[by], g.names[t]),
    }
}

/// Command lines of every live process, one scan of /proc.
fn cmdlines() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) {
            if alive(pid) {
                out.push((pid, String::from_utf8_lossy(&c).replace('\0', " ")));
            }
        }
    }
    out
}

#[test]
fn random_concurrent_starts_and_stops_match_the_model() {
    let Some(inst) = setup("deps_random") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let seed: u64 = std::env::var("LANCO_DEPS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_240_611);
    eprintln!("deps random: seed {seed} (LANCO_DEPS_SEED={seed} repeats it)");
    let mut rng = Lcg(seed);
    let g = Graph::random(&mut rng);
    eprintln!("deps random: graph {}", g.describe());
    let sleeps: Vec<String> = (0..g.names.len()).map(|_| unique_sleep()).collect();
    // Own dependencies first, so that each member's cross-member needs
    // name definitions that exist.
    for cross in [false, true] {
        for (m, user) in USERS.iter().enumerate() {
            apply(
                &inst,
                Some(user),
                &format!("m{m}-{cross}.toml"),
                &g.toml(m, &sleeps, cross),
            );
        }
    }

    let mut model = Model::default();
    let mut history: Vec<String> = Vec::new();
    // Exit statuses seen, by command kind: what the run exercised.
    let mut tally: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    let mut most_running = 0;
    let pick = |rng: &mut Lcg, m: usize| {
        if rng.pct(60) {
            Cmd::Start(Graph::idx(m, rng.below(PER_MEMBER)))
        } else {
            Cmd::Stop(rng.below(2 * PER_MEMBER))
        }
    };
    let run = |by: usize, c: Cmd| {
        let t = match c {
            Cmd::Start(t) | Cmd::Stop(t) => g.names[t].as_str(),
        };
        match c {
            Cmd::Start(_) => lanco(&inst, Some(USERS[by]), &["ns", "start", t]),
            Cmd::Stop(_) => lanco(&inst, Some(USERS[by]), &["ns", "stop", "--force", t]),
        }
    };
    for round in 0..100 {
        let (ca, cb) = (pick(&mut rng, 0), pick(&mut rng, 1));
        let (oa, ob) = std::thread::scope(|s| {
            let ha = s.spawn(|| run(0, ca));
            let hb = s.spawn(|| run(1, cb));
            (ha.join().unwrap(), hb.join().unwrap())
        });
        let ls = ls_json(&inst);
        let running: BTreeSet<usize> = ls
            .keys()
            .map(|n| g.names.iter().position(|x| x == n).unwrap_or(usize::MAX))
            .collect();
        let explicit: BTreeSet<usize> = ls
            .iter()
            .filter(|(_, v)| v["explicit"] == true)
            .map(|(n, _)| g.names.iter().position(|x| x == n).unwrap_or(usize::MAX))
            .collect();
        let got = Model { running, explicit };
        let codes = (oa.code(), ob.code());
        let mut ab = model.clone();
        let ab_codes = (ab.apply(&g, 0, ca), ab.apply(&g, 1, cb));
        let mut ba = model.clone();
        let ba_codes = {
            let b = ba.apply(&g, 1, cb);
            (ba.apply(&g, 0, ca), b)
        };
        let line = format!(
            "round {round}: [{}] -> {} | [{}] -> {}",
            cmd_text(&g, 0, ca),
            oa.code(),
            cmd_text(&g, 1, cb),
            ob.code()
        );
        history.push(line.clone());
        let context = || {
            format!(
                "seed {seed}; graph {}\nhistory (last 10):\n  {}\nbefore: {}\nalice then bob: {} codes {ab_codes:?}\nbob then alice: {} codes {ba_codes:?}\ngot: {} codes {codes:?}\nalice: {oa}\nbob: {ob}\nls --json: {ls:?}",
                g.describe(),
                history[history.len().saturating_sub(10)..].join("\n  "),
                model.show(&g),
                ab.show(&g),
                ba.show(&g),
                got.show(&g),
            )
        };
        let not_ready: Vec<_> = ls
            .iter()
            .filter(|(_, v)| v["state"] != "ready")
            .map(|(n, v)| format!("{n}: {}", v["state"]))
            .collect();
        assert!(
            not_ready.is_empty(),
            "tasks not ready after both commands returned: {not_ready:?}\n{}",
            context()
        );
        let next = if got == ab && codes == ab_codes {
            ab.clone()
        } else if got == ba && codes == ba_codes {
            ba.clone()
        } else {
            panic!(
                "no serial order of the two commands gives this\n{}",
                context()
            );
        };
        // The processes agree with ls: one sleep per running task, none of
        // the others.
        let procs = cmdlines();
        for (t, s) in sleeps.iter().enumerate() {
            let n = procs
                .iter()
                .filter(|(_, c)| c.contains(s.as_str()) && !c.contains("lanco "))
                .count();
            let want = usize::from(next.running.contains(&t));
            assert_eq!(
                n,
                want,
                "{} has {n} processes, expected {want}\n{}",
                g.names[t],
                context()
            );
        }
        for (c, code) in [(ca, codes.0), (cb, codes.1)] {
            let kind = match c {
                Cmd::Start(_) => "start",
                Cmd::Stop(_) => "stop",
            };
            *tally.entry((kind, code)).or_default() += 1;
        }
        most_running = most_running.max(next.running.len());
        model = next;
    }
    eprintln!(
        "deps random: 100 rounds done; exit statuses {tally:?}; at most {most_running} tasks ran at once; last {}",
        model.show(&g)
    );
}

/// A chain `c0 ← c1 ← … ← c{n-1}` (each needs the one before), each taking
/// 150 ms to get ready, all sharing `marker` in their command lines.
fn slow_chain(n: usize, marker: &str) -> String {
    (0..n)
        .map(|i| {
            let needs = if i == 0 {
                String::new()
            } else {
                format!("needs = [\"c{}\"]", i - 1)
            };
            sh_task(
                &format!("c{i}"),
                &format!("sleep 0.15; echo >&3; exec sleep {marker}"),
                &format!("ready = \"fd:3\"\n{needs}"),
            )
        })
        .collect()
}

/// How many tasks of the chain run.
fn chain_running(inst: &Install) -> usize {
    ls_json(inst).keys().filter(|t| t.starts_with('c')).count()
}

/// `start c{last}` as alice, killed with SIGKILL once at least `some`
/// links run (and before the chain is complete).
fn start_and_kill(inst: &Install, last: usize, some: usize) {
    let target = format!("c{last}");
    let mut client = inst
        .cmd(A, &["ns", "start", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn start");
    assert!(
        wait_for(Duration::from_secs(20), || chain_running(inst) >= some),
        "the chain did not get going"
    );
    client.kill().expect("kill the client");
    client.wait().expect("reap the client");
    let n = chain_running(inst);
    assert!(n > 0 && n <= last, "killed mid-way, yet {n} links run");
}

/// Robustness: a client killed in the middle of a chain's start leaves a
/// state that the next `stop` and the next `start` complete correctly, and
/// the death of a need's monitor or of lancod changes nothing of the rules.
#[test]
fn a_transition_survives_the_death_of_its_client() {
    let Some(inst) = setup("deps_client_killed") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let n = 20;
    let marker = unique_sleep();
    apply(&inst, A, "chain.toml", &slow_chain(n, &marker));

    // Killed mid-way, then a stop of the chain's root: nothing is left,
    // not even the links that only the dead client's start wanted.
    start_and_kill(&inst, n - 1, 3);
    alice(&inst, &["stop", "--force", "c0"]).ok();
    assert!(
        wait_for(Duration::from_secs(10), || chain_running(&inst) == 0
            && live(&marker).is_empty()),
        "after the stop: {:?}, {} processes",
        ls_lines(&inst),
        live(&marker).len()
    );

    // Killed mid-way, then the same start again: it completes, using what
    // runs, and everything but the target is pulled in.
    start_and_kill(&inst, n - 1, 3);
    alice(&inst, &["start", &format!("c{}", n - 1)]).ok();
    let ls = ls_json(&inst);
    assert_eq!(chain_running(&inst), n, "{ls:?}");
    for i in 0..n - 1 {
        let t = format!("c{i}");
        assert_eq!(ls[t.as_str()]["explicit"], false, "{t}: {ls:?}");
        assert_eq!(ls[t.as_str()]["state"], "ready", "{t}: {ls:?}");
    }
    assert_eq!(live(&marker).len(), n);

    // A pulled-in link whose monitor was killed still runs and is still
    // held; the stop of the root takes it down with the rest, and nothing
    // is left behind.
    let st = inst.status("ns", "c5");
    let monitor = st["info"]["monitor_pid"].as_i64().expect("monitor pid") as i32;
    kill9(monitor);
    assert!(wait_for(Duration::from_secs(5), || !alive(monitor)));
    assert!(runs(&inst, "c5"));
    alice(&inst, &["stop", "--force", "c0"]).ok();
    assert!(
        wait_for(Duration::from_secs(10), || chain_running(&inst) == 0
            && live(&marker).is_empty()),
        "after the stop: {:?}, {} processes",
        ls_lines(&inst),
        live(&marker).len()
    );
}

/// With lancod gone, a need restarted by its own policy still takes its
/// dependent down and back up: the link is the dependent's monitor's.
#[test]
fn dependencies_work_on_with_lancod_down() {
    let Some(mut inst) = setup("deps_no_lancod") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (sdb, sweb) = db_and_web(&inst, "restart = \"always\"\nrestart_delay = \"100ms\"");
    inst.kill_lancod(nix::sys::signal::Signal::SIGKILL);
    let (db, web) = (pid(&inst, "db").unwrap(), pid(&inst, "web").unwrap());
    kill9(db);
    assert!(
        wait_for(Duration::from_secs(10), || {
            matches!(pid(&inst, "db"), Some(p) if p != db)
                && matches!(pid(&inst, "web"), Some(p) if p != web)
                && ls_json(&inst)["web"]["state"] == "ready"
        }),
        "with lancod down: db {:?}, web {:?}, ls {:?}",
        pid(&inst, "db"),
        pid(&inst, "web"),
        ls_lines(&inst)
    );
    assert_eq!((live(&sdb).len(), live(&sweb).len()), (1, 1));
    // Stopping needs no lancod either: web first (refused without
    // --force), db after it.
    assert_eq!(alice(&inst, &["stop", "db"]).code(), 3);
    alice(&inst, &["stop", "--force", "db"]).ok();
    assert!(wait_for(Duration::from_secs(5), || live(&sdb).is_empty()
        && live(&sweb).is_empty()));
}

/// `run` takes the dependency options as `define` does: its needs are
/// pulled in and released with it. `after` orders without starting: a
/// task after one that is not running starts at once and starts nothing;
/// started in the same `start`, it waits for that one's readiness.
#[test]
fn run_pulls_in_and_after_only_orders() {
    let Some(inst) = setup("deps_run_after") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let m = marks(&inst);
    let (sdb, slog, sweb, sadhoc) = (
        unique_sleep(),
        unique_sleep(),
        unique_sleep(),
        unique_sleep(),
    );
    let ready = m.join("logger-ready");
    let web_at = m.join("web-started");
    apply(
        &inst,
        A,
        "defs.toml",
        &format!(
            "{}{}{}",
            sleep_task("db", &sdb, ""),
            sh_task(
                "logger",
                &format!(
                    "sleep 0.5; touch {}; echo >&3; exec sleep {slog}",
                    ready.display()
                ),
                "ready = \"fd:3\""
            ),
            sh_task(
                "web",
                &format!(
                    "test -e {} && touch {}; exec sleep {sweb}",
                    ready.display(),
                    web_at.display()
                ),
                "after = [\"logger\"]"
            ),
        ),
    );
    // After a task that does not run: web starts at once, logger never.
    alice(&inst, &["start", "web"]).ok();
    assert!(runs(&inst, "web") && !runs(&inst, "logger"));
    assert!(!web_at.exists(), "web ran after a logger that never ran");
    alice(&inst, &["stop", "web"]).ok();
    // Both in one start: web's command runs only once logger is ready.
    // (`start` returns once web's shell has exec'd; its `test` and `touch`
    // come just after: a web started too early never touches the file.)
    alice(&inst, &["start", "web", "logger"]).ok();
    assert!(
        wait_for(Duration::from_secs(5), || web_at.exists()),
        "web started before logger was ready"
    );
    alice(&inst, &["stop", "web"]).ok();
    alice(&inst, &["stop", "logger"]).ok();

    // run --needs: db is pulled in by the ad-hoc task, and goes with it.
    alice(&inst, &["run", "--needs", "db", "adhoc", "sleep", &sadhoc]).ok();
    let ls = ls_json(&inst);
    assert_eq!(ls["db"]["explicit"], false, "{ls:?}");
    assert_eq!(names(&ls["db"]["pulled_in_by"]), ["adhoc"], "{ls:?}");
    assert_eq!(ls["adhoc"]["explicit"], true, "{ls:?}");
    assert_eq!(alice(&inst, &["stop", "db"]).code(), 3);
    alice(&inst, &["stop", "adhoc"]).ok();
    assert!(!runs(&inst, "db"));
    assert!(live(&sdb).is_empty() && live(&sadhoc).is_empty());
    // A need that cannot be started: the run is refused, nothing runs.
    expect(
        &alice(
            &inst,
            &["run", "--needs", "nosuch", "adhoc", "sleep", &sadhoc],
        ),
        2,
        &["nosuch"],
    );
    assert!(!runs(&inst, "adhoc") && live(&sadhoc).is_empty());
}

/// A need that failed for good (its restart limit reached) leaves its
/// dependent waiting; `ls` lists the need as failed, held by the waiting
/// dependent, so the cause shows; `stop` of the dependent clears both.
#[test]
fn ls_shows_the_failed_need_a_dependent_waits_for() {
    let Some(inst) = setup("deps_failed_need") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let (sdb, sweb) = (unique_sleep(), unique_sleep());
    let flag = marks(&inst).join("db-fails");
    apply(
        &inst,
        A,
        "defs.toml",
        &format!(
            "{}{}",
            sh_task(
                "db",
                &format!(
                    "while ! test -e {}; do sleep 0.05; done; sleep 0.3; exit 1 # {sdb}",
                    flag.display()
                ),
                "restart = \"on-failure\"\nrestart_delay = \"100ms\"\nrestart_limit = { count = 1, interval = \"10s\" }",
            ),
            sleep_task("web", &sweb, "needs = [\"db\"]"),
        ),
    );
    alice(&inst, &["start", "web"]).ok();
    fs::write(&flag, "").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let ls = ls_json(&inst);
            ls["db"]["state"] == "failed" && ls["web"]["state"] == "waiting for db"
        }),
        "ls: {:?}",
        ls_lines(&inst)
    );
    let ls = ls_json(&inst);
    assert_eq!(names(&ls["db"]["pulled_in_by"]), ["web"], "{ls:?}");
    assert_eq!(ls["db"]["processes"], serde_json::json!([]), "{ls:?}");
    assert!(ls_lines(&inst).contains(&"db (failed; pulled in by web)".to_owned()));
    assert!(live(&sweb).is_empty() && live(&sdb).is_empty());
    alice(&inst, &["stop", "web"]).ok();
    assert!(ls_json(&inst).is_empty(), "{:?}", ls_lines(&inst));
}
