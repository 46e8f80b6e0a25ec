//! The `tokio` feature as a daemon links it: run, wait and stop awaited on a
//! current-thread runtime never stall its 10 ms heartbeat, and a wait
//! dropped under a timeout leaves no thread behind. The caller is
//! lanco-client's `async_probe` example (it checks the answers itself),
//! run as a real member through setpriv; this test checks its figures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lanco_e2e::{setup, Install, ALICE, OPS};

/// Not a benchmark: far above a heartbeat (10 ms) and a loaded machine's
/// scheduling delays, far below the blocking calls' stalls (1.5 s for
/// run + wait on a 1 s task).
const MAX_GAP_MS: f64 = 200.0;

/// Builds the probe (the library without the CLI, feature `tokio`) into the
/// target directory this test was built in and links it into the
/// installation's `bin/`, beside the monitor it starts.
fn install_probe(inst: &Install) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe.parent().and_then(Path::parent).expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "lanco-client",
        "--no-default-features",
        "--features",
        "tokio",
        "--example",
        "async_probe",
    ]);
    if let Some(top) = target.parent() {
        cmd.arg("--target-dir").arg(top);
    }
    if target.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("cargo build").success(),
        "building async_probe failed"
    );
    let to = inst.bin.join("async_probe");
    let from = target.join("examples").join("async_probe");
    fs::hard_link(&from, &to)
        .or_else(|_| fs::copy(&from, &to).map(drop))
        .unwrap_or_else(|e| panic!("install async_probe: {e}"));
    to
}

/// `key=value` from a probe line.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn awaited_calls_never_block_the_runtime() {
    let Some(inst) = setup("async") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let probe = install_probe(&inst);
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={ALICE}"),
            &format!("--regid={ALICE}"),
            "--init-groups",
            "--",
        ])
        .arg(&probe)
        .arg("ns")
        .env("LANCO_CONFIG", &inst.config)
        .current_dir(&inst.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run async_probe");
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!("{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.ends_with("ok\n"), "probe failed");

    let steps: Vec<&str> = out.lines().filter(|l| l.starts_with("step ")).collect();
    assert_eq!(steps.len(), 13, "{out}");
    for s in &steps {
        let gap = field(s, "max_gap_ms");
        assert!(gap < MAX_GAP_MS, "the runtime stalled {gap} ms: {s}");
    }
    let worst = steps
        .iter()
        .map(|s| field(s, "max_gap_ms"))
        .fold(0.0, f64::max);
    eprintln!("async: longest heartbeat gap over every step: {worst} ms");

    // The dropped wait held no thread: none was left waiting.
    let threads = out
        .lines()
        .find(|l| l.starts_with("threads "))
        .expect("thread counts");
    assert!(
        field(threads, "after") <= field(threads, "before"),
        "{threads}"
    );

    // With the monitor killed, the end of a 0.3 s task was noticed through
    // cgroup.events' notification, not the once-a-second re-read.
    let fallback = steps
        .iter()
        .find(|s| s.starts_with("step wait_no_monitor "))
        .expect("wait_no_monitor");
    assert!(field(fallback, "took_ms") < 900.0, "{fallback}");
}
