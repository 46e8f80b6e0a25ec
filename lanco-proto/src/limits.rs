//! Resource limits — a namespace's ceilings (root's, on `ns-NS`) and a task's
//! own (the member's, on `task-NAME`) — as values, their command-line forms,
//! the cgroup v2 interface files they are written to and the controllers
//! those need. Writing them is the caller's: this module touches no file.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The CPU bandwidth period lanco writes with a `cpu.max` quota, in µs (the
/// kernel's default period).
pub const CPU_PERIOD_USEC: u64 = 100_000;

/// Limits, each unset (`None`: nothing written) or a value. On the wire
/// every field is always there (postcard has no optional fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `memory.max`, bytes.
    #[serde(default)]
    pub memory: Option<u64>,
    /// `memory.high`, bytes.
    #[serde(default)]
    pub memory_high: Option<u64>,
    /// `pids.max`.
    #[serde(default)]
    pub pids: Option<u64>,
    /// `cpu.max` quota in µs per [`CPU_PERIOD_USEC`] (50 000: half a CPU).
    #[serde(default)]
    pub cpu_quota_usec: Option<u64>,
    /// `cpu.weight`, 1–10000.
    #[serde(default)]
    pub cpu_weight: Option<u16>,
    /// `io.weight`, 1–10000.
    #[serde(default)]
    pub io_weight: Option<u16>,
}

/// One limit, as `--clear KEY` and error messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    Memory,
    MemoryHigh,
    Pids,
    Cpu,
    CpuWeight,
    IoWeight,
}

impl Key {
    pub const ALL: [Key; 6] = [
        Key::Memory,
        Key::MemoryHigh,
        Key::Pids,
        Key::Cpu,
        Key::CpuWeight,
        Key::IoWeight,
    ];

    /// The option's name without dashes (`memory-high`); definitions use it
    /// with `_`.
    pub fn name(self) -> &'static str {
        match self {
            Key::Memory => "memory",
            Key::MemoryHigh => "memory-high",
            Key::Pids => "pids",
            Key::Cpu => "cpu",
            Key::CpuWeight => "cpu-weight",
            Key::IoWeight => "io-weight",
        }
    }

    /// The interface file it is written to.
    pub fn file(self) -> &'static str {
        match self {
            Key::Memory => "memory.max",
            Key::MemoryHigh => "memory.high",
            Key::Pids => "pids.max",
            Key::Cpu => "cpu.max",
            Key::CpuWeight => "cpu.weight",
            Key::IoWeight => "io.weight",
        }
    }

    /// The controller that provides that file.
    pub fn controller(self) -> &'static str {
        match self {
            Key::Memory | Key::MemoryHigh => "memory",
            Key::Pids => "pids",
            Key::Cpu | Key::CpuWeight => "cpu",
            Key::IoWeight => "io",
        }
    }

    /// What the file says with no limit (what `--clear` writes).
    pub fn unlimited(self) -> &'static str {
        match self {
            Key::Memory | Key::MemoryHigh | Key::Pids => "max",
            Key::Cpu => "max 100000",
            Key::CpuWeight => "100",
            Key::IoWeight => "default 100",
        }
    }
}

impl Key {
    /// Sets this limit in `l` from its command-line form (`64M`, `0.5`).
    pub fn parse_into(self, l: &mut Limits, text: &str) -> Result<(), String> {
        match self {
            Key::Memory => l.memory = Some(parse_size(text)?),
            Key::MemoryHigh => l.memory_high = Some(parse_size(text)?),
            Key::Pids => l.pids = Some(parse_pids(text)?),
            Key::Cpu => l.cpu_quota_usec = Some(parse_cpus(text)?),
            Key::CpuWeight => l.cpu_weight = Some(parse_weight(text)?),
            Key::IoWeight => l.io_weight = Some(parse_weight(text)?),
        }
        Ok(())
    }

    /// This limit in `l`, in its command-line form, if set.
    pub fn shown(self, l: &Limits) -> Option<String> {
        match self {
            Key::Memory => l.memory.map(size),
            Key::MemoryHigh => l.memory_high.map(size),
            Key::Pids => l.pids.map(|n| n.to_string()),
            Key::Cpu => l.cpu_quota_usec.map(cpus),
            Key::CpuWeight => l.cpu_weight.map(|w| w.to_string()),
            Key::IoWeight => l.io_weight.map(|w| w.to_string()),
        }
    }
}

impl std::str::FromStr for Key {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Key::ALL
            .into_iter()
            .find(|k| k.name() == s || k.name().replace('-', "_") == s)
            .ok_or_else(|| {
                let all: Vec<_> = Key::ALL.iter().map(|k| k.name()).collect();
                format!("no limit {s:?} (one of {})", all.join(", "))
            })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }

    /// The limits that are set, each with the text its file takes.
    pub fn set(&self) -> Vec<(Key, String)> {
        let mut out = Vec::new();
        let mut put = |k, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        put(Key::Memory, self.memory.map(|b| b.to_string()));
        put(Key::MemoryHigh, self.memory_high.map(|b| b.to_string()));
        put(Key::Pids, self.pids.map(|n| n.to_string()));
        put(
            Key::Cpu,
            self.cpu_quota_usec
                .map(|q| format!("{q} {CPU_PERIOD_USEC}")),
        );
        put(Key::CpuWeight, self.cpu_weight.map(|w| w.to_string()));
        put(
            Key::IoWeight,
            self.io_weight.map(|w| format!("default {w}")),
        );
        out
    }

    /// The controllers the set limits need, sorted.
    pub fn controllers(&self) -> BTreeSet<&'static str> {
        self.set().iter().map(|(k, _)| k.controller()).collect()
    }

    /// Unsets `key`.
    pub fn clear(&mut self, key: Key) {
        match key {
            Key::Memory => self.memory = None,
            Key::MemoryHigh => self.memory_high = None,
            Key::Pids => self.pids = None,
            Key::Cpu => self.cpu_quota_usec = None,
            Key::CpuWeight => self.cpu_weight = None,
            Key::IoWeight => self.io_weight = None,
        }
    }

    /// `self` with every limit `other` sets replaced by `other`'s.
    pub fn overlaid(&self, other: &Limits) -> Limits {
        Limits {
            memory: other.memory.or(self.memory),
            memory_high: other.memory_high.or(self.memory_high),
            pids: other.pids.or(self.pids),
            cpu_quota_usec: other.cpu_quota_usec.or(self.cpu_quota_usec),
            cpu_weight: other.cpu_weight.or(self.cpu_weight),
            io_weight: other.io_weight.or(self.io_weight),
        }
    }

    /// Each set limit as `key=value` in its command-line form
    /// (`memory=256M pids=64 cpu=0.5`).
    pub fn describe(&self) -> String {
        Key::ALL
            .iter()
            .filter_map(|k| k.shown(self).map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parses a size: bytes, or a number with a binary unit `K`, `M`, `G`, `T`
/// (optionally followed by `i`/`iB`/`B`): `64M`, `1.5G`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("bad size {s:?}: bytes, or a number with K, M, G or T (64M, 1.5G)");
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let mult: u64 = match unit
        .trim_end_matches("iB")
        .trim_end_matches('B')
        .trim_end_matches('i')
    {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = if num.contains('.') {
        let v: f64 = num.parse().map_err(|_| bad())?;
        let b = v * mult as f64;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(bad());
        }
        b.round() as u64
    } else {
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .ok_or_else(bad)?
    };
    if bytes == 0 {
        return Err(format!("bad size {s:?}: must be more than 0"));
    }
    Ok(bytes)
}

/// Parses a CPU count (`0.5`, `2`) into a `cpu.max` quota per
/// [`CPU_PERIOD_USEC`]; at least 1 ms, at most 1024 CPUs.
pub fn parse_cpus(s: &str) -> Result<u64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("bad CPU count {s:?}: a number of CPUs such as 0.5 or 2"))?;
    if !(0.01..=1024.0).contains(&v) {
        return Err(format!("bad CPU count {s:?}: between 0.01 and 1024 CPUs"));
    }
    Ok((v * CPU_PERIOD_USEC as f64).round() as u64)
}

/// Parses a weight (`cpu.weight`, `io.weight`): 1–10000.
pub fn parse_weight(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|w| (1..=10000).contains(w))
        .ok_or_else(|| format!("bad weight {s:?}: a whole number from 1 to 10000"))
}

/// Parses a process count (`pids.max`): at least 1.
pub fn parse_pids(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("bad process count {s:?}: a whole number, at least 1"))
}

/// Bytes as the options take them, exact where a unit divides them
/// (`256M`, `1536K`), else in bytes.
pub fn size(b: u64) -> String {
    for (unit, m) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if b >= m && b.is_multiple_of(m) {
            return format!("{}{unit}", b / m);
        }
    }
    b.to_string()
}

/// Bytes for people: `256 MiB`, `1.5 GiB`.
pub fn human_size(b: u64) -> String {
    let mut v = b as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 || unit == "TiB" {
            return if unit == "B" || v.fract() == 0.0 {
                format!("{v:.0} {unit}")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1024.0;
    }
    unreachable!()
}

/// A `cpu.max` quota as a CPU count (`0.5`).
pub fn cpus(quota_usec: u64) -> String {
    let v = quota_usec as f64 / CPU_PERIOD_USEC as f64;
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["", "M", "-1M", "1X", "0", "99999999999T", "1..5G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(size(256 << 20), "256M");
        assert_eq!(size(1536 << 10), "1536K");
        assert_eq!(size(1000), "1000");
        assert_eq!(human_size(256 << 20), "256 MiB");
        assert_eq!(human_size(3 << 29), "1.5 GiB");
        assert_eq!(human_size(100), "100 B");
    }

    #[test]
    fn cpus_weights_pids() {
        assert_eq!(parse_cpus("0.5"), Ok(50_000));
        assert_eq!(parse_cpus("2"), Ok(200_000));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("x").is_err());
        assert_eq!(cpus(50_000), "0.5");
        assert_eq!(cpus(200_000), "2");
        assert_eq!(parse_weight("300"), Ok(300));
        assert!(parse_weight("0").is_err());
        assert!(parse_weight("10001").is_err());
        assert_eq!(parse_pids("64"), Ok(64));
        assert!(parse_pids("0").is_err());
    }

    #[test]
    fn files_and_controllers() {
        let l = Limits {
            memory: Some(64 << 20),
            cpu_quota_usec: Some(50_000),
            io_weight: Some(300),
            ..Limits::default()
        };
        assert_eq!(
            l.set(),
            vec![
                (Key::Memory, "67108864".to_owned()),
                (Key::Cpu, "50000 100000".to_owned()),
                (Key::IoWeight, "default 300".to_owned()),
            ]
        );
        assert_eq!(
            l.controllers().into_iter().collect::<Vec<_>>(),
            ["cpu", "io", "memory"]
        );
        assert_eq!(l.describe(), "memory=64M cpu=0.5 io-weight=300");
        let mut m = l.overlaid(&Limits {
            memory: Some(1 << 30),
            ..Limits::default()
        });
        assert_eq!(m.memory, Some(1 << 30));
        m.clear(Key::Memory);
        assert_eq!(m.memory, None);
        assert_eq!("memory_high".parse::<Key>(), Ok(Key::MemoryHigh));
        assert!("swap".parse::<Key>().is_err());
    }
}
