use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use lanco_proto::cgroupfs::CGROUP_EVENTS;
use lanco_proto::TaskName;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::{Error, Result};
use crate::task::{tail_lines, Namespace};

pub fn run(ns: &Namespace, task: &TaskName, follow: bool, lines: Option<usize>) -> Result<u8> {
    let Some((path, mut f)) = ns.open_log(task)? else {
        return Err(Error::Usage(format!("task {task} has no log")));
    };
    let open_err = |e: std::io::Error| match e.kind() {
        ErrorKind::PermissionDenied => crate::task::not_member(ns.name()),
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
