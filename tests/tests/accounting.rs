//! Accounting reports from the members' journals (`lanco NS accounting`),
//! across namespaces from root's billing journal (`lanco --all-namespaces
//! accounting`), a journal cut short, and the journal's rotation under
//! monitors appending at once.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use lanco_e2e::{gid, setup, setup_with, sh_as, uid, Install, ADMIN, ADMINS, ALICE, BOB, EVE, OPS};
use serde_json::Value;

/// The lines of a member's journal, every part, as root reads them.
fn journal(inst: &Install, user: &str) -> Vec<Value> {
    let dir = inst.user_state_dir("ns", user);
    let mut parts: Vec<(u32, std::path::PathBuf)> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = match name.strip_prefix("accounting.jsonl") {
                Some("") => 0,
                Some(rest) => rest.strip_prefix('.')?.parse().ok()?,
                None => return None,
            };
            Some((n, e.path()))
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|(_, p)| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn cpu_of(lines: &[Value]) -> u64 {
    lines.iter().map(|l| l["cpu_usec"].as_u64().unwrap()).sum()
}

fn json(out: &lanco_e2e::Out) -> Value {
    serde_json::from_str(&out.ok().stdout()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const BURN: &str = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done";

/// Alice runs two tasks, Bob one that fails; all of them have ended.
fn runs_of_two_members(inst: &Install) {
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "burn", "sh", "-c", BURN])
        .ok();
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "quick", "true"])
        .ok();
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "burn", "sh", "-c", BURN])
        .ok();
    let o = inst.lanco(
        Some(BOB),
        &["ns", "run", "-f", "fails", "sh", "-c", "exit 3"],
    );
    assert_eq!(o.code(), 3, "{o}");
}

#[test]
fn accounting_by_user_task_and_day() {
    let Some(inst) = setup("accounting_report") else {
        return;
    };
    runs_of_two_members(&inst);
    let (alice, bob) = (journal(&inst, ALICE), journal(&inst, BOB));
    assert_eq!((alice.len(), bob.len()), (3, 1));

    // By user, as JSON: the totals are the exit records' sums.
    let r = json(&inst.lanco(Some(BOB), &["ns", "accounting", "--by", "user", "--json"]));
    assert_eq!(r["namespace"], "ns");
    assert_eq!(r["by"], "user");
    assert_eq!(r["totals"]["runs"], 4);
    assert_eq!(r["totals"]["cpu_usec"], cpu_of(&alice) + cpu_of(&bob));
    assert_eq!(r["totals"]["failures"], 1);
    assert_eq!(r["skipped_lines"], 0);
    let groups = r["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{r}");
    assert_eq!(groups[0]["user"], ALICE);
    assert_eq!(groups[0]["uid"], uid(ALICE));
    assert_eq!(groups[0]["runs"], 3);
    assert_eq!(groups[0]["cpu_usec"], cpu_of(&alice));
    assert_eq!(groups[1]["user"], BOB);
    assert_eq!(
        (groups[1]["runs"].as_u64(), groups[1]["failures"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(cpu_of(&alice) > 0, "the loop used CPU: {alice:?}");

    // By task, as CSV.
    let csv = inst
        .lanco(Some(ALICE), &["ns", "accounting", "--by", "task", "--csv"])
        .ok()
        .stdout();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "task",
            "runs",
            "cpu_seconds",
            "peak_memory_bytes",
            "avg_memory_bytes",
            "wall_seconds",
            "failures",
            "oom_kills"
        ]
    );
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["burn", "fails", "quick", "(total)"], "{csv}");
    assert_eq!(rows[1][1], "2");
    let burn_cpu: u64 = alice
        .iter()
        .filter(|l| l["task"] == "burn")
        .map(|l| l["cpu_usec"].as_u64().unwrap())
        .sum();
    assert_eq!(rows[1][2], format!("{:.6}", burn_cpu as f64 / 1e6));
    assert_eq!((rows[2][1], rows[2][6]), ("1", "1"), "{csv}");
    assert_eq!(rows[4][1], "4");
    assert!(rows.iter().all(|r| r.len() == 8), "{csv}");

    // The default: a table by task; root may read it too.
    let text = inst.lanco(None, &["ns", "accounting"]).ok().stdout();
    let head: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head[..2], ["TASK", "RUNS"], "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("(total)"),
        "{text}"
    );

    // By day: the UTC day of the end; and the period's bounds.
    let mut days = BTreeMap::new();
    for l in alice.iter().chain(&bob) {
        *days
            .entry(l["end_time"].as_str().unwrap()[..10].to_owned())
            .or_insert(0u64) += 1;
    }
    let r = json(&inst.lanco(Some(ALICE), &["ns", "accounting", "--by", "day", "--json"]));
    let got: BTreeMap<String, u64> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["day"].as_str().unwrap().to_owned(),
                g["runs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, days);
    let day = days.keys().next().unwrap().clone();
    let r = json(&inst.lanco(
        Some(ALICE),
        &["ns", "accounting", "--json", "--since", &day],
    ));
    assert_eq!(r["totals"]["runs"], 4);
    let r = json(&inst.lanco(
        Some(ALICE),
        &["ns", "accounting", "--json", "--until", &day],
    ));
    assert_eq!(r["totals"]["runs"], 0);
    let r = json(&inst.lanco(
        Some(ALICE),
        &["ns", "accounting", "--json", "--since", "-1h"],
    ));
    assert_eq!(r["totals"]["runs"], 4);
    let r = json(&inst.lanco(
        Some(ALICE),
        &["ns", "accounting", "--json", "--until", "-1h"],
    ));
    assert_eq!(r["totals"]["runs"], 0);

    // Refusals: a bad time, a stranger.
    inst.lanco(Some(ALICE), &["ns", "accounting", "--since", "last week"])
        .fails(2, "invalid time");
    inst.lanco(
        Some(ALICE),
        &["ns", "accounting", "--since", "-1h", "--until", "-2h"],
    )
    .fails(2, "is not before --until");
    inst.lanco(Some(EVE), &["ns", "accounting"])
        .fails(4, "not a member");
    inst.lanco(Some(EVE), &["nope", "accounting"])
        .fails(4, "not a member");
}

#[test]
fn a_journal_cut_short_warns_and_the_rest_is_reported() {
    let Some(inst) = setup("accounting_cut") else {
        return;
    };
    runs_of_two_members(&inst);
    let path = inst.user_state_dir("ns", ALICE).join("accounting.jsonl");
    // Power lost in the middle of a monitor's write: half a line, no newline.
    sh_as(
        ALICE,
        &format!(
            "printf '%s' '{{\"namespace\":\"ns\",\"task\":\"burn\",\"cpu_us' >> {}",
            path.display()
        ),
    )
    .ok();
    let o = inst.lanco(Some(BOB), &["ns", "accounting", "--json"]);
    let r = json(&o);
    assert_eq!(r["totals"]["runs"], 4);
    assert_eq!(r["skipped_lines"], 1);
    let err = o.stderr();
    assert_eq!(err.lines().count(), 1, "{o}");
    assert!(
        err.contains("WARN/accounting")
            && err.contains(&path.display().to_string())
            && err.contains("skipped 1 line (line 4: cut short"),
        "{o}"
    );
    // The next run's line goes after it, on the same line: that line is
    // lost, the report says so, and the runs after it count again.
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "quick", "true"])
        .ok();
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "quick", "true"])
        .ok();
    let o = inst.lanco(Some(BOB), &["ns", "accounting", "--json"]);
    assert_eq!(json(&o)["totals"]["runs"], 5, "{o}");
    assert!(o.stderr().contains("skipped 1 line (line 4:"), "{o}");
}

#[test]
fn rotation_under_concurrent_appends_loses_no_line() {
    let Some(inst) = setup_with(
        "accounting_rotation",
        "accounting_max_bytes = 4096\naccounting_keep = 1000\n",
    ) else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // Four crash loops of `true` end runs at once, each appending its
    // monitor's line.
    let tasks = ["r1", "r2", "r3", "r4"];
    for t in tasks {
        inst.lanco(
            Some(ALICE),
            &[
                "ns",
                "run",
                "--restart",
                "always",
                "--restart-delay",
                "5ms",
                "--restart-delay-max",
                "5ms",
                "--restart-limit",
                "1000/1s",
                t,
                "true",
            ],
        )
        .ok();
    }
    std::thread::sleep(Duration::from_secs(4));
    for t in tasks {
        inst.lanco(Some(ALICE), &["ns", "stop", t]).ok();
    }
    let dir = inst.user_state_dir("ns", ALICE);
    let lines = journal(&inst, ALICE);
    let mut per_task: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for l in &lines {
        per_task
            .entry(l["task"].as_str().unwrap().to_owned())
            .or_default()
            .push(l["restarts"].as_u64().unwrap_or(0));
    }
    for t in tasks {
        // Every run, from the first to the last, has its line.
        let rec: Value = serde_json::from_str(
            &fs::read_to_string(dir.join(format!("task-{t}.exit.json"))).unwrap(),
        )
        .unwrap();
        let last = rec["restarts"].as_u64().unwrap_or(0);
        let mut seen = per_task.remove(t).unwrap_or_default();
        seen.sort_unstable();
        assert_eq!(seen, (0..=last).collect::<Vec<_>>(), "{t}: runs 0..={last}");
        assert!(last > 20, "{t} restarted only {last} times");
    }
    // It did rotate, often, and the parts are Alice's, as the journal is.
    let parts: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("accounting.jsonl.")
        })
        .collect();
    eprintln!(
        "{} runs recorded in {} rotated parts and the journal",
        lines.len(),
        parts.len()
    );
    assert!(parts.len() > 10, "{} parts", parts.len());
    for p in &parts {
        let m = p.metadata().unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (uid(ALICE), gid(OPS), 0o640)
        );
    }
    let lock = fs::metadata(dir.join("accounting.lock")).unwrap();
    assert_eq!((lock.uid(), lock.mode() & 0o777), (uid(ALICE), 0o600));
    // The report reads across the parts.
    let r = json(&inst.lanco(Some(BOB), &["ns", "accounting", "--json"]));
    assert_eq!(r["totals"]["runs"], lines.len());
}

/// Root's billing journal, as lancod would write it: root's, readable by
/// the admin group, in a directory only they may enter.
fn billing_journal(inst: &Install, lines: &[Value]) {
    let dir = inst.state_dir.join("billing");
    fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(0), Some(gid(ADMINS))).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let path = dir.join("usage.jsonl");
    fs::write(&path, text).unwrap();
    std::os::unix::fs::chown(&path, Some(0), Some(gid(ADMINS))).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
}

fn sample(time: i64, user: &str, cgroup_id: u64, cpu_usec: u64) -> Value {
    serde_json::json!({
        "time": time, "event": "sample", "namespace": "ns", "uid": uid(user), "user": user,
        "cgroup_id": cgroup_id, "cpu_usec": cpu_usec, "memory_peak_bytes": null,
        "io_read_bytes": null, "io_write_bytes": null,
    })
}

#[test]
fn all_namespaces_by_user_comes_from_the_billing_journal() {
    let Some(inst) = setup_with(
        "accounting_billing",
        &format!("admin_group = \"{ADMINS}\"\n"),
    ) else {
        return;
    };
    runs_of_two_members(&inst);
    let (alice, bob) = (cpu_of(&journal(&inst, ALICE)), cpu_of(&journal(&inst, BOB)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Alice's subtree: the kernel agrees with her records (its counter
    // restarted once: a new cgroup id). Bob's: the kernel saw twice what
    // his records say.
    billing_journal(
        &inst,
        &[
            sample(now - 10_000, ALICE, 11, 5_000_000),
            sample(now - 3600, ALICE, 11, 5_000_000 + alice / 2),
            sample(now - 60, ALICE, 12, alice - alice / 2),
            sample(now - 60, BOB, 21, 2 * bob + 2_000_000),
        ],
    );
    let r = json(&inst.lanco(
        None,
        &["--all-namespaces", "accounting", "--json", "--since", "-2h"],
    ));
    assert_eq!(r["source"], "billing");
    let g = r["groups"].as_array().unwrap();
    assert_eq!(g.len(), 2, "{r}");
    assert_eq!(
        (g[0]["namespace"].as_str(), g[0]["user"].as_str()),
        (Some("ns"), Some(ALICE))
    );
    assert_eq!(g[0]["kernel"]["cpu_usec"], alice);
    assert_eq!(g[0]["records"]["cpu_usec"], alice);
    assert_eq!(g[0]["records"]["runs"], 3);
    assert_eq!(g[0]["records_disagree"], false);
    assert_eq!(g[1]["kernel"]["cpu_usec"], 2 * bob + 2_000_000);
    assert_eq!(g[1]["records"]["runs"], 1);
    assert_eq!(g[1]["records_disagree"], true);
    assert_eq!(
        r["totals"]["kernel"]["cpu_usec"],
        alice + 2 * bob + 2_000_000
    );
    let text = inst
        .lanco(None, &["--all-namespaces", "accounting", "--since", "-2h"])
        .ok()
        .stdout();
    let bob_row = text.lines().find(|l| l.contains(BOB)).unwrap();
    assert!(bob_row.ends_with("records disagree"), "{text}");

    // An administrator outside the namespace's group: the kernel's figures
    // only.
    let r = json(&inst.lanco(
        Some(ADMIN),
        &["--all-namespaces", "accounting", "--json", "--since", "-2h"],
    ));
    assert_eq!(r["groups"][0]["kernel"]["cpu_usec"], alice);
    assert_eq!(r["groups"][0]["records"], Value::Null);
    assert_eq!(r["groups"][0]["records_disagree"], Value::Null);
    let o = inst.lanco(
        Some(ADMIN),
        &["--all-namespaces", "accounting", "--by", "task"],
    );
    assert!(
        o.ok()
            .stderr()
            .contains("namespace ns: its members' records are not readable"),
        "{o}"
    );

    // Root, by task across namespaces: the members' records.
    let csv = inst
        .lanco(
            None,
            &["--all-namespaces", "accounting", "--by", "task", "--csv"],
        )
        .ok()
        .stdout();
    assert!(csv.starts_with("namespace,task,runs,"), "{csv}");
    assert!(csv.contains("\nns,burn,2,"), "{csv}");

    // A member is no administrator; --all-namespaces goes with accounting.
    inst.lanco(Some(ALICE), &["--all-namespaces", "accounting"])
        .fails(4, "--all-namespaces is for root and the admin group");
    inst.lanco(None, &["--all-namespaces", "ls"])
        .fails(2, "--all-namespaces goes with accounting only");
    inst.lanco(None, &["--all-namespaces", "ns", "accounting"])
        .fails(2, "cannot be used with");
    // Without a billing journal, by user is an error naming it.
    fs::remove_dir_all(inst.state_dir.join("billing")).unwrap();
    let o = inst.lanco(None, &["--all-namespaces", "accounting"]);
    o.fails(8, &Path::new("billing").display().to_string());
}
