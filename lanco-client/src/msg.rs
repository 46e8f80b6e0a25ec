//! Messages on stderr in the original lanco's shape:
//! `2013-06-09T22:50:34 [WARN/run] task first-task is already running`.

pub fn log(level: &str, cmd: &str, text: &dyn std::fmt::Display) {
    eprintln!(
        "{} [{level}/{cmd}] {text}",
        crate::sys::local_timestamp(crate::time::now_secs())
    );
}

pub fn warn(cmd: &str, text: &dyn std::fmt::Display) {
    log("WARN", cmd, text);
}

pub fn error(cmd: &str, text: &dyn std::fmt::Display) {
    log("ERROR", cmd, text);
}
