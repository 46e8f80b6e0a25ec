//! The benchmark's library figure (bench/phases/library.py, issue 9):
//! `Namespace::run` timed from a long-lived process that links lanco-client
//! as a daemon does (no CLI; this package's features), as a member.
//!
//! ```text
//! lanco-bench-lib NS COUNT SPACING_MS PREFIX WARM
//! ```
//!
//! Starts WARM + COUNT tasks `PREFIX-0`, `PREFIX-1`, … (each `/bin/sleep
//! 1000`, an empty environment), SPACING_MS apart, timing each `run` call
//! alone; then stops every task it started (also when a run failed), and
//! prints one JSON line: `{"warm_up_ns": [...], "run_ns": [...],
//! "spawn_ns": [...]}` (the first WARM runs, then the COUNT kept; and the
//! floor: before each kept run, the same process starting `/bin/sleep 1000`
//! itself with `std::process::Command::spawn`, which returns once the exec
//! has happened, as `run` does). Exit status 1 on any error.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use lanco_client::{Config, Namespace, TaskName, TaskSpec};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "usage: lanco-bench-lib NS COUNT SPACING_MS PREFIX WARM";

fn main() {
    if let Err(e) = bench() {
        eprintln!("lanco-bench-lib: {e}");
        std::process::exit(1);
    }
}

fn bench() -> Res {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ns, count, spacing, prefix, warm] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let ns = Namespace::open(Config::load()?, ns.parse()?)?;
    let count: usize = count.parse()?;
    let spacing = Duration::from_millis(spacing.parse()?);
    let warm: usize = warm.parse()?;

    let mut started: Vec<TaskName> = Vec::new();
    let mut took: Vec<u128> = Vec::new();
    let mut floor: Vec<u128> = Vec::new();
    let ran = run_all(
        &ns,
        prefix,
        (warm, count),
        spacing,
        &mut started,
        &mut took,
        &mut floor,
    );
    // Clean up whatever was started, whether or not every run succeeded.
    let mut stop_err = None;
    for t in &started {
        if let Err(e) = ns.stop(t, Some(Duration::from_secs(5))) {
            stop_err.get_or_insert_with(|| format!("stop {t}: {e}"));
        }
    }
    ran?;
    if let Some(e) = stop_err {
        return Err(e.into());
    }
    let list = |xs: &[u128]| {
        xs.iter()
            .map(u128::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let w = warm.min(took.len());
    println!(
        "{{\"warm_up_ns\": [{}], \"run_ns\": [{}], \"spawn_ns\": [{}]}}",
        list(&took[..w]),
        list(&took[w..]),
        list(&floor)
    );
    Ok(())
}

fn run_all(
    ns: &Namespace,
    prefix: &str,
    (warm, count): (usize, usize),
    spacing: Duration,
    started: &mut Vec<TaskName>,
    took: &mut Vec<u128>,
    floor: &mut Vec<u128>,
) -> Res {
    for i in 0..warm + count {
        if i >= warm {
            std::thread::sleep(spacing / 2);
            floor.push(spawn_floor()?);
            std::thread::sleep(spacing / 2);
        } else {
            std::thread::sleep(spacing);
        }
        let task: TaskName = format!("{prefix}-{i}").parse()?;
        let spec = TaskSpec::new(
            task.clone(),
            vec![OsString::from("/bin/sleep"), OsString::from("1000")],
        )?;
        let t0 = Instant::now();
        let run = ns.run(&spec);
        let d = t0.elapsed();
        let run = run.map_err(|e| format!("run {task}: {e}"))?;
        took.push(d.as_nanos());
        started.push(task);
        // Dropping it leaves the task running (stopped at the end).
        drop(run);
    }
    Ok(())
}

/// One start of `/bin/sleep 1000` by this process itself, timed up to the
/// return of `spawn` (after the exec), then killed and reaped untimed.
fn spawn_floor() -> Res<u128> {
    use std::process::{Command, Stdio};
    let t0 = Instant::now();
    let mut child = Command::new("/bin/sleep")
        .arg("1000")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let d = t0.elapsed();
    child.kill()?;
    child.wait()?;
    Ok(d.as_nanos())
}
