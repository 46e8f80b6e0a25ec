//! One line of root's billing journal (`S/billing/usage.jsonl`, written by
//! lancod, read by `lanco --all-namespaces accounting --by user`): a sample
//! of the kernel's hierarchical counters of one member's subtree
//! `ns-NS/user-UID`. The counters are cumulative since that cgroup was
//! made; a new `cgroup_id` means they started again from 0. The type lives
//! here because the writer (lancod) and the reader (lanco) share it.

use serde::{Deserialize, Serialize};

/// Why a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsageEvent {
    /// At an admission of the member.
    Admit,
    /// Before its namespace was destroyed.
    Destroy,
    /// At `lancod stop-all`.
    StopAll,
    /// Periodically (the task root's timer, `lancod account`).
    Sample,
    /// A kind a later lancod writes: read as a sample like any other.
    #[serde(other)]
    Other,
}

/// One sample, as one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSample {
    /// When, in UNIX seconds.
    pub time: i64,
    pub event: UsageEvent,
    /// The namespace (a valid name; a reader checks).
    pub namespace: String,
    pub uid: u32,
    /// The member's user name at the time, or the uid.
    pub user: String,
    /// The inode of `ns-NS/user-UID`: which incarnation of the subtree the
    /// counters are of.
    pub cgroup_id: u64,
    /// `cpu.stat` `usage_usec`.
    pub cpu_usec: u64,
    /// `memory.peak` (since the cgroup was made), where the memory
    /// controller is enabled.
    pub memory_peak_bytes: Option<u64>,
    /// `io.stat` `rbytes` summed over the devices, where io is enabled.
    pub io_read_bytes: Option<u64>,
    /// `io.stat` `wbytes` summed over the devices, where io is enabled.
    pub io_write_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_line() {
        let line = r#"{"time":1795000000,"event":"stop-all","namespace":"shop","uid":1001,"user":"alice","cgroup_id":4242,"cpu_usec":1500000,"memory_peak_bytes":null,"io_read_bytes":7,"io_write_bytes":null}"#;
        let s: UsageSample = serde_json::from_str(line).unwrap();
        assert_eq!(s.event, UsageEvent::StopAll);
        assert_eq!((s.uid, s.cgroup_id, s.cpu_usec), (1001, 4242, 1_500_000));
        assert_eq!((s.memory_peak_bytes, s.io_read_bytes), (None, Some(7)));
        assert_eq!(serde_json::to_string(&s).unwrap(), line);
        let later = line.replace("stop-all", "suspend");
        let s: UsageSample = serde_json::from_str(&later).unwrap();
        assert_eq!(s.event, UsageEvent::Other);
    }
}
