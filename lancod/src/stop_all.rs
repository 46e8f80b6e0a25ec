//! `lancod stop-all`: ExecStop of lanco-tasks.service, the one action that
//! ends every task. Root, not reachable through the socket; it signals
//! monitors through pidfds and kills through cgroupfs, and writes nothing in
//! a member's directory.

use std::time::{Duration, Instant};

use lanco_proto::cgroupfs::Cgroup;
use lanco_proto::layout::{self, Layout};
use lanco_proto::NamespaceName;
use nix::sys::signal::Signal;

use crate::namespace::{registered, running_task_cgroups, NsError};

/// Ends every task of every registered namespace as `lanco stop` would, for
/// `systemctl stop lanco-tasks.service`: SIGTERM to each monitor, which then
/// stops its task (freeze, SIGTERM to each process, thaw; cgroup.kill after
/// the task's stop timeout) and writes an exit record that says "stopped".
/// At `timeout`, the task cgroups still populated are killed with
/// cgroup.kill and removed; monitors still alive a few seconds later get
/// SIGKILL. A namespace that will not empty does not stop the others: its
/// failure is reported once all were tried. Never cgroup.kill on a
/// namespace's own cgroup: the kernel then kills every task the namespace's
/// monitors start afterwards. Returns how many monitors were signalled.
pub fn stop_all(layout: &Layout, timeout: Duration) -> Result<usize, NsError> {
    let namespaces = registered(layout)?;
    let mut signalled = 0;
    for (ns, _) in &namespaces {
        signalled += signal_monitors(layout, ns, Signal::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    let mut failed = Vec::new();
    for (ns, _) in &namespaces {
        if let Err(e) = stop_rest(layout, ns, deadline) {
            tracing::error!(%ns, "{e}");
            failed.push(format!("{ns}: {e}"));
        }
    }
    if failed.is_empty() {
        Ok(signalled)
    } else {
        Err(NsError::Several(failed.join("; ")))
    }
}

/// After the monitors were told to stop: wait for them until `deadline`,
/// then kill what is left.
fn stop_rest(layout: &Layout, ns: &NamespaceName, deadline: Instant) -> Result<(), NsError> {
    for m in monitor_cgroups(layout, ns) {
        let left = deadline.saturating_duration_since(Instant::now());
        m.wait_events(left, |e| !e.populated)?;
    }
    let mut killed = Vec::new();
    for t in running_task_cgroups(layout, ns)? {
        tracing::warn!(%ns, task = %t.task, "still running: cgroup.kill");
        t.cgroup.kill()?;
        killed.push(t.cgroup);
    }
    for cg in &killed {
        cg.wait_events(Duration::from_secs(5), |e| !e.populated)?;
    }
    // Their monitors, if alive, now record the end and exit.
    let mut alive = false;
    for m in monitor_cgroups(layout, ns) {
        alive |= !m.wait_events(Duration::from_secs(5), |e| !e.populated)?;
    }
    if alive {
        tracing::warn!(%ns, "monitors still alive: SIGKILL");
        signal_monitors(layout, ns, Signal::SIGKILL);
        for m in monitor_cgroups(layout, ns) {
            m.wait_events(Duration::from_secs(5), |e| !e.populated)?;
        }
    }
    // Processes a member put outside its tasks (a cgroup of its own in its
    // subtree, or the subtree's own cgroup.procs) end too. The member's
    // subtree is then removed, as a killed cgroup must not be reused (see
    // above); its next admission makes it anew.
    for (uid, user) in layout::user_cgroups(layout, ns)? {
        if user.populated()? {
            tracing::warn!(%ns, uid, "processes outside any task: cgroup.kill");
            user.kill()?;
            user.wait_events(Duration::from_secs(5), |e| !e.populated)?;
            killed.push(user);
        }
    }
    for cg in killed {
        // A monitor that outlived the kill may have removed it already.
        if let Err(e) = cg.remove_tree() {
            tracing::warn!(%ns, "{e}");
        }
    }
    let cg = Cgroup::new(layout.ns_cgroup(ns));
    if cg.populated()? {
        return Err(NsError::Several(format!(
            "{} still holds processes",
            cg.path().display()
        )));
    }
    Ok(())
}

/// Sends `sig` to every monitor of `ns` (through pidfds: never to a pid a
/// member moved out and that was reused); returns how many.
fn signal_monitors(layout: &Layout, ns: &NamespaceName, sig: Signal) -> usize {
    let mut done = std::collections::HashSet::new();
    for m in monitor_cgroups(layout, ns) {
        if let Err(e) = m.signal_frozen(sig, &mut done) {
            tracing::warn!(%ns, "{e}");
        }
    }
    done.len()
}

/// The cgroups a namespace's monitors live in: each member's leaf, and the
/// 0.1 one.
fn monitor_cgroups(layout: &Layout, ns: &NamespaceName) -> Vec<Cgroup> {
    let mut out: Vec<Cgroup> = layout::user_cgroups(layout, ns)
        .unwrap_or_default()
        .into_iter()
        .map(|(uid, _)| Cgroup::new(layout.monitor_cgroup(ns, uid)))
        .collect();
    out.push(Cgroup::new(layout.legacy_monitor_cgroup(ns)));
    out.retain(Cgroup::exists);
    out
}
