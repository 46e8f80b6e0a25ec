//! `lanco NS top [-d SECS] [-b] [--json]`: the namespace's tasks, what they
//! use and what limits them, from the library's `usage` module. On a
//! terminal a full-screen view (`tui`); with `-b`, `--json` or stdout not a
//! terminal one snapshot, as text (`view::text`) or JSON, for scripts and
//! `watch`.

mod term;
mod tui;
mod view;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::usage::UsageSampler;

pub fn run(ns: &Namespace, delay: Duration, batch: bool, json: bool) -> Result<u8> {
    if !batch && !json && std::io::stdout().is_terminal() {
        return tui::run(ns, delay);
    }
    // A snapshot: two samples `delay` apart for the CPU percentages, or one
    // (no percentages) with -d 0.
    let mut sampler = UsageSampler::new();
    let mut usage = sampler.sample(ns)?;
    if !delay.is_zero() {
        std::thread::sleep(delay);
        usage = sampler.sample(ns)?;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        serde_json::to_writer_pretty(&mut out, &usage).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
    } else {
        out.write_all(view::text(&usage).as_bytes()).map_err(fail)?;
    }
    out.flush().map_err(fail)?;
    Ok(0)
}
