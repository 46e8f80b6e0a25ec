//! The end of a run: the exit record and accounting line, the on-exit
//! command, removing the cgroup, giving the name back, answering waiters.

use std::fs::File;

use lanco_proto::layout;

use super::supervise::Verdict;
use super::{start_process, Monitor, Phase};
use crate::control::{self, ControlReply};
use crate::error::Error;
use crate::handoff::{send, Report};
use crate::journal::Rotation;
use crate::record::{self, Exit, ExitRecord};
use crate::supervision::Dur;

impl Monitor {
    /// The payload and all its processes are gone: record it, and decide
    /// what comes next (a supervised task's restart).
    pub(super) fn task_ended(&mut self) {
        // RUSAGE_CHILDREN covers every descendant that was waited for: the
        // payload and the orphans this subreaper reaped (over every run).
        let max_rss = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
            .ok()
            .map(|u| u.max_rss() as u64 * 1024);
        let exit = self.main_exit.unwrap_or(Exit::Lost);
        let down = self.needs.as_mut().and_then(|n| n.down.take());
        let verdict = match down {
            Some(need) if !self.sup.inhibited => {
                self.sup.paused(exit);
                Verdict::WaitFor(need)
            }
            _ => self.sup.decide(exit),
        };
        let mut rec = ExitRecord::ended(
            &self.state,
            &self.claim.cgroup,
            self.run_counters,
            exit,
            self.stopping.is_some(),
            self.killed_after_timeout,
            max_rss,
        );
        rec.restarts = self.sup.restarts;
        match &verdict {
            Verdict::Failed(why) => {
                self.note(&format_args!("failed: {why}"));
                rec.failed = Some(why.clone());
            }
            Verdict::Restart(d) => {
                self.note(&format_args!("restarting in {}", Dur(*d)));
                self.sup.next_start = Some(std::time::Instant::now() + *d);
            }
            Verdict::WaitFor(need) => {
                self.note(&format_args!("waiting for {need}"));
                self.state.waiting_for = Some(need.clone());
            }
            Verdict::End => {}
        }
        rec.notes = self.notes.borrow().lines();
        let task = &self.spec.task;
        let (accounting, not_accounted) = match record::append_accounting(
            &self.dir,
            &rec,
            Rotation::accounting(&self.spec.config),
        ) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        };
        // The record first: whoever finds the state file gone reads this
        // run's record. Between runs the state file stays, saying when the
        // next is due.
        let recorded = record::write_json(&self.dir, &layout::exit_name(task), &rec).err();
        let state_gone = match verdict {
            Verdict::Restart(_) | Verdict::WaitFor(_) => None,
            _ => self
                .dir
                .remove(&layout::state_name(task))
                .map_err(Error::from)
                .err(),
        };
        let failed = [recorded, not_accounted, state_gone];
        for e in failed.into_iter().flatten() {
            self.note(&e.one_line());
        }
        self.accounting = accounting;
        self.record = Some(rec);
        if matches!(verdict, Verdict::Restart(_) | Verdict::WaitFor(_)) {
            self.write_state();
        }
        self.sup.verdict = Some(verdict);
        // The stop is done: the on-exit command that may follow is not
        // swept or killed by it (a new stop request still can).
        self.stopping = None;
    }

    /// Starts the on-exit command, if any, in the (empty) task cgroup so it
    /// is limited, listed and stoppable like the task. Returns whether it runs.
    pub(super) fn phase_on_exit(&mut self) -> bool {
        let (Some(cmd), Some(rec)) = (self.spec.on_exit.clone(), self.record.as_ref()) else {
            return false;
        };
        let mut env = self.spec.env.clone();
        env.retain(|e| !e.starts_with(b"LANCO_"));
        let status = rec
            .exit
            .shell_status()
            .map(|s| s.to_string())
            .unwrap_or_default();
        for (k, v) in [
            ("LANCO_NAMESPACE", self.spec.ns.to_string()),
            ("LANCO_TASK", self.spec.task.to_string()),
            ("LANCO_EXIT_STATUS", status),
            ("LANCO_EXIT", rec.exit.to_string()),
        ] {
            env.push(format!("{k}={v}").into_bytes());
        }
        let argv = vec![b"/bin/sh".to_vec(), b"-c".to_vec(), cmd.into_bytes()];
        match start_process(
            &self.cgroup_dir,
            &argv,
            &env,
            &self.spec.cwd,
            &self.log.file,
            None,
            |_| {},
        ) {
            Ok(pid) => {
                self.main_pid = pid;
                self.main_exit = None;
                self.phase = Phase::OnExit;
                true
            }
            Err(e) => {
                self.note(&format_args!("on-exit command: {}", e.one_line()));
                false
            }
        }
    }

    pub(super) fn finish(mut self) -> ! {
        // The task may have made cgroups of its own inside its cgroup.
        if let Err(e) = self.claim.cgroup.remove_tree() {
            self.note(&e);
        }
        let _ = self
            .dir
            .remove_socket(&layout::socket_name(&self.spec.task));
        self.set_mark(false);
        if self.sup.next_start.take().is_some() || self.state.waiting_for.is_some() {
            // Stopped during (or just before) a restart delay: the state
            // file kept for the next run goes.
            let _ = self.dir.remove(&layout::state_name(&self.spec.task));
        }
        // Release the name before answering, so a `run` right after a
        // returned `stop` finds it free.
        self.claim.release();
        self.answer_waiters();
        if let (Some(rec), Some(out)) = (&self.record, &mut self.report) {
            let _ = send(out, &Report::Finished(rec.exit));
        }
        if let Some(Err(e)) = self.accounting.as_ref().map(File::sync_data) {
            // To the journal only: the name is given back, so the exit
            // record may already be a new run's.
            self.notes
                .borrow()
                .journal(&format!("cannot sync the accounting journal: {e}"));
        }
        self.settle_at_end();
        std::process::exit(0)
    }

    /// Tells everyone waiting for the end of the run (`stop`, `wait`) that
    /// it is over, with its record.
    pub(super) fn answer_waiters(&mut self) {
        let reply = ControlReply::Done {
            killed_after_timeout: self.killed_after_timeout,
            record: self
                .record
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok()),
        };
        for mut w in self.waiters.drain(..) {
            let _ = control::send(&mut w, &reply);
        }
    }
}
