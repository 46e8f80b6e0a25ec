//! The per-task monitor; started by `lanco run` (or the library), never by hand.
//!
//! A C `main`, as in `lanco` (see src/main.rs): std's start-up probe of the
//! main thread's stack costs more than the rest of the monitor's start. The
//! monitor sets its own signal dispositions.
#![no_main]
#![allow(unsafe_code)] // `no_mangle` only: no unsafe block.

#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    std::ffi::c_int::from(lanco_client::monitor_main())
}
