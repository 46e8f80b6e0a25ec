//! The hand-off between `lanco run` (or the library) and a new
//! `lanco-monitor`: the task's spec, and the monitor's reports (started, or
//! why not; later, the end). A cold start sends the spec on the monitor's
//! stdin and reads the reports on its stdout; a warm one sends and reads
//! both on its connection to the member's spawner, which hands it to the
//! monitor it forks.

use std::io::{self, ErrorKind, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use lanco_proto::wire::{self, ErrorCode, FrameError};
use lanco_proto::{Config, NamespaceName, TaskName};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, StartStep};
use crate::graph::Deps;
use crate::record::Exit;
use crate::supervision::Supervision;

/// Largest spec `lanco run` may hand over (argv + environment).
pub const MAX_SPEC: u64 = 16 << 20;

/// A spawner's answer to a caller it serves: `+`, then the device and inode
/// (little-endian u64s) of the monitor binary it runs. The caller builds
/// the answer it expects from its own configured monitor and sends it ahead
/// of its spec; the standby starts nothing for a caller that expected
/// another, and the caller compares the answer it gets: a spawner of another
/// binary is not used.
pub fn spawner_answer((dev, ino): (u64, u64)) -> [u8; 17] {
    let mut a = [0u8; 17];
    a[0] = b'+';
    a[1..9].copy_from_slice(&dev.to_le_bytes());
    a[9..].copy_from_slice(&ino.to_le_bytes());
    a
}

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
    pub supervision: Supervision,
    pub definition: Option<String>,
    pub deps: Deps,
    pub explicit: bool,
    pub limits: lanco_proto::Limits,
}

impl Spec {
    /// The installation's layout, as the caller's configuration says.
    pub fn layout(&self) -> lanco_proto::Layout {
        lanco_proto::Layout::of(&self.config, self.cgroup_root.clone())
    }
}

/// What the monitor tells `lanco run` on its stdout pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Report {
    Started {
        pid: i32,
        monitor_pid: i32,
        run_id: String,
    },
    Failed(Failure),
    /// Only as a warm start's first report, before anything was claimed:
    /// this monitor cannot start the task as the caller would (the words say
    /// why); the caller takes the cold path.
    Declined(String),
    /// The run is ready (its `READY=1`, its readiness fd): sent once, and
    /// only for a task whose readiness is not its exec.
    Ready,
    /// The task never got ready and the monitor gave up (the words say
    /// why: "exited with status 1 before it was ready", …); sent once.
    NotReady(String),
    /// The task and its on-exit command are over.
    Finished(#[serde(with = "exit_as_pair")] Exit),
}

/// Why a monitor could not start its task, as it crosses this pipe: the
/// kind of error and its words, from which `lanco run` rebuilds the typed
/// [`Error`] ([`Failure::into_error`]). This channel's own: the public
/// `Error` is not a wire type. What has no kind of its own here (a cgroupfs
/// or file error) arrives as the words of its one line, with the status it
/// had (permission denied, or system).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    NotMember,
    NoNamespace,
    AlreadyRunning,
    NotRunning,
    NameTaken {
        owner: String,
    },
    PermissionDenied(String),
    InvalidInput(String),
    StartFailed {
        step: Step,
        reason: Reason,
    },
    HelperUnreachable {
        socket: PathBuf,
        reason: Reason,
    },
    HelperRefused {
        code: ErrorCode,
        message: String,
    },
    HelperBusy {
        message: String,
        retried_ms: u64,
    },
    HelperNoAnswer(String),
    NotReady(String),
    System {
        context: String,
        reason: Option<Reason>,
    },
}

/// [`StartStep`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Cwd(PathBuf),
    Exec {
        program: String,
        path: Option<PathBuf>,
    },
    Spawn(String),
}

/// An `io::Error` on the wire: its errno if it is an OS error (rebuilt with
/// its kind and words), else its words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    errno: Option<i32>,
    words: String,
}

impl From<&io::Error> for Reason {
    fn from(e: &io::Error) -> Self {
        Reason {
            errno: e.raw_os_error(),
            words: e.to_string(),
        }
    }
}

impl Reason {
    fn into_io(self) -> io::Error {
        match self.errno {
            Some(n) => io::Error::from_raw_os_error(n),
            None => io::Error::other(self.words),
        }
    }
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        use std::io::ErrorKind::PermissionDenied as Eacces;
        match e {
            Error::NotMember(_) => Failure::NotMember,
            Error::NoNamespace(_) => Failure::NoNamespace,
            Error::AlreadyRunning(_) => Failure::AlreadyRunning,
            Error::NotRunning(_) => Failure::NotRunning,
            Error::NameTaken { owner, .. } => Failure::NameTaken {
                owner: owner.clone(),
            },
            Error::PermissionDenied(m) => Failure::PermissionDenied(m.clone()),
            Error::InvalidInput(m) => Failure::InvalidInput(m.clone()),
            Error::StartFailed { step, reason } => Failure::StartFailed {
                step: match step {
                    StartStep::Cwd { dir } | StartStep::CurrentDir { dir } => {
                        Step::Cwd(dir.clone())
                    }
                    StartStep::Exec { program, path } => Step::Exec {
                        program: program.clone(),
                        path: path.clone(),
                    },
                    StartStep::Spawn { program } => Step::Spawn(program.clone()),
                },
                reason: reason.into(),
            },
            Error::HelperUnreachable { socket, source } => Failure::HelperUnreachable {
                socket: socket.clone(),
                reason: source.into(),
            },
            Error::HelperRefused { code, message } => Failure::HelperRefused {
                code: *code,
                message: message.clone(),
            },
            Error::HelperBusy {
                message,
                retried_for,
            } => Failure::HelperBusy {
                message: message.clone(),
                retried_ms: retried_for.as_millis() as u64,
            },
            Error::HelperNoAnswer(m) => Failure::HelperNoAnswer(m.clone()),
            Error::NotReady { reason, .. } => Failure::NotReady(reason.clone()),
            Error::System { context, source } => Failure::System {
                context: context.clone(),
                reason: source.as_ref().map(Reason::from),
            },
            Error::Config(_) | Error::Name(_) => Failure::InvalidInput(e.one_line()),
            Error::Cgroup(c) if c.io_kind() == Some(Eacces) => {
                Failure::PermissionDenied(e.one_line())
            }
            Error::File(f) if f.io_kind() == Some(Eacces) => {
                Failure::PermissionDenied(e.one_line())
            }
            // Definitions' errors: the monitor never meets them.
            Error::Cgroup(_)
            | Error::File(_)
            | Error::Conflict(_)
            | Error::NotDefined(_)
            | Error::NoLog(_)
            | Error::DependencyFailed { .. } => Failure::System {
                context: e.one_line(),
                reason: None,
            },
        }
    }
}

impl Failure {
    /// The typed error, for the start of `task` in `ns`.
    pub fn into_error(self, ns: &NamespaceName, task: &TaskName) -> Error {
        match self {
            Failure::NotMember => Error::NotMember(ns.clone()),
            Failure::NoNamespace => Error::NoNamespace(ns.clone()),
            Failure::AlreadyRunning => Error::AlreadyRunning(task.clone()),
            Failure::NotRunning => Error::NotRunning(task.clone()),
            Failure::NameTaken { owner } => Error::NameTaken {
                task: task.clone(),
                owner,
            },
            Failure::PermissionDenied(m) => Error::PermissionDenied(m),
            Failure::InvalidInput(m) => Error::InvalidInput(m),
            Failure::StartFailed { step, reason } => Error::StartFailed {
                step: match step {
                    Step::Cwd(dir) => StartStep::Cwd { dir },
                    Step::Exec { program, path } => StartStep::Exec { program, path },
                    Step::Spawn(program) => StartStep::Spawn { program },
                },
                reason: reason.into_io(),
            },
            Failure::HelperUnreachable { socket, reason } => Error::HelperUnreachable {
                socket,
                source: reason.into_io(),
            },
            Failure::HelperRefused { code, message } => Error::HelperRefused { code, message },
            Failure::HelperBusy {
                message,
                retried_ms,
            } => Error::HelperBusy {
                message,
                retried_for: Duration::from_millis(retried_ms),
            },
            Failure::HelperNoAnswer(m) => Error::HelperNoAnswer(m),
            Failure::NotReady(reason) => Error::NotReady {
                task: task.clone(),
                reason,
            },
            Failure::System { context, reason } => Error::System {
                context,
                source: reason.map(Reason::into_io),
            },
        }
    }
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

/// One frame, as `send` writes it.
pub fn encode<T: Serialize>(msg: &T) -> std::io::Result<Vec<u8>> {
    wire::encode_max(msg, MAX_SPEC).map_err(std::io::Error::other)
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
            Report::Failed(Failure::AlreadyRunning),
        ] {
            let mut buf = Vec::new();
            send(&mut buf, &r).unwrap();
            let back: Report = recv(&mut &buf[..]).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }

    /// What the monitor reports, `lanco run` rebuilds: the same variant,
    /// words, exit status and OS error.
    #[test]
    fn failures_rebuild_the_typed_error() {
        let ns: NamespaceName = "ns".parse().unwrap();
        let task: TaskName = "t".parse().unwrap();
        let errors = [
            Error::NotMember(ns.clone()),
            Error::AlreadyRunning(task.clone()),
            Error::NameTaken {
                task: task.clone(),
                owner: "bob".into(),
            },
            Error::PermissionDenied("no".into()),
            Error::InvalidInput("bad log path /x/".into()),
            Error::StartFailed {
                step: StartStep::Cwd {
                    dir: "/root".into(),
                },
                reason: io::Error::from_raw_os_error(libc::EACCES),
            },
            Error::StartFailed {
                step: StartStep::Exec {
                    program: "x".into(),
                    path: Some("/bin/x".into()),
                },
                reason: io::Error::from_raw_os_error(libc::ENOEXEC),
            },
            Error::StartFailed {
                step: StartStep::Spawn {
                    program: "x".into(),
                },
                reason: io::Error::other("killed by SIGKILL before it ran"),
            },
            Error::HelperUnreachable {
                socket: "/run/lanco/lancod.sock".into(),
                source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
            },
            Error::HelperRefused {
                code: ErrorCode::Internal,
                message: "cannot create the task root".into(),
            },
            Error::HelperBusy {
                message: "lancod is busy".into(),
                retried_for: Duration::from_secs(3),
            },
            Error::HelperNoAnswer("lancod closed the connection".into()),
            Error::system("setsid", nix::errno::Errno::EPERM),
            Error::failed("the monitor gave up"),
            Error::File(lanco_proto::files::FileError::TooLarge {
                path: "/x".into(),
                max: 1,
            }),
        ];
        for e in errors {
            let mut buf = Vec::new();
            send(&mut buf, &Report::Failed(Failure::from(&e))).unwrap();
            let Report::Failed(f) = recv(&mut &buf[..]).unwrap() else {
                panic!("not a failure");
            };
            let back = f.into_error(&ns, &task);
            assert_eq!(back.one_line(), e.one_line());
            assert_eq!(back.exit_code(), e.exit_code(), "{e:?}");
            if let (Error::StartFailed { reason: a, .. }, Error::StartFailed { reason: b, .. }) =
                (&back, &e)
            {
                assert_eq!(a.raw_os_error(), b.raw_os_error());
                assert_eq!(a.kind(), b.kind());
            }
            if !matches!(e, Error::File(_)) {
                assert_eq!(
                    std::mem::discriminant(&back),
                    std::mem::discriminant(&e),
                    "{e:?}"
                );
            }
        }
    }
}
