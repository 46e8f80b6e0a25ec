//! `lanco namespaces`: the namespaces the caller may use — all of them for
//! root and the admin group — as lancod lists them (members cannot list the
//! registry themselves: it is root's).

use lanco_proto::Config;

use crate::error::{Error, Result};

pub fn run(config: &Config, json: bool) -> Result<u8> {
    let list = crate::helper::namespaces(&config.socket)?;
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|n| {
                serde_json::json!({
                    "namespace": n.name.as_str(),
                    "owner": n.owner,
                    "uid": n.uid,
                    "group": n.group,
                    "gid": n.gid,
                    "running": n.running,
                    "ceilings": super::limit::json_of(&n.limits),
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::system("stdout", e))?;
        println!("{text}");
        return Ok(0);
    }
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|n| {
            let ceilings = n.limits.describe();
            [
                n.name.to_string(),
                n.owner.clone(),
                n.group.clone(),
                n.running.to_string(),
                if ceilings.is_empty() {
                    "-".into()
                } else {
                    ceilings
                },
            ]
        })
        .collect();
    let head = ["NAMESPACE", "OWNER", "GROUP", "RUNNING", "CEILINGS"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..4).map(width).collect();
    let line = |r: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    println!("{}", line(head));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    Ok(0)
}
