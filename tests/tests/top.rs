//! `lanco NS top`: its snapshot (`-b`, `--json`, stdout not a terminal)
//! with the figures this host's kernel gives (cgroup2 without controllers
//! here: memory from PSS, or RSS for another member's processes; pids
//! counted in cgroup.procs), and the full-screen view driven in tmux: the
//! tasks, CPU over refreshes, sorting, `K` stopping a task, `q` giving the
//! terminal back.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lanco_e2e::{setup, wait_for, Install, ALICE, BOB, EVE, OPS};
use serde_json::Value;

/// Four processes spinning, each in a session of its own: the kernel's
/// autogroup scheduling weighs a session as one, so on a host busy with
/// other sessions (builds) one session of spinners gets only its share.
const SPIN: &str = "for i in 1 2 3 4; do setsid sh -c 'while :; do :; done' & done; wait";
/// About 40 MB of memory, held.
const BIG: &str = "$x = 'a' x 40_000_000; sleep 1000";

/// Namespace `ns` with Alice's `busy` (spinning), `idle` (a sleep) and,
/// with `big`, a perl holding 40 MB.
fn tasks(big: bool) -> Option<Install> {
    let inst = setup("top")?;
    inst.init("ns", ALICE, OPS);
    let a = Some(ALICE);
    inst.lanco(a, &["ns", "run", "busy", "sh", "-c", SPIN]).ok();
    inst.lanco(a, &["ns", "run", "idle", "sleep", "1000"]).ok();
    if big {
        inst.lanco(a, &["ns", "run", "big", "perl", "-e", BIG]).ok();
    }
    Some(inst)
}

/// Whether the namespace's cgroup has the memory controller (a host with
/// every controller in cgroup v2) or not (this one).
fn memory_controller(inst: &Install) -> bool {
    inst.ns_cgroup("ns")
        .controllers()
        .unwrap_or_default()
        .iter()
        .any(|c| c == "memory")
}

fn top_json(inst: &Install, user: Option<&str>, delay: &str) -> Value {
    let o = inst.lanco(user, &["ns", "top", "--json", "-d", delay]);
    o.ok();
    serde_json::from_slice(&o.0.stdout).unwrap_or_else(|e| panic!("top --json: {e}: {o}"))
}

fn task<'a>(top: &'a Value, name: &str) -> &'a Value {
    top["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["task"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {top:#}"))
}

#[test]
fn snapshot_lists_tasks_with_cpu_pids_and_the_memory_source() {
    let Some(inst) = tasks(false) else { return };
    let cg = memory_controller(&inst);
    let own = if cg { "memory.current" } else { "pss" };
    let top = top_json(&inst, Some(ALICE), "1");
    assert_eq!(top["namespace"], "ns");
    assert_eq!(top["memory_source"], own, "{top:#}");
    assert_eq!(top["totals"]["tasks"], 2, "{top:#}");
    let secs = top["interval_secs"].as_f64().expect("interval");
    assert!((0.9..3.0).contains(&secs), "{top:#}");
    assert!(top["host_cpus"].as_u64().unwrap() >= 1);
    // Every figure is there, null where this host has none.
    for key in [
        "memory_max",
        "memory_high",
        "pids_max",
        "cpu_max",
        "cpu_weight",
    ] {
        assert!(top["ceilings"].get(key).is_some(), "{key}: {top:#}");
    }
    let (busy, idle) = (task(&top, "busy"), task(&top, "idle"));
    for t in [busy, idle] {
        assert_eq!(t["state"], "running", "{t:#}");
        assert_eq!(t["user"], ALICE);
        assert_eq!(t["restarts"], 0);
        assert!(t["started"].as_i64().unwrap() > 0 && t["uptime_secs"].is_u64());
        assert!(t["memory"]["current"].as_u64().unwrap() > 0, "{t:#}");
        assert_eq!(t["memory"]["source"], own, "{t:#}");
        assert!(t["cpu"]["usage_usec"].as_u64().is_some(), "{t:#}");
        if !cg {
            assert!(t["memory"]["peak"].is_null() && t["limits"]["memory_max"].is_null());
            assert_eq!(t["pids"]["source"], "cgroup.procs", "{t:#}");
        }
    }
    // sh and its four loops.
    assert_eq!(busy["pids"]["current"], 5, "{busy:#}");
    assert_eq!(idle["pids"]["current"], 1, "{idle:#}");
    let (b, i) = (
        busy["cpu"]["percent"].as_f64(),
        idle["cpu"]["percent"].as_f64(),
    );
    assert!(b.unwrap() > 10.0 && i.unwrap() < 5.0, "{top:#}");
    assert!(
        top["totals"]["cpu"]["usage_usec"].as_u64().unwrap()
            >= busy["cpu"]["usage_usec"].as_u64().unwrap()
    );
    // Another member cannot read Alice's processes' PSS: RSS, and it says
    // so; root can.
    if !cg {
        let bobs = top_json(&inst, Some(BOB), "0");
        assert_eq!(bobs["memory_source"], "rss", "{bobs:#}");
        assert_eq!(task(&bobs, "idle")["memory"]["source"], "rss");
        assert_eq!(top_json(&inst, None, "0")["memory_source"], "pss");
    }
    // One sample: no CPU %.
    let one = top_json(&inst, Some(ALICE), "0");
    assert!(one["interval_secs"].is_null() && task(&one, "busy")["cpu"]["percent"].is_null());
    // The table: -b, and the same when stdout is not a terminal.
    for args in [
        &["ns", "top", "-b", "-d", "0.2"][..],
        &["ns", "top", "-d", "0.2"],
    ] {
        let text = inst.lanco(Some(BOB), args).ok().stdout();
        assert!(text.starts_with("namespace ns · 2 tasks"), "{text}");
        if !cg {
            assert!(
                text.contains("memory: RSS of each task's processes"),
                "{text}"
            );
        }
        let head = text.lines().find(|l| l.starts_with("TASK")).expect(&text);
        assert!(head.contains("CPU%") && head.contains("PIDS"), "{text}");
        for name in ["busy", "idle"] {
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no row {name}: {text}"));
            assert!(row.contains("running") && row.contains(ALICE), "{row}");
        }
    }
    // Outsiders get what every command gives them.
    inst.lanco(Some(EVE), &["ns", "top", "-b"]).fails(4, "");
}

/// A private tmux server whose one pane runs a shell as `user`; killed
/// (with what runs in it) when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(inst: &Install, user: &str) -> Self {
        let t = Tmux {
            socket: inst.dir.join("tmux.sock"),
        };
        let shell = format!(
            "setpriv --reuid={user} --regid={user} --init-groups -- env LANCO_CONFIG={} PS1='$ ' sh",
            inst.config.display()
        );
        let st = t
            .cmd(&[
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "40",
                "-s",
                "top",
                &shell,
            ])
            .status()
            .expect("tmux");
        assert!(st.success(), "tmux new-session: {st}");
        t
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(args);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend(keys);
        assert!(self.cmd(&args).status().expect("tmux").success());
    }

    fn screen(&self) -> String {
        let o = self
            .cmd(&["capture-pane", "-p", "-t", "top"])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn format(&self, f: &str) -> String {
        let o = self
            .cmd(&["display-message", "-p", "-t", "top", f])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Waits until the pane is back on the main screen after `what` ended
    /// `top`, then asks its shell (a line it reads only in cooked mode) for
    /// `top`'s exit status and the terminal's mode: `status:N mode:icanon`.
    fn restored(&self, what: &str) -> String {
        assert!(
            wait_for(Duration::from_secs(10), || self.format("#{alternate_on}")
                == "0"),
            "still on the alternate screen after {what}:\n{}",
            self.screen()
        );
        // Tagged: the main screen comes back with what an earlier answer
        // left on it.
        let ask = format!(
            "s=$?; clear; echo \"{what} status:$s mode:$(stty -a | grep -o -- '-*icanon' | head -1)\""
        );
        self.keys(&[&ask, "Enter"]);
        let tag = format!("{what} status:");
        let s = self.wait("the shell answering", |s| {
            s.lines().any(|l| l.starts_with(&tag))
        });
        assert!(!s.contains("TASK"), "{s}");
        let line = s.lines().find(|l| l.starts_with(&tag)).unwrap_or("");
        line[what.len()..].trim().to_owned()
    }

    /// Waits up to 20 s for the screen to satisfy `cond`; the screen.
    fn wait(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let ok = wait_for(Duration::from_secs(20), || {
            last = self.screen();
            cond(&last)
        });
        assert!(ok, "{what}; the screen:\n{last}");
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).output();
        // The server removes its socket as it goes: gone before the
        // installation's directory is removed.
        wait_for(Duration::from_secs(5), || !self.socket.exists());
    }
}

/// The task rows on the screen, in order: (selected, task, its cells).
fn rows(screen: &str) -> Vec<(bool, String, Vec<String>)> {
    screen
        .lines()
        .skip_while(|l| !l.contains("TASK"))
        .skip(1)
        .map_while(|l| {
            let (sel, rest) = match l.strip_prefix("> ") {
                Some(r) => (true, r),
                None => (false, l.strip_prefix("  ")?),
            };
            let cells: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            (cells.len() >= 3 && cells[2] == ALICE).then(|| (sel, cells[0].clone(), cells))
        })
        .collect()
}

#[test]
fn the_full_screen_view_in_tmux_sorts_stops_and_quits() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var("LANCO_E2E_REQUIRED").as_deref() != Ok("1"),
            "top_tui: no tmux and LANCO_E2E_REQUIRED=1"
        );
        eprintln!("SKIP top_tui: no tmux");
        return;
    }
    let Some(inst) = tasks(true) else { return };
    let tmux = Tmux::start(&inst, ALICE);
    let lanco = inst.bin.join("lanco");
    tmux.keys(&[&format!("{} ns top -d 0.5", lanco.display()), "Enter"]);
    tmux.wait("the three tasks", |s| {
        let names: Vec<String> = rows(s).into_iter().map(|r| r.1).collect();
        s.contains("namespace ns · 3 tasks") && names.len() == 3
    });
    assert_eq!(tmux.format("#{alternate_on}"), "1");
    // The spinning task's CPU, from the deltas of two refreshes.
    let screen = tmux.wait("busy over 50 % of one CPU", |s| {
        rows(s).iter().any(|(_, t, c)| {
            t == "busy" && c.get(3).and_then(|p| p.parse::<f64>().ok()) > Some(50.0)
        })
    });
    println!("{screen}");
    if !memory_controller(&inst) {
        assert!(
            screen.contains("memory: PSS of each task's processes"),
            "{screen}"
        );
    }
    // The log pane shows the selected task's log (empty here) under its name.
    assert!(screen.contains("log: "), "{screen}");
    // By memory: the perl holding 40 MB first.
    tmux.keys(&["m"]);
    tmux.wait("sorted by memory, big first", |s| {
        s.contains("sort (by memory)") && rows(s).first().is_some_and(|r| r.1 == "big")
    });
    // By name, then down to idle, and stop it.
    tmux.keys(&["n"]);
    let s = tmux.wait("sorted by name", |s| {
        let names: Vec<String> = rows(s).into_iter().map(|r| r.1).collect();
        names == ["big", "busy", "idle"]
    });
    let at = rows(&s).iter().position(|r| r.0).expect("a selected row");
    for _ in at..2 {
        tmux.keys(&["j"]);
    }
    tmux.wait("idle selected", |s| {
        rows(s).iter().any(|(sel, t, _)| *sel && t == "idle")
    });
    tmux.keys(&["K"]);
    tmux.wait("the prompt", |s| s.contains("Stop task idle? (y/n)"));
    assert_eq!(inst.lanco(Some(ALICE), &["ns", "check", "idle"]).code(), 0);
    tmux.keys(&["y"]);
    let s = tmux.wait("idle stopped and gone", |s| {
        s.contains("task idle stopped") && rows(s).len() == 2
    });
    assert!(!rows(&s).iter().any(|r| r.1 == "idle"), "{s}");
    assert_eq!(inst.lanco(Some(ALICE), &["ns", "check", "idle"]).code(), 1);
    assert_eq!(inst.status("ns", "idle")["last"]["stopped"], true);
    assert_eq!(inst.lanco(Some(ALICE), &["ns", "check", "busy"]).code(), 0);
    // q: the terminal as it was (main screen, cooked mode, the cursor).
    tmux.keys(&["q"]);
    assert_eq!(tmux.restored("q"), "status:0 mode:icanon");
    assert_eq!(tmux.format("#{cursor_flag}"), "1");
    // SIGTERM from outside: the same.
    tmux.keys(&[&format!("{} ns top -d 0.5", lanco.display()), "Enter"]);
    tmux.wait("top again", |s| s.contains("namespace ns · 2 tasks"));
    let top = top_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(top), nix::sys::signal::SIGTERM).unwrap();
    assert_eq!(tmux.restored("SIGTERM"), "status:143 mode:icanon");
    // The terminal going away (its tmux server killed): top ends, rather
    // than read the hung-up terminal again and again.
    tmux.keys(&[&format!("{} ns top -d 0.5", lanco.display()), "Enter"]);
    tmux.wait("top once more", |s| s.contains("namespace ns · 2 tasks"));
    let top = top_pid();
    drop(tmux);
    assert!(
        wait_for(Duration::from_secs(10), || !lanco_e2e::alive(top)),
        "top {top} outlived its terminal"
    );
}

/// The pid of the one `lanco ns top` running.
fn top_pid() -> i32 {
    let found: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.ends_with(b"\0ns\0top\0-d\x000.5\0"))
        })
        .collect();
    assert_eq!(found.len(), 1, "top processes: {found:?}");
    found[0]
}
