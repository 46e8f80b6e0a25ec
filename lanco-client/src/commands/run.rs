use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::start::TaskSpec;

pub fn run(ns: &Namespace, o: RunArgs) -> Result<u8> {
    let mut spec = TaskSpec::new(o.task, o.command)?;
    for kv in o.env {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::Usage(format!("--env takes KEY=VALUE, not {kv:?}")));
        };
        spec.env.retain(|(ek, _)| ek.as_os_str() != k);
        spec.env.push((k.into(), v.into()));
    }
    if let Some(cwd) = o.cwd {
        spec.cwd = if cwd.is_absolute() {
            cwd
        } else {
            spec.cwd.join(cwd)
        };
    }
    if let Some(log) = o.log {
        spec.log = Some(if log.is_absolute() {
            log
        } else {
            spec.cwd.join(log)
        });
    }
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
