//! Starting a process straight into the task's cgroup: PATH lookup as
//! execvp does it, clone3(CLONE_INTO_CGROUP), and the exec report that tells
//! "started" from "could not start" and from "killed before it ran".

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::sys;

/// Finds `argv[0]` the way execvp would, in the task's own PATH.
fn resolve_program(argv0: &[u8], env: &[Vec<u8>], cwd: &[u8]) -> Option<PathBuf> {
    let prog = Path::new(OsStr::from_bytes(argv0));
    let executable = |p: &Path| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
            && fs::metadata(p).is_ok_and(|m| m.is_file())
    };
    if argv0.contains(&b'/') {
        let full = if prog.is_absolute() {
            prog.to_owned()
        } else {
            Path::new(OsStr::from_bytes(cwd)).join(prog)
        };
        return Some(full);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(b"/usr/local/bin:/usr/bin:/bin");
    path.split(|b| *b == b':')
        .map(|dir| Path::new(OsStr::from_bytes(if dir.is_empty() { b"." } else { dir })).join(prog))
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                Path::new(OsStr::from_bytes(cwd)).join(p)
            }
        })
        .find(|p| executable(p))
}

/// clone3 into the task's cgroup, then exec; returns once the exec has
/// happened (the status pipe closes on exec) or with the reason it did not.
#[allow(unsafe_code)] // clone3: see its SAFETY comment
pub(super) fn start_process(
    cgroup_dir: &OwnedFd,
    argv: &[Vec<u8>],
    env: &[Vec<u8>],
    cwd: &[u8],
    log: &File,
) -> Result<i32> {
    let shown =
        String::from_utf8_lossy(argv.first().map(Vec::as_slice).unwrap_or_default()).into_owned();
    let unable =
        |e: &dyn std::fmt::Display| Error::StartFailed(format!("unable to run {shown}: {e}"));
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| unable(&"argument contains a NUL byte"));
    let Some(path) = resolve_program(
        argv.first().ok_or_else(|| unable(&"empty command"))?,
        env,
        cwd,
    ) else {
        return Err(unable(&Errno::ENOENT.desc()));
    };
    let path = cstr(path.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let cwd = cstr(cwd)?;
    let stdin = File::open("/dev/null").map_err(|e| Error::system("/dev/null", e))?;
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::system("pipe", e))?;
    let plan = sys::ExecPlan {
        path: &path,
        argv: &argv,
        envp: &envp,
        cwd: &cwd,
        stdin: stdin.as_fd(),
        stdout: log.as_fd(),
        report: wr.as_fd(),
    };
    // SAFETY: the monitor is single-threaded (it never starts a thread).
    let pid =
        unsafe { sys::spawn_into_cgroup(cgroup_dir.as_fd(), &plan) }.map_err(|e| match e {
            Errno::EACCES | Errno::EPERM => Error::Denied(format!(
                "cannot start a process in the task's cgroup: {}",
                e.desc()
            )),
            e => Error::system("clone3(CLONE_INTO_CGROUP)", e),
        })?;
    drop(wr);
    // Until EOF: the ALIVE byte, then an errno if chdir or exec failed.
    let mut buf = [0u8; 5];
    let mut n = 0;
    let mut rd = File::from(rd);
    while n < buf.len() {
        match rd.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    match (n, buf[0]) {
        (1, sys::ALIVE) => Ok(pid),
        (5, sys::ALIVE) => {
            let _ = waitpid(Pid::from_raw(pid), None);
            let errno = Errno::from_raw(i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]));
            Err(unable(&errno.desc()))
        }
        // It never ran. Seen after someone wrote cgroup.kill of the
        // namespace's cgroup: the kernel (6.18 here) compares the kill
        // count of the forking process's cgroup (monitors/, bumped) with the
        // new task cgroup's (fresh: 0) and kills every child born into it.
        _ => {
            let how = match waitpid(Pid::from_raw(pid), None) {
                Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig} before it ran"),
                _ => "it ended before it ran".to_owned(),
            };
            Err(unable(&format!(
                "{how}; if the namespace's cgroup was killed (cgroup.kill), \
                 the kernel kills every new task of it until the namespace \
                 is destroyed and initialised again"
            )))
        }
    }
}
