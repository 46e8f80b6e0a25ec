//! The monitor starts clean whatever its caller did: a daemon that links the
//! library (lanco-client's `caller_hazards` example, run as a real user)
//! ignores SIGCHLD, is a child subreaper, or holds fds without close-on-exec,
//! and `run` still works, the monitor still learns the task's status, and
//! neither the monitor nor the task inherits the caller's signal state or fds.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use lanco_e2e::{alive, setup, unique_sleep, wait_for, Install, Out, ALICE, OPS};

const HELPER: &str = "caller_hazards";

/// Where cargo put this test's build (`…/debug`), or `$LANCO_E2E_BIN`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LANCO_E2E_BIN") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

/// Builds the helper once (cargo test builds only this crate's targets) and
/// installs it beside the installation's lanco-monitor.
fn install_helper(inst: &Install) -> PathBuf {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("LANCO_E2E_BIN").is_some() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let dir = target_dir();
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "lanco-client",
            "--example",
            HELPER,
        ]);
        if let Some(top) = dir.parent() {
            cmd.arg("--target-dir").arg(top);
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo build").success(),
            "building {HELPER}"
        );
    });
    let to = inst.bin.join(HELPER);
    fs::copy(target_dir().join("examples").join(HELPER), &to)
        .unwrap_or_else(|e| panic!("copy {HELPER}: {e}"));
    to
}

/// Runs the helper as alice through `perl -e PRELUDE` (what perl sets up
/// survives its exec of the helper); returns its output.
fn caller(inst: &Install, prelude: &str, args: &[&str]) -> Out {
    let helper = install_helper(inst);
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={ALICE}"),
            &format!("--regid={ALICE}"),
            "--init-groups",
            "perl",
            "-e",
            &format!("{prelude}; exec {{ $ARGV[0] }} @ARGV or die \"exec: $!\""),
        ])
        .arg(helper)
        .args(args)
        .env("LANCO_CONFIG", &inst.config)
        .current_dir(&inst.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the caller");
    Out(o)
}

/// The helper's facts: first word of each line → the rest (last one wins),
/// and every `reaped` line.
fn facts(o: &Out) -> (HashMap<String, String>, Vec<String>) {
    let mut map = HashMap::new();
    let mut reaped = Vec::new();
    for line in o.stdout().lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        if k == "reaped" {
            reaped.push(v.to_owned());
        }
        map.insert(k.to_owned(), v.to_owned());
    }
    (map, reaped)
}

/// The task's pid and its monitor's, from the helper's `started` line.
fn started(o: &Out) -> (i32, i32) {
    let (f, _) = facts(o);
    let s = f
        .get("started")
        .unwrap_or_else(|| panic!("run failed: {o}"));
    let mut it = s.split(' ').map(|p| p.parse::<i32>().expect("pid"));
    (it.next().expect("pid"), it.next().expect("monitor pid"))
}

/// A signal mask line of /proc/PID/status (`SigIgn`, `SigBlk`), as bits.
fn sigmask(pid: i32, field: &str) -> u64 {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hex = st
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(hex.trim(), 16).expect("mask")
}

fn bit(sig: nix::sys::signal::Signal) -> u64 {
    1 << (sig as u32 - 1)
}

/// fd number → what it points at, for a process.
fn fds(pid: i32) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .map(|e| {
            let target = fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                target.display().to_string(),
            )
        })
        .collect();
    v.sort_by_key(|(n, _)| n.parse::<i32>().unwrap_or(-1));
    v
}

#[test]
fn caller_ignoring_sigchld() {
    use nix::sys::signal::Signal::{SIGCHLD, SIGUSR1, SIGUSR2};
    let Some(inst) = setup("caller_ignoring_sigchld") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    // SIG_IGN survives execve, and so would a mask if the spawn kept it.
    let prelude = "use POSIX; $SIG{CHLD} = 'IGNORE'; $SIG{USR2} = 'IGNORE'; \
                   sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGUSR1))";

    // run succeeds (no "wait for the monitor: No child processes"), and the
    // monitor sees the task's status: it ends, the name is free again.
    let o = caller(&inst, prelude, &["ns", "quick", "sh", "-c", "exit 7"]);
    assert_eq!(o.code(), 0, "{o}");
    let (_, monitor) = started(&o);
    assert!(
        wait_for(Duration::from_secs(10), || !alive(monitor)),
        "the monitor never noticed the end of its task"
    );
    let st = inst.status("ns", "quick");
    assert_eq!(st["last"]["exit"]["kind"], "code", "{st}");
    assert_eq!(st["last"]["exit"]["value"], 7, "{st}");
    assert_eq!(
        inst.lanco(a, &["ns", "run", "-f", "quick", "true"]).code(),
        0
    );

    // Neither the monitor nor the task keeps what the caller ignored or
    // blocked.
    let s = unique_sleep();
    let o = caller(&inst, prelude, &["ns", "long", "sleep", &s]);
    let (task, monitor) = started(&o);
    for (who, pid) in [("monitor", monitor), ("task", task)] {
        let ign = sigmask(pid, "SigIgn");
        let blk = sigmask(pid, "SigBlk");
        assert_eq!(
            ign & (bit(SIGCHLD) | bit(SIGUSR2)),
            0,
            "{who} ignores {ign:#x}"
        );
        assert_eq!(blk & bit(SIGUSR1), 0, "{who} blocks {blk:#x}");
        if who == "task" {
            assert_eq!((ign, blk), (0, 0), "the task starts with defaults");
        }
    }
    inst.lanco(a, &["ns", "stop", "long"]).ok();
    let st = inst.status("ns", "long");
    assert_eq!(st["last"]["exit"]["kind"], "signal", "{st}");
}

#[test]
fn caller_that_is_a_subreaper() {
    let Some(inst) = setup("caller_subreaper") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let o = caller(
        &inst,
        "1",
        &["--subreaper", "ns", "t", "sh", "-c", "sleep 0.2; exit 7"],
    );
    assert_eq!(o.code(), 0, "{o}");
    let (_, monitor) = started(&o);
    let (f, reaped) = facts(&o);
    // run reaped the process it started: the only child the caller can have
    // right after is the monitor, adopted by the kernel's rule (an orphan
    // goes to its nearest living subreaper ancestor); nothing lets a
    // descendant opt out of that (see Namespace::run).
    let after_run = &f["children-after-run"];
    assert!(
        after_run == "none" || *after_run == monitor.to_string(),
        "children after run: {after_run}, monitor {monitor}"
    );
    // What the caller adopted is the monitor alone; it exits, cleanly, once
    // the task is over, so the caller's reaping loop collects it and is left
    // with nothing (the task and its orphans were the monitor's to reap).
    assert_eq!(reaped, vec![format!("{monitor} exited 0")], "{o}");
    assert_eq!(f["children-at-end"], "none", "{o}");
    let st = inst.status("ns", "t");
    assert_eq!(st["last"]["exit"]["value"], 7, "{st}");
}

#[test]
fn caller_fds_without_cloexec() {
    let Some(inst) = setup("caller_fds") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let secret = inst.dir.join("caller-secret");
    fs::write(&secret, "not for the task\n").expect("secret");
    let s = unique_sleep();
    let o = caller(
        &inst,
        "1",
        &[
            "--leak",
            &secret.display().to_string(),
            "ns",
            "t",
            "sleep",
            &s,
        ],
    );
    assert_eq!(o.code(), 0, "{o}");
    let (task, monitor) = started(&o);
    let (f, _) = facts(&o);
    let pipe = f["leaked"].clone();
    let secret = secret.display().to_string();
    for (who, pid) in [("monitor", monitor), ("task", task)] {
        let open = fds(pid);
        assert!(
            open.iter().all(|(_, t)| *t != secret && *t != pipe),
            "the {who} inherited the caller's fds: {open:?}"
        );
    }
    // The monitor's own fds are close-on-exec, all but stdio.
    for (n, target) in fds(monitor).into_iter().skip(3) {
        let info = fs::read_to_string(format!("/proc/{monitor}/fdinfo/{n}")).expect("fdinfo");
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .expect("flags");
        assert_ne!(
            flags & libc::O_CLOEXEC as u32,
            0,
            "monitor fd {n} ({target})"
        );
    }
    // The task gets exactly stdin (/dev/null), stdout and stderr (the log).
    let log = inst.log_path("ns", "t").display().to_string();
    assert_eq!(
        fds(task),
        vec![
            ("0".to_owned(), "/dev/null".to_owned()),
            ("1".to_owned(), log.clone()),
            ("2".to_owned(), log),
        ]
    );
    inst.lanco(Some(ALICE), &["ns", "stop", "t"]).ok();
}
