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
    let head = ["NAMESPACE", "OWNER", "GROUP", "RUNNING", "CEILINGS"].map(String::from);
    let mut rows = vec![head.to_vec()];
    rows.extend(list.iter().map(|n| {
        let ceilings = n.limits.describe();
        vec![
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
    }));
    // The count right-aligned, as a number.
    super::table::table(&mut std::io::stdout().lock(), &rows, |c| c == 3)?;
    Ok(0)
}
