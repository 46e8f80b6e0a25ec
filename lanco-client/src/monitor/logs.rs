//! The task's log files, in a directory all members of the namespace write
//! to (sticky, so each file is its writer's alone). A run writes its output
//! to a new file under an unpredictable temporary name, which replaces
//! `task-NAME.log` (the previous ones kept as `.1` … `.N`) only once the
//! payload has exec'd: a failed start leaves the old logs as they were and no
//! new one. With no `task-NAME.log` to replace, the new file has that name
//! from the start (removed if the start fails): one rename fewer on the way.
//! A running task's log is copied and truncated when it passes
//! `log_max_bytes`. Only this member's own files are renamed; a planted entry
//! is an error that names its owner.

use std::fs::File;
use std::path::{Path, PathBuf};

use lanco_proto::files::{self, Dir};

use crate::error::{Error, Result};

const MODE: u32 = 0o640;

pub(super) struct Log {
    dir: Dir,
    /// `task-NAME.log` (or the `-l` file's name).
    base: String,
    /// The file the task writes: the temporary name until `install`.
    current: String,
    installed: bool,
    keep: u32,
    pub file: File,
}

impl Log {
    /// Checks that the rotation can happen and opens the new log, under a
    /// temporary name if there is a log to replace: `unnamed`, if given,
    /// made ahead in the log's directory (`Dir::create_unnamed`), else a
    /// new file.
    pub fn create(path: &Path, keep: u32, unnamed: Option<File>) -> Result<Log> {
        let bad = || Error::InvalidInput(format!("bad log path {}", path.display()));
        let parent = path.parent().ok_or_else(bad)?;
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(bad)?
            .to_owned();
        let dir = Dir::open(parent)?;
        // Only a log to replace is rotated.
        let replaces = dir.own_or_absent(&base)?.is_some();
        if replaces {
            for n in 1..=keep {
                dir.own_or_absent(&nth(&base, n))?;
            }
        }
        let named = unnamed.and_then(|f| {
            if replaces {
                dir.link_temp(f, &base).ok()
            } else {
                dir.link_new(f, &base).ok().map(|f| (base.clone(), f))
            }
        });
        let (current, file) = match named {
            Some(named) => named,
            None if replaces => dir.create_temp(&base, MODE)?,
            None => (base.clone(), dir.create_new(&base, MODE)?),
        };
        // The task's output goes to the end, whatever a truncation did.
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND),
        )
        .map_err(|e| Error::system("log O_APPEND", e))?;
        Ok(Log {
            dir,
            base,
            current,
            installed: false,
            keep,
            file,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.current)
    }

    /// The path once installed.
    pub fn installed_path(&self) -> PathBuf {
        self.dir.join(&self.base)
    }

    /// The payload runs: the previous log becomes `.1` and the new one
    /// takes its name (which it has already if there was none).
    pub fn install(&mut self) -> Result<()> {
        self.installed = true;
        if self.current == self.base {
            return Ok(());
        }
        let old = self.dir.own_or_absent(&self.base)?;
        if old.is_some() {
            let empty = self
                .dir
                .open_read(&self.base, nix::unistd::geteuid().as_raw())?
                .and_then(|f| f.metadata().ok())
                .is_none_or(|m| m.len() == 0);
            if empty || self.keep == 0 {
                self.dir.remove(&self.base)?;
            } else {
                self.shift()?;
                self.dir.rename(&self.base, &nth(&self.base, 1))?;
            }
        }
        self.dir.rename(&self.current, &self.base)?;
        self.current = self.base.clone();
        Ok(())
    }

    /// `.N-1` → `.N` … `.1` → `.2`, the oldest dropped.
    fn shift(&self) -> Result<()> {
        for n in (1..self.keep).rev() {
            if self.dir.own_or_absent(&nth(&self.base, n))?.is_some() {
                self.dir
                    .rename(&nth(&self.base, n), &nth(&self.base, n + 1))?;
            }
        }
        Ok(())
    }

    /// copytruncate: the payload holds the log open with O_APPEND, so it
    /// keeps writing at the (new) end. Output written between the copy and
    /// the truncate is lost; the window is one copy of `max` bytes.
    pub fn rotate_if_larger(&self, max: u64) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::system("log size", e))?
            .len();
        if len < max || self.keep == 0 || !self.installed {
            return Ok(());
        }
        self.shift()?;
        let tmp = files::copy_to_temp(&self.file, &self.dir, &self.base, MODE)?;
        if let Err(e) = self.dir.rename(&tmp, &nth(&self.base, 1)) {
            let _ = self.dir.remove(&tmp);
            return Err(e.into());
        }
        self.file
            .set_len(0)
            .map_err(|e| Error::system("truncate log", e))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if !self.installed {
            let _ = self.dir.remove(&self.current);
        }
    }
}

fn nth(base: &str, n: u32) -> String {
    if n == 0 {
        base.to_owned()
    } else {
        format!("{base}.{n}")
    }
}
