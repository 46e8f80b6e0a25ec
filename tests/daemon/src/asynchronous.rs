//! The `tokio` feature on a current-thread runtime that keeps a 10 ms
//! heartbeat: run, wait (of a slow job and of jobs that end at once), a
//! wait dropped under a timeout, stop (graceful and killed), and both again
//! with the task's monitor killed (the `cgroup.events` fallback). Prints,
//! per step, how long it took and the longest gap between heartbeats, and
//! the process's thread count around the dropped wait.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanco_client::{Exit, Namespace, Started, TaskName};

use crate::{sh, spec, task, Res};

pub fn probe(ns: Namespace) -> Res {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // `run_async`'s thread on the blocking pool is gone 10 ms after the
        // start, so the thread count before the dropped wait is the
        // runtime's alone: a thread a wait left blocked would be one more.
        .thread_keep_alive(Duration::from_millis(10))
        .build()?
        .block_on(steps(ns))
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

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// SIGKILLs the task's monitor and waits until it is dead (a zombie or
/// gone: it is not our child).
async fn kill_monitor(started: &Started) -> Res {
    let pid = started.monitor_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let t0 = Instant::now();
    while crate::proc::alive(pid) {
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "the monitor outlived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits until `task` has written `ready` to its log (read again every
/// 10 ms: the library's follower blocks).
async fn ready(ns: &Namespace, t: &TaskName) -> Res {
    let t0 = Instant::now();
    loop {
        if let Some(path) = ns.log_path(t)? {
            if std::fs::read(&path).is_ok_and(|b| b.ends_with(b"ready\n")) {
                return Ok(());
            }
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "{t} never said ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn steps(ns: Namespace) -> Res {
    let hb = Heartbeat::start();
    let (a, b, c, d, e, q) = (
        task("a")?,
        task("b")?,
        task("c")?,
        task("d")?,
        task("e")?,
        task("q")?,
    );

    // run + wait: the blocking calls froze such a runtime for 1.5 s.
    let started = hb
        .step("run", ns.run_async(&sh(&a, "sleep 1; exit 7")?))
        .await?;
    let rec = hb.step("wait", ns.wait_async(&a)).await?;
    ensure!(rec.exit == Exit::Code(7), "{rec:?}");
    ensure!(rec.run_id == started.run_id, "{rec:?}");

    // Jobs that end at once, awaited one after the other.
    for round in 0..20 {
        let code = round % 50;
        let started = hb
            .step("run_quick", ns.run_async(&sh(&q, &format!("exit {code}"))?))
            .await?;
        let rec = hb.step("wait_quick", ns.wait_async(&q)).await?;
        ensure!(
            rec.exit == Exit::Code(code) && rec.run_id == started.run_id,
            "round {round}: {rec:?}"
        );
    }

    // A wait given up on: no thread left behind.
    hb.step("run", ns.run_async(&spec(&b, &["sleep", "60"])?))
        .await?;
    let before = threads();
    let r = hb
        .step(
            "wait_dropped",
            tokio::time::timeout(Duration::from_millis(300), ns.wait_async(&b)),
        )
        .await;
    ensure!(r.is_err(), "the wait for sleep 60 ended: {r:?}");
    println!("threads before={before} after={}", threads());

    // stop: graceful, then one that ignores SIGTERM and is killed.
    let killed = hb
        .step("stop", ns.stop_async(&b, Some(Duration::from_secs(5))))
        .await?;
    ensure!(!killed, "stop of sleep: killed");
    let rec = hb.step("wait_stopped", ns.wait_async(&b)).await?;
    ensure!(rec.exit == Exit::Signal(15) && rec.stopped, "{rec:?}");
    hb.step("run", ns.run_async(&sh(&c, crate::runs::STUBBORN)?))
        .await?;
    ready(&ns, &c).await?;
    let killed = hb
        .step(
            "stop_kill",
            ns.stop_async(&c, Some(Duration::from_millis(500))),
        )
        .await?;
    ensure!(killed, "stop of a task ignoring SIGTERM: not killed");

    // No monitor: wait watches cgroup.events; stop goes through the cgroup.
    let started = hb
        .step("run", ns.run_async(&spec(&d, &["sleep", "0.3"])?))
        .await?;
    kill_monitor(&started).await?;
    let rec = hb.step("wait_no_monitor", ns.wait_async(&d)).await?;
    ensure!(rec.exit == Exit::Lost, "{rec:?}");
    ensure!(rec.run_id == started.run_id, "{rec:?}");
    let started = hb
        .step("run", ns.run_async(&spec(&e, &["sleep", "60"])?))
        .await?;
    kill_monitor(&started).await?;
    let killed = hb
        .step(
            "stop_no_monitor",
            ns.stop_async(&e, Some(Duration::from_secs(5))),
        )
        .await?;
    ensure!(!killed, "stop without a monitor: killed");
    ensure!(!ns.check(&e)?, "running after stop");
    let rec = hb
        .step("wait_no_monitor_stopped", ns.wait_async(&e))
        .await?;
    ensure!(rec.stopped && rec.exit == Exit::Lost, "{rec:?}");
    ensure!(rec.run_id == started.run_id, "{rec:?}");

    // follow, awaited: every line the run writes, then the end.
    let f = task("f")?;
    hb.step(
        "run_follow",
        ns.run_async(&sh(&f, "for i in 1 2 3; do echo line $i; sleep 0.2; done")?),
    )
    .await?;
    let mut follower = hb
        .step("follow_open", ns.follow_async(&f))
        .await?
        .ok_or("no log to follow")?;
    let mut text = Vec::new();
    while let Some(chunk) = hb.step("follow", follower.next_chunk()).await? {
        text.extend_from_slice(&chunk);
    }
    ensure!(
        text == b"line 1\nline 2\nline 3\n",
        "followed {:?}",
        String::from_utf8_lossy(&text)
    );
    Ok(())
}
