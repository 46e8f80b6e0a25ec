//! Frames between clients and lancod. A frame is a 12-byte header — the magic
//! `LNC`, one protocol-version byte, a little-endian u64 body length — followed
//! by a postcard body. The length is checked against [`MAX_FRAME`] before any
//! buffer is allocated. Requests name no uid and no pid: lancod takes the
//! caller's identity from the kernel.

use std::io::{Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::limits::{self, Limits};
use crate::name::NamespaceName;

pub const MAGIC: [u8; 3] = *b"LNC";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 12;
/// Largest request lancod accepts. Requests are a few dozen bytes.
pub const MAX_FRAME: u64 = 4096;
/// Largest answer a client accepts: a list of namespaces is longer than any
/// request.
pub const MAX_REPLY: u64 = 1 << 20;
/// Longest user or group name accepted in an init request (useradd's limit).
pub const MAX_ACCOUNT_NAME: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create (or re-apply) a namespace owned by `owner`:`group`. Names, not ids:
    /// lancod resolves them. `None` means the caller's own user / that user's
    /// primary group.
    Init {
        ns: NamespaceName,
        owner: Option<String>,
        group: Option<String>,
    },
    /// Remove an idle namespace's cgroups and registration; with `force`, kill
    /// whatever still runs in it first.
    Destroy { ns: NamespaceName, force: bool },
    /// Move the calling process into the namespace's monitor cgroup.
    Admit { ns: NamespaceName },
    /// Make (or re-apply) the caller's subtree and state directory in the
    /// namespace, as admission does, without moving any process: for a
    /// member's first definition, before it ever ran a task there.
    Join { ns: NamespaceName },
    /// Change a namespace's ceilings (on its own cgroup): set the limits
    /// `set` gives, then clear those `clear` names. Root or admin_group.
    Limit {
        ns: NamespaceName,
        set: Limits,
        clear: Vec<limits::Key>,
    },
    /// [`Request::Init`] with ceilings, all or nothing.
    InitLimited {
        ns: NamespaceName,
        owner: Option<String>,
        group: Option<String>,
        limits: Limits,
    },
    /// Make these controllers (`memory`, `pids`, `cpu`, `io`) available to
    /// the caller's subtree of the namespace, for its tasks' own limits.
    Enable {
        ns: NamespaceName,
        controllers: Vec<String>,
    },
    /// The namespaces the caller may use (every one, for root and
    /// admin_group).
    Namespaces,
}

/// One namespace as [`Request::Namespaces`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    pub name: NamespaceName,
    pub owner: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
    /// Task cgroups that hold a process.
    pub running: u32,
    /// Its ceilings.
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Initialized {
        created: bool,
        uid: u32,
        gid: u32,
    },
    Destroyed,
    Admitted,
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Last: variants are numbered by position on the wire, and an older
    /// client must still read `Error` as it was.
    Joined,
    /// The namespace's ceilings after a [`Request::Limit`].
    Limited {
        limits: Limits,
    },
    Enabled,
    Namespaces {
        list: Vec<NamespaceInfo>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    PermissionDenied,
    NotFound,
    AlreadyExists,
    InvalidRequest,
    /// lancod is overloaded (this uid holds its share of connections, or
    /// the table is full): try again. Never a refusal by state.
    Busy,
    Unsupported,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    // The inner errors are in the messages, so they are not also `source`s
    // (a caller walking the chain would print them twice).
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("not a lanco frame (bad magic)")]
    BadMagic,
    #[error("unsupported protocol version {0} (this side speaks {VERSION})")]
    Version(u8),
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
    #[error("malformed frame body: {0}")]
    Decode(postcard::Error),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl From<postcard::Error> for FrameError {
    fn from(e: postcard::Error) -> Self {
        FrameError::Decode(e)
    }
}

pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    encode_max(msg, MAX_FRAME)
}

/// [`encode`] for a channel whose bodies may be up to `max` bytes (lanco's
/// own processes use this framing with larger bounds: the task spec handed
/// to a monitor carries argv and environment).
pub fn encode_max<T: Serialize>(msg: &T, max: u64) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_allocvec(msg)?;
    let len = body.len() as u64;
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a header and returns the body length it announces.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    decode_header_max(h, MAX_FRAME)
}

fn decode_header_max(h: &[u8; HEADER_LEN], max: u64) -> Result<usize, FrameError> {
    if h[..3] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if h[3] != VERSION {
        return Err(FrameError::Version(h[3]));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[4..]);
    let len = u64::from_le_bytes(len);
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    usize::try_from(len).map_err(|_| FrameError::TooLarge(len))
}

/// Decodes a whole body; trailing bytes are an error, not ignored.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(msg)
}

pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    write_frame_max(w, msg, MAX_FRAME)
}

pub fn write_frame_max<W: Write, T: Serialize>(
    w: &mut W,
    msg: &T,
    max: u64,
) -> Result<(), FrameError> {
    w.write_all(&encode_max(msg, max)?)?;
    w.flush()?;
    Ok(())
}

pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    read_frame_max(r, MAX_FRAME)
}

/// Reads one frame whose body may be up to `max` bytes.
pub fn read_frame_max<R: Read, T: DeserializeOwned>(r: &mut R, max: u64) -> Result<T, FrameError> {
    let mut h = [0u8; HEADER_LEN];
    match r.read_exact(&mut h) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        r => r?,
    }
    let len = decode_header_max(&h, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode_body(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> NamespaceName {
        NamespaceName::try_from(s).unwrap()
    }

    /// Golden bytes: changing the wire format must be a visible decision
    /// (bump VERSION and update these).
    #[test]
    fn golden_frames() {
        let admit = encode(&Request::Admit { ns: ns("testns") }).unwrap();
        assert_eq!(admit, b"LNC\x01\x08\0\0\0\0\0\0\0\x02\x06testns");
        let init = encode(&Request::Init {
            ns: ns("t"),
            owner: Some("alice".into()),
            group: None,
        })
        .unwrap();
        assert_eq!(init, b"LNC\x01\x0b\0\0\0\0\0\0\0\x00\x01t\x01\x05alice\x00");
        let err = encode(&Response::Error {
            code: ErrorCode::PermissionDenied,
            message: "no".into(),
        })
        .unwrap();
        assert_eq!(err, b"LNC\x01\x05\0\0\0\0\0\0\0\x03\x00\x02no");
        let ok = encode(&Response::Initialized {
            created: true,
            uid: 1000,
            gid: 1000,
        })
        .unwrap();
        assert_eq!(ok, b"LNC\x01\x06\0\0\0\0\0\0\0\x00\x01\xe8\x07\xe8\x07");
        // Join came later: the last variant of each enum, so the ones before
        // keep their numbers.
        let join = encode(&Request::Join { ns: ns("t") }).unwrap();
        assert_eq!(join, b"LNC\x01\x03\0\0\0\0\0\0\0\x03\x01t");
        assert_eq!(
            encode(&Response::Joined).unwrap(),
            b"LNC\x01\x01\0\0\0\0\0\0\0\x04"
        );
        // Then the limits: Limit, InitLimited, Enable, Namespaces (4-7);
        // Limited, Enabled, Namespaces (5-7). A Limits is its six options.
        let limit = encode(&Request::Limit {
            ns: ns("t"),
            set: Limits {
                pids: Some(64),
                ..Limits::default()
            },
            clear: vec![limits::Key::Memory],
        })
        .unwrap();
        assert_eq!(
            limit,
            b"LNC\x01\x0c\0\0\0\0\0\0\0\x04\x01t\0\0\x01\x40\0\0\0\x01\x00"
        );
        assert_eq!(
            encode(&Request::Namespaces).unwrap(),
            b"LNC\x01\x01\0\0\0\0\0\0\0\x07"
        );
        assert_eq!(
            encode(&Response::Enabled).unwrap(),
            b"LNC\x01\x01\0\0\0\0\0\0\0\x06"
        );
    }

    #[test]
    fn roundtrip_through_reader() {
        let req = Request::Destroy {
            ns: ns("a.b"),
            force: true,
        };
        let bytes = encode(&req).unwrap();
        let back: Request = read_frame(&mut &bytes[..]).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn huge_length_is_refused_before_allocating() {
        let mut h = [0u8; HEADER_LEN];
        h[..3].copy_from_slice(&MAGIC);
        h[3] = VERSION;
        h[4..].copy_from_slice(&(1u64 << 63).to_le_bytes());
        assert!(matches!(decode_header(&h), Err(FrameError::TooLarge(n)) if n == 1 << 63));
        // Through a reader that would hand out endless bytes after the header.
        let mut r = std::io::Read::chain(&h[..], std::io::repeat(0));
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn wrong_version_and_magic() {
        let mut bytes = encode(&Request::Admit { ns: ns("x") }).unwrap();
        bytes[3] = 9;
        assert!(matches!(
            read_frame::<_, Request>(&mut &bytes[..]),
            Err(FrameError::Version(9))
        ));
        bytes[0] = b'X';
        assert!(matches!(
            read_frame::<_, Request>(&mut &bytes[..]),
            Err(FrameError::BadMagic)
        ));
    }

    #[test]
    fn invalid_names_and_garbage_do_not_decode() {
        // An Admit whose name is "../x".
        let body = b"\x02\x04../x";
        assert!(decode_body::<Request>(body).is_err());
        assert!(decode_body::<Request>(b"\xff\xff\xff").is_err());
        // Trailing bytes after a valid message.
        assert!(decode_body::<Request>(b"\x02\x01xJUNK").is_err());
    }
}
