use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::spec::TaskSpec;

/// `lanco NS run`: the task gets the caller's environment (unless
/// `--clear-env`) with `--env` on top, and relative paths are the caller's,
/// made absolute here as the library wants them.
pub fn run(ns: &Namespace, o: RunArgs) -> Result<u8> {
    let mut spec = TaskSpec::new(o.task, o.command)?;
    let here = spec.cwd.clone();
    if !o.clear_env {
        spec.inherit_env();
    }
    for kv in o.env {
        let b = kv.as_bytes();
        let Some(eq) = b.iter().position(|c| *c == b'=').filter(|&i| i > 0) else {
            return Err(Error::InvalidInput(format!(
                "--env takes KEY=VALUE, not {:?}",
                kv.to_string_lossy()
            )));
        };
        spec.env(
            std::ffi::OsStr::from_bytes(&b[..eq]),
            std::ffi::OsStr::from_bytes(&b[eq + 1..]),
        );
    }
    if let Some(cwd) = o.cwd {
        spec.cwd = from(&here, cwd);
    }
    spec.log = o.log.map(|log| from(&here, log));
    spec.on_exit = o.on_exit;
    if let Some(t) = o.stop_timeout {
        spec.stop_timeout = t;
    }
    let started = ns.run(&spec)?;
    if !o.foreground {
        return Ok(0);
    }
    let exit = started.wait()?;
    Ok(exit
        .shell_status()
        .map(|s| s.clamp(0, 255) as u8)
        .unwrap_or(crate::error::exit::SYSTEM))
}

/// A path given on the command line, as the shell that typed it meant it:
/// relative to the caller's directory (not to `--cwd`).
fn from(here: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        here.join(p)
    }
}
