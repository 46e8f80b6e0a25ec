//! What `destroy` kept: a destroyed namespace's state directory (exit
//! records, accounting journals, definitions) and log directory, moved to
//! `{state_dir}/destroyed/NS-STAMP` and `{log_dir}/lanco.destroyed/NS-STAMP`
//! (root-only parents; docs/DESIGN.md, "Layout"). `lancod destroyed` lists
//! them, shows the files each holds, and removes them: root only, through
//! `lanco_proto::files`, never following a link (a tenant that kept a
//! directory open across the destroy can still plant one inside).

use std::path::PathBuf;

use lanco_proto::files::{Dir, FileError};
use lanco_proto::layout::Layout;
use lanco_proto::NamespaceName;

/// Deepest directory `show` walks into and `remove` removes: one level
/// holds one fd and one stack frame, and a tenant could have made its own
/// state directory a million levels deep before the destroy.
const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("nothing kept is named {0}; `lancod destroyed list` shows what is")]
    NotFound(String),
    #[error("{0} is neither a namespace name nor a name `lancod destroyed list` shows")]
    BadName(String),
    #[error("only root may read or remove the records of destroyed namespaces")]
    NotRoot,
}

/// One destroy's (or 0.1 migration's) kept records and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// `NS-STAMP`, or `NS-STAMP-0.1` for a 0.1 state directory retired by
    /// the migration.
    pub name: String,
    /// The namespace, and when it was destroyed (nanoseconds since the
    /// epoch), as read from the name; `None` for a name lanco did not make.
    pub ns: Option<NamespaceName>,
    pub stamp: Option<u128>,
    /// `{state_dir}/destroyed/NAME`, if there.
    pub state: Option<PathBuf>,
    /// `{log_dir}/lanco.destroyed/NAME`, if there.
    pub logs: Option<PathBuf>,
}

impl Kept {
    /// When it was destroyed, seconds since the epoch.
    pub fn destroyed_at(&self) -> Option<i64> {
        self.stamp
            .and_then(|n| i64::try_from(n / 1_000_000_000).ok())
    }
}

/// One file of a kept directory, as `show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFile {
    pub path: PathBuf,
    pub owner: u32,
    pub mode: u32,
    pub kind: &'static str,
    pub size: u64,
}

/// `NS-STAMP[-0.1]` → (NS, STAMP: nanoseconds since the epoch).
fn parse(name: &str) -> Option<(NamespaceName, u128)> {
    let base = name.strip_suffix("-0.1").unwrap_or(name);
    let (ns, stamp) = base.rsplit_once('-')?;
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((NamespaceName::try_from(ns).ok()?, stamp.parse().ok()?))
}

fn require_root() -> Result<(), KeptError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(KeptError::NotRoot)
    }
}

/// The kept directory, if it exists.
fn open_kept(path: PathBuf) -> Result<Option<Dir>, KeptError> {
    match Dir::open(&path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Everything kept, oldest first.
pub fn list(layout: &Layout) -> Result<Vec<Kept>, KeptError> {
    require_root()?;
    let mut all: Vec<Kept> = Vec::new();
    for (is_state, dir) in [
        (true, open_kept(layout.kept_state_dir())?),
        (false, open_kept(layout.kept_log_dir())?),
    ] {
        let Some(dir) = dir else { continue };
        for name in dir.list()? {
            let i = match all.iter().position(|k| k.name == name) {
                Some(i) => i,
                None => {
                    let parsed = parse(&name);
                    all.push(Kept {
                        ns: parsed.as_ref().map(|p| p.0.clone()),
                        stamp: parsed.map(|p| p.1),
                        name: name.clone(),
                        state: None,
                        logs: None,
                    });
                    all.len() - 1
                }
            };
            let path = Some(dir.join(&name));
            if is_state {
                all[i].state = path;
            } else {
                all[i].logs = path;
            }
        }
    }
    all.sort_by(|a, b| (a.stamp, &a.name).cmp(&(b.stamp, &b.name)));
    Ok(all)
}

/// What `arg` names: the kept entry of that name (`NS-STAMP` as `list`
/// shows it), or every kept entry of the namespace `NS`.
pub fn select(layout: &Layout, arg: &str) -> Result<Vec<Kept>, KeptError> {
    if arg.is_empty() || arg.contains('/') || arg == "." || arg == ".." {
        return Err(KeptError::BadName(arg.to_owned()));
    }
    let all = list(layout)?;
    let exact: Vec<Kept> = all.iter().filter(|k| k.name == arg).cloned().collect();
    if !exact.is_empty() {
        return Ok(exact);
    }
    let Ok(ns) = NamespaceName::try_from(arg) else {
        return Err(KeptError::BadName(arg.to_owned()));
    };
    let of_ns: Vec<Kept> = all
        .into_iter()
        .filter(|k| k.ns.as_ref() == Some(&ns))
        .collect();
    if of_ns.is_empty() {
        return Err(KeptError::NotFound(arg.to_owned()));
    }
    Ok(of_ns)
}

/// Every entry below the kept directories of `kept`, depth first, not
/// following links; directories deeper than `MAX_DEPTH` are listed, not
/// entered.
pub fn files(kept: &Kept) -> Result<Vec<KeptFile>, KeptError> {
    require_root()?;
    let mut out = Vec::new();
    for path in [&kept.state, &kept.logs].into_iter().flatten() {
        let Some(parent) = path.parent() else {
            continue;
        };
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        walk(&Dir::open(parent)?, name, MAX_DEPTH, &mut out)?;
    }
    Ok(out)
}

fn walk(dir: &Dir, name: &str, depth: usize, out: &mut Vec<KeptFile>) -> Result<(), KeptError> {
    let Some(e) = dir.entry(name)? else {
        return Ok(());
    };
    out.push(KeptFile {
        path: dir.join(name),
        owner: e.uid,
        mode: e.mode,
        kind: e.kind,
        size: e.size,
    });
    if e.is_dir() && depth > 0 {
        let sub = dir.sub(name)?;
        for child in sub.list()? {
            walk(&sub, &child, depth - 1, out)?;
        }
    }
    Ok(())
}

/// Removes `kept`'s directories and everything in them.
pub fn remove(kept: &Kept) -> Result<(), KeptError> {
    require_root()?;
    for path in [&kept.state, &kept.logs].into_iter().flatten() {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            continue;
        };
        Dir::open(parent)?.remove_tree(name, MAX_DEPTH)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_names_are_read_back() {
        let read = |n| parse(n).map(|(ns, stamp)| (ns.to_string(), stamp));
        assert_eq!(
            read("web-1767225600123456789"),
            Some(("web".into(), 1_767_225_600_123_456_789))
        );
        assert_eq!(
            read("my-web.2-1767225600123456789-0.1"),
            Some(("my-web.2".into(), 1_767_225_600_123_456_789))
        );
        for bad in ["web", "web-", "web-12x", "-123", "lost+found"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
