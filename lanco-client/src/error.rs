//! The library's error: one `#[non_exhaustive]` enum whose variants a daemon
//! matches on (not a member, already running, lancod unreachable, …), with
//! the error underneath as its `source()`, and the exit status `lanco` gives
//! each (`Error::exit_code`, the one place that maps them). Not a wire type:
//! a monitor's failure crosses the hand-off pipe as `handoff::Failure`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use lanco_proto::cgroupfs::CgroupError;
use lanco_proto::config::ConfigError;
use lanco_proto::files::FileError;
use lanco_proto::wire::ErrorCode;
use lanco_proto::{NameError, NamespaceName, TaskName};

/// Exit statuses of `lanco`. They are part of the command-line contract
/// (README, `lanco --help`); [`Error::exit_code`] maps errors to them.
pub(crate) mod exit {
    /// Success (`check`: the task is running).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub const OK: u8 = 0;
    /// `check`: the task is not running.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub const NOT_RUNNING: u8 = 1;
    /// Bad usage or input (names, options); nothing was changed.
    pub const USAGE: u8 = 2;
    /// The task's or namespace's state forbids it: already running (run),
    /// not running (stop, kill, wait), namespace busy or owned (init, destroy), ….
    pub const CONFLICT: u8 = 3;
    /// Not allowed: not a member of the namespace, not an administrator.
    pub const DENIED: u8 = 4;
    /// What is named does not exist: the namespace (told to root), a user or
    /// group (`init`), a definition, a task's log.
    pub const NO_NAMESPACE: u8 = 5;
    /// The command could not be started (not found, not executable, bad cwd).
    pub const START_FAILED: u8 = 6;
    /// lancod could not be reached or answered with an error of its own.
    pub const HELPER: u8 = 7;
    /// A system error (cgroupfs, files).
    pub const SYSTEM: u8 = 8;
}

/// Everything that can go wrong in the library.
///
/// Match on the variant, not on the words: they are for people. The error
/// underneath, if any, is the `source()` (and not repeated in the message),
/// so print the whole chain to show everything, as `lanco` does on its one
/// line of error. New variants may come in a minor release.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The namespace does not exist, or the caller is not a member of it.
    /// Both get this same answer, as from lancod, so that the names of other
    /// tenants' namespaces do not leak; only root is told which
    /// ([`Error::NoNamespace`]).
    #[error("no such namespace {0}, or you are not a member of it")]
    NotMember(NamespaceName),
    /// The namespace does not exist (told to root only: see
    /// [`Error::NotMember`]).
    #[error("namespace {0} does not exist")]
    NoNamespace(NamespaceName),
    /// `run`: a run of the task is going on (its name is held by a live
    /// monitor, or its cgroup still has processes).
    #[error("task {0} is already running")]
    AlreadyRunning(TaskName),
    /// `stop`, `kill`, `wait`: the task is not running (and, for `wait`,
    /// never ran).
    #[error("task {0} is not running")]
    NotRunning(TaskName),
    /// `run`: the task's name belongs to another member of the namespace
    /// (whoever ran it first); only they may run it. The others may stop,
    /// kill and read it.
    #[error("task {task} belongs to {owner}: members may stop, kill and read it; only {owner} may run it")]
    NameTaken {
        /// The task.
        task: TaskName,
        /// The member whose name it is: their user name, or `uid N`.
        owner: String,
    },
    /// A definition is not what the request needs: the task is defined by
    /// another member (`define`, `apply`), or it runs (`undefine`).
    #[error("{0}")]
    Conflict(String),
    /// No member of the namespace defined the task (`start`, `show`,
    /// `undefine`, …).
    #[error("task {0} is not defined")]
    NotDefined(TaskName),
    /// `logs`: the task has no log: it never ran in the namespace, or its
    /// log was removed.
    #[error("task {0} has no log: it never ran here, or its log was removed")]
    NoLog(TaskName),
    /// Not allowed for another reason than membership: root running a task,
    /// signalling another member's processes, a file or cgroup the caller may
    /// not use, or lancod's refusal.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request was refused as given, before anything was changed: an
    /// empty command, a relative path, a bad environment variable, a bad log
    /// path.
    #[error("{0}")]
    InvalidInput(String),
    /// The task's command could not be started; nothing of it runs. Which
    /// step failed is `step`; why is `reason` (an OS error, whose kind and
    /// errno it keeps, or what else happened), whose words end the message
    /// (so it is not also the `source()`).
    #[error("{step}: {}{}", reason_words(reason), step.hint())]
    StartFailed {
        /// The step that failed, with what it was given.
        step: StartStep,
        /// Why.
        reason: io::Error,
    },
    /// The task was started but never got ready (`start`, or `run` with a
    /// readiness other than exec): it ended first, or was not ready within
    /// its start timeout and was stopped, or its restarts gave up. Nothing
    /// of it runs any more.
    #[error("{task} {reason}")]
    NotReady {
        /// The task.
        task: TaskName,
        /// Why, in words: "exited with status 1 before it was ready", ….
        reason: String,
    },
    /// `lanco NS start`: a task this one needs (or has as a milestone)
    /// failed to start, so it was not started.
    #[error("{task}: dependency {dependency} failed: {reason}")]
    DependencyFailed {
        /// The task not started.
        task: TaskName,
        /// The dependency that failed (the first one, if several).
        dependency: TaskName,
        /// Why, in words.
        reason: String,
    },
    /// lancod could not be reached: its socket is missing or nobody listens
    /// (under systemd, is `lanco.socket` active?), or the connection failed.
    #[error("cannot reach lancod at {}", socket.display())]
    HelperUnreachable {
        /// The socket tried (the config's `socket`).
        socket: PathBuf,
        /// The error of the connection.
        #[source]
        source: io::Error,
    },
    /// lancod answered the request with an error: `code` says which kind
    /// (for [`ErrorCode::PermissionDenied`], [`ErrorCode::NotFound`],
    /// [`ErrorCode::AlreadyExists`] and [`ErrorCode::InvalidRequest`] the
    /// message is lancod's alone; for the rest it starts with `lancod: `).
    #[error("{}{message}", helper_prefix(code))]
    HelperRefused {
        /// lancod's kind of error.
        code: ErrorCode,
        /// lancod's words.
        message: String,
    },
    /// lancod stayed busy (as many connections as it serves) although the
    /// request was retried, with backoff, for `retried_for`.
    #[error("{message} (still busy after retrying for {} s)", retried_for.as_secs())]
    HelperBusy {
        /// lancod's words.
        message: String,
        /// How long the request was retried.
        retried_for: Duration,
    },
    /// lancod was reached but its answer was missing or unreadable: it hung
    /// up without one (it crashed or restarted), or it speaks another
    /// version of the protocol.
    #[error("{0}")]
    HelperNoAnswer(String),
    /// The system failed lanco: a call, a file, the task's monitor. `context`
    /// says what was being done; `source` is the OS error, if there was one.
    #[error("{context}")]
    System {
        /// What was being done.
        context: String,
        /// The error underneath.
        #[source]
        source: Option<io::Error>,
    },
    /// The configuration file could not be read or parsed (the source says
    /// which and why).
    #[error("cannot load lanco's configuration")]
    Config(#[from] ConfigError),
    /// A string is not a valid namespace or task name (the source says why).
    #[error("invalid name")]
    Name(#[from] NameError),
    /// A cgroupfs operation failed (the source names the file and the
    /// operation).
    #[error("cgroup filesystem error")]
    Cgroup(#[from] CgroupError),
    /// A file or directory of lanco's (state, names, log, socket) could not
    /// be used, or is not what lanco made there (the source says which and
    /// why).
    #[error("cannot use one of lanco's files")]
    File(#[from] FileError),
}

/// The step at which a task's command failed to start
/// ([`Error::StartFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartStep {
    /// Changing to the task's working directory.
    Cwd {
        /// The working directory.
        dir: PathBuf,
    },
    /// Changing to the working directory the task was to inherit, the
    /// caller's current one (no `--cwd` was given): a user who ran `lanco`
    /// from a directory the task cannot enter is told to pick one.
    CurrentDir {
        /// The caller's current directory.
        dir: PathBuf,
    },
    /// Executing the program (not found, not executable, not a format the
    /// kernel runs).
    Exec {
        /// The program as given (`argv[0]`, lossily UTF-8).
        program: String,
        /// Where the search of the task's PATH found it, if it was searched
        /// for and found.
        path: Option<PathBuf>,
    },
    /// Anything before those: preparing the command (a NUL byte in it) or
    /// the process (its output on the log), or the process was killed before
    /// it ran.
    Spawn {
        /// The program as given (`argv[0]`, lossily UTF-8).
        program: String,
    },
}

impl fmt::Display for StartStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartStep::Cwd { dir } => write!(f, "cannot change directory to {}", dir.display()),
            StartStep::CurrentDir { dir } => write!(
                f,
                "cannot change directory to {} (the current directory)",
                dir.display()
            ),
            StartStep::Exec {
                program,
                path: None,
            } => write!(f, "cannot execute {program}"),
            StartStep::Exec {
                program,
                path: Some(p),
            } => write!(f, "cannot execute {program} ({})", p.display()),
            StartStep::Spawn { program } => write!(f, "unable to run {program}"),
        }
    }
}

impl StartStep {
    /// What to do about it, after the reason, if the step itself suggests
    /// something.
    fn hint(&self) -> &'static str {
        match self {
            StartStep::CurrentDir { .. } => "; use --cwd",
            _ => "",
        }
    }
}

/// An OS error as strerror words it ("No such file or directory"), without
/// std's "(os error 2)"; any other error as itself.
fn reason_words(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    }
}

fn helper_prefix(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::PermissionDenied
        | ErrorCode::NotFound
        | ErrorCode::AlreadyExists
        | ErrorCode::InvalidRequest => "",
        _ => "lancod: ",
    }
}

impl Error {
    /// The status the `lanco` command exits with for this error (see the
    /// README's "Exit status"), for a program that reports errors as `lanco`
    /// does. This is the one place errors are mapped to statuses.
    pub fn exit_code(&self) -> u8 {
        use std::io::ErrorKind::PermissionDenied as Eacces;
        match self {
            Error::AlreadyRunning(_)
            | Error::NotRunning(_)
            | Error::NameTaken { .. }
            | Error::Conflict(_) => exit::CONFLICT,
            Error::NotDefined(_) | Error::NoLog(_) => exit::NO_NAMESPACE,
            Error::NotMember(_) | Error::PermissionDenied(_) => exit::DENIED,
            Error::NoNamespace(_) => exit::NO_NAMESPACE,
            Error::InvalidInput(_) | Error::Config(_) | Error::Name(_) => exit::USAGE,
            Error::StartFailed { .. } | Error::NotReady { .. } | Error::DependencyFailed { .. } => {
                exit::START_FAILED
            }
            Error::HelperRefused { code, .. } => match code {
                ErrorCode::PermissionDenied => exit::DENIED,
                // A limit whose controller this host lacks.
                ErrorCode::InvalidRequest | ErrorCode::Unsupported => exit::USAGE,
                ErrorCode::NotFound => exit::NO_NAMESPACE,
                ErrorCode::AlreadyExists => exit::CONFLICT,
                _ => exit::HELPER,
            },
            Error::HelperUnreachable { .. }
            | Error::HelperBusy { .. }
            | Error::HelperNoAnswer(_) => exit::HELPER,
            Error::Cgroup(CgroupError::NoController { .. }) => exit::USAGE,
            Error::Cgroup(e) if e.io_kind() == Some(Eacces) => exit::DENIED,
            Error::File(e) if e.io_kind() == Some(Eacces) => exit::DENIED,
            Error::Cgroup(_) | Error::File(_) | Error::System { .. } => exit::SYSTEM,
        }
    }

    /// This error, for a task that was to inherit the caller's current
    /// directory: a failure to change to it says so (and how to choose
    /// another); any other error is itself.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn in_current_dir(self) -> Self {
        match self {
            Error::StartFailed {
                step: StartStep::Cwd { dir },
                reason,
            } => Error::StartFailed {
                step: StartStep::CurrentDir { dir },
                reason,
            },
            e => e,
        }
    }

    /// `context` failed because of `source` (an `io::Error`, an errno, a
    /// JSON error).
    pub(crate) fn system(context: impl fmt::Display, source: impl Into<io::Error>) -> Self {
        Error::System {
            context: context.to_string(),
            source: Some(source.into()),
        }
    }

    /// `what` went wrong, with no error underneath.
    pub(crate) fn failed(what: impl Into<String>) -> Self {
        Error::System {
            context: what.into(),
            source: None,
        }
    }

    /// The error on one line, as `lanco` prints it: its message and its
    /// sources', joined by `: `. A wrapped configuration, name, cgroupfs or
    /// file error is shown as itself (its wrapper's message only labels it
    /// for readers of the plain message).
    pub(crate) fn one_line(&self) -> String {
        let top: &(dyn std::error::Error + 'static) = match self {
            Error::Config(e) => e,
            Error::Name(e) => e,
            Error::Cgroup(e) => e,
            Error::File(e) => e,
            e => e,
        };
        let mut line = top.to_string();
        let mut next = top.source();
        while let Some(e) = next {
            line.push_str(": ");
            line.push_str(&e.to_string());
            next = e.source();
        }
        line
    }
}

/// The library's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn sources_chain_and_are_printed_once() {
        let e = Error::system("cannot read /x", io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.to_string(), "cannot read /x");
        assert!(e.source().is_some());
        assert_eq!(
            e.one_line(),
            "cannot read /x: Permission denied (os error 13)"
        );
        let socket = PathBuf::from("/run/lanco/lancod.sock");
        let e = Error::HelperUnreachable {
            socket,
            source: io::ErrorKind::NotFound.into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach lancod at /run/lanco/lancod.sock"
        );
        assert_eq!(e.exit_code(), exit::HELPER);
        let name = "-x".parse::<TaskName>().unwrap_err();
        let e = Error::from(name);
        let inner = e
            .source()
            .expect("the name error is the source")
            .to_string();
        assert!(!e.to_string().contains(&inner));
        assert_eq!(e.one_line(), inner);
        assert_eq!(e.exit_code(), exit::USAGE);
    }

    #[test]
    fn start_failures_name_the_step_and_the_reason() {
        let e = Error::StartFailed {
            step: StartStep::Cwd {
                dir: "/root".into(),
            },
            reason: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            e.to_string(),
            "cannot change directory to /root: Permission denied"
        );
        assert!(e.source().is_none(), "the reason is in the message");
        assert_eq!(
            e.in_current_dir().to_string(),
            "cannot change directory to /root (the current directory): Permission denied; use --cwd"
        );
        let e = Error::StartFailed {
            step: StartStep::Exec {
                program: "sh".into(),
                path: Some("/bin/sh".into()),
            },
            reason: io::Error::from_raw_os_error(libc::ENOEXEC),
        };
        assert_eq!(
            e.to_string(),
            "cannot execute sh (/bin/sh): Exec format error"
        );
        assert_eq!(e.exit_code(), exit::START_FAILED);
    }

    #[test]
    fn lancods_codes_keep_their_statuses() {
        let refused = |code| Error::HelperRefused {
            code,
            message: "m".into(),
        };
        assert_eq!(
            refused(ErrorCode::PermissionDenied).exit_code(),
            exit::DENIED
        );
        assert_eq!(refused(ErrorCode::InvalidRequest).exit_code(), exit::USAGE);
        assert_eq!(refused(ErrorCode::NotFound).exit_code(), exit::NO_NAMESPACE);
        assert_eq!(
            refused(ErrorCode::AlreadyExists).exit_code(),
            exit::CONFLICT
        );
        assert_eq!(refused(ErrorCode::Internal).exit_code(), exit::HELPER);
        assert_eq!(refused(ErrorCode::NotFound).to_string(), "m");
        assert_eq!(refused(ErrorCode::Internal).to_string(), "lancod: m");
    }

    /// A daemon sends errors across threads and boxes them.
    #[test]
    fn errors_are_send_sync_static() {
        fn check<E: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }

    /// What a daemon writes: `?` on the config and name errors.
    #[test]
    fn config_and_name_errors_convert() {
        fn open() -> Result<TaskName> {
            let _ =
                lanco_proto::Config::from_file(std::path::Path::new("/nonexistent/lanco.toml"))?;
            Ok("t".parse::<TaskName>()?)
        }
        assert!(matches!(open(), Err(Error::Config(_))));
        fn name() -> Result<NamespaceName> {
            Ok("bad name".parse::<NamespaceName>()?)
        }
        assert!(matches!(name(), Err(Error::Name(_))));
    }
}
