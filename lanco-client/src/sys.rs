//! The raw system calls the client needs and nix does not wrap: clone3 with
//! CLONE_INTO_CGROUP, fork for the monitor's detach, the monitor's clean
//! start (signal dispositions, inherited fds), and local time for messages.
//! Each unsafe block says why it is sound.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

/// `struct clone_args` (linux/sched.h), the CLONE_ARGS_SIZE_VER2 layout.
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3(2) without CLONE_VM: returns twice, like fork (0 in the child).
///
/// # Safety
/// The process must be single-threaded: the child gets a copy of this
/// address space, with locks other threads held and no threads to free them.
unsafe fn clone3(args: &CloneArgs) -> Result<libc::c_long, Errno> {
    // SAFETY: `args` is a valid clone_args of the size passed.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })
}

/// The byte a child writes to [`ExecPlan::report`] first.
pub const ALIVE: u8 = b'+';

/// The step of the child's set-up that failed: the byte written to
/// [`ExecPlan::report`] before the errno, so "cannot change directory" is
/// told apart from "cannot execute".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// dup2 of stdin, stdout or stderr.
    Stdio = b's',
    /// chdir to the task's working directory.
    Cwd = b'd',
    /// execve of the program.
    Exec = b'x',
}

impl Stage {
    pub fn from_byte(b: u8) -> Option<Stage> {
        [Stage::Stdio, Stage::Cwd, Stage::Exec]
            .into_iter()
            .find(|s| *s as u8 == b)
    }
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What the child does between clone3 and execve.
pub struct ExecPlan<'a> {
    pub path: &'a CString,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub cwd: &'a CString,
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    /// Receives [`ALIVE`] as the child's first act, then, if a step fails,
    /// its [`Stage`] byte and the errno (4 bytes, native endian) in one
    /// write; close-on-exec, so a successful exec closes it after the one
    /// byte. A child killed before it
    /// ran (e.g. by the kernel, as it was born into a cgroup being killed)
    /// closes it with nothing written.
    pub report: BorrowedFd<'a>,
    /// An fd the payload gets at a number of its choosing (its readiness
    /// fd, `ready = "fd:N"`): (the fd, N), N ≥ 3.
    pub pass: Option<(BorrowedFd<'a>, RawFd)>,
}

/// A child started by [`spawn_into_cgroup`], and what it may still use
/// until it has exec'd or exited: keep this until the report pipe is at
/// its end.
pub struct Child {
    pub pid: i32,
    _argv: Vec<*const libc::c_char>,
    _envp: Vec<*const libc::c_char>,
    /// What the shared-memory child starts from, and its stack.
    #[cfg(target_arch = "x86_64")]
    _shared: (Box<ChildStart>, ChildStack),
}

/// Starts `plan` as a child born inside the cgroup open at `cgroup`, so it
/// never runs a single instruction outside it.
///
/// On x86_64 the child shares this process's memory (CLONE_VM, as
/// posix_spawn's child does) and runs on a stack of its own: nothing is
/// copied, neither the page tables at the clone nor, afterwards, the pages
/// either process writes (measured: `Namespace::run` 1.89 -> 1.75 ms
/// median). Unlike posix_spawn, the parent is not suspended (no
/// CLONE_VFORK) and goes on while the child execs: it writes the state
/// file meanwhile, and thaws the cgroup should a `stop` freeze the child
/// before its exec (a vfork parent would wait for it, frozen, for good).
/// The child therefore makes raw system calls only, whose errors come back
/// as values: errno lives in memory the two share. Elsewhere, a plain
/// clone3 (a copy, as fork).
///
/// # Safety
/// The process must be single-threaded (the monitor is): the child runs
/// only async-signal-safe calls before execve, and must not meet a lock
/// another thread held. `plan` and what it points to must stay untouched
/// while the returned [`Child`] is kept.
pub unsafe fn spawn_into_cgroup(
    cgroup: BorrowedFd<'_>,
    plan: &ExecPlan<'_>,
) -> Result<Child, Errno> {
    let argv: Vec<*const libc::c_char> = plan
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = plan
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    #[cfg(target_arch = "x86_64")]
    {
        let stack = ChildStack::new()?;
        args.flags |= libc::CLONE_VM as u64;
        args.stack = stack.base as u64;
        args.stack_size = ChildStack::SIZE as u64;
        // On the heap, kept in the Child returned: the child may read it
        // after this function has returned.
        let start = Box::new(ChildStart {
            plan: (plan as *const ExecPlan<'_>).cast(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
        });
        // SAFETY: the child runs child_entry(start) on its own stack and
        // only reads `start`, `plan`, argv and envp, which are kept (in the
        // Child, or by the caller) until the child has exec'd or exited.
        let pid = unsafe { clone3_shared(&args, &start) }? as i32;
        Ok(Child {
            pid,
            _argv: argv,
            _envp: envp,
            _shared: (start, stack),
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: the caller guarantees a single thread.
        let r = unsafe { clone3(&args) }?;
        if r == 0 {
            // Child. Only raw async-signal-safe calls from here to execve/_exit.
            // SAFETY: every pointer is into memory prepared before the clone and
            // still valid in the child's copy; argv/envp are NULL-terminated.
            unsafe {
                child_setup_and_exec(plan, argv.as_ptr(), envp.as_ptr());
            }
        }
        Ok(Child {
            pid: r as i32,
            _argv: argv,
            _envp: envp,
        })
    }
}

/// What the child of `clone3_shared` starts with: an ExecPlan and its
/// NULL-terminated argv and envp.
#[cfg(target_arch = "x86_64")]
struct ChildStart {
    plan: *const (),
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
}

/// The child's stack, with an inaccessible guard page below it.
#[cfg(target_arch = "x86_64")]
struct ChildStack {
    map: *mut libc::c_void,
    base: *mut libc::c_void,
}

#[cfg(target_arch = "x86_64")]
impl ChildStack {
    /// Plenty: the child's deepest call is a libc-free system call.
    const SIZE: usize = 64 << 10;
    const GUARD: usize = 4096;

    fn new() -> Result<ChildStack, Errno> {
        // SAFETY: a fresh anonymous mapping, this struct's alone.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                Self::SIZE + Self::GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if map == libc::MAP_FAILED {
                return Err(Errno::last());
            }
            let stack = ChildStack {
                map,
                base: map.cast::<u8>().add(Self::GUARD).cast(),
            };
            Errno::result(libc::mprotect(map, Self::GUARD, libc::PROT_NONE))?;
            Ok(stack)
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), no longer used: its child has
        // exec'd or exited (the Child holding it was kept until then).
        unsafe { libc::munmap(self.map, Self::SIZE + Self::GUARD) };
    }
}

/// clone3 with CLONE_VM and a stack (`args` has them): the child shares
/// this memory and runs `child_entry(start)` on that stack, while this
/// thread returns with its pid.
///
/// # Safety
/// `args` must carry CLONE_VM and a valid stack, `start` valid pointers
/// that outlive the child's exec or exit.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_shared(args: &CloneArgs, start: &ChildStart) -> Result<libc::c_long, Errno> {
    let ret: libc::c_long;
    // SAFETY: in the parent a plain system call (clobbering rcx and r11).
    // The child starts on its new stack, whose top is page-aligned, so the
    // call below enters child_entry with the ABI's alignment; it never
    // returns, and the child never runs the code after the asm.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") start as *const ChildStart,
            in("r13") child_entry as unsafe extern "C" fn(*const ChildStart) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    Errno::result(ret)
}

/// The shared-memory child's first function, on its own stack.
///
/// # Safety
/// Only as clone3_shared's child, with its `start`.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn child_entry(start: *const ChildStart) -> ! {
    // SAFETY: clone3_shared passes a valid ChildStart whose plan is an
    // ExecPlan, all kept by the parent.
    unsafe {
        let s = &*start;
        child_setup_and_exec(&*s.plan.cast::<ExecPlan<'_>>(), s.argv, s.envp)
    }
}

/// A system call of up to four arguments whose error comes back as its
/// value (the errno), never through errno, which the child of a CLONE_VM
/// clone shares with its parent.
///
/// # Safety
/// As the system call `nr` with these arguments.
#[cfg(target_arch = "x86_64")]
unsafe fn raw(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> Result<usize, i32> {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the kernel clobbers rcx and
    // r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

/// Where the child is a copy (no shared errno), libc's generic wrapper.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> Result<usize, i32> {
    // SAFETY: the caller vouches for the call.
    let r = unsafe { libc::syscall(nr, a, b, c, d) };
    if r < 0 {
        Err(Errno::last_raw())
    } else {
        Ok(r as usize)
    }
}

/// # Safety
/// Only in the child of `spawn_into_cgroup`, with NULL-terminated argv/envp.
unsafe fn child_setup_and_exec(
    plan: &ExecPlan<'_>,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> ! {
    use libc::{
        SYS_chdir, SYS_close_range, SYS_dup3, SYS_execve, SYS_fcntl, SYS_rt_sigaction,
        SYS_rt_sigprocmask, SYS_setsid, SYS_write,
    };
    // SAFETY: raw system calls on fds and NUL-terminated strings the caller
    // prepared; nothing here allocates, takes a lock or touches errno.
    unsafe {
        let fail = |report: RawFd, stage: Stage, e: i32| -> ! {
            let mut msg = [stage as u8; 5];
            msg[1..].copy_from_slice(&e.to_ne_bytes());
            let _ = raw(
                SYS_write,
                report as usize,
                msg.as_ptr() as usize,
                msg.len(),
                0,
            );
            libc::_exit(127)
        };
        // dup2's effect (onto itself: clear close-on-exec) by dup3, which
        // every architecture has.
        let dup_to = |from: RawFd, to: RawFd| {
            if from == to {
                raw(SYS_fcntl, to as usize, libc::F_SETFD as usize, 0, 0)
            } else {
                raw(SYS_dup3, from as usize, to as usize, 0, 0)
            }
        };
        let report = plan.report.as_raw_fd();
        let _ = raw(
            SYS_write,
            report as usize,
            (&ALIVE as *const u8) as usize,
            1,
            0,
        );
        // The monitor started from the defaults (reset_signals), then
        // ignored SIGPIPE and SIGHUP and blocked SIGCHLD and SIGTERM; SIG_IGN
        // and the mask survive execve, so give the payload the defaults. A
        // zeroed kernel sigaction is SIG_DFL; the kernel's sigset is 8 bytes.
        let dfl = [0u64; 4];
        let empty = 0u64;
        for sig in [
            libc::SIGPIPE,
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGCHLD,
        ] {
            let _ = raw(SYS_rt_sigaction, sig as usize, dfl.as_ptr() as usize, 0, 8);
        }
        let _ = raw(
            SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            &empty as *const u64 as usize,
            0,
            8,
        );
        // A session (and so a process group and, where the kernel groups
        // by session, a scheduling autogroup) of its own: a fork bomb in the
        // task then competes with its monitor as one group, not as a
        // thousand processes against one, and nothing signalling the
        // monitor's process group reaches the task. Cannot fail: the child
        // leads no group yet.
        let _ = raw(SYS_setsid, 0, 0, 0, 0);
        for (from, to) in [
            (plan.stdin.as_raw_fd(), 0),
            (plan.stdout.as_raw_fd(), 1),
            (plan.stdout.as_raw_fd(), 2),
        ] {
            if let Err(e) = dup_to(from, to) {
                fail(report, Stage::Stdio, e);
            }
        }
        // Only 0, 1 and 2 cross execve, even if some fd of the monitor's
        // lacks close-on-exec (Linux 5.11; before, they all have it).
        let _ = raw(
            SYS_close_range,
            3,
            libc::c_uint::MAX as usize,
            libc::CLOSE_RANGE_CLOEXEC as usize,
            0,
        );
        let mut report = report;
        if let Some((fd, at)) = plan.pass {
            // The report fd must outlive the dup onto `at`.
            if report == at {
                match raw(
                    SYS_fcntl,
                    report as usize,
                    libc::F_DUPFD_CLOEXEC as usize,
                    (at + 1) as usize,
                    0,
                ) {
                    Ok(r) => report = r as RawFd,
                    Err(e) => fail(at, Stage::Stdio, e),
                }
            }
            if let Err(e) = dup_to(fd.as_raw_fd(), at) {
                fail(report, Stage::Stdio, e);
            }
        }
        if let Err(e) = raw(SYS_chdir, plan.cwd.as_ptr() as usize, 0, 0, 0) {
            fail(report, Stage::Cwd, e);
        }
        let e = raw(
            SYS_execve,
            plan.path.as_ptr() as usize,
            argv as usize,
            envp as usize,
            0,
        )
        .err()
        .unwrap_or(libc::ENOEXEC);
        fail(report, Stage::Exec, e)
    }
}

pub enum Forked {
    Parent,
    Child,
}

/// fork(2), for the monitor's detach.
///
/// # Safety
/// The process must be single-threaded: the child would otherwise inherit
/// locks held by threads that do not exist in it.
pub unsafe fn fork_single_threaded() -> Result<Forked, Errno> {
    // SAFETY: the caller guarantees a single thread (see above).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => Ok(Forked::Parent),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Every signal's disposition back to SIG_DFL and an empty signal mask:
/// execve resets handlers but keeps SIG_IGN and the mask. A caller's ignored
/// SIGCHLD would make the kernel reap the monitor's payload at once, so the
/// monitor would never learn its status (and a signalfd never sees an
/// ignored signal).
pub fn reset_signals() -> Result<(), Errno> {
    // The raw call, because glibc's sigaction refuses (EINVAL) the two
    // realtime signals it keeps for itself, and a SIG_IGN of them survives
    // execve as well. A zeroed kernel `struct sigaction` is SIG_DFL, no
    // flags, an empty mask, in every architecture's layout (at most 32
    // bytes); the last argument is the kernel's sigset size.
    let dfl = [0u64; 4];
    let sigset_size = (libc::SIGRTMAX() / 8) as libc::size_t;
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler, so no code of ours can run
        // in signal context; the kernel only reads `dfl`. glibc caches no
        // disposition: it installs its own handlers when a thread or
        // pthread_cancel first needs them, and the monitor has neither.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                sigset_size,
            )
        };
        if r < 0 {
            return Err(Errno::last());
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Closes every fd from `first` up. execve keeps whatever the caller left
/// without close-on-exec (a test's fd, a pipe, a socket-activated daemon's
/// listening socket), which would otherwise live as long as the task.
///
/// # Safety
/// Nothing in the process may own an fd from `first` up (an `OwnedFd`, a
/// `File`): it would be closed under it.
pub unsafe fn close_fds_from(first: RawFd) -> std::io::Result<()> {
    // SAFETY: close_range only closes fds, which nobody owns (see above).
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Linux before 5.9, or a seccomp filter older than close_range: close
    // what /proc lists. The listing's own fd is closed once it is read, so
    // closing its number again only fails with EBADF.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in open {
        // SAFETY: as above; nothing has opened an fd since the listing.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Sets the given signals to SIG_IGN.
pub fn ignore_signals(sigs: &[nix::sys::signal::Signal]) -> Result<(), Errno> {
    for s in sigs {
        // SAFETY: SIG_IGN installs no handler code, so nothing can run in
        // signal context.
        unsafe { nix::sys::signal::signal(*s, nix::sys::signal::SigHandler::SigIgn) }?;
    }
    Ok(())
}

/// The nice value of process `pid` (0: this one).
pub fn nice_of(pid: i32) -> Result<i32, Errno> {
    // getpriority may return -1 as a value: errno tells.
    Errno::clear();
    // SAFETY: plain system call; no memory is passed.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, pid as libc::id_t) };
    match Errno::last_raw() {
        0 => Ok(n),
        e => Err(Errno::from_raw(e)),
    }
}

/// Sets the calling process's nice value.
pub fn set_nice(n: i32) -> Result<(), Errno> {
    // SAFETY: plain system call on this process; no memory is passed.
    Errno::result(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) }).map(drop)
}

/// The (soft, hard) limit `resource` of process `pid` (prlimit(2): allowed
/// on a process with the caller's uids and gids).
pub fn rlimit_of(pid: i32, resource: libc::__rlimit_resource_t) -> Result<(u64, u64), Errno> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is ours and the size the call writes.
    Errno::result(unsafe { libc::prlimit64(pid, resource, std::ptr::null(), &mut old) })?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// The scheduling policy (with SCHED_RESET_ON_FORK) and static priority of
/// process `pid` (0: this one).
pub fn sched_of(pid: i32) -> Result<(i32, i32), Errno> {
    // SAFETY: plain system calls; `param` is ours.
    unsafe {
        let policy = Errno::result(libc::sched_getscheduler(pid))?;
        let mut param: libc::sched_param = std::mem::zeroed();
        Errno::result(libc::sched_getparam(pid, &mut param))?;
        Ok((policy, param.sched_priority))
    }
}

/// The I/O priority of process `pid` (0: this one).
pub fn ioprio_of(pid: i32) -> Result<i64, Errno> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    // SAFETY: plain system call; no memory is passed.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_ioprio_get,
            IOPRIO_WHO_PROCESS,
            pid as libc::c_long,
        )
    })
}

/// This process's securebits and memory-deny-write-execute flags, which no
/// other process can read: non-zero means a launcher restricted it in ways
/// a warm spawner could not give its task.
pub fn own_secure_flags() -> (i32, i32) {
    const PR_GET_MDWE: libc::c_int = 66;
    // SAFETY: prctl queries with no memory passed.
    unsafe {
        let bits = libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0);
        // EINVAL before Linux 6.3: no MDWE there.
        let mdwe = libc::prctl(PR_GET_MDWE, 0, 0, 0, 0).max(0);
        (bits, mdwe)
    }
}

/// clone3(CLONE_PARENT): a child that is its parent's sibling, not its
/// child. The monitor starts the spawner this way and the spawner each new
/// monitor, so neither is anyone's parent: the new process belongs to
/// whoever adopted the caller (init, or the nearest subreaper), never to a
/// monitor that reaps its task's orphans, nor to the spawner.
///
/// # Safety
/// As [`fork_single_threaded`].
pub unsafe fn fork_sibling() -> Result<Forked, Errno> {
    let args = CloneArgs {
        flags: libc::CLONE_PARENT as u64,
        // clone3 wants none with CLONE_PARENT: the child gets the caller's
        // own (SIGCHLD), for the parent they share.
        ..Default::default()
    };
    // SAFETY: the caller guarantees a single thread.
    match unsafe { clone3(&args) }? {
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}

/// flock(LOCK_EX | LOCK_NB): `Ok(false)` if another open file holds it. The
/// lock stays with the open file (and every fd sharing it, across fork and
/// execve) until the last of them is closed; nothing here unlocks it on
/// drop, unlike nix's `Flock`, so a lock handed to a child outlives the
/// parent's fd.
pub fn try_lock(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    // SAFETY: plain system call on an fd the caller borrows.
    match Errno::result(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// waitpid(2): child `pid`'s (-1: any child's) pid and status once it has
/// ended; `None` if none has yet and `hang` is false (WNOHANG). Not nix's
/// waitpid, which fails (EINVAL) for a child killed by a signal it has no
/// name for (a real-time one) after the kernel has reaped that child: its
/// status would be lost.
pub fn wait_child(pid: i32, hang: bool) -> Result<Option<(i32, std::process::ExitStatus)>, Errno> {
    use std::os::unix::process::ExitStatusExt;
    let flags = if hang { 0 } else { libc::WNOHANG };
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for the kernel to write to.
        match Errno::result(unsafe { libc::waitpid(pid, &mut status, flags) }) {
            Ok(0) => return Ok(None),
            Ok(p) => return Ok(Some((p, std::process::ExitStatus::from_raw(status)))),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `fd` is readable (or hung up): `Ok(false)` once `deadline`
/// has passed, never before (None: no deadline). ppoll's nanosecond timeout
/// runs on the same monotonic clock as [`std::time::Instant`], and a wake-up
/// by a signal polls again for what is left; SO_RCVTIMEO and poll's whole
/// milliseconds could give up a fraction of a millisecond early.
pub fn readable_by(
    fd: BorrowedFd<'_>,
    deadline: Option<std::time::Instant>,
) -> Result<bool, Errno> {
    use nix::poll::{PollFd, PollFlags};
    loop {
        let left = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                Some(left) if !left.is_zero() => {
                    Some(nix::sys::time::TimeSpec::from_duration(left))
                }
                _ => return Ok(false),
            },
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match nix::poll::ppoll(&mut fds, left, None) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}
