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

#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let code = lanco_client::run_cli();
    let _ = std::io::stdout().flush();
    std::ffi::c_int::from(code)
}
