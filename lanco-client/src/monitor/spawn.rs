//! Starting a process straight into the task's cgroup: PATH lookup as
//! execvp does it, clone3(CLONE_INTO_CGROUP), and the exec report that tells
//! "started" from "could not start" and from "killed before it ran".

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::AccessFlags;

use crate::error::{Error, Result, StartStep};
use crate::record::signal_name;
use crate::sys;

/// PATH when the task's environment has none (what execvp falls back on is
/// libc's; this one also covers /usr/local/bin).
const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// Finds `argv[0]` the way execvp would in the child, in the task's own PATH
/// (its environment, not the monitor's, which is empty), after the child's
/// chdir: relative names and PATH entries are taken from `cwd`, which is
/// absolute. As execvp does, a candidate that exists but cannot be executed
/// is passed over, and the search fails with EACCES rather than ENOENT if
/// there was one; unlike execvp, a PATH directory this user cannot search
/// does not count as one. A name with a slash is not searched: execve
/// reports on it.
fn resolve_program(argv0: &[u8], env: &[Vec<u8>], cwd: &Path) -> Result<PathBuf, Errno> {
    let prog = Path::new(OsStr::from_bytes(argv0));
    if argv0.contains(&b'/') {
        return Ok(cwd.join(prog));
    }
    if argv0.is_empty() {
        return Err(Errno::ENOENT);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in path.split(|b| *b == b':') {
        let dir = if dir.is_empty() { b"." } else { dir };
        let p = cwd.join(OsStr::from_bytes(dir)).join(prog);
        match fs::metadata(&p) {
            Ok(m) if m.is_file() && nix::unistd::access(&p, AccessFlags::X_OK).is_ok() => {
                return Ok(p)
            }
            // There, but not executable (or a directory).
            Ok(_) => denied = true,
            // Absent, or in a directory this user cannot search (execvp
            // would count the latter as EACCES, which for a PATH that holds
            // someone else's home directory says "Permission denied" about
            // a program that is nowhere).
            Err(_) => {}
        }
    }
    Err(if denied { Errno::EACCES } else { Errno::ENOENT })
}

/// Why a directory cannot be the task's working directory, if it cannot:
/// asked only when the program was not found, which a bad cwd explains.
fn cwd_problem(cwd: &Path) -> Option<Errno> {
    match fs::metadata(cwd) {
        Err(e) => Some(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        Ok(m) if !m.is_dir() => Some(Errno::ENOTDIR),
        Ok(_) => nix::unistd::access(cwd, AccessFlags::X_OK).err(),
    }
}

/// clone3 into the task's cgroup, then exec; returns once the exec has
/// happened (the status pipe closes on exec) or with the reason it did not.
/// `meanwhile` runs with the child's pid between the clone and the wait for
/// its exec, which the child does on another CPU meanwhile.
#[allow(unsafe_code)] // clone3: see its SAFETY comment
pub(super) fn start_process(
    cgroup_dir: &OwnedFd,
    argv: &[Vec<u8>],
    env: &[Vec<u8>],
    cwd: &[u8],
    log: &File,
    pass: Option<(std::os::fd::BorrowedFd<'_>, i32)>,
    meanwhile: impl FnOnce(i32),
) -> Result<i32> {
    let program =
        String::from_utf8_lossy(argv.first().map(Vec::as_slice).unwrap_or_default()).into_owned();
    let unable = |reason: io::Error| Error::StartFailed {
        step: StartStep::Spawn {
            program: program.clone(),
        },
        reason,
    };
    let cstr = |b: &[u8]| {
        CString::new(b).map_err(|_| {
            unable(io::Error::new(
                ErrorKind::InvalidInput,
                "argument contains a NUL byte",
            ))
        })
    };
    let cwd_path = Path::new(OsStr::from_bytes(cwd));
    let no_cwd = |e: Errno| Error::StartFailed {
        step: StartStep::Cwd {
            dir: cwd_path.to_owned(),
        },
        reason: e.into(),
    };
    if !cwd_path.is_absolute() {
        // The monitor's own cwd is /: a relative one would silently mean
        // something else than where the caller stood.
        return Err(no_cwd(Errno::EINVAL));
    }
    let argv0 = argv
        .first()
        .ok_or_else(|| unable(io::Error::new(ErrorKind::InvalidInput, "empty command")))?;
    let exec_failed = |path: Option<&Path>, e: Errno| Error::StartFailed {
        step: StartStep::Exec {
            program: program.clone(),
            path: path.map(Path::to_owned),
        },
        reason: e.into(),
    };
    let path = resolve_program(argv0, env, cwd_path).map_err(|e| match cwd_problem(cwd_path) {
        Some(c) => no_cwd(c),
        None => exec_failed(None, e),
    })?;
    // execve's error names the file it tried, which a PATH search found.
    let searched = !argv0.contains(&b'/');
    let no_exec = |e: Errno| exec_failed(searched.then_some(path.as_path()), e);
    let path_c = cstr(path.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let cwd = cstr(cwd)?;
    let stdin = File::open("/dev/null").map_err(|e| Error::system("/dev/null", e))?;
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::system("pipe", e))?;
    let plan = sys::ExecPlan {
        path: &path_c,
        argv: &argv,
        envp: &envp,
        cwd: &cwd,
        stdin: stdin.as_fd(),
        stdout: log.as_fd(),
        report: wr.as_fd(),
        pass,
    };
    // SAFETY: the monitor is single-threaded (it never starts a thread);
    // `plan` and what it points to are left alone while `child` is kept,
    // until the report pipe's end below.
    let child =
        unsafe { sys::spawn_into_cgroup(cgroup_dir.as_fd(), &plan) }.map_err(|e| match e {
            Errno::EACCES | Errno::EPERM => Error::PermissionDenied(format!(
                "cannot start a process in the task's cgroup: {}",
                e.desc()
            )),
            e => Error::system("clone3(CLONE_INTO_CGROUP)", e),
        })?;
    let pid = child.pid;
    drop(wr);
    meanwhile(pid);
    // Until EOF (the child has exec'd or ended, and uses nothing of ours
    // any more: `child` may go), or the failed stage and its errno (the
    // child is then reaped before `child` goes).
    let mut buf = [0u8; 6];
    let mut n = 0;
    let mut rd = File::from(rd);
    while n < buf.len() {
        // A failed poll: the read below meets the error.
        let soon = std::time::Instant::now() + std::time::Duration::from_millis(100);
        if !sys::readable_by(rd.as_fd(), Some(soon)).unwrap_or(true) {
            // A `stop` froze the cgroup (it does so at once) while the child
            // was between clone3 and execve: the child cannot go on, and the
            // monitor would not get to the stop. Thaw it: the stop's own
            // sweep comes next.
            thaw(cgroup_dir);
            continue;
        }
        match rd.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    match (n, buf[0]) {
        (1, sys::ALIVE) => Ok(pid),
        (6, sys::ALIVE) => {
            let _ = sys::wait_child(pid, true);
            let errno = Errno::from_raw(i32::from_ne_bytes([buf[2], buf[3], buf[4], buf[5]]));
            Err(match sys::Stage::from_byte(buf[1]) {
                Some(sys::Stage::Cwd) => no_cwd(errno),
                Some(sys::Stage::Exec) => no_exec(errno),
                Some(sys::Stage::Stdio) => unable(io::Error::new(
                    io::Error::from(errno).kind(),
                    format!("cannot point its output at the log: {}", errno.desc()),
                )),
                None => unable(errno.into()),
            })
        }
        // It never ran. Seen after someone wrote cgroup.kill of the
        // namespace's cgroup: the kernel (6.18 here) compares the kill
        // count of the forking process's cgroup (monitors/, bumped) with the
        // new task cgroup's (fresh: 0) and kills every child born into it.
        _ => {
            let signal = sys::wait_child(pid, true)
                .ok()
                .flatten()
                .and_then(|(_, status)| status.signal());
            let how = match signal {
                Some(sig) => {
                    let name = signal_name(sig).unwrap_or_else(|| format!("signal {sig}"));
                    format!("killed by {name} before it ran")
                }
                None => "it ended before it ran".to_owned(),
            };
            Err(unable(io::Error::other(format!(
                "{how}; if the namespace's cgroup was killed (cgroup.kill), \
                 the kernel kills every new task of it until the namespace \
                 is destroyed and initialised again"
            ))))
        }
    }
}

fn thaw(cgroup_dir: &OwnedFd) {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    if let Ok(fd) = openat(
        cgroup_dir,
        lanco_proto::cgroupfs::CGROUP_FREEZE,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        let _ = nix::unistd::write(&fd, b"0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_as_execvp_would_after_the_chdir() {
        let cwd = Path::new("/");
        let env = |p: &str| vec![format!("PATH={p}").into_bytes()];
        // A slash: not searched, taken from cwd.
        assert_eq!(
            resolve_program(b"./x", &[], Path::new("/srv")),
            Ok(PathBuf::from("/srv/./x"))
        );
        // Relative PATH entries are the task's cwd's, not the monitor's.
        assert_eq!(
            resolve_program(b"sh", &env("bin"), cwd),
            Ok(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            resolve_program(b"no-such-program", &env("/bin"), cwd),
            Err(Errno::ENOENT)
        );
        // Found only as something not executable (a directory): EACCES.
        assert_eq!(resolve_program(b"bin", &env("/"), cwd), Err(Errno::EACCES));
        // No PATH: the default one.
        assert!(resolve_program(b"sh", &[], cwd).is_ok());
        assert_eq!(cwd_problem(Path::new("/nonexistent")), Some(Errno::ENOENT));
        assert_eq!(cwd_problem(Path::new("/etc/passwd")), Some(Errno::ENOTDIR));
        assert_eq!(cwd_problem(cwd), None);
    }
}
