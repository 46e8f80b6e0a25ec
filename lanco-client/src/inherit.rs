//! What a task inherits from the process that started it besides its
//! environment and working directory (which the spec carries): resource
//! limits, nice value and CPU affinity. A cold start gets them for free (the
//! monitor is exec'd by the caller). A monitor forked by a warm spawner has
//! the spawner's, so the spawner reads the caller's from the kernel (prlimit,
//! getpriority, sched_getaffinity on the caller, pinned by its pidfd; never
//! from anything the caller sends) and the monitor sets them on itself
//! before it starts anything. What it cannot set (a hard limit above the
//! spawner's, a nice value below it) declines the warm start and the caller
//! takes the cold path: a task never runs with other limits than its
//! caller's. Everything else a fork passes on must be the same in caller
//! and spawner, or the caller is not served (peer.rs).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::sys;

/// Every resource limit Linux has, with its name for messages; an
/// `Inherited`'s limits are in this order.
const RESOURCES: [(Resource, &str); 16] = [
    (Resource::RLIMIT_AS, "AS"),
    (Resource::RLIMIT_CORE, "CORE"),
    (Resource::RLIMIT_CPU, "CPU"),
    (Resource::RLIMIT_DATA, "DATA"),
    (Resource::RLIMIT_FSIZE, "FSIZE"),
    (Resource::RLIMIT_LOCKS, "LOCKS"),
    (Resource::RLIMIT_MEMLOCK, "MEMLOCK"),
    (Resource::RLIMIT_MSGQUEUE, "MSGQUEUE"),
    (Resource::RLIMIT_NICE, "NICE"),
    (Resource::RLIMIT_NOFILE, "NOFILE"),
    (Resource::RLIMIT_NPROC, "NPROC"),
    (Resource::RLIMIT_RSS, "RSS"),
    (Resource::RLIMIT_RTPRIO, "RTPRIO"),
    (Resource::RLIMIT_RTTIME, "RTTIME"),
    (Resource::RLIMIT_SIGPENDING, "SIGPENDING"),
    (Resource::RLIMIT_STACK, "STACK"),
];

/// The caller's limits, nice value and CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    /// (soft, hard) per entry of `RESOURCES`.
    rlimits: Vec<(u64, u64)>,
    nice: i32,
    /// The CPUs the caller may run on; empty if unknown.
    cpus: Vec<u32>,
}

impl Inherited {
    /// Process `pid`'s (0: this one's).
    pub fn of(pid: i32) -> Result<Self, String> {
        let rlimits = RESOURCES
            .iter()
            .map(|(r, name)| {
                sys::rlimit_of(pid, *r as libc::__rlimit_resource_t)
                    .map_err(|e| format!("cannot read RLIMIT_{name}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(pid))
            .map_err(|e| format!("cannot read the CPU affinity: {e}"))?;
        let cpus = (0..nix::sched::CpuSet::count())
            .filter(|i| set.is_set(*i).unwrap_or(false))
            .map(|i| i as u32)
            .collect();
        let nice = sys::nice_of(pid).map_err(|e| format!("cannot read the nice value: {e}"))?;
        Ok(Inherited {
            rlimits,
            nice,
            cpus,
        })
    }

    /// Makes this process's the same, or says which one it cannot.
    pub fn apply(&self) -> Result<(), String> {
        for ((r, name), &(soft, hard)) in RESOURCES.iter().zip(&self.rlimits) {
            if getrlimit(*r).ok() != Some((soft, hard)) {
                setrlimit(*r, soft, hard)
                    .map_err(|e| format!("cannot set RLIMIT_{name} to {soft}/{hard}: {e}"))?;
            }
        }
        if sys::nice_of(0).ok() != Some(self.nice) {
            sys::set_nice(self.nice)
                .map_err(|e| format!("cannot set nice value {}: {e}", self.nice))?;
        }
        if !self.cpus.is_empty() {
            let mut set = nix::sched::CpuSet::new();
            for &c in &self.cpus {
                set.set(c as usize)
                    .map_err(|e| format!("bad CPU {c} in the affinity: {e}"))?;
            }
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(|e| format!("cannot set the CPU affinity: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_context_applies_unchanged() {
        let mine = Inherited::of(0).unwrap();
        assert_eq!(mine.rlimits.len(), RESOURCES.len());
        assert!(!mine.cpus.is_empty());
        mine.apply().unwrap();
        assert_eq!(Inherited::of(0).unwrap(), mine);
    }

    #[test]
    fn a_limit_above_the_hard_one_is_refused_by_name() {
        if nix::unistd::geteuid().is_root() {
            return; // root may raise any limit
        }
        let mut more = Inherited::of(0).unwrap();
        let i = RESOURCES.iter().position(|(_, n)| *n == "NOFILE").unwrap();
        let (_, hard) = more.rlimits[i];
        if hard == u64::MAX {
            return;
        }
        more.rlimits[i] = (hard + 1, hard + 1);
        let e = more.apply().unwrap_err();
        assert!(e.contains("RLIMIT_NOFILE"), "{e}");
    }
}
