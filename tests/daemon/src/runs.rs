//! Runs and their records: run + wait (with a timeout), run ids in
//! `Started`, the state file (`status`) and the exit record (`wait`),
//! `status` right after the end, stop and whether it killed, the refusals
//! (already running, not running), and a restarted daemon finding its task
//! again by name.

use std::time::{Duration, Instant};

use lanco_client::{Exit, Followed, Namespace, Status, TaskName};

use crate::{ms, poll, proc, refused, sh, spec, task, wait_for_run, Res};

/// Long enough for anything that should answer at once on a loaded machine;
/// the test bounds the figures that matter itself.
const LIMIT: Duration = Duration::from_secs(10);

/// A task that ignores SIGTERM (as do the `sleep` it runs), once it says
/// `ready`: `run` returns once `sh` is exec'd, before it has read its script.
pub const STUBBORN: &str = "trap '' TERM; echo ready; sleep 60";

/// Waits until `task` has written `ready` to its log.
pub fn ready(ns: &Namespace, t: &TaskName) -> Res {
    let mut f = ns.follow(t)?.ok_or_else(|| format!("follow {t}: no log"))?;
    let mut got = Vec::new();
    while !got.ends_with(b"ready\n") {
        match f.next_chunk(Some(LIMIT))? {
            Followed::Data(d) => got.extend(d),
            other => return Err(format!("{t} never said ready: {other:?}").into()),
        }
    }
    Ok(())
}

/// `rounds` times: run a job that ends at once (`sh -c 'exit K'`), then
/// `Namespace::wait` for it. Prints how long each wait took.
pub fn rapid(ns: &Namespace, rounds: u32) -> Res {
    let t = task("rapid")?;
    let mut took = Vec::new();
    for round in 0..rounds {
        let code = (round % 50) as i32;
        let started = ns.run(&sh(&t, &format!("exit {code}"))?)?;
        let t0 = Instant::now();
        let rec = wait_for_run(ns, &t, &started.run_id, LIMIT)
            .map_err(|e| format!("round {round}: {e}"))?;
        let d = t0.elapsed();
        ensure!(
            rec.exit == Exit::Code(code),
            "round {round}: {:?}, not code {code}",
            rec.exit
        );
        println!("round {round} wait_ms={:.2}", ms(d));
        took.push(d);
    }
    took.sort();
    if let (Some(slowest), Some(median)) = (took.last(), took.get(took.len() / 2)) {
        println!(
            "rapid rounds={rounds} slowest_ms={:.2} median_ms={:.2}",
            ms(*slowest),
            ms(*median)
        );
    }
    Ok(())
}

/// `rounds` times: run a job that ends at once and ask `status` until it is
/// not running: the record it gives is that run's, never the previous one.
pub fn status_after_end(ns: &Namespace, rounds: u32) -> Res {
    let t = task("quick")?;
    let mut most = 0;
    for round in 0..rounds {
        let code = 10 + (round % 50) as i32;
        let started = ns.run(&sh(&t, &format!("exit {code}"))?)?;
        let t0 = Instant::now();
        let mut asked = 0;
        loop {
            asked += 1;
            let st = ns.status(&t)?;
            if let Status::Running { info: Some(s), .. } = &st {
                ensure!(
                    s.run_id == started.run_id,
                    "round {round}: running as run {}, started {}",
                    s.run_id,
                    started.run_id
                );
            }
            if let Status::NotRunning { last, .. } = st {
                let rec = last.ok_or_else(|| format!("round {round}: ended with no record"))?;
                ensure!(
                    rec.run_id == started.run_id && rec.exit == Exit::Code(code),
                    "round {round}: the record of run {} ({:?}), not of run {} (code {code})",
                    rec.run_id,
                    rec.exit,
                    started.run_id
                );
                break;
            }
            ensure!(t0.elapsed() < LIMIT, "round {round}: still running");
        }
        most = most.max(asked);
    }
    println!("status-after-end rounds={rounds} most_asks={most}");
    Ok(())
}

/// A daemon's day: refusals for a name never used, run, wait with a
/// timeout (the library's and `Started`'s), the run id everywhere, run
/// refused while running, stop (graceful, then one that must kill), a new
/// run of the name with a new id.
pub fn basics(ns: &Namespace) -> Res {
    let never = task("never-ran")?;
    refused(
        "wait never-ran",
        ns.wait(&never, Some(LIMIT)),
        "not running",
    )?;
    refused("stop never-ran", ns.stop(&never, None), "not running")?;
    ensure!(!ns.check(&never)?, "check never-ran: running");
    ensure!(
        matches!(ns.status(&never)?, Status::NotRunning { last: None, .. }),
        "status never-ran: not 'never ran'"
    );
    ensure!(ns.log_path(&never)?.is_none(), "log_path never-ran: Some");
    // Another tenant's namespace, or none: an error, whatever its words.
    refused(
        "open another namespace",
        Namespace::open(ns.config().clone(), "lanco-probe-nosuch".parse()?).map(|_| ()),
        "",
    )?;

    let long = task("long")?;
    let mut started = ns.run(&spec(&long, &["sleep", "60"])?)?;
    println!(
        "started pid={} monitor={} run_id={}",
        started.pid, started.monitor_pid, started.run_id
    );
    ensure!(!started.run_id.is_empty(), "no run id");
    // The monitor is not this caller's child, nor its zombie.
    let kids = proc::children();
    ensure!(kids.is_empty(), "children after run: {kids:?}");
    ensure!(ns.check(&long)?, "check: not running");
    match ns.status(&long)? {
        Status::Running {
            info: Some(s),
            monitor_alive: true,
            ..
        } => ensure!(
            s.run_id == started.run_id && s.pid == started.pid,
            "status: run {} pid {}, started run {} pid {}",
            s.run_id,
            s.pid,
            started.run_id,
            started.pid
        ),
        other => return Err(format!("status of a running task: {other:?}").into()),
    }

    // Waits that give up: not before their time, and not long after.
    let t0 = Instant::now();
    ensure!(
        ns.wait(&long, Some(Duration::from_millis(300)))?.is_none(),
        "wait: sleep 60 ended"
    );
    let waited = t0.elapsed();
    println!("wait_timeout_300_ms={:.1}", ms(waited));
    ensure!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "wait(300 ms) returned after {waited:?}"
    );
    let t0 = Instant::now();
    ensure!(
        started
            .wait_timeout(Some(Duration::from_millis(100)))?
            .is_none(),
        "Started::wait_timeout: sleep 60 ended"
    );
    println!("started_wait_timeout_100_ms={:.1}", ms(t0.elapsed()));

    // Already running: refused, and the run goes on as it was.
    refused(
        "run long again",
        ns.run(&spec(&long, &["true"])?).map(|s| s.pid),
        "already running",
    )?;
    ensure!(ns.check(&long)?, "the refused run stopped the task");

    // A graceful stop: not killed; the record is this run's.
    let killed = ns.stop(&long, Some(Duration::from_secs(5)))?;
    ensure!(!killed, "stop of sleep: killed");
    ensure!(!ns.check(&long)?, "running after stop");
    let exit = started.wait_timeout(Some(LIMIT))?;
    ensure!(
        exit == Some(Exit::Signal(15)),
        "Started::wait_timeout after stop: {exit:?}"
    );
    let rec = wait_for_run(ns, &long, &started.run_id, LIMIT)?;
    ensure!(
        rec.stopped && !rec.killed_after_timeout && rec.exit == Exit::Signal(15),
        "record after stop: {rec:?}"
    );
    match ns.status(&long)? {
        Status::NotRunning { last: Some(r), .. } => ensure!(
            r.run_id == started.run_id,
            "status after stop: run {}",
            r.run_id
        ),
        other => return Err(format!("status after stop: {other:?}").into()),
    }
    refused("stop long again", ns.stop(&long, None), "not running")?;

    // A stop that has to kill: SIGTERM ignored, killed at the timeout.
    let stubborn = task("stubborn")?;
    let s = ns.run(&sh(&stubborn, STUBBORN)?)?;
    ready(ns, &stubborn)?;
    let t0 = Instant::now();
    let killed = ns.stop(&stubborn, Some(Duration::from_millis(300)))?;
    println!("stop_kill_ms={:.1}", ms(t0.elapsed()));
    ensure!(killed, "stop of a task ignoring SIGTERM: not killed");
    let rec = wait_for_run(ns, &stubborn, &s.run_id, LIMIT)?;
    ensure!(
        rec.stopped && rec.killed_after_timeout && rec.exit == Exit::Signal(9),
        "record after the kill: {rec:?}"
    );

    // The next run of a name is another run; Started::wait gives its status
    // and wait, once it is over, its record at once.
    let again = ns.run(&sh(&long, "exit 4")?)?;
    ensure!(again.run_id != started.run_id, "a new run with the old id");
    let id = again.run_id.clone();
    let exit = again.wait()?;
    ensure!(exit == Exit::Code(4), "Started::wait: {exit:?}");
    let t0 = Instant::now();
    let rec = wait_for_run(ns, &long, &id, LIMIT)?;
    ensure!(rec.exit == Exit::Code(4), "record: {rec:?}");
    println!("wait_ended_ms={:.1}", ms(t0.elapsed()));
    Ok(())
}

/// The first life of a daemon: starts `task` (it runs until `go` exists),
/// says so, and waits for it — until the test SIGKILLs this process.
pub fn reattach_start(ns: &Namespace, t: &TaskName, go: &str) -> Res {
    let script = format!("while [ ! -e '{go}' ]; do sleep 0.05; done; exit 5");
    let started = ns.run(&sh(t, &script)?)?;
    println!(
        "started pid={} monitor={} run_id={}",
        started.pid, started.monitor_pid, started.run_id
    );
    println!("waiting");
    let rec = ns.wait(t, None)?;
    Err(format!("the wait ended, though nothing released the task: {rec:?}").into())
}

/// The next life: finds `task` running by its name alone, lets it end
/// (creates `go`) and waits for it: the record is the run it found.
pub fn reattach_find(ns: &Namespace, t: &TaskName, go: &str) -> Res {
    ensure!(ns.check(t)?, "check: {t} is not running");
    let (run_id, pid) = match ns.status(t)? {
        Status::Running {
            info: Some(s),
            monitor_alive: true,
            ..
        } => (s.run_id, s.pid),
        other => return Err(format!("status of {t}: {other:?}").into()),
    };
    println!("found pid={pid} run_id={run_id}");
    ensure!(
        ns.wait(t, Some(Duration::from_millis(100)))?.is_none(),
        "{t} ended before it was released"
    );
    std::fs::write(go, "").map_err(|e| format!("{go}: {e}"))?;
    let rec = wait_for_run(ns, t, &run_id, LIMIT)?;
    ensure!(
        rec.exit == Exit::Code(5) && rec.pid == pid,
        "record: {rec:?}"
    );
    println!("record run_id={} exit={}", rec.run_id, rec.exit);
    ensure!(
        poll(LIMIT, || !proc::alive(pid)),
        "the task's process {pid} outlived its record"
    );
    match ns.status(t)? {
        Status::NotRunning { last: Some(r), .. } if r.run_id == run_id => Ok(()),
        other => Err(format!("status after the end: {other:?}").into()),
    }
}
