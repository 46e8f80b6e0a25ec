use std::path::{Path, PathBuf};

use lanco_proto::layout::{self, Layout};
use lanco_proto::NamespaceName;

use super::billing::billing_in;
use super::read;
use super::*;

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("lanco-acct-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn layout(&self) -> Layout {
        Layout {
            cgroup_root: self.0.join("cg"),
            state_dir: self.0.clone(),
            log_dir: self.0.join("log"),
        }
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn ns(s: &str) -> NamespaceName {
    NamespaceName::try_from(s).unwrap()
}

/// An exit record's line as a monitor writes it (the fields accounting
/// reads, and some it skips).
fn line(task: &str, start: i64, end: i64, exit: &str, cpu: u64, peak: Option<u64>) -> String {
    let exit = match exit {
        "ok" => r#"{"kind":"code","value":0}"#.to_owned(),
        "lost" => r#"{"kind":"lost"}"#.to_owned(),
        code => format!(r#"{{"kind":"code","value":{code}}}"#),
    };
    let peak = peak.map_or("null".into(), |p| p.to_string());
    format!(
        r#"{{"namespace":"n","task":"{task}","run_id":"00ff","user":"x","uid":1,"command":["sh","-c","a \"b\""],"pid":7,"start":{start},"start_time":"","end":{end},"end_time":"","exit":{exit},"stopped":false,"killed_after_timeout":false,"cpu_usec":{cpu},"peak_memory_bytes":{peak},"peak_memory_source":"memory.peak","log":"/l","notes":["a note"]}}"#
    )
}

fn member_dir(t: &Tmp, n: &str, uid: u32) -> PathBuf {
    let d = t.layout().user_state_dir(&ns(n), uid);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, lines: &[String], tail: &str) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    text.push_str(tail);
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn groups_and_totals_across_rotated_parts() {
    let t = Tmp::new("groups");
    let d = member_dir(&t, "n", me());
    let day = 20_000 * 86_400;
    write(
        &d,
        &layout::rotated_part(layout::ACCOUNTING, 1),
        &[
            line("build", day - 100, day - 10, "ok", 1_000_000, Some(100)),
            line("build", day + 10, day + 70, "1", 2_000_000, Some(300)),
        ],
        "",
    );
    let mut oom = line("web", day + 100, day + 3700, "ok", 500, None);
    oom = oom.replace(
        r#""cpu_usec""#,
        r#""oom_kills":2,"failed":"given up","cpu_usec""#,
    );
    let stopped = line("web", day + 4000, day + 4001, "lost", 7, Some(50))
        .replace(r#""stopped":false"#, r#""stopped":true"#);
    write(&d, layout::ACCOUNTING, &[oom, stopped], "");
    let all = report_at(&t.layout(), &[ns("n")], Period::default(), By::Task).unwrap();
    assert!(all.warnings.is_empty(), "{:?}", all.warnings);
    assert_eq!(all.groups.len(), 2);
    let build = &all.groups[0].totals;
    assert_eq!(
        all.groups[0].key,
        GroupKey::Task("build".try_into().unwrap())
    );
    assert_eq!(
        (build.runs, build.cpu_usec, build.failures),
        (2, 3_000_000, 1)
    );
    assert_eq!(
        (build.peak_memory_bytes, build.avg_memory_bytes()),
        (Some(300), Some(200))
    );
    assert_eq!(build.wall_seconds, 90 + 60);
    let web = &all.groups[1].totals;
    // A stopped run is no failure, whatever its status; `failed` is one.
    assert_eq!((web.runs, web.failures, web.oom_kills), (2, 1, 1));
    assert_eq!(web.avg_memory_bytes(), Some(50));
    assert_eq!(all.totals.runs, 4);
    assert_eq!(all.totals.cpu_usec, 3_000_507);
    assert_eq!(all.totals.peak_memory_bytes, Some(300));

    // [since, until) by the end; days are UTC days of the end.
    let period = Period {
        since: Some(day - 10),
        until: Some(day + 3700),
    };
    let r = report_at(&t.layout(), &[ns("n")], period, By::Day).unwrap();
    let days: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.key.clone(), g.totals.runs))
        .collect();
    assert_eq!(
        days,
        [(GroupKey::Day(19_999), 1), (GroupKey::Day(20_000), 1)]
    );
    assert_eq!(r.groups[0].namespace, None);
    let r = report_at(&t.layout(), &[ns("n")], period, By::User).unwrap();
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].key, GroupKey::User(me()));
    assert_eq!(r.groups[0].namespace, Some(ns("n")));
    assert_eq!(r.totals.runs, 2);
}

#[test]
fn bad_lines_are_skipped_counted_and_the_rest_reported() {
    let t = Tmp::new("bad");
    let d = member_dir(&t, "n", me());
    let good = line("a", 0, 10, "ok", 5, None);
    let cut = good[..good.len() / 2].to_owned();
    let cut = cut.as_str();
    write(
        &d,
        layout::ACCOUNTING,
        &[
            good.clone(),
            "not json".into(),
            line("../etc", 0, 10, "ok", 5, None),
            line("ok\\u001b[2J", 0, 10, "ok", 5, None),
            good.clone(),
        ],
        cut,
    );
    let r = report_at(&t.layout(), &[ns("n")], Period::default(), By::Task).unwrap();
    assert_eq!(r.totals.runs, 2);
    assert_eq!(r.totals.cpu_usec, 10);
    let [JournalWarning::Skipped {
        path,
        lines,
        first_line,
        why,
    }] = &r.warnings[..]
    else {
        panic!("{:?}", r.warnings)
    };
    assert_eq!((*lines, *first_line), (4, 2));
    assert!(path.ends_with("user-".to_owned() + &me().to_string() + "/accounting.jsonl"));
    assert!(why.contains("expected"), "{why}");
    let shown = r.warnings[0].to_string();
    assert!(shown.contains("skipped 4 lines (line 2:"), "{shown}");
    // Only the cut line: a warning that says so.
    write(&d, layout::ACCOUNTING, &[good], cut);
    let r = report_at(&t.layout(), &[ns("n")], Period::default(), By::Task).unwrap();
    assert_eq!(r.totals.runs, 1);
    let shown = r.warnings[0].to_string();
    assert!(
        shown.contains("skipped 1 line (line 2: cut short"),
        "{shown}"
    );
}

#[test]
fn a_journal_not_its_members_is_not_read() {
    let t = Tmp::new("owner");
    // A directory named for another uid: its journal must be that uid's.
    let other = if me() == 0 { 4242 } else { 0 };
    let d = member_dir(&t, "n", other);
    write(
        &d,
        layout::ACCOUNTING,
        &[line("a", 0, 1, "ok", 1, None)],
        "",
    );
    let r = report_at(&t.layout(), &[ns("n")], Period::default(), By::Task).unwrap();
    assert_eq!(r.totals.runs, 0);
    assert!(
        matches!(&r.warnings[..], [JournalWarning::Unreadable { why, .. }] if why.contains("not a file of")),
        "{:?}",
        r.warnings
    );
    // A namespace that cannot be read is a warning across namespaces.
    let r = report_at(&t.layout(), &[ns("gone")], Period::default(), By::Task).unwrap();
    assert!(matches!(
        &r.warnings[..],
        [JournalWarning::Unreadable { .. }]
    ));
}

fn sample(
    time: i64,
    n: &str,
    uid: u32,
    cg: u64,
    cpu: u64,
    peak: Option<u64>,
    io: Option<u64>,
) -> String {
    serde_json::to_string(&lanco_proto::billing::UsageSample {
        time,
        event: lanco_proto::billing::UsageEvent::Sample,
        namespace: n.into(),
        uid,
        user: format!("u{uid}"),
        cgroup_id: cg,
        cpu_usec: cpu,
        memory_peak_bytes: peak,
        io_read_bytes: io,
        io_write_bytes: None,
    })
    .unwrap()
}

#[test]
fn kernel_usage_from_samples() {
    let t = Tmp::new("billing");
    let dir = t.layout().billing_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let period = Period {
        since: Some(100),
        until: Some(200),
    };
    write(
        &dir,
        &layout::rotated_part(layout::BILLING_JOURNAL, 1),
        &[
            sample(10, "a", 1, 7, 1_000, Some(5), Some(10)),
            sample(90, "a", 1, 7, 4_000, Some(9), Some(40)),
        ],
        "",
    );
    write(
        &dir,
        layout::BILLING_JOURNAL,
        &[
            // In the period: 4000 → 9000 on cgroup 7.
            sample(150, "a", 1, 7, 9_000, Some(20), Some(100)),
            // The subtree was remade (a new cgroup id) in the period.
            sample(160, "a", 1, 8, 500, Some(3), Some(1)),
            sample(199, "a", 1, 8, 800, Some(4), Some(2)),
            // Past the period: not counted.
            sample(200, "a", 1, 8, 99_999, Some(999), Some(999)),
            // Another member, before the period only: no usage in it.
            sample(50, "a", 2, 9, 1_000, None, None),
            // Another namespace; no io controller.
            sample(120, "b", 1, 10, 2_000, None, None),
        ],
        "{\"time\":",
    );
    let b = billing_in(&lanco_proto::files::Dir::open(&dir).unwrap(), period);
    assert_eq!(b.oldest_sample, Some(10));
    assert!(
        matches!(&b.warnings[..], [JournalWarning::Skipped { lines: 1, .. }]),
        "{:?}",
        b.warnings
    );
    let got: Vec<_> = b
        .usage
        .iter()
        .map(|u| {
            (
                u.namespace.to_string(),
                u.uid,
                u.cpu_usec,
                u.memory_peak_bytes,
                u.io_read_bytes,
                u.samples,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), 1, 5_000 + 800, Some(20), Some(60 + 2), 3),
            ("b".into(), 1, 2_000, None, None, 1),
        ]
    );
    assert_eq!(b.usage[0].user, "u1");
    // No period: everything since each subtree was made, to its last sample.
    let b = billing_in(
        &lanco_proto::files::Dir::open(&dir).unwrap(),
        Period::default(),
    );
    assert_eq!(b.usage[0].cpu_usec, 9_000 + 99_999);
}

#[test]
fn disagreement_is_more_than_five_percent_of_the_kernel() {
    assert!(!records_disagree(1_000_000, 1_000_000));
    assert!(!records_disagree(1_000_000, 950_000));
    assert!(!records_disagree(1_000_000, 1_050_000));
    assert!(records_disagree(1_000_000, 949_999));
    assert!(records_disagree(1_000_000, 1_050_001));
    assert!(records_disagree(0, 1));
    assert!(!records_disagree(0, 0));
}

#[test]
fn a_part_read_in_ranges_is_read_as_a_whole() {
    let t = Tmp::new("ranges");
    let d = member_dir(&t, "n", me());
    let mut lines: Vec<String> = (0..500)
        .map(|i| line(&format!("t{}", i % 7), 0, i, "ok", i as u64, Some(i as u64)))
        .collect();
    lines[137] = "garbage".into();
    lines[400] = line("t1", 0, 1, "ok", 1, None)[..40].to_owned();
    write(&d, layout::ACCOUNTING, &lines, "{\"cut");
    let file = std::fs::File::open(d.join(layout::ACCOUNTING)).unwrap();
    let len = file.metadata().unwrap().len();
    let n = ns("n");
    let whole = |threads| {
        let (mut runs, mut cpu) = (0u64, 0u64);
        let mut ranged = Vec::new();
        let ranges = read::split(&file, len, threads);
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, len);
        for r in &ranges {
            let mut names = read::Names::default();
            ranged.push(read::range(
                &file,
                r.clone(),
                &n,
                me(),
                &mut names,
                &mut |r| {
                    runs += 1;
                    cpu += r.cpu_usec;
                },
            ));
        }
        (
            runs,
            cpu,
            read::warnings(Path::new("j"), ranged),
            ranges.len(),
        )
    };
    let one = whole(1);
    assert_eq!(one.3, 1);
    assert_eq!((one.0, one.1), (498, (0..500u64).sum::<u64>() - 137 - 400));
    assert_eq!(
        one.2,
        [JournalWarning::Skipped {
            path: "j".into(),
            lines: 3,
            first_line: 138,
            why: "expected value at line 1 column 1".into(),
        }]
    );
    for threads in [2, 3, 7, 64] {
        let many = whole(threads);
        assert!(many.3 > 1, "split into {}", many.3);
        assert_eq!(
            (many.0, many.1, &many.2),
            (one.0, one.1, &one.2),
            "{threads}"
        );
    }
}
