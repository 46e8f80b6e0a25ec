//! `lanco NS limit`: show the namespace's ceilings, or change them through
//! lancod (root or the admin group). They live on the namespace's cgroup,
//! whose files stay root's.

use lanco_proto::limits::{self, Key};
use lanco_proto::{Config, Limits, NamespaceName};

use crate::error::{Error, Result};

pub fn run(
    config: &Config,
    ns: &NamespaceName,
    set: Limits,
    clear: Vec<Key>,
    json: bool,
) -> Result<u8> {
    if let Some(k) = clear.iter().find(|k| k.shown(&set).is_some()) {
        return Err(Error::InvalidInput(format!(
            "--{k} and --clear {k} together: set it or clear it"
        )));
    }
    let now = if set.is_empty() && clear.is_empty() {
        // Shown to members as well: lancod lists their namespaces.
        crate::helper::namespaces(&config.socket)?
            .into_iter()
            .find(|i| &i.name == ns)
            .ok_or_else(|| Error::NotMember(ns.clone()))?
            .limits
    } else {
        crate::helper::limit(&config.socket, ns, set, clear)?
    };
    if json {
        println!("{}", json_of(&now));
    } else {
        print!("{}", table(&now));
    }
    Ok(0)
}

/// Every ceiling, `null` where there is none, in the options' units
/// (bytes, processes, CPUs, weights).
pub(crate) fn json_of(l: &Limits) -> serde_json::Value {
    serde_json::json!({
        "memory": l.memory,
        "memory_high": l.memory_high,
        "pids": l.pids,
        "cpu": l.cpu_quota_usec.map(|q| q as f64 / limits::CPU_PERIOD_USEC as f64),
        "cpu_weight": l.cpu_weight,
        "io_weight": l.io_weight,
    })
}

fn table(l: &Limits) -> String {
    Key::ALL
        .iter()
        .map(|k| {
            let v = k.shown(l).unwrap_or_else(|| "-".into());
            format!("{:<12} {v}\n", k.name())
        })
        .collect()
}
