//! The `lanco` command.
//!
//! A C `main` instead of Rust's: the std runtime's start-up asks glibc for the
//! main thread's stack bounds (`pthread_getattr_np` parses /proc/self/maps
//! with sscanf), which was 18 % of the instructions of `lanco NS check`. What
//! that start-up would add is done here: SIGPIPE is left at its default (a
//! closed pipe ends `lanco ls | head` quietly, as with C tools) and stdout is
//! flushed before returning. std::env::args still works (glibc hands argv to
//! std at load time).
#![no_main]
#![allow(unsafe_code)] // `no_mangle` only: no unsafe block.

use std::io::Write;

// The unwinder linked in (libgcc_eh.a) rather than loaded (libgcc_s.so.1):
// std needs a few `_Unwind_*` symbols even with panic = "abort" (backtraces),
// and loading libgcc_s costs every `lanco` an open, five mmaps, its
// relocations and its constructor, which runs `cpuid` (a trap to the
// hypervisor on a VM): `check` 1.23 → 1.07 ms, /bin/true 0.88 ms. A native
// library of the binary crate comes before std's `-lgcc_s` on the link line,
// so with LTO (release) the linker takes the symbols from here and, as
// `--as-needed`, drops libgcc_s; a build without LTO still links libgcc_s.
#[link(name = "gcc_eh", kind = "static", modifiers = "-bundle")]
extern "C" {}

#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let code = lanco_client::run_cli();
    let _ = std::io::stdout().flush();
    std::ffi::c_int::from(code)
}
