//! The few raw calls lancod needs that nix does not wrap: SO_PEERGROUPS,
//! pidfd_open, and taking ownership of an inherited listening socket.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

/// A pidfd for `pid` (fallback where SO_PEERPIDFD is missing, kernel < 6.5).
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Takes ownership of the first socket passed by socket activation (fd 3).
///
/// # Safety contract
/// Called once, after LISTEN_PID/LISTEN_FDS were checked to name this process,
/// so fd 3 was handed to us and nothing else in the process owns it.
pub fn take_activation_fd() -> OwnedFd {
    // SAFETY: see above: fd 3 is ours by the socket-activation protocol and is
    // taken exactly once (the env vars are removed right after).
    unsafe { OwnedFd::from_raw_fd(3) }
}
