//! Taking lancod's listening socket: the one systemd (or
//! systemd-socket-activate) passed, checked to be a listening AF_UNIX stream
//! socket, else the configured path bound here.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdListener;
use std::path::Path;

use nix::sys::socket::{getsockopt, sockopt};

use crate::error::StartError;
use crate::sys;

/// The listening socket: the one systemd (or systemd-socket-activate) passed,
/// checked to be a listening AF_UNIX stream socket, else `socket` bound here.
pub fn listener(socket: &Path) -> Result<StdListener, StartError> {
    if let Some(l) = activated_listener()? {
        return Ok(l);
    }
    let fail = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |error| StartError::Socket { op, path, error }
    };
    if let Some(dir) = socket.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(fail("create", dir))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(StartError::AlreadyServing(socket.to_owned()));
        }
        fs::remove_file(socket).map_err(fail("remove the stale", socket))?;
    }
    let l = StdListener::bind(socket).map_err(fail("bind", socket))?;
    // World-connectable: who may do what is decided from SO_PEERCRED.
    fs::set_permissions(socket, fs::Permissions::from_mode(0o666))
        .map_err(fail("chmod", socket))?;
    Ok(l)
}

#[allow(unsafe_code)] // taking fd 3: see its SAFETY comment
fn activated_listener() -> Result<Option<StdListener>, StartError> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS").ok();
    // Never pass them on.
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    match (ours, n.as_deref()) {
        (false, _) | (true, None) => return Ok(None),
        (true, Some("1")) => {}
        (true, Some(n)) => {
            return Err(StartError::Activation(format!(
                "expected exactly one socket, got LISTEN_FDS={n}"
            )))
        }
    }
    // SAFETY: LISTEN_PID names this process and LISTEN_FDS=1, so fd 3 was
    // handed to it; the variables are gone, so this runs once.
    let fd = unsafe { sys::take_activation_fd() };
    let listening = getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false);
    let stream =
        getsockopt(&fd, sockopt::SockType).ok() == Some(nix::sys::socket::SockType::Stream);
    let unix = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd.as_raw_fd()).is_ok();
    if !(listening && stream && unix) {
        return Err(StartError::Activation(
            "the socket passed is not a listening AF_UNIX stream socket".into(),
        ));
    }
    let l = StdListener::from(fd);
    l.set_nonblocking(true).map_err(StartError::Runtime)?;
    Ok(Some(l))
}
