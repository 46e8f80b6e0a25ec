//! A caller that links the library as a daemon does, for the end-to-end
//! tests of `TaskSpec` (tests/tests/task_spec.rs): it builds one spec from
//! its arguments, starts it, prints the pid and returns; an error is one line
//! on stderr and the library's exit status.
//!
//! spec_probe NS TASK [--inherit] [--set K=V]... [--unset K]... [--clear]
//!            [--cwd DIR] [--log FILE] -- CMD [ARG...]
use std::error::Error as _;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use lanco_client::{Config, Error, Namespace, TaskSpec};

fn main() {
    std::process::exit(match probe() {
        Ok(pid) => {
            println!("{pid}");
            0
        }
        Err(e) => {
            // The message and its sources' on one line, as `lanco` does.
            let mut line = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                line = format!("{line}: {s}");
                source = s.source();
            }
            eprintln!("spec_probe: {line}");
            i32::from(e.exit_code())
        }
    })
}

fn probe() -> Result<i32, Error> {
    let usage = |m: &str| Error::InvalidInput(format!("spec_probe: {m}"));
    let mut args = std::env::args_os().skip(1);
    let mut word = |what: &str| args.next().ok_or_else(|| usage(what));
    let ns = word("no namespace")?;
    let task = word("no task")?;
    let ns = Namespace::open(Config::load()?, ns.to_string_lossy().parse()?)?;
    let mut changes = Vec::new();
    loop {
        let opt = word("no --")?;
        match opt.to_str() {
            Some("--") => break,
            Some(o @ ("--inherit" | "--clear")) => changes.push((o.to_owned(), OsString::new())),
            Some(o @ ("--set" | "--unset" | "--cwd" | "--log")) => {
                changes.push((o.to_owned(), word(o)?));
            }
            _ => return Err(usage(&format!("unknown option {opt:?}"))),
        }
    }
    let argv: Vec<OsString> = args.collect();
    let mut spec = TaskSpec::new(task.to_string_lossy().parse()?, argv)?;
    for (opt, val) in changes {
        match opt.as_str() {
            "--inherit" => {
                spec.inherit_env();
            }
            "--clear" => {
                spec.env_clear();
            }
            "--set" => {
                let b = val.into_vec();
                let eq = b.iter().position(|c| *c == b'=').unwrap_or(b.len());
                let v = b.get(eq + 1..).unwrap_or_default();
                spec.env(
                    std::ffi::OsStr::from_bytes(&b[..eq]),
                    std::ffi::OsStr::from_bytes(v),
                );
            }
            "--unset" => {
                spec.env_remove(val);
            }
            "--cwd" => spec.cwd = val.into(),
            _ => spec.log = Some(val.into()),
        }
    }
    Ok(ns.run(&spec)?.pid)
}
