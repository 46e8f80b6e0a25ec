//! Aligned text tables for the commands that print rows for people
//! (`accounting`, `namespaces`).

use std::io::Write;

use crate::error::{Error, Result};

/// Columns padded to their widest cell, two blanks apart: left-aligned
/// (names), or right-aligned where `right(column)` says so (numbers); no
/// trailing blanks.
pub(super) fn table(
    out: &mut impl Write,
    rows: &[Vec<String>],
    right: impl Fn(usize) -> bool,
) -> Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = width[c] - cell.chars().count();
            if right(c) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end()).map_err(|e| Error::system("stdout", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_alignment() {
        let rows = [["TASK", "RUNS"], ["build", "12"], ["(total)", "3"]]
            .map(|r| r.map(String::from).to_vec())
            .to_vec();
        let mut out = Vec::new();
        table(&mut out, &rows, |c| c >= 1).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "TASK     RUNS\nbuild      12\n(total)     3\n"
        );
    }
}
