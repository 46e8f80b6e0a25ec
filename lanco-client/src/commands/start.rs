//! `lanco NS start`: definitions started with their dependencies, as one
//! transition of the namespace (under its transition lock). The plan is
//! made first, and refused as a whole for a target whose dependencies
//! cannot all be started (not defined, another member's and not running);
//! then each task is started as soon as what it orders after is ready
//! (independent branches in parallel), and a failed need fails its
//! dependents without starting them. At the end, whatever this start
//! pulled in that nothing wanted holds is stopped again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lanco_proto::files;
use lanco_proto::limits::Key as LimitKey;
use lanco_proto::{Limits, TaskName};

use crate::defs::{self, Defs};
use crate::error::{Error, Result};
use crate::graph::{self, Kind};
use crate::msg;
use crate::namespace::Namespace;
use crate::spec::TaskSpec;
use crate::start::Started;
use crate::transition::{Lock, Nodes, Readiness};

/// Most tasks started at the same time.
const PARALLEL: usize = 16;
/// Longest wait for a dependency that runs but is not ready yet (one this
/// start did not start: its own monitor brings it up, or not).
const RUNNING_DEP_WAIT: Duration = Duration::from_secs(60);

/// `lanco NS start [--no-wait] TASK...`: the caller's definitions, with
/// their dependencies; the status of the first that failed.
/// `limits` (the command line's) override the definitions' for this start
/// of the tasks named, not of what they pull in.
pub fn run(ns: &Namespace, tasks: &[TaskName], no_wait: bool, limits: &Limits) -> Result<u8> {
    let mut tasks = tasks.to_vec();
    tasks.dedup();
    let all = defs::all(ns)?;
    let targets = tasks
        .into_iter()
        .map(|task| {
            let spec = defs::owned(&all, &task, "start it")
                .and_then(|d| d.to_spec(&task))
                .map(|s| with_limits(ns, s, limits));
            (task, spec)
        })
        .collect();
    let results = start_graph(ns, targets, no_wait, Some(all))?;
    Ok(report_all("start", results, no_wait))
}

/// `spec` with `limits` over its own, warned about where above a ceiling.
pub(crate) fn with_limits(ns: &Namespace, mut spec: TaskSpec, limits: &Limits) -> TaskSpec {
    spec.limits = spec.limits.overlaid(limits);
    warn_above_ceilings(ns, &spec);
    spec
}

/// A task limit above the namespace's ceiling is allowed (the ceiling still
/// binds), but the member should know it will not get what it asked for.
fn warn_above_ceilings(ns: &Namespace, spec: &TaskSpec) {
    // Without task limits there is nothing to compare: the ceilings' six
    // files are not read on the start path.
    if spec.limits.is_empty() {
        return;
    }
    let Ok(ceil) = ns.ceilings() else { return };
    for k in [
        LimitKey::Memory,
        LimitKey::MemoryHigh,
        LimitKey::Pids,
        LimitKey::Cpu,
    ] {
        let value = |l: &Limits| match k {
            LimitKey::Memory => l.memory,
            LimitKey::MemoryHigh => l.memory_high,
            LimitKey::Pids => l.pids,
            _ => l.cpu_quota_usec,
        };
        if let (Some(mine), Some(top)) = (value(&spec.limits), value(&ceil)) {
            if mine > top {
                crate::msg::warn(
                    "run",
                    &format_args!(
                        "{}: --{k} {} is above the namespace's ceiling {}, which still binds",
                        spec.name,
                        k.shown(&spec.limits).unwrap_or_default(),
                        k.shown(&ceil).unwrap_or_default()
                    ),
                );
            }
        }
    }
}

/// `lanco NS start --enabled [--no-wait]`: every definition of the
/// caller's marked enabled. Only the caller's own file is read for the
/// list, so another member's broken one holds up nothing.
pub fn run_enabled(ns: &Namespace, no_wait: bool, limits: &Limits) -> Result<u8> {
    let targets = defs::mine(ns)?
        .into_iter()
        .filter(|(_, d)| d.enable)
        .map(|(task, d)| {
            let spec = d.to_spec(&task).map(|s| with_limits(ns, s, limits));
            (task, spec)
        })
        .collect();
    let results = start_graph(ns, targets, no_wait, None)?;
    Ok(report_all("start", results, no_wait))
}

/// One line per target; the status of the first that failed.
fn report_all(cmd: &str, results: Vec<(TaskName, Result<Option<Started>>)>, no_wait: bool) -> u8 {
    let mut code = 0;
    for (task, r) in results {
        let status = report(cmd, &task, r.map(|s| s.is_some()), no_wait);
        if code == 0 {
            code = status;
        }
    }
    code
}

/// One line on stderr for `task`'s outcome; its exit status.
pub fn report(cmd: &str, task: &TaskName, r: Result<bool>, no_wait: bool) -> u8 {
    match r {
        Ok(true) if no_wait => msg::log("INFO", cmd, &format_args!("task {task} started")),
        Ok(true) => msg::log("INFO", cmd, &format_args!("task {task} is ready")),
        Ok(false) => msg::log("INFO", cmd, &format_args!("task {task} is already running")),
        Err(e) => {
            msg::error(cmd, &e.one_line());
            return e.exit_code();
        }
    }
    0
}

/// One task of the plan.
struct Item {
    task: TaskName,
    spec: TaskSpec,
    /// A target (started on purpose), or pulled in by this task.
    pulled_by: Option<TaskName>,
    /// What it orders after among the plan's items: (index, kind).
    after: Vec<(usize, Kind)>,
    /// Running tasks it orders after, whose readiness it waits for.
    running_deps: Vec<(TaskName, Kind)>,
}

/// Starts `targets` (each with its spec, or why it cannot be started) and
/// what they depend on, as one transition; each target's outcome: its
/// [`Started`], `None` if it was running already, or its error. `all`:
/// the namespace's definitions, if already read.
pub(crate) fn start_graph(
    ns: &Namespace,
    targets: Vec<(TaskName, Result<TaskSpec>)>,
    no_wait: bool,
    all: Option<BTreeMap<u32, Defs>>,
) -> Result<Vec<(TaskName, Result<Option<Started>>)>> {
    let lock = ns.transition_lock(super::stop::waiting)?;
    start_locked(ns, &lock, targets, no_wait, all)
}

/// [`start_graph`] for a caller that holds the transition lock.
pub(crate) fn start_locked(
    ns: &Namespace,
    _lock: &Lock,
    targets: Vec<(TaskName, Result<TaskSpec>)>,
    no_wait: bool,
    all: Option<BTreeMap<u32, Defs>>,
) -> Result<Vec<(TaskName, Result<Option<Started>>)>> {
    let nodes = ns.nodes()?;
    let needs_defs = targets
        .iter()
        .any(|(_, s)| s.as_ref().is_ok_and(|s| !s.deps.is_empty()));
    let all = match all {
        Some(a) => a,
        None if needs_defs => defs::all(ns)?,
        None => BTreeMap::new(),
    };
    // Each target's outcome, by its place among the targets.
    let mut out: Vec<(usize, TaskName, Result<Option<Started>>)> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    let mut index: BTreeMap<TaskName, usize> = BTreeMap::new();
    // Where each target's outcome goes: an item, or already known.
    let mut target_items: Vec<(usize, TaskName, usize)> = Vec::new();
    for (at, (task, spec)) in targets.into_iter().enumerate() {
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                out.push((at, task, Err(e)));
                continue;
            }
        };
        if let Some(&i) = index.get(&task) {
            // Pulled in by an earlier target: started on purpose instead.
            items[i].pulled_by = None;
            items[i].spec.pulled_in = false;
            target_items.push((at, task, i));
            continue;
        }
        if let Some(node) = nodes.get(&task) {
            // Running already: now on purpose.
            let r = if node.explicit {
                Ok(None)
            } else {
                ns.mark(&task, true).map(|()| None)
            };
            out.push((at, task, r));
            continue;
        }
        match plan(ns, &nodes, &all, &task, spec, &mut items, &mut index) {
            Ok(i) => target_items.push((at, task, i)),
            Err(e) => out.push((at, task, Err(e))),
        }
    }
    // `after` a task that a later target brought into the plan.
    for item in &mut items {
        for dep in &item.spec.deps.after {
            if let Some(&j) = index.get(dep) {
                if !item.after.contains(&(j, Kind::After)) {
                    item.after.push((j, Kind::After));
                }
            }
        }
    }
    acyclic(&items)?;
    let mut results = execute(ns, &items, no_wait);
    for (i, item) in items.iter().enumerate() {
        if let (Some(by), Some(Ok(Some(_)))) = (&item.pulled_by, results.get(i)) {
            msg::log(
                "INFO",
                "start",
                &format_args!("task {} is ready (pulled in by {by})", item.task),
            );
        }
    }
    let failed = results.iter().any(Result::is_err);
    for (at, task, i) in target_items {
        let r = std::mem::replace(&mut results[i], Ok(None));
        out.push((at, task, r));
    }
    // Pulled in for a start that failed, or by a client killed earlier:
    // stopped again unless something wanted holds it. (A start that pulled
    // in nothing and failed in nothing has nothing to undo.)
    if failed || items.iter().any(|it| it.pulled_by.is_some()) {
        ns.settle(&crate::commands::stop::settled("start"))?;
    }
    out.sort_by_key(|(at, _, _)| *at);
    Ok(out.into_iter().map(|(_, t, r)| (t, r)).collect())
}

/// Adds `task` and what it pulls in to the plan; its index. Refuses
/// (adding nothing) a dependency that is not defined, or is another
/// member's and not running, or a cycle.
fn plan(
    ns: &Namespace,
    nodes: &Nodes,
    all: &BTreeMap<u32, Defs>,
    task: &TaskName,
    spec: TaskSpec,
    items: &mut Vec<Item>,
    index: &mut BTreeMap<TaskName, usize>,
) -> Result<usize> {
    let first_new = items.len();
    let me = nix::unistd::geteuid().as_raw();
    let added = (|| {
        let root = push(items, index, task.clone(), spec, None);
        let mut todo = VecDeque::from([root]);
        while let Some(i) = todo.pop_front() {
            let deps = items[i].spec.deps.clone();
            let by = items[i].task.clone();
            for (kind, dep) in deps.edges() {
                if let Some(&j) = index.get(dep) {
                    if kind.orders() {
                        items[i].after.push((j, kind));
                    }
                    continue;
                }
                // Running: a marked task, or a plain one (which holds
                // nothing, and is ready once it runs).
                if nodes.contains_key(dep) || ns.check(dep).unwrap_or(false) {
                    if kind.orders() {
                        items[i].running_deps.push((dep.clone(), kind));
                    }
                    continue;
                }
                if !kind.holds() {
                    // `after` a task that is not running: nothing to wait for.
                    continue;
                }
                let (uid, d) = defs::find(all, dep)
                    .map_err(|_| Error::NotDefined(dep.clone()))
                    .map_err(|e| Error::InvalidInput(format!("{by}: {} {dep}: {e}", kind.key())))?;
                if uid != me {
                    return Err(Error::PermissionDenied(format!(
                        "{by}: {} {dep}, which is defined by {} and is not running; only they may start it",
                        kind.key(),
                        files::user_name(uid)
                    )));
                }
                let mut spec = d.to_spec(dep)?;
                spec.pulled_in = true;
                let j = push(items, index, dep.clone(), spec, Some(by.clone()));
                if kind.orders() {
                    items[i].after.push((j, kind));
                }
                todo.push_back(j);
            }
        }
        acyclic(&items[first_new..])?;
        Ok(root)
    })();
    if added.is_err() {
        for it in items.drain(first_new..) {
            index.remove(&it.task);
        }
    }
    added
}

/// Refuses a plan with a cycle (one member's definitions have none, but
/// two members' together can).
fn acyclic(items: &[Item]) -> Result<()> {
    let g: BTreeMap<TaskName, graph::Deps> = items
        .iter()
        .map(|it| (it.task.clone(), it.spec.deps.clone()))
        .collect();
    graph::acyclic(&g).map_err(Error::InvalidInput)
}

fn push(
    items: &mut Vec<Item>,
    index: &mut BTreeMap<TaskName, usize>,
    task: TaskName,
    spec: TaskSpec,
    pulled_by: Option<TaskName>,
) -> usize {
    index.insert(task.clone(), items.len());
    items.push(Item {
        task,
        spec,
        pulled_by,
        after: Vec::new(),
        running_deps: Vec::new(),
    });
    items.len() - 1
}

/// Starts the plan's items, each once what it orders after is done; the
/// outcome of each.
fn execute(ns: &Namespace, items: &[Item], no_wait: bool) -> Vec<Result<Option<Started>>> {
    let n = items.len();
    let mut results: Vec<Option<Result<Option<Started>>>> = (0..n).map(|_| None).collect();
    // For each item: how many items it still waits for, and its dependents.
    let mut waiting: Vec<usize> = items.iter().map(|it| it.after.len()).collect();
    let mut dependents: Vec<Vec<(usize, Kind)>> = vec![Vec::new(); n];
    for (i, it) in items.iter().enumerate() {
        for (j, kind) in &it.after {
            dependents[*j].push((i, *kind));
        }
    }
    // A hard dependency that failed: (which, why).
    let mut failed_dep: Vec<Option<(TaskName, String)>> = vec![None; n];
    let mut queue: VecDeque<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let mut busy = 0;
        loop {
            while busy < PARALLEL {
                let Some(i) = queue.pop_front() else { break };
                if let Some((dep, why)) = failed_dep[i].take() {
                    // Not started: settled at once, as a failure.
                    tx.send((
                        i,
                        Err(Error::DependencyFailed {
                            task: items[i].task.clone(),
                            dependency: dep,
                            reason: why,
                        }),
                    ))
                    .expect("the receiver lives");
                    busy += 1;
                    continue;
                }
                let tx = tx.clone();
                let item = &items[i];
                // The targets of --no-wait are not waited for; what
                // others depend on always is.
                let wait = !(no_wait && item.pulled_by.is_none());
                s.spawn(move || {
                    let r = launch_item(ns, item, wait);
                    let _ = tx.send((i, r));
                });
                busy += 1;
            }
            if busy == 0 {
                break;
            }
            let (i, r) = rx.recv().expect("a sender lives");
            busy -= 1;
            let why = r.as_ref().err().map(reason_of);
            results[i] = Some(r);
            for (d, kind) in &dependents[i] {
                if let Some(why) = &why {
                    if kind.hard() && failed_dep[*d].is_none() {
                        failed_dep[*d] = Some((items[i].task.clone(), why.clone()));
                    }
                }
                waiting[*d] -= 1;
                if waiting[*d] == 0 {
                    queue.push_back(*d);
                }
            }
        }
    });
    // Every item is reached: the plan has no cycle.
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::failed("not started (a cycle?)"))))
        .collect()
}

/// The words of a dependency's failure, without its name.
fn reason_of(e: &Error) -> String {
    match e {
        Error::NotReady { reason, .. } => reason.clone(),
        Error::DependencyFailed {
            dependency, reason, ..
        } => format!("dependency {dependency} failed: {reason}"),
        other => other.one_line(),
    }
}

/// Waits for the running tasks `item` orders after, then starts it and
/// (if `wait`) waits for its readiness.
fn launch_item(ns: &Namespace, item: &Item, wait: bool) -> Result<Option<Started>> {
    for (dep, kind) in &item.running_deps {
        if let Err(why) = wait_running(ns, dep) {
            if kind.hard() {
                return Err(Error::DependencyFailed {
                    task: item.task.clone(),
                    dependency: dep.clone(),
                    reason: why,
                });
            }
        }
    }
    match ns.run(&item.spec) {
        Ok(mut started) => {
            if wait {
                started.wait_ready()?;
            }
            Ok(Some(started))
        }
        // Started meanwhile by a plain `run` or another program: ready
        // once it says so, as any running dependency.
        Err(Error::AlreadyRunning(t)) => match wait_running(ns, &t) {
            Ok(()) => Ok(None),
            Err(why) => Err(Error::NotReady {
                task: t,
                reason: why,
            }),
        },
        Err(e) => Err(e),
    }
}

/// Until the running task `dep` is ready; why not, if it goes down or
/// takes too long.
fn wait_running(ns: &Namespace, dep: &TaskName) -> std::result::Result<(), String> {
    let until = Instant::now() + RUNNING_DEP_WAIT;
    loop {
        match ns.readiness(dep) {
            Ok(Readiness::Ready) => return Ok(()),
            Ok(Readiness::Down) => return Err("it is not running".into()),
            Ok(Readiness::Starting) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(Readiness::Starting) => {
                return Err(format!("not ready after {} s", RUNNING_DEP_WAIT.as_secs()))
            }
            Err(e) => return Err(e.one_line()),
        }
    }
}

/// One target's outcome, for `run` and `restart`: its [`Started`], or
/// `None` if it was running already.
pub(crate) fn start_one(
    ns: &Namespace,
    lock: &Lock,
    task: &TaskName,
    spec: TaskSpec,
    no_wait: bool,
) -> Result<Option<Started>> {
    let mut r = start_locked(ns, lock, vec![(task.clone(), Ok(spec))], no_wait, None)?;
    r.pop().map_or(Ok(None), |(_, r)| r)
}
