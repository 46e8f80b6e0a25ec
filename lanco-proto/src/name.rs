//! Validated namespace and task names. Every path lanco builds starts from one of
//! these, so a name can never walk out of its directory or shadow a kernel file.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted name. Keeps `task-NAME.sock` under the 108-byte
/// `sun_path` limit when reached through `/proc/self/fd/N/`.
pub const MAX_NAME_LEN: usize = 64;

/// Prefixes of cgroup interface files. A name that looks like one is refused
/// even though lanco prefixes directory names, so that logs, state files and
/// listings never carry a name a reader could mistake for a kernel file.
const RESERVED_PREFIXES: &[&str] = &[
    "cgroup.", "cpu.", "cpuset.", "io.", "memory.", "pids.", "rdma.", "hugetlb.", "misc.",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} name is empty")]
    Empty { kind: &'static str },
    #[error("{kind} name is longer than {MAX_NAME_LEN} bytes")]
    TooLong { kind: &'static str },
    #[error("{kind} name {shown} must start with a letter or digit and contain only letters, digits, '.', '_' and '-'")]
    BadChar { kind: &'static str, shown: String },
    #[error("{kind} name {shown} is reserved for kernel interface files")]
    Reserved { kind: &'static str, shown: String },
    #[error("namespace name \"namespaces\" is reserved: `lanco namespaces` lists them")]
    ReservedWord,
}

fn validate(kind: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind });
    }
    let shown = || format!("{s:?}");
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok {
        return Err(NameError::BadChar {
            kind,
            shown: shown(),
        });
    }
    // `lanco namespaces` is a command where a namespace would go.
    if kind == "namespace" && s == "namespaces" {
        return Err(NameError::ReservedWord);
    }
    if RESERVED_PREFIXES.iter().any(|p| s.starts_with(p)) {
        return Err(NameError::Reserved {
            kind,
            shown: shown(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($ty:ident, $kind:literal) => {
        #[doc = concat!("A validated ", $kind, " name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 bytes.")]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                validate($kind, s).map(|()| Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                validate($kind, &s).map(|()| Self(s))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::try_from(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(NamespaceName, "namespace");
name_type!(TaskName, "task");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "a",
            "first-task",
            "Task_2.log",
            "0",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert!(TaskName::try_from(ok).is_ok(), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn rejects_bad_names() {
        let long = "a".repeat(300);
        let cases: &[&str] = &[
            "",
            ".",
            "..",
            "a/b",
            "/abs",
            &long,
            "nul\0byte",
            "new\nline",
            "cgroup.procs",
            "memory.max",
            "-dash",
            ".hidden",
            "_x",
            "sp ace",
            "é",
        ];
        for bad in cases {
            assert!(
                TaskName::try_from(*bad).is_err(),
                "{bad:?} should be rejected"
            );
            assert!(
                NamespaceName::try_from(*bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = TaskName::try_from("a/b").unwrap_err().to_string();
        assert!(e.contains("\"a/b\"") && e.contains("letters"), "{e}");
        let e = NamespaceName::try_from("").unwrap_err().to_string();
        assert_eq!(e, "namespace name is empty");
        assert_eq!(
            NamespaceName::try_from("namespaces"),
            Err(NameError::ReservedWord)
        );
        assert!(TaskName::try_from("namespaces").is_ok());
    }

    #[test]
    fn deserialising_validates() {
        let r: Result<TaskName, _> = serde_json::from_str("\"../x\"");
        assert!(r.is_err());
        let r: TaskName = serde_json::from_str("\"ok\"").unwrap();
        assert_eq!(r.as_str(), "ok");
    }
}
