//! One journal line: the fields accounting reads of an exit record. The
//! fast path is a scanner that checks the line is one JSON object and reads
//! those fields from it in place; whatever it does not take on (an escape
//! in a key or in a field it reads, a `\u` escape anywhere, a non-ASCII
//! key, a duplicate field, deep nesting, an array for an object) sends the
//! line to serde_json, whose verdict stands. So a line counts exactly when
//! serde_json would read it; the scanner only makes the usual line cheap
//! (serde_json spent a microsecond on each, most of it matching and
//! checking keys and skipping what accounting does not need). The
//! differential test below holds the two to the same answers.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// What accounting reads of an exit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fields<'a> {
    pub task: &'a str,
    pub start: i64,
    pub end: i64,
    /// Its exit is `{"kind": "code", "value": 0}`.
    pub exit_ok: bool,
    pub stopped: bool,
    pub cpu_usec: u64,
    pub peak_memory_bytes: Option<u64>,
    pub oom_kills: u64,
    /// `failed` is there and not null.
    pub failed: bool,
}

/// The fields of `line`, or why it is no record. `owned` holds a task
/// name serde_json had to unescape.
pub(super) fn parse<'a>(line: &'a [u8], owned: &'a mut String) -> Result<Fields<'a>, String> {
    if let Some(f) = scan(line) {
        return Ok(f);
    }
    let l: Line<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let exit_ok = l.exit.kind == "code" && l.exit.value == Some(0);
    let task = match l.task {
        Cow::Borrowed(t) => t,
        Cow::Owned(t) => {
            *owned = t;
            owned.as_str()
        }
    };
    Ok(Fields {
        task,
        start: l.start,
        end: l.end,
        exit_ok,
        stopped: l.stopped,
        cpu_usec: l.cpu_usec,
        peak_memory_bytes: l.peak_memory_bytes,
        oom_kills: l.oom_kills,
        failed: l.failed.is_some(),
    })
}

/// The slow path: serde_json, reading the same fields (an `ExitRecord`'s;
/// the rest is skipped).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    task: Cow<'a, str>,
    start: i64,
    end: i64,
    #[serde(borrow)]
    exit: ExitLine<'a>,
    #[serde(default)]
    stopped: bool,
    cpu_usec: u64,
    #[serde(default)]
    peak_memory_bytes: Option<u64>,
    #[serde(default)]
    oom_kills: u64,
    #[serde(default)]
    failed: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ExitLine<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    value: Option<i64>,
}

/// How deep the scanner follows nested values (serde_json stops at 128).
const MAX_DEPTH: u32 = 64;

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string; its contents if they hold no escape (`None` inside: they
    /// do, and were checked). `None`: not a string the scanner takes.
    fn string(&mut self) -> Option<Option<&'a [u8]>> {
        self.eat(b'"')?;
        let start = self.i;
        let mut plain = true;
        loop {
            self.i += special(&self.b[self.i..])?;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(plain.then(|| &self.b[start..self.i - 1]));
                }
                b'\\' => {
                    plain = false;
                    // The simple escapes; `\u` goes to serde_json.
                    let e = *self.b.get(self.i + 1)?;
                    if !matches!(e, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') {
                        return None;
                    }
                    self.i += 2;
                }
                _ => return None, // a control character
            }
        }
    }

    /// A JSON number's text, checked against JSON's grammar.
    fn number(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.eat(b'-');
        let digits = |c: &mut Self| {
            let s = c.i;
            while c.peek().is_some_and(|d| d.is_ascii_digit()) {
                c.i += 1;
            }
            (c.i > s).then_some(())
        };
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => digits(self)?,
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            digits(self)?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            digits(self)?;
        }
        Some(&self.b[start..self.i])
    }

    /// An integer (no fraction, no exponent) that fits a u64.
    fn uint(&mut self) -> Option<u64> {
        let t = self.number()?;
        if t.first() == Some(&b'-') {
            return None;
        }
        t.iter().try_fold(0u64, |a, &d| {
            if !d.is_ascii_digit() {
                return None;
            }
            a.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }

    /// An integer that fits an i64.
    fn int(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
            if self.peek() == Some(b'-') {
                return None;
            }
        }
        let v = i128::from(self.uint()?);
        // serde_json reads `-0` as a float, which no i64 field takes.
        if negative && v == 0 {
            return None;
        }
        i64::try_from(if negative { -v } else { v }).ok()
    }

    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        let end = self.i.checked_add(lit.len())?;
        (self.b.get(self.i..end)? == lit).then(|| self.i = end)
    }

    fn null(&mut self) -> bool {
        self.literal(b"null").is_some()
    }

    fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    /// Skips any value.
    fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => self.object(|c, _| c.skip(depth + 1)),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => return self.eat(b']'),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// An object, calling `value(cursor, key)` at each value. Keys must be
    /// plain ASCII (anything else: serde_json).
    fn object(&mut self, mut value: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()??;
            if !key.is_ascii() {
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            value(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => return self.eat(b'}'),
                _ => return None,
            }
        }
    }
}

/// The bytes a string's scan stops at: `"`, `\\` and control characters.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The offset of the first `"`, `\\` or control character of `s`: a byte
/// at a time for the first 16 (most strings of a record are shorter), then
/// a word at a time.
fn special(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let head = s.len().min(16);
    if let Some(p) = s[..head].iter().position(|&b| SPECIAL[usize::from(b)]) {
        return Some(p);
    }
    let has = |w: u64, c: u8| {
        let x = w ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x
    };
    let rest = &s[head..];
    let mut chunks = rest.chunks_exact(8);
    for (i, c) in chunks.by_ref().enumerate() {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        let m = (has(w, b'"') | has(w, b'\\') | (w.wrapping_sub(LO * 0x20) & !w)) & HI;
        if m != 0 {
            // The lowest flagged byte is a true match (borrows only flag
            // bytes above one).
            return Some(head + i * 8 + m.trailing_zeros() as usize / 8);
        }
    }
    let done = head + rest.len() - chunks.remainder().len();
    chunks
        .remainder()
        .iter()
        .position(|&b| SPECIAL[usize::from(b)])
        .map(|p| done + p)
}

/// The fast path: `None` sends the line to serde_json.
fn scan(line: &[u8]) -> Option<Fields<'_>> {
    let mut c = Cursor { b: line, i: 0 };
    let (mut task, mut start, mut end, mut exit, mut cpu) = (None, None, None, None, None);
    let (mut stopped, mut peak, mut oom, mut failed) = (None, None, None, None);
    c.ws();
    c.object(|c, key| {
        // Each field once: serde_json refuses a duplicate.
        fn once<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(v?);
            Some(())
        }
        match key {
            b"task" => once(&mut task, c.string()?),
            b"start" => once(&mut start, c.int()),
            b"end" => once(&mut end, c.int()),
            b"exit" => once(&mut exit, exit_ok(c)),
            b"cpu_usec" => once(&mut cpu, c.uint()),
            b"stopped" => once(&mut stopped, c.bool()),
            b"peak_memory_bytes" if c.null() => once(&mut peak, Some(None)),
            b"peak_memory_bytes" => once(&mut peak, c.uint().map(Some)),
            b"oom_kills" => once(&mut oom, c.uint()),
            b"failed" if c.null() => once(&mut failed, Some(false)),
            b"failed" => once(&mut failed, c.skip(1).map(|()| true)),
            _ => c.skip(1),
        }
    })?;
    c.ws();
    if c.i != line.len() {
        return None;
    }
    Some(Fields {
        task: std::str::from_utf8(task?).ok()?,
        start: start?,
        end: end?,
        exit_ok: exit?,
        stopped: stopped.unwrap_or(false),
        cpu_usec: cpu?,
        peak_memory_bytes: peak.unwrap_or(None),
        oom_kills: oom.unwrap_or(0),
        failed: failed.unwrap_or(false),
    })
}

/// `{"kind": "code", "value": 0}` or another exit: whether it is that one.
fn exit_ok(c: &mut Cursor<'_>) -> Option<bool> {
    let (mut kind, mut value) = (None, None);
    c.object(|c, key| match key {
        b"kind" if kind.is_none() => {
            let k = c.string()??;
            kind = Some(k.is_ascii().then_some(k)?);
            Some(())
        }
        b"value" if value.is_none() => {
            value = Some(if c.null() { None } else { Some(c.int()?) });
            Some(())
        }
        b"kind" | b"value" => None,
        _ => c.skip(2),
    })?;
    Some(kind? == b"code" && value.flatten() == Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"namespace":"shop","task":"web-1","run_id":"0f3a","user":"alice","uid":1001,"command":["/bin/sh","-c","echo \"hi\" \\ ok/"],"pid":42,"start":1795000000,"start_time":"2026-11-18T09:46:40Z","end":1795000060,"end_time":"2026-11-18T09:47:40Z","exit":{"kind":"code","value":0},"stopped":false,"killed_after_timeout":false,"cpu_usec":123456,"peak_memory_bytes":7340032,"peak_memory_source":"memory.peak","log":"/var/log/lanco-shop/task-web-1.log","notes":["2026-11-18T09:47:40Z stop asked by uid 1001"],"restarts":2,"oom_kills":1,"memory_limit":67108864,"failed":"given up"}"#;

    fn slow(line: &[u8]) -> Result<Fields<'_>, String> {
        let l: Line<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let task: &str = match l.task {
            Cow::Borrowed(t) => t,
            Cow::Owned(_) => return Err("owned".into()),
        };
        Ok(Fields {
            task,
            start: l.start,
            end: l.end,
            exit_ok: l.exit.kind == "code" && l.exit.value == Some(0),
            stopped: l.stopped,
            cpu_usec: l.cpu_usec,
            peak_memory_bytes: l.peak_memory_bytes,
            oom_kills: l.oom_kills,
            failed: l.failed.is_some(),
        })
    }

    #[test]
    fn the_scanner_reads_a_record() {
        let f = scan(RECORD.as_bytes()).expect("scanned");
        assert_eq!(f, slow(RECORD.as_bytes()).unwrap());
        assert_eq!(
            (f.task, f.cpu_usec, f.peak_memory_bytes, f.oom_kills),
            ("web-1", 123_456, Some(7_340_032), 1)
        );
        assert!(f.exit_ok && f.failed && !f.stopped);
        // As lanco writes one today.
        let rec = serde_json::to_string(&serde_json::json!({
            "task": "t", "start": -5, "end": 0, "exit": {"kind": "signal", "value": 9},
            "stopped": true, "cpu_usec": 0, "peak_memory_bytes": null, "failed": null,
        }))
        .unwrap();
        let f = scan(rec.as_bytes()).expect("scanned");
        assert_eq!(f, slow(rec.as_bytes()).unwrap());
        assert!(!f.exit_ok && f.stopped && !f.failed && f.peak_memory_bytes.is_none());
    }

    /// Lines made from a record by cutting, doubling, flipping and
    /// swapping bytes, and by hand: whenever the scanner answers, serde_json
    /// answers the same; where it does not, serde_json decides.
    #[test]
    fn the_scanner_never_disagrees_with_serde_json() {
        let base = RECORD.as_bytes();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for cut in 0..base.len() {
            lines.push(base[..cut].to_vec());
            lines.push([&base[..cut], base].concat());
            lines.push([&base[..cut], &base[cut + 1..]].concat());
        }
        let bytes = b"\"\\{}[],:-+.0123456789eEtfnul \t\x01\x7f\xc3\xa9\xff";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..40_000 {
            let mut l = base.to_vec();
            for _ in 0..1 + rand(3) {
                let at = rand(l.len());
                match rand(3) {
                    0 => l[at] = bytes[rand(bytes.len())],
                    1 => l.insert(at, bytes[rand(bytes.len())]),
                    _ => drop(l.remove(at)),
                }
            }
            lines.push(l);
        }
        for hand in [
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code","value":0},"cpu_usec":3}"#,
            r#"{"task":"a","task":"b","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code","value":-0},"cpu_usec":3}"#,
            r#"{"task":"a","start":1.0,"end":2,"exit":{"kind":"code"},"cpu_usec":3}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":-3}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":18446744073709551616}"#,
            r#"{"task":"a","start":-9223372036854775808,"end":9223372036854775807,"exit":{"kind":"x"},"cpu_usec":0}"#,
            r#"{"task":"a","start":9223372036854775808,"end":2,"exit":{"kind":"x"},"cpu_usec":0}"#,
            r#"{"task":"a\u0062","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3}"#,
            r#"{"ta\u0073k":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3}"#,
            r#"{"task":"a","start":1,"end":2,"exit":["code",0],"cpu_usec":3}"#,
            r#"["a",1,2,{"kind":"code","value":0},false,3]"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3,"x":[[[[{"y":[01]}]]]]}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3,"x":"\q"}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3,"x":"\u00e9"} "#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3,"stopped":null}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3,"failed":{}}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code"},"cpu_usec":3,"oom_kills":null}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code","value":null},"cpu_usec":3,"x":1e5}"#,
            r#"{"task":"a","start":1,"end":2,"exit":{"kind":"code","value":0,"value":0},"cpu_usec":3}"#,
            " {\"task\":\"a\",\"start\":1,\"end\":2,\"exit\":{\"kind\":\"code\"},\"cpu_usec\":3}\t",
        ] {
            lines.push(hand.as_bytes().to_vec());
        }
        lines.push(b"{\"task\":\"a\xff\",\"start\":1,\"end\":2,\"exit\":{\"kind\":\"code\"},\"cpu_usec\":3}".to_vec());
        let (mut scanned, mut accepted) = (0, 0);
        for l in &lines {
            let fast = scan(l);
            let reference = slow(l);
            if let Some(f) = fast {
                scanned += 1;
                assert_eq!(Ok(f), reference, "{}", String::from_utf8_lossy(l));
            }
            let mut owned = String::new();
            let got = parse(l, &mut owned).ok();
            assert_eq!(got.is_some(), serde_json::from_slice::<Line<'_>>(l).is_ok());
            accepted += usize::from(got.is_some());
        }
        // The test means something: both kinds of line are there.
        assert!(
            scanned > 1000 && accepted < lines.len() / 2,
            "{scanned} {accepted}"
        );
    }
}
