//! The client's errors and the exit status each one maps to. The statuses are
//! part of the command-line contract (README, `lanco --help`).

use lanco_proto::cgroupfs::CgroupError;
use lanco_proto::files::FileError;
use lanco_proto::{NamespaceName, TaskName};

/// Exit statuses of `lanco`.
pub mod exit {
    pub const OK: u8 = 0;
    /// `check`: the task is not running.
    pub const NOT_RUNNING: u8 = 1;
    /// Bad usage or input (names, options); nothing was changed.
    pub const USAGE: u8 = 2;
    /// The task's state forbids it: already running (run), not running (stop, kill).
    pub const CONFLICT: u8 = 3;
    /// Not allowed: not a member of the namespace, not an administrator.
    pub const DENIED: u8 = 4;
    /// The namespace does not exist.
    pub const NO_NAMESPACE: u8 = 5;
    /// The command could not be started (not found, not executable, bad cwd).
    pub const START_FAILED: u8 = 6;
    /// lancod could not be reached or answered with an error of its own.
    pub const HELPER: u8 = 7;
    /// A system error (cgroupfs, files).
    pub const SYSTEM: u8 = 8;
}

#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Error {
    #[error("task {0} is already running")]
    AlreadyRunning(TaskName),
    #[error("task {0} is not running")]
    NotRunning(TaskName),
    #[error("namespace {0} does not exist")]
    NoNamespace(NamespaceName),
    /// Something else the request names does not exist (lancod's NotFound).
    #[error("{0}")]
    Missing(String),
    /// Refused because of the current state (lancod's AlreadyExists).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    StartFailed(String),
    #[error("{0}")]
    Helper(String),
    #[error("{0}")]
    System(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::AlreadyRunning(_) | Error::NotRunning(_) | Error::Refused(_) => exit::CONFLICT,
            Error::NoNamespace(_) | Error::Missing(_) => exit::NO_NAMESPACE,
            Error::Denied(_) => exit::DENIED,
            Error::Usage(_) => exit::USAGE,
            Error::StartFailed(_) => exit::START_FAILED,
            Error::Helper(_) => exit::HELPER,
            Error::System(_) => exit::SYSTEM,
        }
    }

    /// Refusals are warnings (the original lanco's wording); the rest errors.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::AlreadyRunning(_) | Error::NotRunning(_))
    }

    pub fn system(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Error::System(format!("{context}: {e}"))
    }
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        match e.io_kind() {
            Some(std::io::ErrorKind::PermissionDenied) => Error::Denied(e.to_string()),
            _ => Error::System(e.to_string()),
        }
    }
}

impl From<CgroupError> for Error {
    fn from(e: CgroupError) -> Self {
        match e.io_kind() {
            Some(std::io::ErrorKind::PermissionDenied) => Error::Denied(e.to_string()),
            _ => Error::System(e.to_string()),
        }
    }
}

/// A missing namespace and a foreign one get this same answer.
pub(crate) fn not_member(ns: &NamespaceName) -> Error {
    Error::Denied(format!(
        "no such namespace {ns}, or you are not a member of it"
    ))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
