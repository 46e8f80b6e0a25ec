//! `lanco NS logs [-f] [-n N] TASK`: the task's log (its current run's, or
//! its last run's after the end), and with -f what it writes until its run
//! ends (`Namespace::follow`).

use std::io::{ErrorKind, Write};

use lanco_proto::TaskName;

use crate::error::{Error, Result};
use crate::follow::Followed;
use crate::namespace::Namespace;
use crate::tail::tail_lines;

pub fn run(ns: &Namespace, task: &TaskName, follow: bool, lines: Option<usize>) -> Result<u8> {
    let no_log = || Error::NoLog(task.clone());
    let mut out = std::io::stdout().lock();
    let out_err = |e: std::io::Error| Error::system("stdout", e);
    if follow {
        let mut f = ns.follow(task)?.ok_or_else(no_log)?;
        if let Some(n) = lines {
            f.start_at_last_lines(n)?;
        }
        loop {
            match f.next_chunk(None)? {
                Followed::Data(b) => {
                    out.write_all(&b).map_err(out_err)?;
                    out.flush().map_err(out_err)?;
                }
                Followed::TimedOut => {}
                Followed::Ended => return Ok(0),
            }
        }
    }
    let (path, mut f) = ns.open_log(task)?.ok_or_else(no_log)?;
    let read_err = |e: std::io::Error| match e.kind() {
        ErrorKind::PermissionDenied => Error::NotMember(ns.name().clone()),
        _ => Error::system(path.display(), e),
    };
    match lines {
        Some(n) => out
            .write_all(&tail_lines(&f, n).map_err(read_err)?)
            .map_err(out_err)?,
        None => {
            std::io::copy(&mut f, &mut out).map_err(out_err)?;
        }
    }
    out.flush().map_err(out_err)?;
    Ok(0)
}
