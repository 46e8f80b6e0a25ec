//! Runs grouped by task, user or day, with totals: what an accounting
//! report shows.

use std::collections::HashMap;

use lanco_proto::files::Dir;
use lanco_proto::{Layout, NamespaceName, TaskName};

use super::{read, JournalWarning, Period, Run};
use crate::error::Result;
use crate::journal::Part;
use crate::namespace::Namespace;

/// What runs are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The task's name (per namespace).
    Task,
    /// The member who ran it (per namespace).
    User,
    /// The UTC day its run ended (across namespaces).
    Day,
}

impl std::str::FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "task" => Ok(By::Task),
            "user" => Ok(By::User),
            "day" => Ok(By::Day),
            _ => Err(format!("invalid grouping {s:?} (task, user or day)")),
        }
    }
}

impl std::fmt::Display for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            By::Task => "task",
            By::User => "user",
            By::Day => "day",
        })
    }
}

/// The figures of a group of runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// How many runs.
    pub runs: u64,
    /// Their CPU time.
    pub cpu_usec: u64,
    /// The largest of their peak memories.
    pub peak_memory_bytes: Option<u64>,
    /// The sum of their peak memories, and how many runs had one: for the
    /// mean ([`Totals::avg_memory_bytes`]).
    pub memory_sum: u128,
    /// Runs whose peak memory was measured.
    pub memory_runs: u64,
    /// The sum of their wall times (end − start).
    pub wall_seconds: u64,
    /// Runs that failed.
    pub failures: u64,
    /// Runs the OOM killer struck.
    pub oom_kills: u64,
}

impl Totals {
    /// Counts one run in.
    pub fn add(&mut self, r: &Run<'_>) {
        self.runs += 1;
        self.cpu_usec += r.cpu_usec;
        if let Some(p) = r.peak_memory_bytes {
            self.peak_memory_bytes = self.peak_memory_bytes.max(Some(p));
            self.memory_sum += u128::from(p);
            self.memory_runs += 1;
        }
        self.wall_seconds += r.end.saturating_sub(r.start).max(0) as u64;
        self.failures += u64::from(r.failed);
        self.oom_kills += u64::from(r.oom_killed);
    }

    /// Counts another group in.
    pub fn merge(&mut self, o: &Totals) {
        self.runs += o.runs;
        self.cpu_usec += o.cpu_usec;
        self.peak_memory_bytes = self.peak_memory_bytes.max(o.peak_memory_bytes);
        self.memory_sum += o.memory_sum;
        self.memory_runs += o.memory_runs;
        self.wall_seconds += o.wall_seconds;
        self.failures += o.failures;
        self.oom_kills += o.oom_kills;
    }

    /// The mean of the runs' peak memories (of those that had one).
    pub fn avg_memory_bytes(&self) -> Option<u64> {
        (self.memory_runs > 0).then(|| (self.memory_sum / u128::from(self.memory_runs)) as u64)
    }
}

/// What a group is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    /// A task.
    Task(TaskName),
    /// A member (uid).
    User(u32),
    /// A UTC day, as days since 1970-01-01 ([`super::utc_day`] names it).
    Day(i64),
}

/// One group of runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The namespace, for groups by task and by user; `None` by day.
    pub namespace: Option<NamespaceName>,
    /// The task, member or day.
    pub key: GroupKey,
    /// Its figures.
    pub totals: Totals,
}

/// An accounting report: the groups in order (namespace, then task name,
/// uid or day), their totals, and what of the journals was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How the runs are grouped.
    pub by: By,
    /// The period.
    pub period: Period,
    /// The groups.
    pub groups: Vec<Group>,
    /// All of them together.
    pub totals: Totals,
    /// What was skipped.
    pub warnings: Vec<JournalWarning>,
}

/// Runs of one namespace in the period, grouped as they come: keyed by
/// what a line holds, so that counting a run allocates nothing once its
/// group exists.
struct Tally {
    by: By,
    period: Period,
    task: HashMap<TaskName, Totals>,
    user: HashMap<u32, Totals>,
    day: HashMap<i64, Totals>,
}

impl Tally {
    fn new(by: By, period: Period) -> Self {
        Tally {
            by,
            period,
            task: HashMap::new(),
            user: HashMap::new(),
            day: HashMap::new(),
        }
    }

    fn add(&mut self, r: &Run<'_>) {
        if !self.period.contains(r.end) {
            return;
        }
        let t = match self.by {
            By::Task => match self.task.get_mut(r.task) {
                Some(t) => t,
                None => self.task.entry(r.task.clone()).or_default(),
            },
            By::User => self.user.entry(r.uid).or_default(),
            By::Day => self.day.entry(r.end.div_euclid(86_400)).or_default(),
        };
        t.add(r);
    }

    fn merge(&mut self, o: Tally) {
        for (k, t) in o.task {
            self.task.entry(k).or_default().merge(&t);
        }
        for (k, t) in o.user {
            self.user.entry(k).or_default().merge(&t);
        }
        for (k, t) in o.day {
            self.day.entry(k).or_default().merge(&t);
        }
    }

    /// Counts in the runs of one journal part. A large one is read by as
    /// many threads as there are CPUs (a million lines is half a
    /// gigabyte), each with a tally of its own, merged at the end.
    fn part(
        &mut self,
        ns: &NamespaceName,
        uid: u32,
        part: &Part,
        names: &mut read::Names,
    ) -> Vec<JournalWarning> {
        const SHARE: u64 = 32 << 20;
        let len = part.file.metadata().map_or(0, |m| m.len());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let threads = cpus.min(usize::try_from(len / SHARE).unwrap_or(usize::MAX));
        if threads < 2 {
            let r = read::range(&part.file, 0..u64::MAX, ns, uid, names, &mut |r| {
                self.add(r)
            });
            return read::warnings(&part.path, [r]);
        }
        let ranges = read::split(&part.file, len, threads);
        let (by, period) = (self.by, self.period);
        let done: Vec<_> = std::thread::scope(|s| {
            let running: Vec<_> = ranges
                .into_iter()
                .map(|bytes| {
                    s.spawn(move || {
                        let mut t = Tally::new(by, period);
                        let mut names = read::Names::default();
                        let r =
                            read::range(&part.file, bytes, ns, uid, &mut names, &mut |r| t.add(r));
                        (t, r)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut ranged = Vec::new();
        for (t, r) in done {
            self.merge(t);
            ranged.push(r);
        }
        read::warnings(&part.path, ranged)
    }
}

/// The report of the runs of `namespaces` that ended in `period`, grouped
/// `by`. Each namespace as [`super::for_each_run`] reads it.
pub fn report(namespaces: &[Namespace], period: Period, by: By) -> Result<Report> {
    let mut dirs = Vec::new();
    for ns in namespaces {
        dirs.push((ns.name().clone(), ns.ns_dir()?));
    }
    report_with(dirs, Vec::new(), period, by)
}

/// [`report`] over namespaces of the installation `layout` describes,
/// without the membership check of [`Namespace::open`] (root and
/// administrators reporting across namespaces): a namespace whose state
/// directory the caller cannot read is left out with a warning.
pub fn report_at(
    layout: &Layout,
    namespaces: &[NamespaceName],
    period: Period,
    by: By,
) -> Result<Report> {
    let (mut dirs, mut warnings) = (Vec::new(), Vec::new());
    for ns in namespaces {
        let path = layout.ns_state_dir(ns);
        match Dir::open(&path) {
            Ok(d) => dirs.push((ns.clone(), d)),
            Err(e) => warnings.push(JournalWarning::Unreadable {
                path,
                why: e.to_string(),
            }),
        }
    }
    report_with(dirs, warnings, period, by)
}

fn report_with(
    namespaces: Vec<(NamespaceName, Dir)>,
    mut warnings: Vec<JournalWarning>,
    period: Period,
    by: By,
) -> Result<Report> {
    let mut groups = Vec::new();
    let mut days: HashMap<i64, Totals> = HashMap::new();
    for (ns, dir) in namespaces {
        let mut tally = Tally::new(by, period);
        let (parts, bad) = read::member_parts(&dir)?;
        warnings.extend(bad);
        let mut names = read::Names::default();
        for (uid, part) in &parts {
            warnings.extend(tally.part(&ns, *uid, part, &mut names));
        }
        let named = |key, totals| Group {
            namespace: Some(ns.clone()),
            key,
            totals,
        };
        match by {
            By::Task => groups.extend(
                tally
                    .task
                    .into_iter()
                    .map(|(k, t)| named(GroupKey::Task(k), t)),
            ),
            By::User => groups.extend(
                tally
                    .user
                    .into_iter()
                    .map(|(k, t)| named(GroupKey::User(k), t)),
            ),
            By::Day => {
                for (day, t) in tally.day {
                    days.entry(day).or_default().merge(&t);
                }
            }
        }
    }
    groups.extend(days.into_iter().map(|(day, totals)| Group {
        namespace: None,
        key: GroupKey::Day(day),
        totals,
    }));
    groups.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
    let mut totals = Totals::default();
    for g in &groups {
        totals.merge(&g.totals);
    }
    Ok(Report {
        by,
        period,
        groups,
        totals,
        warnings,
    })
}
