//! lanco's own lines about a run: a stop, the kill at the stop timeout, the
//! monitor's errors. They are not the task's output, so they never go into
//! its log (a reader of the log could not tell them from the task's, and a
//! task's log is its own). The monitor keeps the last few for the run's exit
//! record and sends each to the journal when there is one, with systemd's
//! native protocol (one datagram per line, no dependency); without a journal
//! socket nothing is sent.

use std::collections::VecDeque;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use lanco_proto::{NamespaceName, TaskName};

use crate::record::{MAX_NOTES, MAX_NOTE_BYTES};

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// journald takes bigger datagrams, but a note is a line, not a document.
const MAX_JOURNAL_MESSAGE: usize = 8 * 1024;
/// syslog's "notice": normal but significant (a stop, a kill, an error the
/// task survived).
const PRIORITY_NOTICE: &str = "5";

pub(super) struct Notes {
    ns: String,
    task: String,
    lines: VecDeque<String>,
    journal: PathBuf,
}

impl Notes {
    pub fn new(ns: &NamespaceName, task: &TaskName) -> Self {
        Notes {
            ns: ns.to_string(),
            task: task.to_string(),
            lines: VecDeque::with_capacity(MAX_NOTES),
            journal: PathBuf::from(JOURNAL_SOCKET),
        }
    }

    /// Keeps `text` for the exit record (with the time; cut to
    /// `MAX_NOTE_BYTES`; past `MAX_NOTES` the oldest is dropped) and sends
    /// it to the journal.
    pub fn add(&mut self, text: &str) {
        let line = format!("{} {text}", crate::time::utc(crate::time::now_secs()));
        if self.lines.len() == MAX_NOTES {
            self.lines.pop_front();
        }
        self.lines.push_back(cut(&line, MAX_NOTE_BYTES).to_owned());
        self.journal(text);
    }

    /// Forgets the lines kept (a new run under the same monitor).
    pub fn clear(&mut self) {
        self.lines.clear();
    }

    /// Sends `text` to the journal only: for what happens once the record
    /// may no longer be rewritten (the name is given back).
    pub fn journal(&self, text: &str) {
        let entry = journal_entry(&[
            ("MESSAGE", cut(text, MAX_JOURNAL_MESSAGE)),
            ("PRIORITY", PRIORITY_NOTICE),
            ("SYSLOG_IDENTIFIER", "lanco-monitor"),
            ("LANCO_NAMESPACE", &self.ns),
            ("LANCO_TASK", &self.task),
        ]);
        send_to_journal(&self.journal, &entry);
    }

    /// The notes kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One journal entry in the native protocol: `KEY=value\n`, or for a value
/// holding a newline `KEY\n`, its length as 64-bit little endian, the
/// value, `\n`.
fn journal_entry(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Best effort and never blocking: no journal (no socket, nobody
/// listening) or a full queue means the line is not journalled; the exit
/// record still has it.
fn send_to_journal(socket: &Path, entry: &[u8]) {
    let Ok(s) = UnixDatagram::unbound() else {
        return;
    };
    if s.set_nonblocking(true).is_ok() {
        let _ = s.send_to(entry, socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_in_the_native_protocol() {
        assert_eq!(
            journal_entry(&[("MESSAGE", "stop"), ("LANCO_TASK", "web")]),
            b"MESSAGE=stop\nLANCO_TASK=web\n"
        );
        let mut two = b"MESSAGE\n".to_vec();
        two.extend_from_slice(&3u64.to_le_bytes());
        two.extend_from_slice(b"a\nb\n");
        assert_eq!(journal_entry(&[("MESSAGE", "a\nb")]), two);
    }

    #[test]
    fn a_datagram_per_note_and_nothing_without_a_journal() {
        let dir = std::env::temp_dir().join(format!("lanco-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("socket");
        // Nobody listening: nothing happens, nothing blocks.
        send_to_journal(&path, b"MESSAGE=x\n");
        let journal = UnixDatagram::bind(&path).unwrap();
        send_to_journal(&path, b"MESSAGE=x\n");
        let mut buf = [0u8; 64];
        let n = journal.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"MESSAGE=x\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bounded() {
        let mut n = Notes::new(
            &NamespaceName::try_from("ns").unwrap(),
            &TaskName::try_from("t").unwrap(),
        );
        n.journal = PathBuf::from("/nonexistent/journal");
        for i in 0..MAX_NOTES + 5 {
            n.add(&format!("note {i} {}", "é".repeat(400)));
        }
        let lines = n.lines();
        assert_eq!(lines.len(), MAX_NOTES);
        assert!(lines[0].contains(" note 5 "), "the oldest are dropped");
        assert!(lines.iter().all(|l| l.len() <= MAX_NOTE_BYTES));
        assert_eq!(cut("aé", 2), "a");
    }
}
