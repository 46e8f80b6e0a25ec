//! How a task is supervised: its restart policy and how it says it is
//! ready. Written on definitions, `run`'s options and [`TaskSpec`]s;
//! carried out by the task's monitor, which supervises every restart
//! itself (no daemon, no new admission).
//!
//! Words as users write them: durations `200ms`, `10s`, `5m`, `1h` (a bare
//! number is seconds), restart limits `COUNT/INTERVAL` (`3/10s`), readiness
//! `exec`, `notify` or `fd:N`.
//!
//! [`TaskSpec`]: crate::TaskSpec

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When the monitor starts the command again after it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Restart {
    /// Never: the task is over when its command is (the default).
    #[default]
    No,
    /// After a non-zero exit or a death by signal; not after exit 0.
    OnFailure,
    /// After any end.
    Always,
}

/// How the monitor learns that the task is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Ready {
    /// Ready once its command has been exec'd (the default).
    #[default]
    Exec,
    /// Ready when it sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify).
    Notify,
    /// Ready when it writes a newline to this file descriptor (3 or more).
    Fd(i32),
}

/// Largest restart count a limit may allow: the monitor keeps the time of
/// each restart within the interval (16 bytes each), so this bounds its
/// memory whatever the policy.
pub const MAX_RESTART_COUNT: u32 = 1000;

/// More restarts than `count` within `interval`: the task is failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartLimit {
    /// Restarts allowed within `interval`.
    pub count: u32,
    /// The window; also how long a run must stay up for the restart delay
    /// to go back to its first value.
    pub interval: Duration,
}

/// A task's supervision. The default is no supervision: no restart,
/// ready when exec'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    /// When to restart.
    pub restart: Restart,
    /// The first delay before a restart; doubled after each run that ended
    /// sooner than `restart_limit.interval` after its start, up to
    /// `restart_delay_max`.
    pub restart_delay: Duration,
    /// The longest delay.
    pub restart_delay_max: Duration,
    /// When to give up.
    pub restart_limit: RestartLimit,
    /// How the task says it is ready.
    pub ready: Ready,
    /// A run not ready this long after its exec is stopped (a failure).
    pub start_timeout: Duration,
}

/// Dinit's defaults, which fit a crash loop of a small service.
impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            restart: Restart::No,
            restart_delay: Duration::from_millis(200),
            restart_delay_max: Duration::from_secs(30),
            restart_limit: RestartLimit {
                count: 3,
                interval: Duration::from_secs(10),
            },
            ready: Ready::Exec,
            start_timeout: Duration::from_secs(60),
        }
    }
}

impl Supervision {
    /// Whether the monitor has anything to do beyond a plain run.
    pub fn is_plain(&self) -> bool {
        self.restart == Restart::No && self.ready == Ready::Exec
    }

    /// Refuses a policy that cannot work: a delay above its maximum, a
    /// zero interval with a limit, a zero start timeout.
    pub fn check(&self) -> Result<(), String> {
        if self.restart_delay > self.restart_delay_max {
            return Err(format!(
                "restart_delay ({}) is longer than restart_delay_max ({})",
                Dur(self.restart_delay),
                Dur(self.restart_delay_max)
            ));
        }
        if self.restart_limit.count > MAX_RESTART_COUNT {
            return Err(format!(
                "the restart limit's count ({}) must be at most {MAX_RESTART_COUNT}",
                self.restart_limit.count
            ));
        }
        if self.restart_limit.interval.is_zero() {
            return Err("the restart limit's interval must be longer than 0".into());
        }
        if self.start_timeout.is_zero() {
            return Err("start_timeout must be longer than 0".into());
        }
        Ok(())
    }
}

impl FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "no" => Ok(Restart::No),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(format!(
                "invalid restart policy {s:?} (no, on-failure or always)"
            )),
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        })
    }
}

impl FromStr for Ready {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exec" => Ok(Ready::Exec),
            "notify" => Ok(Ready::Notify),
            _ => match s.strip_prefix("fd:").map(str::parse::<i32>) {
                Some(Ok(n)) if (3..1024).contains(&n) => Ok(Ready::Fd(n)),
                Some(_) => Err(format!(
                    "invalid readiness fd in {s:?}: a number from 3 to 1023 (0-2 are the task's stdio)"
                )),
                None => Err(format!(
                    "invalid readiness {s:?} (exec, notify or fd:N)"
                )),
            },
        }
    }
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Exec => f.write_str("exec"),
            Ready::Notify => f.write_str("notify"),
            Ready::Fd(n) => write!(f, "fd:{n}"),
        }
    }
}

impl FromStr for RestartLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (count, interval) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid restart limit {s:?} (COUNT/INTERVAL, e.g. 3/10s)"))?;
        Ok(RestartLimit {
            count: count
                .parse()
                .map_err(|_| format!("invalid restart count {count:?} in {s:?}"))?,
            interval: parse_duration(interval)?,
        })
    }
}

impl fmt::Display for RestartLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, Dur(self.interval))
    }
}

/// `200ms`, `1.5s`, `10s`, `5m`, `1h`, `2d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 200ms, 10s, 5m, 1h)");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(n * scale).map_err(|_| bad())
}

/// A duration in the fewest words [`parse_duration`] reads back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let sub_ms = !self.0.subsec_nanos().is_multiple_of(1_000_000);
        if sub_ms {
            return write!(f, "{}s", self.0.as_secs_f64());
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_back() {
        for (s, d) in [
            ("200ms", Duration::from_millis(200)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("2", Duration::from_secs(2)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
            assert_eq!(parse_duration(&Dur(d).to_string()), Ok(d), "{s}");
        }
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Dur(Duration::ZERO).to_string(), "0ms");
        for bad in ["", "s", "10x", "-1s", "1e999s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policies_read_and_print_back() {
        for s in ["no", "on-failure", "always"] {
            assert_eq!(s.parse::<Restart>().unwrap().to_string(), s);
        }
        for s in ["exec", "notify", "fd:3", "fd:1023"] {
            assert_eq!(s.parse::<Ready>().unwrap().to_string(), s);
        }
        for bad in ["fd:2", "fd:x", "fd:1024", "ready"] {
            assert!(bad.parse::<Ready>().is_err(), "{bad}");
        }
        let l: RestartLimit = "3/10s".parse().unwrap();
        assert_eq!((l.count, l.interval), (3, Duration::from_secs(10)));
        assert_eq!(l.to_string(), "3/10s");
        assert!("3".parse::<RestartLimit>().is_err());
        assert!("x/1s".parse::<RestartLimit>().is_err());
    }

    #[test]
    fn impossible_policies_are_refused() {
        let mut s = Supervision::default();
        assert!(s.check().is_ok() && s.is_plain());
        s.restart_delay = Duration::from_secs(60);
        assert!(s.check().is_err());
        s = Supervision::default();
        s.restart_limit.interval = Duration::ZERO;
        assert!(s.check().is_err());
        s = Supervision::default();
        s.restart_limit.count = MAX_RESTART_COUNT + 1;
        assert!(s.check().is_err());
    }
}
