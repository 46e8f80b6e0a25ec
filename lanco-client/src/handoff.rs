//! The hand-off between `lanco run` (or the library) and a new
//! `lanco-monitor`: the task's spec on the monitor's stdin, and the
//! monitor's reports (started, or why not; later, the end) on its stdout.

use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;

use lanco_proto::wire::{self, FrameError};
use lanco_proto::{Config, NamespaceName, TaskName};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::Error;
use crate::record::Exit;

/// Largest spec `lanco run` may hand over (argv + environment).
pub const MAX_SPEC: u64 = 16 << 20;

/// Everything the monitor needs, sent by `lanco run` on the monitor's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub config: Config,
    pub cgroup_root: PathBuf,
    pub ns: NamespaceName,
    pub task: TaskName,
    /// Raw bytes: arguments and environment need not be UTF-8.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub log: Option<PathBuf>,
    pub on_exit: Option<String>,
    pub stop_timeout_ms: u64,
}

/// What the monitor tells `lanco run` on its stdout pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Report {
    Started {
        pid: i32,
        monitor_pid: i32,
        run_id: String,
    },
    Failed(Error),
    /// The task and its on-exit command are over.
    Finished(#[serde(with = "exit_as_pair")] Exit),
}

/// `Exit` as (kind, value) on this channel: its JSON form (for records) is
/// adjacently tagged, which postcard cannot decode.
mod exit_as_pair {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::record::Exit;

    pub fn serialize<S: Serializer>(e: &Exit, s: S) -> Result<S::Ok, S::Error> {
        match *e {
            Exit::Code(c) => (0u8, c),
            Exit::Signal(n) => (1, n),
            Exit::Lost => (2, 0),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Exit, D::Error> {
        match <(u8, i32)>::deserialize(d)? {
            (0, c) => Ok(Exit::Code(c)),
            (1, n) => Ok(Exit::Signal(n)),
            (2, _) => Ok(Exit::Lost),
            (k, _) => Err(serde::de::Error::custom(format!("bad exit kind {k}"))),
        }
    }
}

/// One frame on the hand-off pipe: lancod's framing (magic, version,
/// length checked before allocating), with the spec's larger bound.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    wire::write_frame_max(w, msg, MAX_SPEC).map_err(std::io::Error::other)
}

pub fn recv<T: DeserializeOwned>(r: &mut impl Read) -> std::io::Result<T> {
    wire::read_frame_max(r, MAX_SPEC).map_err(|e| match e {
        FrameError::Io(e) => e,
        FrameError::Closed => ErrorKind::UnexpectedEof.into(),
        e => std::io::Error::new(ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_roundtrip() {
        for r in [
            Report::Started {
                pid: 1,
                monitor_pid: 2,
                run_id: "r".into(),
            },
            Report::Finished(Exit::Code(7)),
            Report::Finished(Exit::Signal(10)),
            Report::Finished(Exit::Lost),
            Report::Failed(Error::StartFailed("x".into())),
        ] {
            let mut buf = Vec::new();
            send(&mut buf, &r).unwrap();
            let back: Report = recv(&mut &buf[..]).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }
}
