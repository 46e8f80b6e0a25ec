//! The one module that opens, creates, renames, copies and removes files in
//! lanco's state and log directories — directories that other users may be
//! able to write. Everything happens beneath an open directory fd: names are
//! single components resolved with openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), files are created with
//! O_EXCL | O_NOFOLLOW (temporary ones under unpredictable names), or made
//! unnamed (O_TMPFILE) and named with linkat, which fails as O_EXCL does;
//! every open is O_NONBLOCK (a FIFO never blocks us), and what was opened
//! is checked with fstat: a regular file, one link, the expected owner. An
//! entry someone else planted is an error that names its owner; it is never
//! followed, overwritten or removed.
//!
//! Nothing here decides who may do what: callers say whose file they expect.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot {op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// Something is there that lanco did not put there for this user.
    #[error("{path} is {what} belonging to {owner}, not a file of {expected}; lanco never follows, overwrites or removes it (ask its owner or an administrator to remove it)")]
    Planted {
        path: PathBuf,
        what: &'static str,
        owner: String,
        expected: String,
    },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
}

impl FileError {
    /// The I/O error kind, if this is an I/O error.
    pub fn io_kind(&self) -> Option<ErrorKind> {
        match self {
            FileError::Io { error, .. } => Some(error.kind()),
            _ => None,
        }
    }
}

pub type Result<T, E = FileError> = std::result::Result<T, E>;

/// A user's name for messages, or the number.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn kind_of(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG if st.st_nlink != 1 => "a hard link",
        SFlag::S_IFREG => "a file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        _ => "a device",
    }
}

/// Metadata of one directory entry, not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub kind: &'static str,
    /// Bytes (st_size).
    pub size: u64,
}

impl Entry {
    fn of(st: &FileStat) -> Self {
        Entry {
            ino: st.st_ino,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            kind: kind_of(st),
            size: u64::try_from(st.st_size).unwrap_or(0),
        }
    }
    pub fn is_file(&self) -> bool {
        self.kind == "a file"
    }
    pub fn is_dir(&self) -> bool {
        self.kind == "a directory"
    }
}

/// An open directory; every operation is relative to it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// One path component: no slash, not `.` or `..`, not empty.
fn check_name(dir: &Path, name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(FileError::Io {
            op: "use",
            path: dir.join(name),
            error: std::io::Error::new(ErrorKind::InvalidInput, "not a single file name"),
        });
    }
    Ok(())
}

impl Dir {
    /// Opens a directory named by the configuration (root's own paths, e.g.
    /// `/var/lib/lanco`): those may be symlinks an administrator made.
    pub fn open(path: &Path) -> Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open", path, e))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// Opens `rel` (one or more components, never `..`, no symlink) beneath
    /// this directory.
    pub fn sub(&self, rel: &str) -> Result<Dir> {
        let path = self.path.join(rel);
        if rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(io("open", &path, Errno::EINVAL));
        }
        let fd = nix::fcntl::openat2(
            self.fd.as_fd(),
            rel,
            OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .resolve(beneath()),
        )
        .map_err(|e| io("open", &path, e))?;
        Ok(Dir { fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Owner, group and mode of this directory.
    pub fn meta(&self) -> Result<Entry> {
        let st = nix::sys::stat::fstat(self.fd.as_fd()).map_err(|e| io("stat", &self.path, e))?;
        Ok(Entry::of(&st))
    }

    /// The entry `name`, not followed; `None` if there is none.
    pub fn entry(&self, name: &str) -> Result<Option<Entry>> {
        check_name(&self.path, name)?;
        match nix::sys::stat::fstatat(
            self.fd.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(Entry::of(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io("stat", &self.join(name), e)),
        }
    }

    /// Names in this directory (not `.`/`..`).
    pub fn list(&self) -> Result<Vec<String>> {
        let fd = nix::fcntl::openat(
            self.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("list", &self.path, e))?;
        let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| io("list", &self.path, e))?;
        let mut out = Vec::new();
        for e in d.iter() {
            let e = e.map_err(|e| io("list", &self.path, e))?;
            let name = e.file_name().to_string_lossy();
            if name != "." && name != ".." {
                out.push(name.into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn open_raw(&self, name: &str, flags: OFlag, mode: u32) -> Result<OwnedFd, Errno> {
        nix::fcntl::openat2(
            self.fd.as_fd(),
            name,
            OpenHow::new()
                .flags(
                    flags
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_NONBLOCK
                        | OFlag::O_NOCTTY
                        | OFlag::O_CLOEXEC,
                )
                .mode(Mode::from_bits_truncate(mode))
                .resolve(beneath()),
        )
    }

    /// The planted-entry error for `name`, as `st` describes it.
    fn planted(&self, name: &str, e: Entry, expected: u32) -> FileError {
        FileError::Planted {
            path: self.join(name),
            what: e.kind,
            owner: user_name(e.uid),
            expected: user_name(expected),
        }
    }

    /// Checks an opened file: regular, one link, owned by `owner`. A
    /// reader (`removed_ok`) also takes a file with no link left: its owner
    /// removed it, or replaced it by a rename, between the open and this
    /// check (a monitor does both to its state file as its run ends), and
    /// what is read is the file as it was when opened, as if read a moment
    /// earlier. A planted hard link has two links or more.
    fn check_opened(&self, name: &str, fd: &OwnedFd, owner: u32, removed_ok: bool) -> Result<()> {
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| io("stat", &self.join(name), e))?;
        let e = Entry::of(&st);
        let removed = removed_ok
            && st.st_nlink == 0
            && SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
        if !(e.is_file() || removed) || e.uid != owner {
            return Err(self.planted(name, e, owner));
        }
        Ok(())
    }

    /// Refuses whatever is at `name` unless it is a file of `owner`: for
    /// errors that should name an intruder rather than the kernel's EEXIST,
    /// ELOOP or ENXIO.
    fn explain(&self, name: &str, owner: u32, op: &'static str, e: Errno) -> FileError {
        match self.entry(name) {
            Ok(Some(ent)) if !(ent.is_file() && ent.uid == owner) => self.planted(name, ent, owner),
            _ => io(op, &self.join(name), e),
        }
    }

    /// Opens `name` for reading if it is a regular file of `owner`; `None`
    /// if there is no such entry.
    pub fn open_read(&self, name: &str, owner: u32) -> Result<Option<File>> {
        let Some(fd) = self.open_checked(name, owner)? else {
            return Ok(None);
        };
        clear_nonblock(&fd, &self.join(name))?;
        Ok(Some(File::from(fd)))
    }

    /// Opened (non-blocking, which a regular file ignores) and checked to be
    /// a regular file of `owner`.
    fn open_checked(&self, name: &str, owner: u32) -> Result<Option<OwnedFd>> {
        check_name(&self.path, name)?;
        let fd = match self.open_raw(name, OFlag::O_RDONLY, 0) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.explain(name, owner, "open", e)),
        };
        self.check_opened(name, &fd, owner, true)?;
        Ok(Some(fd))
    }

    /// Reads a whole file of `owner`, at most `max` bytes. (Read to its
    /// end at once, the file needs no blocking mode: `lanco ls` reads a
    /// thousand state files.)
    pub fn read(&self, name: &str, owner: u32, max: u64) -> Result<Option<Vec<u8>>> {
        let Some(f) = self.open_checked(name, owner)?.map(File::from) else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        f.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| io("read", &self.join(name), e))?;
        if buf.len() as u64 > max {
            return Err(FileError::TooLarge {
                path: self.join(name),
                max,
            });
        }
        Ok(Some(buf))
    }

    /// Creates `name`, which must not exist (O_EXCL: never an existing
    /// entry, never through a symlink).
    pub fn create_new(&self, name: &str, mode: u32) -> Result<File> {
        check_name(&self.path, name)?;
        let me = Uid::effective().as_raw();
        let fd = self
            .open_raw(name, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL, mode)
            .map_err(|e| self.explain(name, me, "create", e))?;
        fchmod(&fd, mode, &self.join(name))?;
        clear_nonblock(&fd, &self.join(name))?;
        Ok(File::from(fd))
    }

    /// Creates a file under an unpredictable name starting with `.prefix`;
    /// returns the name and the file.
    pub fn create_temp(&self, prefix: &str, mode: u32) -> Result<(String, File)> {
        self.temp_name(prefix, |name| self.create_new(name, mode))
    }

    /// Creates a file of this user with no name in this directory
    /// (O_TMPFILE): made ahead of the moment it is needed, it leaves
    /// nothing behind if that moment never comes. [`Dir::link_new`] names it.
    pub fn create_unnamed(&self, mode: u32) -> Result<File> {
        let fd = nix::fcntl::openat(
            self.fd.as_fd(),
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| io("create an unnamed file in", &self.path, e))?;
        fchmod(&fd, mode, &self.path)?;
        Ok(File::from(fd))
    }

    /// Names `file`, made by [`Dir::create_unnamed`] in this directory,
    /// `name`, which must not exist (as `create_new`, but no inode is made
    /// on the way), and returns it opened by that name: an fd of the
    /// unnamed file would read `DIR/#INODE (deleted)` in /proc/PID/fd (and
    /// lsof) for as long as it is open, as if the file were gone.
    pub fn link_new(&self, file: File, name: &str) -> Result<File> {
        self.link(&file, name)?;
        self.reopen(name, &file)
    }

    /// [`Dir::link_new`] under an unpredictable name starting with
    /// `.prefix`; returns the name and the file.
    pub fn link_temp(&self, file: File, prefix: &str) -> Result<(String, File)> {
        let (name, ()) = self.temp_name(prefix, |name| self.link(&file, name))?;
        let file = self.reopen(&name, &file)?;
        Ok((name, file))
    }

    /// linkat through /proc/self/fd: with `AT_EMPTY_PATH` it needs a
    /// capability before Linux 6.10.
    fn link(&self, file: &File, name: &str) -> Result<()> {
        use std::os::fd::AsRawFd;
        check_name(&self.path, name)?;
        let me = Uid::effective().as_raw();
        nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
            self.fd.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
        .map_err(|e| self.explain(name, me, "create", e))
    }

    /// Opens `name`, just linked to `file`, checked to be that file.
    fn reopen(&self, name: &str, file: &File) -> Result<File> {
        let me = Uid::effective().as_raw();
        let same = |fd: &OwnedFd| {
            let a = nix::sys::stat::fstat(fd.as_fd()).ok()?;
            let b = nix::sys::stat::fstat(file.as_fd()).ok()?;
            ((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)).then_some(())
        };
        let fd = self
            .open_raw(name, OFlag::O_RDWR, 0)
            .map_err(|e| self.explain(name, me, "open", e))?;
        self.check_opened(name, &fd, me, false)?;
        same(&fd).ok_or_else(|| io("open", &self.join(name), Errno::ESTALE))?;
        clear_nonblock(&fd, &self.join(name))?;
        Ok(File::from(fd))
    }

    /// Tries `make` on unpredictable names starting with `.prefix` until
    /// one is free.
    fn temp_name<T>(&self, prefix: &str, make: impl Fn(&str) -> Result<T>) -> Result<(String, T)> {
        let mut last = Errno::EEXIST;
        for name in temp_names(prefix) {
            match make(&name) {
                Ok(t) => return Ok((name, t)),
                Err(FileError::Io { error, .. }) if error.kind() == ErrorKind::AlreadyExists => {
                    last = Errno::EEXIST
                }
                Err(FileError::Planted { .. }) => last = Errno::EEXIST,
                Err(e) => return Err(e),
            }
        }
        Err(io("create", &self.join(prefix), last))
    }

    /// Opens this user's `name` for appending, creating it if missing. An
    /// existing entry must be a regular file of this user with one link; it
    /// is then set to `mode` (a file from an older lanco may be
    /// group-writable).
    pub fn open_append(&self, name: &str, mode: u32) -> Result<File> {
        check_name(&self.path, name)?;
        let me = Uid::effective().as_raw();
        let append = OFlag::O_RDWR | OFlag::O_APPEND;
        // Two appenders may both find it missing; the one whose create
        // loses opens what the other made, at the next turn.
        for _ in 0..3 {
            let fd = match self.open_raw(name, append, 0) {
                Ok(fd) => {
                    self.check_opened(name, &fd, me, false)?;
                    fd
                }
                Err(Errno::ENOENT) => {
                    match self.open_raw(name, append | OFlag::O_CREAT | OFlag::O_EXCL, mode) {
                        Ok(fd) => fd,
                        Err(Errno::EEXIST) => continue,
                        Err(e) => return Err(self.explain(name, me, "create", e)),
                    }
                }
                Err(e) => return Err(self.explain(name, me, "open", e)),
            };
            fchmod(&fd, mode, &self.join(name))?;
            clear_nonblock(&fd, &self.join(name))?;
            return Ok(File::from(fd));
        }
        Err(self.explain(name, me, "create", Errno::EEXIST))
    }

    /// Replaces `name` (absent, or a file of this user) with `bytes`,
    /// atomically: a temporary file, then rename.
    pub fn replace(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        self.replace_via(name, || {
            let (tmp, mut f) = self.create_temp(name, mode)?;
            f.write_all(bytes).map_err(|e| {
                let _ = self.remove(&tmp);
                io("write", &self.join(&tmp), e)
            })?;
            Ok(tmp)
        })
    }

    /// [`Dir::replace`] with `unnamed`, made by [`Dir::create_unnamed`] in
    /// this directory: no inode is made on the way. Written first, it takes
    /// the name at once if there is none (a link: never seen part-written),
    /// else through a temporary name.
    pub fn replace_unnamed(&self, name: &str, bytes: &[u8], mut unnamed: File) -> Result<()> {
        unnamed
            .write_all(bytes)
            .map_err(|e| io("write", &self.join(name), e))?;
        match self.link(&unnamed, name) {
            Err(e) if e.io_kind() == Some(ErrorKind::AlreadyExists) => self
                .replace_via(name, || {
                    Ok(self.temp_name(name, |n| self.link(&unnamed, n))?.0)
                }),
            r => r,
        }
    }

    /// Renames the temporary file `temp` makes, written, over `name`.
    fn replace_via(&self, name: &str, temp: impl FnOnce() -> Result<String>) -> Result<()> {
        self.own_or_absent(name)?;
        let tmp = temp()?;
        let r = self.rename(&tmp, name);
        if r.is_err() {
            let _ = self.remove(&tmp);
        }
        r
    }

    /// Fails unless `name` is absent or a regular file of this user.
    pub fn own_or_absent(&self, name: &str) -> Result<Option<Entry>> {
        let me = Uid::effective().as_raw();
        match self.entry(name)? {
            Some(e) if !(e.is_file() && e.uid == me) => Err(self.planted(name, e, me)),
            e => Ok(e),
        }
    }

    /// Renames this user's file `from` to `to`, replacing `to` only if it
    /// is this user's file too. In a sticky directory the kernel refuses to
    /// replace another user's entry in any case; the check is for the
    /// message, and for directories only this user can write.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        if self.own_or_absent(from)?.is_none() {
            return Err(io("rename", &self.join(from), Errno::ENOENT));
        }
        let flags = match self.own_or_absent(to)? {
            Some(_) => RenameFlags::empty(),
            None => RenameFlags::RENAME_NOREPLACE,
        };
        nix::fcntl::renameat2(self.fd.as_fd(), from, self.fd.as_fd(), to, flags).map_err(|e| {
            let me = Uid::effective().as_raw();
            self.explain(to, me, "rename", e)
        })
    }

    /// Removes this user's file `name`; nothing if it is absent. Anything
    /// else there is an error naming its owner.
    pub fn remove(&self, name: &str) -> Result<()> {
        if self.own_or_absent(name)?.is_none() {
            return Ok(());
        }
        match nix::unistd::unlinkat(
            self.fd.as_fd(),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io("remove", &self.join(name), e)),
        }
    }

    /// Removes a socket this user bound at `name`, if it is there.
    pub fn remove_socket(&self, name: &str) -> Result<()> {
        let me = Uid::effective().as_raw();
        match self.entry(name)? {
            None => Ok(()),
            Some(e) if e.kind == "a socket" && e.uid == me => nix::unistd::unlinkat(
                self.fd.as_fd(),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .or_else(|e| if e == Errno::ENOENT { Ok(()) } else { Err(e) })
            .map_err(|e| io("remove", &self.join(name), e)),
            Some(e) => Err(self.planted(name, e, me)),
        }
    }

    /// Renames this user's socket `from` to `to`, which must not exist
    /// but for a socket of this user (a dead monitor's, removed first).
    pub fn rename_socket(&self, from: &str, to: &str) -> Result<()> {
        self.remove_socket(to)?;
        self.move_to(from, self, to)
    }

    /// An O_PATH fd on the socket `name`, checked to be a socket of `owner`:
    /// connect through `/proc/self/fd/N` so that the path walk is this one,
    /// not a second one a planted symlink could redirect.
    pub fn open_socket(&self, name: &str, owner: u32) -> Result<Option<OwnedFd>> {
        check_name(&self.path, name)?;
        let fd = match nix::fcntl::openat2(
            self.fd.as_fd(),
            name,
            OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .resolve(beneath()),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(io("open", &self.join(name), e)),
        };
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| io("stat", &self.join(name), e))?;
        let e = Entry::of(&st);
        if e.kind != "a socket" || e.uid != owner {
            return Err(self.planted(name, e, owner));
        }
        Ok(Some(fd))
    }

    /// Makes the directory `name` if missing; returns whether it made it.
    pub fn mkdir(&self, name: &str, mode: u32) -> Result<bool> {
        check_name(&self.path, name)?;
        match nix::sys::stat::mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(io("create", &self.join(name), e)),
        }
    }

    /// Removes the empty directory `name`.
    pub fn rmdir(&self, name: &str) -> Result<()> {
        check_name(&self.path, name)?;
        nix::unistd::unlinkat(self.fd.as_fd(), name, nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(|e| io("remove", &self.join(name), e))
    }

    /// Removes the entry `name`, whatever it is and whoever owns it, and
    /// for a directory everything beneath it, never following a symbolic
    /// link (a link is removed, not its target). For root in directories
    /// only root can reach (the kept records of destroyed namespaces): it
    /// removes other users' files, which is why nothing else may use it. A
    /// tree deeper than `max_depth` directories is an error, removed in
    /// part: one level holds one fd and one stack frame.
    pub fn remove_tree(&self, name: &str, max_depth: usize) -> Result<()> {
        let Some(e) = self.entry(name)? else {
            return Ok(());
        };
        if !e.is_dir() {
            return match nix::unistd::unlinkat(
                self.fd.as_fd(),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(io("remove", &self.join(name), e)),
            };
        }
        if max_depth == 0 {
            return Err(io("remove", &self.join(name), Errno::ELOOP));
        }
        // Opened without following: a directory swapped for a link since
        // the stat is an error here, never a walk elsewhere.
        let d = self.sub(name)?;
        for child in d.list()? {
            d.remove_tree(&child, max_depth - 1)?;
        }
        self.rmdir(name)
    }

    /// Sets this directory's owner, group and mode (root, on directories it
    /// made or that only root can write to).
    pub fn set_owner(&self, uid: u32, gid: u32, mode: u32) -> Result<()> {
        nix::unistd::fchown(
            self.fd.as_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .map_err(|e| io("chown", &self.path, e))?;
        fchmod(&self.fd, mode, &self.path)
    }

    /// Moves the entry `from` of this directory to `to` in `dest`, which
    /// must not exist.
    pub fn move_to(&self, from: &str, dest: &Dir, to: &str) -> Result<()> {
        check_name(&self.path, from)?;
        check_name(&dest.path, to)?;
        nix::fcntl::renameat2(
            self.fd.as_fd(),
            from,
            dest.fd.as_fd(),
            to,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| io("move", &self.join(from), e))
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sixteen unpredictable names starting with `.prefix.`, to try in turn.
pub fn temp_names(prefix: &str) -> impl Iterator<Item = String> + '_ {
    let state = RandomState::new();
    (0..16u32).map(move |i| {
        let mut h = state.build_hasher();
        h.write_u32(i);
        h.write_u32(std::process::id());
        format!(".{prefix}.{:016x}", h.finish())
    })
}

/// Copies everything from `src` (from its start) into a new temporary file
/// of this user in `dir`, fd to fd; returns its name.
pub fn copy_to_temp(src: &File, dir: &Dir, prefix: &str, mode: u32) -> Result<String> {
    use std::os::unix::fs::FileExt;
    let (name, mut out) = dir.create_temp(prefix, mode)?;
    let name = name.as_str();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = src
            .read_at(&mut buf, pos)
            .map_err(|e| io("read", &dir.join(name), e))?;
        if n == 0 {
            return Ok(name.to_owned());
        }
        out.write_all(&buf[..n])
            .map_err(|e| io("write", &dir.join(name), e))?;
        pos += n as u64;
    }
}

fn fchmod(fd: &OwnedFd, mode: u32, path: &Path) -> Result<()> {
    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| io("chmod", path, e))
}

fn clear_nonblock(fd: &OwnedFd, path: &Path) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg};
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| io("fcntl", path, e))?;
    let fl = OFlag::from_bits_truncate(fl) & !OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(fl)).map_err(|e| io("fcntl", path, e))?;
    Ok(())
}

fn io(op: &'static str, path: &Path, e: impl Into<std::io::Error>) -> FileError {
    FileError::Io {
        op,
        path: path.to_owned(),
        error: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("lanco-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn refuses_symlinks_fifos_and_hard_links() {
        let p = tmpdir("planted");
        let d = Dir::open(&p).unwrap();
        std::fs::write(p.join("target"), "secret").unwrap();
        std::os::unix::fs::symlink(p.join("target"), p.join("link")).unwrap();
        nix::unistd::mkfifo(&p.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::hard_link(p.join("target"), p.join("hard")).unwrap();
        let me = Uid::effective().as_raw();
        for name in ["link", "fifo", "hard"] {
            let e = d.open_read(name, me).unwrap_err();
            assert!(matches!(e, FileError::Planted { .. }), "{name}: {e}");
            assert!(matches!(
                d.open_append(name, 0o640),
                Err(FileError::Planted { .. })
            ));
            assert!(matches!(
                d.replace(name, b"x", 0o640),
                Err(FileError::Planted { .. })
            ));
            assert!(matches!(d.remove(name), Err(FileError::Planted { .. })));
        }
        // Nothing reached the target through them.
        assert_eq!(std::fs::read_to_string(p.join("target")).unwrap(), "secret");
        assert!(p.join("link").exists() && p.join("fifo").exists());
        assert!(d.sub("link").is_err(), "a symlink is no directory to enter");
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn a_reader_takes_a_file_removed_or_replaced_after_it_was_opened() {
        let p = tmpdir("removed");
        let d = Dir::open(&p).unwrap();
        let me = Uid::effective().as_raw();
        // What open_read does, with the owner's removal and replacement
        // between its open and its check.
        let opened = |name: &str| d.open_raw(name, OFlag::O_RDONLY, 0).unwrap();
        d.replace("state.json", b"run 1", 0o640).unwrap();
        let fd = opened("state.json");
        d.remove("state.json").unwrap();
        d.check_opened("state.json", &fd, me, true).unwrap();
        let mut old = String::new();
        File::from(fd).read_to_string(&mut old).unwrap();
        assert_eq!(old, "run 1");
        d.replace("exit.json", b"run 1", 0o640).unwrap();
        let fd = opened("exit.json");
        d.replace("exit.json", b"run 2", 0o640).unwrap();
        d.check_opened("exit.json", &fd, me, true).unwrap();
        // A writer never takes it: what it would write would be lost.
        assert!(matches!(
            d.check_opened("exit.json", &fd, me, false),
            Err(FileError::Planted { .. })
        ));
        // A planted hard link is still one, for a reader too.
        std::fs::hard_link(p.join("exit.json"), p.join("hard")).unwrap();
        let fd = opened("hard");
        assert!(matches!(
            d.check_opened("hard", &fd, me, true),
            Err(FileError::Planted { .. })
        ));
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn unnamed_files_are_named_only_where_nothing_is() {
        let p = tmpdir("unnamed");
        let d = Dir::open(&p).unwrap();
        let unnamed = || d.create_unnamed(0o640).unwrap();
        let f = unnamed();
        assert!(d.list().unwrap().is_empty(), "no name until linked");
        std::fs::write(p.join("taken"), "x").unwrap();
        let e = d.link_new(unnamed(), "taken").unwrap_err();
        assert_eq!(e.io_kind(), Some(ErrorKind::AlreadyExists), "{e}");
        std::os::unix::fs::symlink("/etc/passwd", p.join("link")).unwrap();
        assert!(matches!(
            d.link_new(unnamed(), "link"),
            Err(FileError::Planted { .. })
        ));
        assert!(d.link_new(unnamed(), "../escape").is_err());
        let mut named = d.link_new(f, "lock").unwrap();
        named.write_all(b"held").unwrap();
        assert_eq!(std::fs::read(p.join("lock")).unwrap(), b"held");
        let meta = std::fs::metadata(p.join("lock")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        // Opened by its name: /proc shows where it is.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&named);
        let shown = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(shown, p.join("lock"));
        let (tmp, _) = d.link_temp(unnamed(), "a.log").unwrap();
        assert!(tmp.starts_with(".a.log."), "{tmp}");
        d.replace_unnamed("s.json", b"one", unnamed()).unwrap();
        assert_eq!(std::fs::read(p.join("s.json")).unwrap(), b"one");
        d.replace_unnamed("s.json", b"two", unnamed()).unwrap();
        assert_eq!(std::fs::read(p.join("s.json")).unwrap(), b"two");
        let mut names = d.list().unwrap();
        names.retain(|n| n.starts_with(".s.json."));
        assert!(names.is_empty(), "the temporary name is gone: {names:?}");
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn replace_rename_append_and_copy() {
        let p = tmpdir("ops");
        let d = Dir::open(&p).unwrap();
        d.replace("a.json", b"one", 0o640).unwrap();
        d.replace("a.json", b"two", 0o640).unwrap();
        assert_eq!(std::fs::read(p.join("a.json")).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(p.join("a.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        let me = Uid::effective().as_raw();
        assert_eq!(d.read("a.json", me, 3).unwrap().unwrap(), b"two");
        assert!(matches!(
            d.read("a.json", me, 2),
            Err(FileError::TooLarge { .. })
        ));
        assert_eq!(d.read("missing", me, 9).unwrap(), None);
        let mut f = d.open_append("log", 0o640).unwrap();
        f.write_all(b"x\n").unwrap();
        let mut f = d.open_append("log", 0o640).unwrap();
        f.write_all(b"y\n").unwrap();
        let tmp = copy_to_temp(&f, &d, "log", 0o640).unwrap();
        d.rename(&tmp, "log.1").unwrap();
        assert_eq!(std::fs::read(p.join("log.1")).unwrap(), b"x\ny\n");
        assert!(d.create_new("log.1", 0o640).is_err());
        d.rename("log.1", "log.2").unwrap();
        d.rename("log", "log.2").unwrap();
        assert!(!p.join("log").exists());
        d.remove("log.2").unwrap();
        d.remove("log.2").unwrap();
        let names: Vec<String> = d.list().unwrap();
        assert_eq!(names, vec!["a.json".to_string()], "no temporary file left");
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn appenders_that_all_find_the_file_missing_all_open_it() {
        let p = tmpdir("append-race");
        let rounds = 200;
        let go = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (p, go) = (p.clone(), go.clone());
                std::thread::spawn(move || {
                    let d = Dir::open(&p).unwrap();
                    // Errors are counted, not unwrapped: a thread that
                    // panicked would leave the others at the barrier.
                    let mut failed = Vec::new();
                    for r in 0..rounds {
                        go.wait();
                        let name = format!("r{r}");
                        match d.open_append(&name, 0o600) {
                            Ok(mut f) => f.write_all(b"x").unwrap(),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    failed
                })
            })
            .collect();
        for t in threads {
            let failed = t.join().unwrap();
            assert!(
                failed.is_empty(),
                "{} failed: {:?}",
                failed.len(),
                failed[0]
            );
        }
        for r in 0..rounds {
            assert_eq!(std::fs::read(p.join(format!("r{r}"))).unwrap(), b"xxxxxxxx");
        }
        std::fs::remove_dir_all(&p).unwrap();
    }
}
