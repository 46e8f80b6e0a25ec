//! Messages on stderr in the original lanco's shape, stamped in UTC as
//! every time lanco prints or records (`status`, exit records, accounting):
//! `2013-06-09T22:50:34Z [WARN/run] task first-task is already running`.

pub fn log(level: &str, cmd: &str, text: &dyn std::fmt::Display) {
    eprintln!(
        "{} [{level}/{cmd}] {text}",
        crate::time::utc(crate::time::now_secs())
    );
}

pub fn warn(cmd: &str, text: &dyn std::fmt::Display) {
    log("WARN", cmd, text);
}

pub fn error(cmd: &str, text: &dyn std::fmt::Display) {
    log("ERROR", cmd, text);
}
