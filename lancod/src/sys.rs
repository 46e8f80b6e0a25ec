//! The few raw calls lancod needs that nix does not wrap: SO_PEERGROUPS and
//! taking ownership of an inherited listening socket.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Supplementary groups of a connected unix-socket peer, as the kernel
/// recorded them at connect(2).
pub fn peer_groups(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let mut buf: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (buf.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: buf is a valid writable buffer of `len` bytes; the kernel
        // writes at most `len` bytes and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            buf.truncate(n);
            return Ok(buf);
        }
        let err = std::io::Error::last_os_error();
        // ERANGE: the kernel said how much room it needs. NGROUPS_MAX bounds it.
        if err.raw_os_error() == Some(libc::ERANGE) && n > buf.len() && n <= 65536 {
            buf.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

/// Takes ownership of the first socket passed by socket activation (fd 3).
///
/// # Safety
/// LISTEN_PID/LISTEN_FDS must have been checked to name this process (so fd
/// 3 was handed to it), and nothing else may own fd 3: call it once.
pub unsafe fn take_activation_fd() -> OwnedFd {
    // SAFETY: the caller guarantees fd 3 is ours alone.
    unsafe { OwnedFd::from_raw_fd(3) }
}

/// Who a child of `lancod restore` becomes, decided before the fork (the
/// user database is read in the parent: nothing in the child but system
/// calls).
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    /// NUL-terminated; `/` if it cannot be entered.
    pub cwd: std::ffi::CString,
}

/// Makes `cmd`'s child, between fork and exec: a session of its own (no
/// controlling terminal), default dispositions for every signal and an
/// empty mask, umask 022, every fd above 2 closed at exec, then `id`'s
/// groups, gid and uid (in that order, each checked, all three uids and
/// gids, verified after), then its directory. Nothing of root's survives
/// but what the caller passes (argv, environment, stdio).
pub fn become_user(cmd: &mut std::process::Command, id: Identity) {
    use std::os::unix::process::CommandExt;
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the closure makes only async-signal-safe system calls, on
    // values computed before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The kernel's call, not the C library's (which refuses its
            // own internal signals): an all-zero action is SIG_DFL, no
            // flags, an empty mask.
            let dfl = [0u64; 8];
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        dfl.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8usize,
                    );
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::sigprocmask(
                libc::SIG_SETMASK,
                &empty,
                std::ptr::null_mut(),
            ))?;
            libc::umask(0o022);
            // Close-on-exec rather than closed: std reports a failed exec
            // through a pipe of its own until the exec.
            let r = libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if r != 0 {
                for fd in 3..65536 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            check(libc::setgroups(id.groups.len(), id.groups.as_ptr()))?;
            check(libc::setresgid(id.gid, id.gid, id.gid))?;
            check(libc::setresuid(id.uid, id.uid, id.uid))?;
            let (mut r, mut e, mut s) = (0, 0, 0);
            check(libc::getresuid(&mut r, &mut e, &mut s))?;
            let uids_ok = [r, e, s] == [id.uid; 3];
            check(libc::getresgid(&mut r, &mut e, &mut s))?;
            if !uids_ok || [r, e, s] != [id.gid; 3] {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            if libc::chdir(id.cwd.as_ptr()) != 0 {
                check(libc::chdir(c"/".as_ptr()))?;
            }
            Ok(())
        });
    }
}
