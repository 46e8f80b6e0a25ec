//! What a standby makes while it waits for its caller (spawner.rs), so that
//! the start it then serves allocates no inode on its way: a run otherwise
//! creates four files (the name's lock file on the name's first run, the
//! log, the control socket, the state file), each 50 to 130 µs on the
//! benchmark host's ext4. The files are made unnamed (O_TMPFILE) and given
//! their name at the start (linkat); the socket is bound under a temporary
//! name and renamed. A standby that dies leaves no unnamed file behind; the
//! next spawner removes its socket's temporary name ([`sweep`]). Each is
//! used only where the start would make it (the same directory, by path),
//! and the start makes whatever is not there, as a cold start does.
//! (Not the cgroup: cgroup2 does not rename, and its name is the task's.)

use std::fs::File;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use lanco_proto::files::{self, Dir};
use lanco_proto::layout;

use crate::control;

/// The temporary name of a prepared socket: `.standby.HEX`.
const PREFIX: &str = "standby";

/// Where a spawner's standbys prepare: the namespace's log directory and
/// the member's state directory (whose parent holds `names/`).
pub(super) struct Places {
    pub logs: PathBuf,
    pub state: PathBuf,
}

#[derive(Default)]
pub(super) struct Prepared {
    lock: Option<Unnamed>,
    log: Option<Unnamed>,
    state: Option<Unnamed>,
    socket: Option<Bound>,
}

struct Unnamed {
    dir: PathBuf,
    file: File,
}

/// A control socket bound under a temporary name, removed unless taken.
struct Bound {
    dir: Dir,
    name: String,
    listener: Option<UnixListener>,
}

impl Prepared {
    /// Makes what it can; what fails (a file system without O_TMPFILE, say)
    /// is made at the start instead.
    pub fn make(places: &Places) -> Prepared {
        let unnamed = |dir: &Path, mode: u32| {
            let file = Dir::open(dir).and_then(|d| d.create_unnamed(mode)).ok()?;
            Some(Unnamed {
                dir: dir.to_owned(),
                file,
            })
        };
        let names = places.state.parent().map(|ns| ns.join(layout::NAMES));
        Prepared {
            lock: names.and_then(|n| unnamed(&n, 0o640)),
            log: unnamed(&places.logs, 0o640),
            state: unnamed(&places.state, 0o640),
            socket: Dir::open(&places.state).ok().and_then(|dir| {
                let name = files::temp_names(PREFIX).next()?;
                let listener = control::bind(&dir, &name, 0o660).ok()?;
                Some(Bound {
                    dir,
                    name,
                    listener: Some(listener),
                })
            }),
        }
    }

    /// The unnamed file for the name's lock in `names`, if made there.
    pub fn lock_in(&mut self, names: &Path) -> Option<File> {
        take(&mut self.lock, names)
    }

    /// The unnamed file for the log in `dir`, if made there.
    pub fn log_in(&mut self, dir: &Path) -> Option<File> {
        take(&mut self.log, dir)
    }

    /// The unnamed file for the state file in `dir`, if made there.
    pub fn state_in(&mut self, dir: &Path) -> Option<File> {
        take(&mut self.state, dir)
    }

    /// The control socket, renamed `name` in `dir`, if it was bound there.
    pub fn socket_as(&mut self, dir: &Dir, name: &str) -> Option<UnixListener> {
        let mut b = self.socket.take_if(|b| b.dir.path() == dir.path())?;
        dir.rename_socket(&b.name, name).ok()?;
        b.listener.take()
    }
}

fn take(slot: &mut Option<Unnamed>, dir: &Path) -> Option<File> {
    slot.take_if(|u| u.dir == dir).map(|u| u.file)
}

impl Drop for Bound {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = self.dir.remove_socket(&self.name);
        }
    }
}

/// Removes the temporary names of sockets that standbys of an earlier
/// spawner bound and never used (a standby killed: the spawner's own
/// standbys are forked later). One still in use by a standby of a spawner
/// that just ended fails to be renamed at its start, which then binds its
/// socket itself.
pub(super) fn sweep(state: &Dir) {
    let prefix = format!(".{PREFIX}.");
    for name in state.list().unwrap_or_default() {
        if name.starts_with(&prefix) {
            let _ = state.remove_socket(&name);
        }
    }
}
