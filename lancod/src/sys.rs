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
