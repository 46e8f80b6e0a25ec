//! What a task is given: only the environment asked for (empty by default,
//! the caller's on request, set and unset by name, no name twice); absolute
//! paths only; a start that fails says which step failed; the monitor comes
//! from the installation, not from beside this executable.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lanco_client::{Exit, ExitRecord, Namespace, Status, TaskSpec};

use crate::{refused, spec, task, wait_for_run, Res};

const LIMIT: Duration = Duration::from_secs(10);

/// Runs `spec` to its end; its record and what it wrote to its log.
fn run_to_end(ns: &Namespace, spec: &TaskSpec) -> Res<(ExitRecord, String)> {
    let started = ns.run(spec)?;
    let rec = wait_for_run(ns, &spec.name, &started.run_id, LIMIT)?;
    let path = ns
        .log_path(&spec.name)?
        .ok_or_else(|| format!("{}: no log path after its run", spec.name))?;
    ensure!(
        Path::new(&rec.log) == path,
        "{}: the record says the log is {:?}, log_path {}",
        spec.name,
        rec.log,
        path.display()
    );
    let out = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((rec, out))
}

fn lines_with(out: &str, prefix: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The output of `spec`, an `env` (found in the default PATH, whatever the
/// task's environment), checked for names given twice.
fn env_of(ns: &Namespace, spec: TaskSpec) -> Res<String> {
    let (rec, out) = run_to_end(ns, &spec)?;
    ensure!(rec.exit == Exit::Code(0), "{}: {:?}", spec.name, rec.exit);
    let names: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
    let unique: HashSet<&&str> = names.iter().collect();
    ensure!(
        unique.len() == names.len(),
        "{}: a name given twice: {out}",
        spec.name
    );
    Ok(out)
}

/// Expects the caller's environment to hold `PROBE_SECRET=hunter2` and
/// `FOO=from-caller` (the test sets them).
pub fn env(ns: &Namespace) -> Res {
    ensure!(
        std::env::var("PROBE_SECRET").as_deref() == Ok("hunter2")
            && std::env::var("FOO").as_deref() == Ok("from-caller"),
        "run me with PROBE_SECRET=hunter2 FOO=from-caller"
    );
    let new = |name: &str| spec(&task(name)?, &["env"]);

    // By default: nothing of the caller's (env -i).
    let out = env_of(ns, new("env-empty")?)?;
    ensure!(out.is_empty(), "a new spec's environment: {out:?}");
    println!("env default: empty");

    let mut s = new("env-only")?;
    s.env("ONLY", "1");
    let out = env_of(ns, s)?;
    ensure!(out == "ONLY=1\n", "set on an empty environment: {out:?}");

    // Inherited on request: the caller's, as it is.
    let mut s = new("env-inherit")?;
    s.inherit_env();
    let out = env_of(ns, s)?;
    ensure!(
        lines_with(&out, "PROBE_SECRET=") == ["PROBE_SECRET=hunter2"]
            && lines_with(&out, "FOO=") == ["FOO=from-caller"],
        "inherited: {out:?}"
    );
    println!("env inherit: {} variables", out.lines().count());

    // Set replaces, once, whatever the order of the calls; unset removes.
    let mut s = new("env-changed")?;
    s.env("FOO", "from-spec")
        .inherit_env()
        .env_remove("PROBE_SECRET")
        .env("NEW", "x")
        .env("NEW", "y");
    let out = env_of(ns, s)?;
    ensure!(
        lines_with(&out, "FOO=") == ["FOO=from-spec"]
            && lines_with(&out, "NEW=") == ["NEW=y"]
            && lines_with(&out, "PROBE_SECRET").is_empty(),
        "set/unset over the inherited: {out:?}"
    );
    println!("env set/unset: FOO=from-spec once, PROBE_SECRET gone");

    // Cleared: back to nothing but what is set after.
    let mut s = new("env-cleared")?;
    s.inherit_env().env("A", "1").env_clear().env("B", "2");
    let out = env_of(ns, s)?;
    ensure!(out == "B=2\n", "cleared: {out:?}");
    Ok(())
}

/// `workdir`: an absolute directory the caller may write.
pub fn paths(ns: &Namespace, workdir: &str) -> Res {
    // Relative paths: refused before anything starts.
    let t = task("rel-cwd")?;
    let mut s = spec(&t, &["pwd"])?;
    s.cwd = "work".into();
    refused("relative cwd", ns.run(&s).map(|s| s.pid), "absolute")?;
    ensure!(
        matches!(ns.status(&t)?, Status::NotRunning { last: None, .. }),
        "a refused spec left a run behind"
    );
    let mut s = spec(&task("rel-log")?, &["true"])?;
    s.log = Some("task.log".into());
    refused("relative log", ns.run(&s).map(|s| s.pid), "absolute")?;

    // An absolute cwd is the task's.
    let mut s = spec(&task("cwd")?, &["pwd"])?;
    s.cwd = workdir.into();
    let (_, out) = run_to_end(ns, &s)?;
    ensure!(out == format!("{workdir}\n"), "pwd in {workdir}: {out:?}");

    // Start failures say which step failed.
    let bad = task("bad-start")?;
    let mut s = spec(&bad, &["pwd"])?;
    s.cwd = "/nonexistent/lanco-probe".into();
    let e = refused(
        "missing cwd",
        ns.run(&s).map(|s| s.pid),
        "cannot change directory to /nonexistent/lanco-probe",
    )?;
    ensure!(
        !e.contains("cannot execute"),
        "a missing cwd told as an exec failure: {e}"
    );
    let e = refused(
        "missing program",
        ns.run(&spec(&bad, &["/nonexistent/lanco-probe-cmd"])?)
            .map(|s| s.pid),
        "cannot execute /nonexistent/lanco-probe-cmd",
    )?;
    ensure!(
        !e.contains("change directory"),
        "a missing program told as a cwd failure: {e}"
    );
    refused(
        "program not in PATH",
        ns.run(&spec(&bad, &["lanco-probe-no-such-command"])?)
            .map(|s| s.pid),
        "cannot execute lanco-probe-no-such-command",
    )?;
    let noexec = Path::new(workdir).join("not-executable");
    std::fs::write(&noexec, "#!/bin/sh\n")?;
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644))?;
    let shown = noexec.display().to_string();
    refused(
        "program not executable",
        ns.run(&spec(&bad, &[&shown])?).map(|s| s.pid),
        &format!("cannot execute {shown}"),
    )?;
    // Nothing of a failed start lingers: the name is free at once.
    ensure!(!ns.check(&bad)?, "a failed start runs");
    let (rec, _) = run_to_end(ns, &spec(&bad, &["true"])?)?;
    ensure!(rec.exit == Exit::Code(0), "after failed starts: {rec:?}");

    // The monitor was the installation's: there is none beside this
    // executable (a daemon's own directory).
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("lanco-monitor");
    ensure!(!beside.exists(), "{} exists", beside.display());
    println!("monitor beside {}: none", exe.display());
    Ok(())
}
