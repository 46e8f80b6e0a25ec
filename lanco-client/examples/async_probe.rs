//! A daemon's use of the `tokio` feature, on a current-thread runtime that
//! keeps a 10 ms heartbeat: run, wait, a wait dropped under a timeout, stop
//! (graceful and killed), and both again with the task's monitor killed
//! (the `cgroup.events` fallback). Checks each answer itself; prints, per
//! step, how long it took and the longest gap between heartbeats, and the
//! process's thread count around the dropped wait, for
//! tests/tests/asynchronous.rs.
//!
//! Usage: `LANCO_CONFIG=... async_probe NAMESPACE` (as a member).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanco_client::{Config, Exit, Namespace, Started, TaskName, TaskSpec};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let ns = std::env::args()
        .nth(1)
        .ok_or("usage: async_probe NAMESPACE")?;
    let ns = Namespace::open(Config::load()?, ns.parse()?)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // `run_async`'s thread on the blocking pool is gone 10 ms after the
        // start, so the thread count before the dropped wait is the
        // runtime's alone: a thread a wait left blocked would be one more.
        .thread_keep_alive(Duration::from_millis(10))
        .build()?
        .block_on(probe(ns))
}

/// The longest gap between two heartbeats since the last reset, in µs.
struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    fn start() -> Self {
        let max = Arc::new(AtomicU64::new(0));
        let m = max.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now = Instant::now();
                m.fetch_max((now - last).as_micros() as u64, Ordering::Relaxed);
                last = now;
            }
        });
        Heartbeat(max)
    }

    /// Runs one step and prints `step NAME took_ms=.. max_gap_ms=..`.
    async fn step<T>(&self, name: &str, f: impl Future<Output = T>) -> T {
        // A beat first, so the gap before the step is not counted in it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.store(0, Ordering::Relaxed);
        let t0 = Instant::now();
        let r = f.await;
        let took = t0.elapsed();
        // Two beats after, so a block at the very end is counted.
        tokio::time::sleep(Duration::from_millis(25)).await;
        let gap = self.0.load(Ordering::Relaxed) as f64 / 1000.0;
        println!(
            "step {name} took_ms={:.1} max_gap_ms={gap:.1}",
            took.as_secs_f64() * 1000.0
        );
        r
    }
}

fn spec(task: &TaskName, script: &str) -> Res<TaskSpec> {
    Ok(TaskSpec::new(
        task.clone(),
        vec!["sh".into(), "-c".into(), script.into()],
    )?)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// SIGKILLs the task's monitor and waits until it is dead (a zombie or
/// gone: it is not our child).
async fn kill_monitor(started: &Started) -> Res<()> {
    let pid = nix::unistd::Pid::from_raw(started.monitor_pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)?;
    let t0 = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.starts_with(" Z")))
    {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("the monitor outlived SIGKILL".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn probe(ns: Namespace) -> Res<()> {
    let hb = Heartbeat::start();
    let (a, b, c, d, e): (TaskName, TaskName, TaskName, TaskName, TaskName) = (
        "a".parse()?,
        "b".parse()?,
        "c".parse()?,
        "d".parse()?,
        "e".parse()?,
    );

    // run + wait: the 1.5 s freeze of the blocking calls.
    let started = hb
        .step("run", ns.run_async(&spec(&a, "sleep 1; exit 7")?))
        .await?;
    let rec = hb.step("wait", ns.wait_async(&a)).await?;
    assert_eq!(rec.exit, Exit::Code(7), "{rec:?}");
    assert_eq!(rec.run_id, started.run_id);

    // A wait given up on: no thread left behind.
    hb.step("run", ns.run_async(&spec(&b, "sleep 60")?)).await?;
    let before = threads();
    let r = hb
        .step(
            "wait_dropped",
            tokio::time::timeout(Duration::from_millis(300), ns.wait_async(&b)),
        )
        .await;
    assert!(r.is_err(), "the wait for sleep 60 ended: {r:?}");
    println!("threads before={before} after={}", threads());

    // stop: graceful, then one that ignores SIGTERM and is killed.
    let killed = hb
        .step("stop", ns.stop_async(&b, Some(Duration::from_secs(5))))
        .await?;
    assert!(!killed);
    let rec = hb.step("wait_stopped", ns.wait_async(&b)).await?;
    assert_eq!(rec.exit, Exit::Signal(15), "{rec:?}");
    assert!(rec.stopped, "{rec:?}");
    hb.step("run", ns.run_async(&spec(&c, "trap '' TERM; sleep 60")?))
        .await?;
    let killed = hb
        .step(
            "stop_kill",
            ns.stop_async(&c, Some(Duration::from_millis(500))),
        )
        .await?;
    assert!(killed);

    // No monitor: wait watches cgroup.events; stop goes through the cgroup.
    let started = hb
        .step("run", ns.run_async(&spec(&d, "sleep 0.3")?))
        .await?;
    kill_monitor(&started).await?;
    let rec = hb.step("wait_no_monitor", ns.wait_async(&d)).await?;
    assert_eq!(rec.exit, Exit::Lost, "{rec:?}");
    assert_eq!(rec.run_id, started.run_id);
    let started = hb.step("run", ns.run_async(&spec(&e, "sleep 60")?)).await?;
    kill_monitor(&started).await?;
    let killed = hb
        .step(
            "stop_no_monitor",
            ns.stop_async(&e, Some(Duration::from_secs(5))),
        )
        .await?;
    assert!(!killed);
    assert!(!ns.check(&e)?);
    let rec = hb
        .step("wait_no_monitor_stopped", ns.wait_async(&e))
        .await?;
    assert!(rec.stopped && rec.exit == Exit::Lost, "{rec:?}");
    println!("ok");
    Ok(())
}
