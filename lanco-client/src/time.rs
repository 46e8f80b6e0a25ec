//! Timestamps for records (UTC, RFC 3339) and messages (local time).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Seconds from now to `ms` (Unix time in milliseconds); 0 if past.
#[cfg(feature = "cli")]
pub fn secs_until(ms: i64) -> f64 {
    (ms - now_millis()).max(0) as f64 / 1000.0
}

/// `YYYY-MM-DDTHH:MM:SSZ` (lancod prints the same: one function).
pub use lanco_proto::time::utc;
