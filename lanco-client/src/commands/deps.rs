//! `lanco NS deps TASK`: the dependency tree, from the state of running
//! tasks (the dependencies their runs were started with) and the
//! definitions of the rest, each node with its state (`failed` from the
//! last run's record of a task that is not running). Walked with an
//! explicit stack; a task met again is shown once more without its
//! subtree.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use lanco_proto::TaskName;
use serde::Serialize;

use crate::defs;
use crate::error::{Error, Result};
use crate::graph::{Deps, Kind};
use crate::namespace::{Namespace, Status};
use crate::transition::{self, Readiness};

#[derive(Serialize)]
struct Tree {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<Kind>,
    task: TaskName,
    state: String,
    /// Shown above already: its dependencies are not repeated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    repeated: bool,
    deps: Vec<Tree>,
}

pub fn run(ns: &Namespace, task: &TaskName, json: bool) -> Result<u8> {
    let nodes = ns.nodes()?;
    let all = defs::all(ns)?;
    let mut graph: BTreeMap<TaskName, Deps> = all
        .values()
        .flat_map(|d| d.iter().map(|(t, d)| (t.clone(), d.deps.clone())))
        .collect();
    graph.extend(nodes.iter().map(|(t, n)| (t.clone(), n.deps.clone())));
    if !graph.contains_key(task) {
        return Err(Error::NotDefined(task.clone()));
    }
    let state = |t: &TaskName| match nodes.get(t) {
        Some(n) => transition::state_words(n),
        // A plain task (no mark): ready once it runs; between two runs of
        // its restart policy; or its last run's record says whether it
        // failed.
        None => match ns.readiness(t) {
            Ok(Readiness::Ready) => "ready".into(),
            Ok(Readiness::Starting) => "restarting".into(),
            _ => match ns.status(t) {
                Ok(Status::NotRunning { last: Some(rec) }) if rec.failed.is_some() => {
                    "failed".into()
                }
                _ => "not running".into(),
            },
        },
    };
    // Build the tree top-down: each frame is a node and the index path to
    // it in `root`.
    let mut root = Tree {
        kind: None,
        task: task.clone(),
        state: state(task),
        repeated: false,
        deps: Vec::new(),
    };
    let mut shown = BTreeSet::from([task.clone()]);
    let mut stack: Vec<Vec<usize>> = vec![Vec::new()];
    while let Some(path) = stack.pop() {
        let mut at = &mut root;
        for i in &path {
            at = &mut at.deps[*i];
        }
        let Some(deps) = graph.get(&at.task) else {
            continue;
        };
        for (kind, dep) in deps.edges() {
            let repeated = !shown.insert(dep.clone());
            at.deps.push(Tree {
                kind: Some(kind),
                task: dep.clone(),
                state: state(dep),
                repeated,
                deps: Vec::new(),
            });
            if !repeated {
                let mut p = path.clone();
                p.push(at.deps.len() - 1);
                stack.push(p);
            }
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let fail = |e: std::io::Error| Error::system("stdout", e);
    if json {
        serde_json::to_writer_pretty(&mut out, &root).map_err(|e| Error::system("stdout", e))?;
        writeln!(out).map_err(fail)?;
    } else {
        let mut todo: Vec<(&Tree, usize)> = vec![(&root, 0)];
        while let Some((t, depth)) = todo.pop() {
            let kind = t.kind.map(|k| format!("{} ", k.key())).unwrap_or_default();
            let more = if t.repeated && graph.get(&t.task).is_some_and(|d| !d.is_empty()) {
                " (repeated: its dependencies are shown once)"
            } else {
                ""
            };
            writeln!(
                out,
                "{:width$}{kind}{}: {}{more}",
                "",
                t.task,
                t.state,
                width = depth * 2
            )
            .map_err(fail)?;
            todo.extend(t.deps.iter().rev().map(|d| (d, depth + 1)));
        }
    }
    out.flush().map_err(fail)?;
    Ok(0)
}
