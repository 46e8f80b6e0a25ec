use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::commands::start::start_one;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::spec::TaskSpec;

/// `lanco NS run`: the task gets the caller's environment (unless
/// `--clear-env`) with `--env` on top, and relative paths are the caller's,
/// made absolute here as the library wants them.
pub fn run(ns: &Namespace, o: RunArgs) -> Result<u8> {
    let mut spec = TaskSpec::new(o.what.task, o.what.command)?;
    let here = spec.cwd.clone();
    if !o.clear_env {
        spec.inherit_env();
    }
    let opts = o.options;
    // Without --cwd, the task was to start where the caller stands: a
    // failure to go there says so.
    let given_cwd = opts.cwd.is_some();
    let said = |e: Error| if given_cwd { e } else { e.in_current_dir() };
    for kv in &opts.env {
        let (k, v) = env_pair(kv)?;
        spec.env(k, v);
    }
    if let Some(cwd) = opts.cwd {
        spec.cwd = from(&here, cwd);
    }
    spec.log = opts.log.map(|log| from(&here, log));
    spec.on_exit = opts.on_exit;
    if let Some(t) = opts.stop_timeout {
        spec.stop_timeout = t;
    }
    o.supervision.apply_to(&mut spec.supervision);
    spec.deps = o.deps.to_deps();
    let spec = crate::commands::start::with_limits(ns, spec, &opts.limits.to_limits());
    // With -f, what this run writes is copied to stdout: its log, a new
    // file each run (the earlier runs' are kept as task-NAME.log.1, …).
    let copy = o.foreground && !o.quiet;
    let name = spec.name.clone();
    let mut started = if spec.deps.is_empty() {
        ns.run(&spec).map_err(said)?
    } else {
        // Its dependencies first, as `start` does, in one transition.
        let lock = ns.transition_lock(super::stop::waiting)?;
        // Refused before the plan: a `start` of a running task marks it
        // started on purpose, which a refused `run` must not.
        if ns.check(&spec.name)? {
            return Err(Error::AlreadyRunning(spec.name.clone()));
        }
        let task = spec.name.clone();
        start_one(ns, &lock, &task, spec, true)
            .map_err(said)?
            .ok_or(Error::AlreadyRunning(task))?
    };
    if !o.foreground {
        if !o.no_wait {
            started.wait_ready()?;
        }
        return Ok(0);
    }
    if copy {
        // The task runs whatever becomes of the copy: its status is still
        // waited for and given.
        if let Err(e) = copy_output(ns, &name) {
            crate::msg::warn(
                "run",
                &format_args!("cannot copy task {name}'s output: {}", e.one_line()),
            );
        }
    }
    Ok(super::wait::status_of("run", &name, started.wait()?))
}

/// Copies what the run of `task` writes to its log to stdout until the run
/// ends (as `systemd-run --wait --pipe` shows the output; the log keeps it
/// too).
fn copy_output(ns: &Namespace, task: &lanco_proto::TaskName) -> Result<()> {
    use std::io::Write;
    let Some(mut f) = ns.follow(task)? else {
        return Ok(());
    };
    let mut out = std::io::stdout().lock();
    let mut out_ok = true;
    loop {
        match f.next_chunk(None)? {
            crate::follow::Followed::Data(b) if out_ok => {
                // A closed stdout (`| head`) stops the copy, not the wait.
                out_ok = out.write_all(&b).and_then(|()| out.flush()).is_ok();
            }
            crate::follow::Followed::Ended => return Ok(()),
            _ => {}
        }
    }
}

/// `--env K=V` split at its first `=`; K must not be empty.
pub fn env_pair(kv: &OsString) -> Result<(&OsStr, &OsStr)> {
    let b = kv.as_bytes();
    match b.iter().position(|c| *c == b'=').filter(|&i| i > 0) {
        Some(eq) => Ok((OsStr::from_bytes(&b[..eq]), OsStr::from_bytes(&b[eq + 1..]))),
        None => Err(Error::InvalidInput(format!(
            "--env takes KEY=VALUE, not {:?}",
            kv.to_string_lossy()
        ))),
    }
}

/// A path given on the command line, as the shell that typed it meant it:
/// relative to the caller's directory (not to `--cwd`).
pub fn from(here: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        here.join(p)
    }
}
