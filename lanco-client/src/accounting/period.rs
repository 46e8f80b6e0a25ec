//! The period a report covers, `[since, until)` in UNIX seconds, and the
//! times it is given in: an RFC 3339 date or date-time (UTC unless it says
//! otherwise) or a time relative to now (`-7d`, `-12h`, `-30m`).

use serde::Serialize;

/// The runs that count: those whose end lies in `[since, until)`; an open
/// end is no bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Period {
    /// The first second that counts.
    pub since: Option<i64>,
    /// The first second that no longer counts.
    pub until: Option<i64>,
}

impl Period {
    /// Does `t` (UNIX seconds) lie in the period?
    pub fn contains(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// Is `t` before the period's start?
    pub fn before(&self, t: i64) -> bool {
        self.since.is_some_and(|s| t < s)
    }

    /// Is `t` past the period's end?
    pub fn after(&self, t: i64) -> bool {
        self.until.is_some_and(|u| t >= u)
    }
}

/// Parses a time given on the command line, relative times from `now`:
/// `2026-11-01` (its midnight, UTC), `2026-11-01T12:30:00Z` (seconds and
/// the zone optional: UTC; fractions of a second dropped; `+02:00` offsets
/// taken), or `-7d`, `-12h`, `-30m`, `-45s`.
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let bad = || {
        format!(
            "invalid time {s:?} (an RFC 3339 date or date-time, UTC unless an offset is given: \
             2026-11-01, 2026-11-01T12:00:00Z; or relative: -7d, -12h, -30m)"
        )
    };
    if let Some(rel) = s.strip_prefix('-') {
        let unit = match rel.as_bytes().last() {
            Some(b'd') => 86_400,
            Some(b'h') => 3_600,
            Some(b'm') => 60,
            Some(b's') => 1,
            _ => return Err(bad()),
        };
        let n = &rel[..rel.len() - 1];
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let secs = n
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .ok_or_else(bad)?;
        return now.checked_sub(secs).ok_or_else(bad);
    }
    date_time(s).ok_or_else(bad)
}

fn date_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |a, c| a * 10 + i64::from(c - b'0')))
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month {
        return None;
    }
    let day = days_from_civil(y, mo, d) * 86_400;
    if b.len() == 10 {
        return Some(day);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (h, mi) = (num(11..13)?, num(14..16)?);
    let mut i = 16;
    let mut sec = 0;
    if b.get(i) == Some(&b':') {
        sec = num(i + 1..i + 3)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            i += digits;
        }
    }
    // RFC 3339 allows a leap second (60); it is the next minute's start.
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset = match &b[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(day + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil; `crate::time::utc` is its inverse).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC day (`YYYY-MM-DD`) of a UNIX time.
pub fn utc_day(t: i64) -> String {
    let mut s = crate::time::utc(t);
    s.truncate(10);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;

    #[test]
    fn dates_and_date_times() {
        let p = |s: &str| parse_time(s, NOW);
        assert_eq!(p("1970-01-01"), Ok(0));
        assert_eq!(p("2000-02-29"), Ok(951_782_400));
        assert_eq!(p("2013-06-09T22:50:34Z"), Ok(1_370_818_234));
        assert_eq!(p("2013-06-09t22:50:34z"), Ok(1_370_818_234));
        assert_eq!(p("2013-06-09 22:50:34"), Ok(1_370_818_234));
        assert_eq!(p("2013-06-09T22:50"), Ok(1_370_818_200));
        assert_eq!(p("2013-06-09T22:50:34.999Z"), Ok(1_370_818_234));
        assert_eq!(p("2013-06-10T00:50:34+02:00"), Ok(1_370_818_234));
        assert_eq!(p("2013-06-09T21:50:34-01:00"), Ok(1_370_818_234));
        for t in [0, 951_782_400, 1_370_818_234, NOW, -86_400 * 365 * 400] {
            assert_eq!(p(&crate::time::utc(t)), Ok(t), "round trip {t}");
        }
        assert_eq!(utc_day(1_370_818_234), "2013-06-09");
    }

    #[test]
    fn relative_times() {
        assert_eq!(parse_time("-7d", NOW), Ok(NOW - 7 * 86_400));
        assert_eq!(parse_time("-12h", NOW), Ok(NOW - 12 * 3600));
        assert_eq!(parse_time("-30m", NOW), Ok(NOW - 1800));
        assert_eq!(parse_time("-0d", NOW), Ok(NOW));
    }

    #[test]
    fn bad_times() {
        for bad in [
            "",
            "-",
            "-d",
            "-7",
            "-7y",
            "-+7d",
            "--7d",
            "-7 d",
            "-99999999999999999d",
            "yesterday",
            "2026-13-01",
            "2026-02-29",
            "2026-04-31",
            "2026-1-01",
            "2026-01-01T",
            "2026-01-01T25:00",
            "2026-01-01T12:60",
            "2026-01-01T12:00:00.",
            "2026-01-01T12:00:00+2",
            "2026-01-01T12:00:00+02:0x",
            "2026-01-01T12:00:00 Z",
            "2026-01-01X12:00",
            "２０２６-01-01",
        ] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(e.starts_with("invalid time"), "{bad}: {e}");
        }
    }

    #[test]
    fn period_bounds() {
        let p = Period {
            since: Some(10),
            until: Some(20),
        };
        assert!(!p.contains(9) && p.contains(10) && p.contains(19) && !p.contains(20));
        assert!(p.before(9) && !p.before(10) && p.after(20) && !p.after(19));
        assert!(Period::default().contains(i64::MIN) && !Period::default().before(0));
    }
}
