//! Logs: a custom log is found after the run ended (the record keeps its
//! path), a follower gives what the run writes as it writes it and ends
//! with the run, and lanco's own lines go to the record, not into the
//! task's output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanco_client::{Exit, Followed, LogFollower, Namespace};

use crate::{ms, sh, task, wait_for_run, Res};

const LIMIT: Duration = Duration::from_secs(10);

/// Everything `f` gives until its run ends.
fn follow_to_end(f: &mut LogFollower) -> Res<String> {
    let mut got = Vec::new();
    loop {
        match f.next_chunk(Some(LIMIT))? {
            Followed::Data(d) => got.extend(d),
            Followed::Ended => break,
            Followed::TimedOut => {
                return Err(format!(
                    "follow: nothing for {LIMIT:?}, after {:?}",
                    String::from_utf8_lossy(&got)
                )
                .into())
            }
        }
    }
    Ok(String::from_utf8(got)?)
}

fn read(path: &Path) -> Res<String> {
    Ok(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// `workdir`: an absolute directory the caller may write (the custom logs
/// go there).
pub fn logs(ns: &Namespace, workdir: &str) -> Res {
    let custom = PathBuf::from(workdir).join("custom.log");
    let t = task("custom")?;
    let mut s = sh(&t, "echo one; sleep 0.2; echo two; sleep 0.2; echo three")?;
    s.log = Some(custom.clone());
    let started = ns.run(&s)?;

    // Followed while it runs: every line, then the end.
    let mut f = ns.follow(&t)?.ok_or("follow: no log for a running task")?;
    ensure!(
        f.path() == custom,
        "follow: {}, not {}",
        f.path().display(),
        custom.display()
    );
    let t0 = Instant::now();
    let got = follow_to_end(&mut f)?;
    println!("follow_ms={:.1}", ms(t0.elapsed()));
    ensure!(got == "one\ntwo\nthree\n", "followed: {got:?}");
    let rec = wait_for_run(ns, &t, &started.run_id, LIMIT)?;
    ensure!(
        Path::new(&rec.log) == custom,
        "the record's log: {:?}",
        rec.log
    );

    // After the end: the custom log is still the one found.
    ensure!(
        ns.log_path(&t)?.as_deref() == Some(custom.as_path()),
        "log_path after the end: {:?}",
        ns.log_path(&t)?
    );
    // A follower of an ended run gives its whole log and ends (as a Read).
    let mut f = ns.follow(&t)?.ok_or("follow after the end: no log")?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    ensure!(
        text == "one\ntwo\nthree\n",
        "followed after the end: {text:?}"
    );
    println!("log after the end: {}", custom.display());

    // The next run of the name writes the default log: found there.
    let again = ns.run(&sh(&t, "echo four")?)?;
    let rec = wait_for_run(ns, &t, &again.run_id, LIMIT)?;
    let path = ns.log_path(&t)?.ok_or("log_path: none")?;
    ensure!(
        path != custom && Path::new(&rec.log) == path,
        "a run without a custom log: log_path {}, record {:?}",
        path.display(),
        rec.log
    );
    ensure!(read(&path)? == "four\n", "{}", path.display());
    ensure!(
        read(&custom)? == "one\ntwo\nthree\n",
        "{}",
        custom.display()
    );

    // lanco's lines about a stop are the record's notes, not output.
    let noted = task("noted")?;
    let noted_log = PathBuf::from(workdir).join("noted.log");
    let mut s = sh(&noted, "echo hello; exec sleep 60")?;
    s.log = Some(noted_log.clone());
    let started = ns.run(&s)?;
    let mut f = ns.follow(&noted)?.ok_or("follow noted: no log")?;
    match f.next_chunk(Some(LIMIT))? {
        Followed::Data(d) if d == b"hello\n" => {}
        other => return Err(format!("follow noted: {other:?}").into()),
    }
    ensure!(!ns.stop(&noted, Some(LIMIT))?, "stop of sleep: killed");
    let rest = follow_to_end(&mut f)?;
    ensure!(
        rest.is_empty(),
        "the stop wrote into the task's output: {rest:?}"
    );
    let rec = wait_for_run(ns, &noted, &started.run_id, LIMIT)?;
    ensure!(rec.exit == Exit::Signal(15), "{rec:?}");
    ensure!(!rec.notes.is_empty(), "no notes about the stop: {rec:?}");
    ensure!(read(&noted_log)? == "hello\n", "{}", noted_log.display());
    println!("notes {}", rec.notes.len());
    for n in &rec.notes {
        println!("note {n}");
    }
    Ok(())
}
