//! The last lines of a log (`lanco logs -n`, `LogFollower::start_at_last_lines`).

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The last `n` lines of a file, read backwards in chunks.
pub(crate) fn tail_lines(f: &File, n: usize) -> std::io::Result<Vec<u8>> {
    const STEP: u64 = 64 * 1024;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut pos = f.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let cut = body
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 1)
            .map(|(i, _)| i);
        if let Some(i) = cut {
            return Ok(buf[i + 1..].to_vec());
        }
        if pos == 0 {
            return Ok(buf);
        }
        let step = STEP.min(pos);
        pos -= step;
        let mut part = vec![0u8; step as usize];
        f.read_exact_at(&mut part, pos)?;
        part.extend_from_slice(&buf);
        buf = part;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn tail() {
        let p = std::env::temp_dir().join(format!("lanco-tail-{}", std::process::id()));
        let text: String = (1..=100_000).map(|i| format!("line {i}\n")).collect();
        fs::write(&p, &text).unwrap();
        let f = || File::open(&p).unwrap();
        assert_eq!(tail_lines(&f(), 2).unwrap(), b"line 99999\nline 100000\n");
        assert_eq!(tail_lines(&f(), 0).unwrap(), b"");
        assert_eq!(tail_lines(&f(), 200_000).unwrap().len(), text.len());
        fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail_lines(&f(), 1).unwrap(), b"b");
        fs::remove_file(&p).unwrap();
    }
}
