//! The configuration as the serving lancod sees it: read at start, and read
//! again at the first request after the file changed, so an administrator's
//! edit (say, of `admin_group`) applies to the next request, however busy
//! the host is and without `systemctl reload`. Looking costs one stat(2) per
//! request. A changed file that cannot be used (a syntax error, an unknown
//! key, an `admin_group` that does not exist) is logged once and the previous
//! configuration stays in force: an edit never takes lancod down.
//!
//! What a request uses comes from `Context` (paths, `admin_group`,
//! `user_max_cgroups`); `socket` and `idle_timeout` belong to the serving
//! loop and apply when lancod next starts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lanco_proto::Config;
use tracing::{info, warn};

use crate::error::StartError;
use crate::request::Context;

/// What tells one version of the file from another without reading it:
/// an edit in place changes mtime, ctime or size, a replacing rename the
/// inode, a re-pointed symlink (stat follows it) the device or inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
}

/// `None`: no file there (or it cannot be looked at; reading it will say why).
fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        size: m.size(),
    })
}

struct Current {
    /// The file's stamp when it was last looked at (in force or not).
    seen: Option<Stamp>,
    ctx: Arc<Context>,
}

/// The configuration file and the context made from its last good version.
pub struct LiveContext {
    path: PathBuf,
    required: bool,
    current: Mutex<Current>,
}

impl LiveContext {
    /// Reads the configuration lancod was started with (`Config::source`);
    /// returns it too, for the settings of the serving loop. The file's
    /// stamp is taken before it is read, so an edit racing the start is
    /// seen at the first request.
    pub fn load() -> Result<(Self, Config), StartError> {
        let (path, required) = Config::source();
        let seen = stamp(&path);
        let cfg = Config::load_from(&path, required)?;
        let ctx = Context::from_config(&cfg)?;
        let live = LiveContext {
            path,
            required,
            current: Mutex::new(Current {
                seen,
                ctx: Arc::new(ctx),
            }),
        };
        Ok((live, cfg))
    }

    /// The context for the next request: re-read first if the file changed
    /// since it was last looked at.
    pub fn get(&self) -> Arc<Context> {
        let now = stamp(&self.path);
        // Poisoned only by a panic while held; what it guards stays whole.
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if now == cur.seen {
            return cur.ctx.clone();
        }
        cur.seen = now;
        match self.read() {
            Ok(ctx) => {
                info!(
                    "configuration {} changed: re-read; admin_group: {}",
                    self.path.display(),
                    match ctx.admin_gid {
                        Some(g) => format!("gid {g}"),
                        None => "none (root only)".into(),
                    }
                );
                cur.ctx = Arc::new(ctx);
            }
            Err(e) => warn!(
                "configuration {} changed but cannot be used, keeping the previous one: {e}",
                self.path.display()
            ),
        }
        cur.ctx.clone()
    }

    fn read(&self) -> Result<Context, StartError> {
        let cfg = Config::load_from(&self.path, self.required)?;
        Context::from_config(&cfg)
    }
}
