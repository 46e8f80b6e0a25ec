//! Talking to lancod: one request per connection.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use lanco_proto::wire::{self, ErrorCode, Request, Response};

use crate::error::{Error, Result};

/// Longest lancod may take to answer (a forced destroy waits up to 10 s for
/// the kernel to empty the namespace).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn request(socket: &Path, req: &Request) -> Result<Response> {
    let unreachable = |e: &dyn std::fmt::Display| {
        Error::Helper(format!("cannot reach lancod at {}: {e}", socket.display()))
    };
    let mut s = UnixStream::connect(socket).map_err(|e| unreachable(&e))?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| unreachable(&e))?;
    wire::write_frame(&mut s, req).map_err(|e| unreachable(&e))?;
    match wire::read_frame(&mut s) {
        Ok(Response::Error { code, message }) => Err(match code {
            ErrorCode::PermissionDenied => Error::Denied(message),
            ErrorCode::InvalidRequest => Error::Usage(message),
            ErrorCode::NotFound => Error::Missing(message),
            ErrorCode::AlreadyExists | ErrorCode::Busy => Error::Refused(message),
            _ => Error::Helper(format!("lancod: {message}")),
        }),
        Ok(r) => Ok(r),
        Err(wire::FrameError::Closed) => Err(Error::Helper(
            "lancod closed the connection without answering (did it crash or restart?)".into(),
        )),
        Err(e) => Err(Error::Helper(format!("bad answer from lancod: {e}"))),
    }
}
