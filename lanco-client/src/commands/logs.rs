use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use lanco_proto::cgroupfs::CGROUP_EVENTS;
use lanco_proto::TaskName;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::{Error, Result};
use crate::namespace::Namespace;

pub fn run(ns: &Namespace, task: &TaskName, follow: bool, lines: Option<usize>) -> Result<u8> {
    let Some((path, mut f)) = ns.open_log(task)? else {
        return Err(Error::Usage(format!("task {task} has no log")));
    };
    let open_err = |e: std::io::Error| match e.kind() {
        ErrorKind::PermissionDenied => crate::error::not_member(ns.name()),
        _ => Error::system(path.display(), e),
    };
    let mut out = std::io::stdout().lock();
    let out_err = |e: std::io::Error| Error::system("stdout", e);
    match lines {
        Some(n) => {
            out.write_all(&tail_lines(&f, n).map_err(open_err)?)
                .map_err(out_err)?;
            f.seek(SeekFrom::End(0)).map_err(open_err)?;
        }
        None => {
            std::io::copy(&mut f, &mut out).map_err(out_err)?;
        }
    }
    out.flush().map_err(out_err)?;
    if !follow {
        return Ok(0);
    }
    // Wake on writes to the log and on the task's cgroup emptying.
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| Error::system("inotify", e))?;
    ino.add_watch(&path, AddWatchFlags::IN_MODIFY)
        .map_err(|e| Error::system("inotify", e))?;
    if let Some(found) = ns.find(task)? {
        let _ = ino.add_watch(&found.cgroup.file(CGROUP_EVENTS), AddWatchFlags::IN_MODIFY);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let pos = f.stream_position().map_err(open_err)?;
        if f.metadata().map_err(open_err)?.len() < pos {
            // Truncated by a rotation (copytruncate): start over.
            f.seek(SeekFrom::Start(0)).map_err(open_err)?;
        }
        loop {
            let n = f.read(&mut buf).map_err(open_err)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(out_err)?;
        }
        out.flush().map_err(out_err)?;
        if !ns.check(task)? {
            return Ok(0);
        }
        let mut fds = [nix::poll::PollFd::new(
            ino.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
        let _ = ino.read_events();
    }
}

/// The last `n` lines of a file, read backwards in chunks.
pub fn tail_lines(f: &std::fs::File, n: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 * 1024;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut pos = f.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let cut = body
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 1)
            .map(|(i, _)| i);
        if let Some(i) = cut {
            return Ok(buf[i + 1..].to_vec());
        }
        if pos == 0 {
            return Ok(buf);
        }
        let step = CHUNK.min(pos);
        pos -= step;
        let mut part = vec![0u8; step as usize];
        f.read_exact_at(&mut part, pos)?;
        part.extend_from_slice(&buf);
        buf = part;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn tail() {
        let p = std::env::temp_dir().join(format!("lanco-tail-{}", std::process::id()));
        let text: String = (1..=100_000).map(|i| format!("line {i}\n")).collect();
        fs::write(&p, &text).unwrap();
        let f = || fs::File::open(&p).unwrap();
        assert_eq!(tail_lines(&f(), 2).unwrap(), b"line 99999\nline 100000\n");
        assert_eq!(tail_lines(&f(), 0).unwrap(), b"");
        assert_eq!(tail_lines(&f(), 200_000).unwrap().len(), text.len());
        fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail_lines(&f(), 1).unwrap(), b"b");
        fs::remove_file(&p).unwrap();
    }
}
