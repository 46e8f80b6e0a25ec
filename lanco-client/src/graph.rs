//! Dependencies between tasks, as Dinit has them: the five kinds, a task's
//! list of them, and the graph code over a namespace's tasks (closures,
//! cycles, stop order). No recursion anywhere: explicit work lists, so a
//! chain of any length costs a loop, not a stack.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use lanco_proto::TaskName;
use serde::{Deserialize, Serialize};

/// How one task depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Ready before the dependent starts; down, and the dependent stops
    /// and waits for it.
    Needs,
    /// Ready before the dependent starts; afterwards it may end.
    Milestone,
    /// Ready or failed before the dependent starts; its failure is no
    /// failure of the dependent.
    WaitsFor,
    /// Started alongside; its fate never affects the dependent.
    Wants,
    /// Ordering only: if it is starting, the dependent waits; never
    /// started for the dependent.
    After,
}

impl Kind {
    /// Every kind, in the order definitions list them.
    pub const ALL: [Kind; 5] = [
        Kind::Needs,
        Kind::Milestone,
        Kind::WaitsFor,
        Kind::Wants,
        Kind::After,
    ];

    /// The definition key (`waits_for`).
    pub fn key(self) -> &'static str {
        match self {
            Kind::Needs => "needs",
            Kind::Milestone => "milestone",
            Kind::WaitsFor => "waits_for",
            Kind::Wants => "wants",
            Kind::After => "after",
        }
    }

    /// Does the dependent start it, and keep it running while it is wanted?
    pub fn holds(self) -> bool {
        self != Kind::After
    }

    /// Does the dependent's start wait for it?
    pub fn orders(self) -> bool {
        self != Kind::Wants
    }

    /// Does its failure to start fail the dependent's start?
    pub fn hard(self) -> bool {
        matches!(self, Kind::Needs | Kind::Milestone)
    }
}

/// A task's dependencies, by kind (a definition's keys, a run's options).
/// Every field is always written: the monitor's spec crosses its pipe in
/// postcard, which has no field names to skip by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deps {
    /// [`Kind::Needs`].
    #[serde(default)]
    pub needs: Vec<TaskName>,
    /// [`Kind::Milestone`].
    #[serde(default)]
    pub milestone: Vec<TaskName>,
    /// [`Kind::WaitsFor`].
    #[serde(default)]
    pub waits_for: Vec<TaskName>,
    /// [`Kind::Wants`].
    #[serde(default)]
    pub wants: Vec<TaskName>,
    /// [`Kind::After`].
    #[serde(default)]
    pub after: Vec<TaskName>,
}

impl Deps {
    /// None of any kind.
    pub fn is_empty(&self) -> bool {
        Kind::ALL.iter().all(|k| self.of(*k).is_empty())
    }

    /// The tasks of one kind.
    pub fn of(&self, kind: Kind) -> &Vec<TaskName> {
        match kind {
            Kind::Needs => &self.needs,
            Kind::Milestone => &self.milestone,
            Kind::WaitsFor => &self.waits_for,
            Kind::Wants => &self.wants,
            Kind::After => &self.after,
        }
    }

    /// The tasks of one kind, to change.
    pub fn of_mut(&mut self, kind: Kind) -> &mut Vec<TaskName> {
        match kind {
            Kind::Needs => &mut self.needs,
            Kind::Milestone => &mut self.milestone,
            Kind::WaitsFor => &mut self.waits_for,
            Kind::Wants => &mut self.wants,
            Kind::After => &mut self.after,
        }
    }

    /// Every edge, in kind order.
    pub fn edges(&self) -> impl Iterator<Item = (Kind, &TaskName)> {
        Kind::ALL
            .into_iter()
            .flat_map(move |k| self.of(k).iter().map(move |t| (k, t)))
    }

    /// The tasks it holds (all kinds but `after`), each once.
    pub fn held(&self) -> impl Iterator<Item = &TaskName> {
        let mut seen = BTreeSet::new();
        self.edges()
            .filter(|(k, _)| k.holds())
            .map(|(_, t)| t)
            .filter(move |t| seen.insert(*t))
    }

    /// Sorted, each name once per kind.
    /// Sorts each kind's list and drops repeats.
    pub fn normalise(&mut self) {
        for k in Kind::ALL {
            let v = self.of_mut(k);
            v.sort();
            v.dedup();
        }
    }
}

/// A cycle through the ordering kinds (needs, milestone, waits_for,
/// after), as `a → b → a`, from its alphabetically smallest task; `None`
/// if there is none. Iterative depth-first search.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub fn find_cycle(graph: &BTreeMap<TaskName, Deps>) -> Option<Vec<TaskName>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&TaskName, Mark> = graph.keys().map(|k| (k, Mark::New)).collect();
    let next = |t: &TaskName| -> Vec<&TaskName> {
        graph.get(t).map_or(Vec::new(), |d| {
            d.edges()
                .filter(|(k, _)| k.orders())
                .map(|(_, t)| t)
                .filter(|t| graph.contains_key(*t))
                .collect()
        })
    };
    for root in graph.keys() {
        if mark[root] != Mark::New {
            continue;
        }
        // The path from root, each with the edges left to follow.
        let mut path: Vec<(&TaskName, Vec<&TaskName>)> = vec![(root, next(root))];
        mark.insert(root, Mark::Open);
        while let Some((_, todo)) = path.last_mut() {
            match todo.pop() {
                Some(t) => match mark[t] {
                    Mark::New => {
                        mark.insert(t, Mark::Open);
                        path.push((t, next(t)));
                    }
                    Mark::Open => {
                        let from = path.iter().position(|(p, _)| *p == t).unwrap_or(0);
                        let mut cycle: Vec<TaskName> =
                            path[from..].iter().map(|(p, _)| (*p).clone()).collect();
                        let least = (0..cycle.len()).min_by_key(|i| &cycle[*i]).unwrap_or(0);
                        cycle.rotate_left(least);
                        cycle.push(cycle[0].clone());
                        return Some(cycle);
                    }
                    Mark::Done => {}
                },
                None => {
                    let (done, _) = path.pop().expect("a path that has a last");
                    mark.insert(done, Mark::Done);
                }
            }
        }
    }
    None
}

/// `Ok` if `graph` has no cycle; else the refusal's words, `cycle: a → b
/// → a`.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub fn acyclic(graph: &BTreeMap<TaskName, Deps>) -> Result<(), String> {
    match find_cycle(graph) {
        None => Ok(()),
        Some(c) => {
            let names: Vec<&str> = c.iter().map(TaskName::as_str).collect();
            Err(format!("cycle: {}", names.join(" → ")))
        }
    }
}

/// The tasks `roots` hold, themselves included, through the holding kinds
/// and only through tasks of `graph` (a task that is not running holds
/// nothing: what it pulled in was released when it stopped, as in Dinit).
pub fn closure<'a>(
    graph: &'a BTreeMap<TaskName, Deps>,
    roots: impl IntoIterator<Item = &'a TaskName>,
) -> BTreeSet<TaskName> {
    let mut seen = BTreeSet::new();
    let mut todo: VecDeque<&TaskName> = roots.into_iter().collect();
    while let Some(t) = todo.pop_front() {
        if !seen.insert(t.clone()) {
            continue;
        }
        if let Some(d) = graph.get(t) {
            todo.extend(d.held());
        }
    }
    seen
}

/// Who holds each task of `graph` (its dependents among `graph`, with
/// the kind), for `ls` and stop decisions.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub fn holders(graph: &BTreeMap<TaskName, Deps>) -> BTreeMap<TaskName, Vec<(Kind, TaskName)>> {
    let mut out: BTreeMap<TaskName, Vec<(Kind, TaskName)>> = BTreeMap::new();
    for (t, d) in graph {
        for (k, dep) in d.edges() {
            if k.holds() {
                out.entry(dep.clone()).or_default().push((k, t.clone()));
            }
        }
    }
    out
}

/// Every task of `graph` that needs `task`, directly or through other
/// needs, each once, in breadth-first order.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub fn needing(graph: &BTreeMap<TaskName, Deps>, task: &TaskName) -> Vec<TaskName> {
    let mut by_need: BTreeMap<&TaskName, Vec<&TaskName>> = BTreeMap::new();
    for (t, d) in graph {
        for n in &d.needs {
            by_need.entry(n).or_default().push(t);
        }
    }
    let mut seen = BTreeSet::from([task]);
    let mut out = Vec::new();
    let mut todo = VecDeque::from([task]);
    while let Some(t) = todo.pop_front() {
        for d in by_need.get(t).into_iter().flatten() {
            if seen.insert(*d) {
                out.push((*d).clone());
                todo.push_back(*d);
            }
        }
    }
    out
}

/// `tasks` in waves that can be stopped one after the other, the tasks of
/// each wave in parallel: a task comes after every task of `tasks` that
/// holds it (dependents before their dependencies). Kahn's algorithm.
pub fn stop_waves(
    graph: &BTreeMap<TaskName, Deps>,
    tasks: &BTreeSet<TaskName>,
) -> Vec<Vec<TaskName>> {
    // For each task, how many of `tasks` hold it.
    let mut held_by: BTreeMap<&TaskName, usize> = tasks.iter().map(|t| (t, 0)).collect();
    for t in tasks {
        if let Some(d) = graph.get(t) {
            for dep in d.held().filter(|x| tasks.contains(*x) && *x != t) {
                *held_by.get_mut(dep).expect("in tasks") += 1;
            }
        }
    }
    let mut waves = Vec::new();
    let mut wave: Vec<&TaskName> = held_by
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| *t)
        .collect();
    let mut placed = 0;
    while !wave.is_empty() {
        placed += wave.len();
        let mut next = Vec::new();
        for t in &wave {
            if let Some(d) = graph.get(*t) {
                for dep in d.held().filter(|x| tasks.contains(*x) && x != t) {
                    let n = held_by.get_mut(dep).expect("in tasks");
                    *n -= 1;
                    if *n == 0 {
                        next.push(dep);
                    }
                }
            }
        }
        waves.push(wave.into_iter().cloned().collect());
        wave = next;
    }
    if placed < tasks.len() {
        // A cycle (definitions of several members can make one): the rest
        // in one last wave.
        let done: BTreeSet<&TaskName> = waves.iter().flatten().collect();
        waves.push(
            tasks
                .iter()
                .filter(|t| !done.contains(t))
                .cloned()
                .collect(),
        );
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TaskName {
        s.parse().unwrap()
    }

    fn graph(edges: &[(&str, Kind, &str)]) -> BTreeMap<TaskName, Deps> {
        let mut g: BTreeMap<TaskName, Deps> = BTreeMap::new();
        for (a, k, b) in edges {
            g.entry(t(a)).or_default().of_mut(*k).push(t(b));
            g.entry(t(b)).or_default();
        }
        g
    }

    #[test]
    fn cycles_are_found_and_shown_from_their_least_task() {
        let g = graph(&[
            ("web", Kind::Needs, "db"),
            ("db", Kind::After, "web"),
            ("x", Kind::Needs, "web"),
        ]);
        assert_eq!(acyclic(&g), Err("cycle: db → web → db".into()));
        // wants orders nothing: no cycle.
        let g = graph(&[("a", Kind::Needs, "b"), ("b", Kind::Wants, "a")]);
        assert_eq!(find_cycle(&g), None);
        let g = graph(&[("a", Kind::Needs, "a")]);
        assert_eq!(acyclic(&g), Err("cycle: a → a".into()));
    }

    #[test]
    fn a_chain_of_fifty_thousand_needs_no_stack() {
        let n = 50_000;
        let mut g: BTreeMap<TaskName, Deps> = BTreeMap::new();
        for i in 0..n {
            let mut d = Deps::default();
            if i > 0 {
                d.needs.push(t(&format!("t{}", i - 1)));
            }
            g.insert(t(&format!("t{i}")), d);
        }
        assert_eq!(find_cycle(&g), None);
        let last = t(&format!("t{}", n - 1));
        assert_eq!(closure(&g, [&last]).len(), n);
        assert_eq!(needing(&g, &t("t0")).len(), n - 1);
        let all: BTreeSet<TaskName> = g.keys().cloned().collect();
        let waves = stop_waves(&g, &all);
        assert_eq!(waves.len(), n);
        assert_eq!(waves[0], [last]);
    }

    #[test]
    fn closure_follows_holding_kinds_through_present_tasks_only() {
        let g = graph(&[
            ("web", Kind::Needs, "db"),
            ("web", Kind::After, "log"),
            ("web", Kind::Wants, "metrics"),
            ("db", Kind::Milestone, "migrate"),
        ]);
        let c = closure(&g, [&t("web")]);
        let want: BTreeSet<TaskName> = ["web", "db", "metrics", "migrate"].map(t).into();
        assert_eq!(c, want);
        let mut g2 = g.clone();
        g2.remove(&t("db"));
        assert!(!closure(&g2, [&t("web")]).contains(&t("migrate")));
    }

    #[test]
    fn dependents_stop_before_what_they_hold() {
        let g = graph(&[
            ("web", Kind::Needs, "db"),
            ("api", Kind::Needs, "db"),
            ("db", Kind::Needs, "disk"),
        ]);
        let all: BTreeSet<TaskName> = g.keys().cloned().collect();
        let waves = stop_waves(&g, &all);
        assert_eq!(
            waves,
            vec![vec![t("api"), t("web")], vec![t("db")], vec![t("disk")]]
        );
        assert_eq!(needing(&g, &t("disk")), [t("db"), t("api"), t("web")]);
    }
}
