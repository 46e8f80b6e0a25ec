//! The crash loop's payload (bench/phases/supervision.py): appends one line
//! `START END\n` to the file named by its argument and exits 1. START is
//! CLOCK_MONOTONIC in ns read first thing in `main`, END the same read just
//! before the line is written; the gap between one run's END and the next
//! run's START is the time to start the command again, as the payload sees
//! it. bench.py builds it with rustc alone (no cargo, no crates), statically
//! where glibc's static libraries are installed, with a C `main` (no Rust
//! runtime set-up before START).

#![no_main]

use std::ffi::{CStr, OsStr};
use std::io::Write;
use std::os::raw::{c_char, c_int};
use std::os::unix::ffi::OsStrExt;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: c_int, ts: *mut Timespec) -> c_int;
}

const CLOCK_MONOTONIC: c_int = 1;

fn now_ns() -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

#[no_mangle]
pub extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    let start = now_ns();
    if argc < 2 {
        return 2;
    }
    // SAFETY: argv holds argc valid C strings.
    let path = unsafe { CStr::from_ptr(*argv.add(1)) };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(OsStr::from_bytes(path.to_bytes()));
    let Ok(mut file) = file else {
        return 3;
    };
    let end = now_ns();
    // One write(2) with O_APPEND: the line lands whole.
    if file.write_all(format!("{start} {end}\n").as_bytes()).is_err() {
        return 4;
    }
    1
}
