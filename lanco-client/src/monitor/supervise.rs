//! Supervision: the same monitor restarts the task's command under its
//! policy (with a doubling delay and a limit), and tells the caller when
//! the task is ready. No new admission, so restarts go on while lancod is
//! down; nothing grows with the number of restarts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lanco_proto::layout;

use super::ready::{Channel, Said};
use super::{start_process, Monitor, Phase};
use crate::error::Result;
use crate::handoff::{send, Report};
use crate::record::{self, Counters, Exit, Supervised};
use crate::supervision::{Dur, Ready, Restart, Supervision};

/// What comes after a run's end (and its on-exit command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Start the command again, this long after the end.
    Restart(Duration),
    /// Over: no restart asked for, or a stop through lanco.
    End,
    /// Over for good, and the task is failed: why.
    Failed(String),
    /// Stopped because this need went down: start again once it is ready.
    WaitFor(lanco_proto::TaskName),
}

/// Shortest time between two writes of the state file for the task's
/// own words (`STATUS=`): a chatty task must not keep the monitor busy.
const STATE_WRITE_GAP: Duration = Duration::from_millis(100);

pub(super) struct Supervisor {
    pub policy: Supervision,
    pub channel: Channel,
    /// Restarts within the limit's interval (at most `count` kept).
    recent: VecDeque<Instant>,
    pub restarts: u32,
    delay: Duration,
    pub run_started: Instant,
    /// This run said it is ready (always, for exec readiness).
    pub ready: bool,
    /// The caller has had its Ready or NotReady.
    reported: bool,
    /// When this run must be ready by.
    pub ready_deadline: Option<Instant>,
    /// Why this run never got ready, once that is known.
    not_ready: Option<String>,
    /// A stop or kill through lanco: whatever the end, no restart.
    pub inhibited: bool,
    pub next_start: Option<Instant>,
    pub verdict: Option<Verdict>,
    status: Option<String>,
    stopping_said: bool,
    last_exit: Option<Exit>,
    /// The state file waits to be rewritten (a `STATUS=` that came soon
    /// after the last write): when.
    pub state_due: Option<Instant>,
    last_state_write: Option<Instant>,
}

impl Supervisor {
    pub fn new(policy: Supervision) -> Result<Self> {
        Ok(Supervisor {
            channel: Channel::new(policy.ready)?,
            recent: VecDeque::with_capacity(policy.restart_limit.count.min(64) as usize),
            restarts: 0,
            delay: policy.restart_delay,
            run_started: Instant::now(),
            ready: policy.ready == Ready::Exec,
            reported: policy.ready == Ready::Exec,
            ready_deadline: None,
            not_ready: None,
            inhibited: false,
            next_start: None,
            verdict: None,
            status: None,
            stopping_said: false,
            last_exit: None,
            state_due: None,
            last_state_write: None,
            policy,
        })
    }

    /// The state file was just written.
    pub fn state_written(&mut self) {
        self.state_due = None;
        self.last_state_write = Some(Instant::now());
    }

    /// A run has started: its readiness starts over.
    pub fn run_began(&mut self) {
        let now = Instant::now();
        self.run_started = now;
        self.ready = self.policy.ready == Ready::Exec;
        self.not_ready = None;
        self.stopping_said = false;
        self.ready_deadline = (!self.ready).then(|| now + self.policy.start_timeout);
    }

    /// The run did not get ready in time: why, for its record and the caller.
    pub fn timed_out(&mut self) -> String {
        self.ready_deadline = None;
        let why = format!(
            "was not ready after {}; stopped",
            Dur(self.policy.start_timeout)
        );
        self.not_ready = Some(why.clone());
        why
    }

    /// The run ended with `exit` because a need went down: no failure, and
    /// no restart counted against the limit.
    pub fn paused(&mut self, exit: Exit) {
        self.last_exit = Some(exit);
        self.ready_deadline = None;
    }

    /// The run ended with `exit`: restart, or not, under the policy.
    pub fn decide(&mut self, exit: Exit) -> Verdict {
        let now = Instant::now();
        self.last_exit = Some(exit);
        self.ready_deadline = None;
        let never_ready = !self.ready;
        if never_ready && self.not_ready.is_none() {
            self.not_ready = Some(if self.inhibited {
                "was stopped before it was ready".into()
            } else {
                format!("{} before it was ready", exit_words(exit))
            });
        }
        if self.inhibited {
            return self.not_ready.clone().map_or(Verdict::End, Verdict::Failed);
        }
        let failure = never_ready || exit != Exit::Code(0);
        let again = match self.policy.restart {
            Restart::No => false,
            Restart::OnFailure => failure,
            Restart::Always => true,
        };
        if !again {
            return self.not_ready.clone().map_or(Verdict::End, Verdict::Failed);
        }
        let limit = self.policy.restart_limit;
        let ran = now.duration_since(self.run_started);
        if ran >= limit.interval {
            self.delay = self.policy.restart_delay;
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > limit.interval)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= limit.count as usize {
            let last = self.not_ready.clone().unwrap_or_else(|| exit_words(exit));
            return Verdict::Failed(format!(
                "restarted {} times within {}; last run {last}",
                limit.count,
                Dur(limit.interval)
            ));
        }
        self.recent.push_back(now);
        let delay = self.delay;
        if ran < limit.interval {
            self.delay = (self.delay * 2).min(self.policy.restart_delay_max);
        }
        Verdict::Restart(delay)
    }

    /// The supervision part of the state file.
    pub fn state(&self) -> Supervised {
        let phase = match () {
            _ if self.next_start.is_some() => "restarting",
            _ if self.stopping_said => "stopping",
            _ if !self.ready => "starting",
            _ => "running",
        };
        let next_restart_ms = self.next_start.map(|t| {
            let left = t.saturating_duration_since(Instant::now());
            crate::time::now_millis() + left.as_millis() as i64
        });
        Supervised {
            restart: self.policy.restart.to_string(),
            restart_limit: self.policy.restart_limit.to_string(),
            ready: self.policy.ready.to_string(),
            phase: phase.into(),
            restarts: self.restarts,
            last_exit: self.last_exit,
            next_restart_ms,
            status: self.status.clone(),
        }
    }
}

/// "exited with status 1", "killed by signal 9 (SIGKILL)".
fn exit_words(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited with status {c}"),
        other => other.to_string(),
    }
}

impl Monitor {
    /// Sends the caller its one readiness report, if it still waits for one.
    fn tell_caller(&mut self, r: Report) {
        if self.sup.reported {
            return;
        }
        self.sup.reported = true;
        if let Some(out) = &mut self.report {
            let _ = send(out, &r);
        }
    }

    /// What the task said on its readiness channel.
    pub(super) fn hear(&mut self) {
        let said = self.sup.channel.read(&self.claim.cgroup);
        let mut changed = false;
        for s in said {
            match s {
                Said::Ready if !self.sup.ready && matches!(self.phase, Phase::Task) => {
                    self.sup.ready = true;
                    self.sup.ready_deadline = None;
                    // At once: dependents wait for this.
                    self.write_state();
                    self.tell_caller(Report::Ready);
                }
                Said::Ready => {}
                Said::Status(text) => {
                    changed |= self.sup.status.as_deref() != Some(text.as_str());
                    self.sup.status = Some(text);
                }
                Said::Stopping => {
                    changed |= !self.sup.stopping_said;
                    self.sup.stopping_said = true;
                }
                Said::MainPid(pid) => self.main_pid_is(pid),
                Said::Closed if !self.sup.ready && self.exits_soon() => {}
                Said::Closed if !self.sup.ready => {
                    self.note(&"the task closed its readiness fd before it was ready; stopping it");
                    self.sup.not_ready =
                        Some("closed its readiness fd before it was ready; stopped".into());
                    self.sup.ready_deadline = None;
                    self.begin_stop(None, "not ready", false);
                }
                Said::Closed => {}
            }
        }
        if changed {
            self.write_state_soon();
        }
    }

    /// The readiness fd closed before ready: a task that exits closes it
    /// too, and its exit status says more than the close. Has the main
    /// process ended, or does it within 100 ms?
    fn exits_soon(&mut self) -> bool {
        let until = Instant::now() + Duration::from_millis(100);
        loop {
            self.reap();
            if self.main_exit.is_some() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `MAINPID=`: a process of the task takes over as its main process
    /// (a daemon that forked); its exit is the run's, if the monitor reaps
    /// it (the run is "lost" otherwise).
    fn main_pid_is(&mut self, pid: i32) {
        let ours = self
            .claim
            .cgroup
            .procs_recursive()
            .is_ok_and(|p| p.contains(&pid));
        if ours && matches!(self.phase, Phase::Task) && pid != self.main_pid {
            self.note(&format_args!("main process is now {pid} (MAINPID)"));
            self.main_pid = pid;
            self.main_exit = None;
            self.state.pid = pid;
            self.write_state_soon();
        }
    }

    /// The start timeout passed without readiness: stop the run (a failure).
    pub(super) fn start_timed_out(&mut self) {
        let why = self.sup.timed_out();
        self.note(&format_args!("the task {why}"));
        self.begin_stop(None, "start timeout", false);
    }

    /// After a run and its on-exit command: restart (true; the phase is
    /// then Waiting), or not.
    pub(super) fn after_run(&mut self) -> bool {
        let verdict = self.sup.verdict.take().unwrap_or(Verdict::End);
        match verdict {
            Verdict::Restart(_) if self.sup.inhibited => {
                self.tell_caller(Report::NotReady("was stopped before it was ready".into()));
                false
            }
            Verdict::Restart(_) | Verdict::WaitFor(_) => {
                // Waiters of `lanco wait` wanted this run's end.
                self.answer_waiters();
                self.phase = Phase::Waiting;
                self.main_exit = None;
                true
            }
            Verdict::End | Verdict::Failed(_) => {
                if let Some(why) = self.sup.not_ready.clone() {
                    let why = match verdict {
                        Verdict::Failed(f) if f != why => f,
                        _ => why,
                    };
                    self.tell_caller(Report::NotReady(why));
                }
                false
            }
        }
    }

    /// The restart delay is over: start the command again.
    pub(super) fn restart(&mut self) {
        self.sup.next_start = None;
        self.state.waiting_for = None;
        if let Some(n) = &mut self.needs {
            n.watch();
        }
        self.sup.restarts += 1;
        self.phase = Phase::Task;
        self.record = None;
        self.killed_after_timeout = false;
        self.notes.borrow_mut().clear();
        self.run_counters = Counters::read(&self.claim.cgroup);
        let started = self.sup.channel.arm().and_then(|pass| {
            start_process(
                &self.cgroup_dir,
                &self.spec.argv,
                &self.run_env,
                &self.spec.cwd,
                &self.log.file,
                pass.as_ref()
                    .map(|(fd, at)| (std::os::fd::AsFd::as_fd(fd), *at)),
                |_| {},
            )
        });
        self.sup.run_began();
        let now = crate::time::now_secs();
        self.state.start = now;
        self.state.start_time = crate::time::utc(now);
        match started {
            Ok(pid) => {
                self.main_pid = pid;
                self.main_exit = None;
                self.state.pid = pid;
                self.state.run_id = super::start::run_id(pid);
            }
            Err(e) => {
                // Counted as a run that failed at once: its record says why.
                self.note(&format_args!("restart: {}", e.one_line()));
                self.state.pid = 0;
                self.state.run_id = super::start::run_id(0);
                self.main_pid = 0;
                self.main_exit = Some(Exit::Code(127));
            }
        }
        self.write_state();
    }

    /// Writes the state file now (the run started, or a supervised task's
    /// state changed).
    pub(super) fn write_state(&mut self) {
        if !self.sup.policy.is_plain() {
            self.state.supervised = Some(self.sup.state());
        }
        self.sup.state_written();
        if let Err(e) =
            record::write_json(&self.dir, &layout::state_name(&self.spec.task), &self.state)
        {
            self.note(&e.one_line());
        }
    }

    /// Rewrites the state file, at most every STATE_WRITE_GAP.
    fn write_state_soon(&mut self) {
        let now = Instant::now();
        match self.sup.last_state_write {
            Some(t) if now.duration_since(t) < STATE_WRITE_GAP => {
                self.sup.state_due = Some(t + STATE_WRITE_GAP);
            }
            _ => self.write_state(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervision::RestartLimit;

    fn sup(restart: Restart, count: u32) -> Supervisor {
        Supervisor::new(Supervision {
            restart,
            restart_delay: Duration::from_millis(100),
            restart_delay_max: Duration::from_millis(350),
            restart_limit: RestartLimit {
                count,
                interval: Duration::from_secs(10),
            },
            ..Supervision::default()
        })
        .unwrap()
    }

    #[test]
    fn delays_double_up_to_the_maximum_and_the_limit_fails_the_task() {
        let mut s = sup(Restart::OnFailure, 4);
        let mut delays = Vec::new();
        for _ in 0..4 {
            s.run_began();
            match s.decide(Exit::Code(1)) {
                Verdict::Restart(d) => delays.push(d.as_millis()),
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(delays, [100, 200, 350, 350]);
        s.run_began();
        assert_eq!(
            s.decide(Exit::Signal(9)),
            Verdict::Failed(
                "restarted 4 times within 10s; last run killed by signal 9 (SIGKILL)".into()
            )
        );
    }

    #[test]
    fn a_run_that_stayed_up_longer_than_the_interval_resets_the_delay() {
        let mut s = sup(Restart::Always, 100);
        for _ in 0..3 {
            s.run_began();
            s.decide(Exit::Code(1));
        }
        s.run_began();
        s.run_started -= Duration::from_secs(11);
        assert_eq!(
            s.decide(Exit::Code(1)),
            Verdict::Restart(Duration::from_millis(100))
        );
        // Then doubling starts over.
        for want in [100, 200] {
            s.run_began();
            assert_eq!(
                s.decide(Exit::Code(1)),
                Verdict::Restart(Duration::from_millis(want))
            );
        }
    }

    #[test]
    fn on_failure_ends_at_exit_0_and_always_does_not() {
        let mut s = sup(Restart::OnFailure, 3);
        s.run_began();
        assert_eq!(s.decide(Exit::Code(0)), Verdict::End);
        let mut s = sup(Restart::Always, 3);
        s.run_began();
        assert!(matches!(s.decide(Exit::Code(0)), Verdict::Restart(_)));
        let mut s = sup(Restart::No, 3);
        s.run_began();
        assert_eq!(s.decide(Exit::Code(1)), Verdict::End);
    }

    #[test]
    fn a_stop_through_lanco_is_never_restarted() {
        let mut s = sup(Restart::Always, 3);
        s.run_began();
        s.inhibited = true;
        assert_eq!(s.decide(Exit::Signal(15)), Verdict::End);
    }

    #[test]
    fn a_run_that_never_got_ready_is_a_failure() {
        let mut s = Supervisor::new(Supervision {
            ready: Ready::Notify,
            ..Supervision::default()
        })
        .unwrap();
        s.run_began();
        assert_eq!(
            s.decide(Exit::Code(0)),
            Verdict::Failed("exited with status 0 before it was ready".into())
        );
    }
}
