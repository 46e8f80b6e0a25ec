use std::ffi::OsStr;

use crate::cli::DefineArgs;
use crate::commands::run::{env_pair, from};
use crate::defs::{self, Definition};
use crate::error::{Error, Result};
use crate::namespace::Namespace;

/// `lanco NS define`: as `run` would start it, but stored, with only the
/// `--env` variables (never the caller's environment) and the current
/// directory as the default `--cwd`.
pub fn run(ns: &Namespace, o: DefineArgs) -> Result<u8> {
    let here = std::env::current_dir()
        .map_err(|e| Error::system("cannot read the current directory", e))?;
    let opts = o.options;
    let cmd = o.what.command.iter().map(|a| text("command", a));
    let mut d = Definition::new(cmd.collect::<Result<_>>()?);
    let cwd = from(&here, opts.cwd.unwrap_or_else(|| here.clone()));
    d.cwd = Some(text("working directory", cwd.as_os_str())?);
    for kv in &opts.env {
        let (k, v) = env_pair(kv)?;
        d.env
            .insert(text("variable name", k)?, text("variable value", v)?);
    }
    if let Some(log) = opts.log {
        d.log = Some(text("log file", from(&here, log).as_os_str())?);
    }
    d.on_exit = opts.on_exit;
    if let Some(t) = opts.stop_timeout {
        d.stop_timeout = t;
    }
    o.supervision.apply_to(&mut d.supervision);
    d.enable = o.enable;
    d.deps = o.deps.to_deps();
    d.limits = opts.limits.to_limits();
    d.checked()?;
    let task = o.what.task;
    defs::update(ns, |mine| {
        mine.insert(task.clone(), d);
        Ok(vec![task])
    })?;
    Ok(0)
}

/// Definitions are TOML, which holds text only.
fn text(what: &str, s: &OsStr) -> Result<String> {
    s.to_str().map(str::to_owned).ok_or_else(|| {
        Error::InvalidInput(format!(
            "the {what} {:?} is not UTF-8, which a definition cannot hold",
            s.to_string_lossy()
        ))
    })
}
