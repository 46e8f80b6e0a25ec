//! lancod as security code: every denial, hostile input, crashes mid-request,
//! idle exit and socket activation, restore after a reboot, destroy.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use lanco_e2e::{
    pids_with, raw_request_as, setup, setup_with, unique_sleep, wait_for, Cgroup, Install, ADMIN,
    ADMINS, ALICE, BOB, EVE, NO_SPAWNER, OPS,
};
use lanco_proto::wire::{self, ErrorCode, Request, Response};
use lanco_proto::NamespaceName;
use nix::sys::signal::Signal;

fn ns(s: &str) -> NamespaceName {
    NamespaceName::try_from(s).unwrap()
}

fn answer(bytes: &[u8]) -> Response {
    wire::read_frame(&mut &bytes[..]).unwrap_or_else(|e| panic!("no answer frame ({e}): {bytes:?}"))
}

fn admit_as(inst: &Install, user: &str, namespace: &str) -> Response {
    let req = wire::encode(&Request::Admit { ns: ns(namespace) }).unwrap();
    answer(&raw_request_as(user, &inst.socket, &req))
}

fn join_as(inst: &Install, user: &str, namespace: &str) -> Response {
    let req = wire::encode(&Request::Join { ns: ns(namespace) }).unwrap();
    answer(&raw_request_as(user, &inst.socket, &req))
}

#[test]
fn every_denial() {
    if !lanco_e2e::can_run("every_denial") {
        return;
    }
    let inst = Install::new("every_denial", &format!("admin_group = \"{ADMINS}\"\n"));
    // init and destroy: root or the admin group only.
    inst.lanco(Some(ALICE), &["x", "init", "-u", ALICE])
        .fails(4, "only root or the admin group");
    inst.lanco(Some(EVE), &["x", "init"])
        .fails(4, "only root or the admin group");
    inst.lanco(Some(ADMIN), &["x", "init", "-u", ALICE, "-g", OPS])
        .ok();
    inst.lanco(Some(ALICE), &["x", "destroy"])
        .fails(4, "only root or the admin group");
    // The owner cannot be changed by a second init.
    inst.lanco(None, &["x", "init", "-u", EVE])
        .fails(3, "already belongs to");
    inst.lanco(None, &["x", "init", "-u", ALICE, "-g", OPS])
        .ok();
    inst.lanco(None, &["y", "init", "-u", "no-such-user-here"])
        .fails(5, "no such user");
    assert!(
        !inst.ns_cgroup("y").exists(),
        "a failed init leaves nothing"
    );
    // Admission: owner and group members yes, others no, and the answer to a
    // stranger is the same whether the namespace exists or not.
    assert_eq!(admit_as(&inst, ALICE, "x"), Response::Admitted);
    assert_eq!(admit_as(&inst, BOB, "x"), Response::Admitted);
    let denied = admit_as(&inst, EVE, "x");
    assert!(
        matches!(
            denied,
            Response::Error {
                code: ErrorCode::PermissionDenied,
                ..
            }
        ),
        "{denied:?}"
    );
    assert_eq!(admit_as(&inst, EVE, "nonexistent"), denied);
    // Join (a member's directories before its first task, for `define`):
    // the same rule, the same answer to a stranger, and nothing made.
    assert_eq!(join_as(&inst, EVE, "x"), denied);
    assert_eq!(join_as(&inst, EVE, "nonexistent"), denied);
    assert!(!inst.user_state_dir("x", EVE).exists());
    inst.lanco(None, &["j", "init", "-u", ALICE, "-g", OPS])
        .ok();
    assert!(!inst.user_state_dir("j", BOB).exists());
    assert_eq!(join_as(&inst, BOB, "j"), Response::Joined);
    assert!(inst.user_state_dir("j", BOB).is_dir());
    assert!(matches!(
        admit_as(&inst, ADMIN, "x"),
        Response::Error {
            code: ErrorCode::PermissionDenied,
            ..
        }
    ));
    // Every decision is logged with the peer's uid.
    let log = std::fs::read_to_string(inst.dir.join("lancod.log")).unwrap();
    let eve_uid = nix::unistd::User::from_name(EVE).unwrap().unwrap().uid;
    assert!(
        log.contains(&format!("uid={eve_uid}"))
            && log.contains(&format!("admission of uid {eve_uid} in x denied")),
        "{log}"
    );
}

#[test]
fn hostile_input_is_answered_and_lancod_keeps_serving() {
    let Some(inst) = setup("hostile_input") else {
        return;
    };
    let send = |bytes: &[u8]| -> Vec<u8> {
        let mut s = UnixStream::connect(&inst.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    let code_of = |bytes: &[u8]| match answer(bytes) {
        Response::Error { code, .. } => code,
        r => panic!("expected an error, got {r:?}"),
    };
    // A length header of 2^63 bytes.
    let mut huge = b"LNC\x01".to_vec();
    huge.extend_from_slice(&(1u64 << 63).to_le_bytes());
    assert_eq!(code_of(&send(&huge)), ErrorCode::InvalidRequest);
    // A wrong protocol version, bad magic, garbage bodies, trailing bytes.
    let mut v9 = wire::encode(&Request::Admit { ns: ns("x") }).unwrap();
    v9[3] = 9;
    assert_eq!(code_of(&send(&v9)), ErrorCode::Unsupported);
    assert_eq!(
        code_of(&send(b"GET / HTTP/1.0\r\n\r\n")),
        ErrorCode::InvalidRequest
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..50 {
        let len = (seed % 200) as usize;
        let mut junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        if seed.is_multiple_of(2) {
            // A valid header with a garbage body.
            let mut framed = b"LNC\x01".to_vec();
            framed.extend_from_slice(&(junk.len() as u64).to_le_bytes());
            framed.append(&mut junk);
            junk = framed;
        }
        let out = send(&junk);
        if !out.is_empty() {
            assert!(matches!(answer(&out), Response::Error { .. }));
        }
    }
    // A body naming an invalid namespace ("../x") is rejected by decoding.
    let mut evil = b"LNC\x01".to_vec();
    evil.extend_from_slice(&6u64.to_le_bytes());
    evil.extend_from_slice(b"\x02\x04../x");
    assert_eq!(code_of(&send(&evil)), ErrorCode::InvalidRequest);
    // A slow client holds a connection open; others are served meanwhile,
    // and the slow one is cut off after the read timeout.
    let mut slow = UnixStream::connect(&inst.socket).unwrap();
    slow.write_all(b"LN").unwrap();
    let t0 = Instant::now();
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "served while a slow client waits"
    );
    let mut out = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = slow.read_to_end(&mut out);
    assert!(matches!(
        answer(&out),
        Response::Error {
            code: ErrorCode::InvalidRequest,
            ..
        }
    ));
    // Still alive after all of it.
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
}

#[test]
fn lancod_killed_mid_request() {
    // Every run admitted: this is about lancod dying during an admission.
    let Some(mut inst) = setup_with("lancod_killed", NO_SPAWNER) else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["ns", "run", "before", "sleep", &s])
        .ok();
    let before = pids_with(&s);
    assert_eq!(before.len(), 1);
    // Freeze lancod, start a run (its monitor connects and waits for the
    // admission), then kill lancod while the request is in flight.
    let pid = nix::unistd::Pid::from_raw(inst.lancod_pid().unwrap());
    nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
    let s2 = unique_sleep();
    let child = inst
        .cmd(Some(ALICE), &["ns", "run", "during", "sleep", &s2])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the new monitor exists (beside the first task's): it is
    // connected and waiting for its admission.
    let monitor_bin = inst.bin.join("lanco-monitor").display().to_string();
    assert!(wait_for(Duration::from_secs(5), || pids_with(&monitor_bin)
        .len()
        >= 2));
    std::thread::sleep(Duration::from_millis(300));
    inst.kill_lancod(Signal::SIGKILL);
    let o = lanco_e2e::Out(child.wait_with_output().unwrap());
    o.fails(7, "lancod");
    // Nothing half-made: no cgroup, no monitor, no payload, no state.
    assert!(!inst.task_cgroup("ns", "during").exists(), "{o}");
    assert!(pids_with(&s2).is_empty());
    assert!(
        wait_for(Duration::from_secs(5), || inst.monitors("ns").len() == 1),
        "only the first task's monitor"
    );
    assert!(!inst.state_file("ns", "task-during.state.json").exists());
    // With no lancod at all: a clear error, and the same nothing.
    inst.lanco(Some(ALICE), &["ns", "run", "during", "sleep", &s2])
        .fails(7, "cannot reach lancod");
    assert!(!inst.task_cgroup("ns", "during").exists());
    // Restarted, it works; the running task was never touched.
    inst.start_lancod();
    inst.lanco(Some(ALICE), &["ns", "run", "during", "sleep", &s2])
        .ok();
    assert_eq!(pids_with(&s), before);
    inst.lanco(Some(ALICE), &["ns", "stop", "during"]).ok();
    inst.lanco(Some(ALICE), &["ns", "stop", "before"]).ok();
}

#[test]
fn idle_exit_and_socket_activation() {
    if !lanco_e2e::can_run("idle_exit") {
        return;
    }
    let mut inst = Install::new("idle_exit", "");
    inst.init("ns", ALICE, OPS);
    inst.kill_lancod(Signal::SIGTERM);
    // Rewrite the config with a one-second idle timeout and serve through an
    // inherited socket, as systemd would pass it.
    let text = std::fs::read_to_string(&inst.config)
        .unwrap()
        .replace("idle_timeout = 0", "idle_timeout = 1");
    std::fs::write(&inst.config, text).unwrap();
    let mut act = std::process::Command::new("systemd-socket-activate");
    act.arg("-l")
        .arg(&inst.socket)
        .arg("-E")
        .arg(format!("LANCO_CONFIG={}", inst.config.display()));
    act.arg(inst.bin.join("lancod"));
    act.stderr(std::process::Stdio::null());
    let child = act
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd)");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    assert!(wait_for(Duration::from_secs(5), || inst.socket.exists()));
    // systemd's SocketMode=0666 (lancod.socket); this tool has no such option.
    std::fs::set_permissions(
        &inst.socket,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    // The first request starts lancod with the socket...
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
    // ...which exits by itself once idle.
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "lancod did not exit when idle"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(st.success(), "{st}");
}

#[test]
fn restore_after_reboot_and_destroy() {
    let Some(inst) = setup("restore_destroy") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
    // A reboot: the cgroups are gone, the registry and state are not. Until
    // `lancod restore` (lanco-tasks.service runs it at boot) the namespace
    // does not exist; after it, its owner finds it as it was.
    assert!(wait_for(Duration::from_secs(5), || inst
        .monitors("ns")
        .is_empty()));
    // What is left (the member's warm spawner) does not survive a reboot.
    inst.ns_cgroup("ns").kill().unwrap();
    assert!(wait_for(Duration::from_secs(5), || !inst
        .ns_cgroup("ns")
        .populated()
        .unwrap()));
    inst.ns_cgroup("ns").remove_tree().unwrap();
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .fails(4, "no such namespace ns, or you are not a member of it");
    let o = inst.lancod_cmd().arg("restore").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(inst.ns_cgroup("ns").path()).unwrap();
    let ops = nix::unistd::Group::from_name(OPS).unwrap().unwrap().gid;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, ops.as_raw(), 0o750)
    );
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
    // restore is safe to run at any time, also with tasks running.
    let s0 = unique_sleep();
    inst.lanco(Some(ALICE), &["ns", "run", "keep", "sleep", &s0])
        .ok();
    assert!(inst
        .lancod_cmd()
        .arg("restore")
        .output()
        .unwrap()
        .status
        .success());
    inst.lanco(Some(ALICE), &["ns", "check", "keep"]).ok();
    inst.lanco(Some(ALICE), &["ns", "stop", "keep"]).ok();
    // destroy refuses while a task runs, --force stops it gracefully.
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["ns", "run", "busy", "sleep", &s])
        .ok();
    inst.lanco(None, &["ns", "destroy"])
        .fails(3, "has running tasks (busy)");
    inst.lanco(None, &["ns", "destroy", "--force"]).ok();
    assert!(pids_with(&s).is_empty());
    assert!(!inst.ns_cgroup("ns").exists());
    inst.lanco(None, &["ns", "destroy"])
        .fails(5, "namespace ns does not exist");
    // The records are kept, root-only, where no namespace name reaches.
    let kept_dir = inst.layout().kept_state_dir();
    assert_eq!(std::fs::metadata(&kept_dir).unwrap().mode() & 0o7777, 0o700);
    let kept: Vec<_> = std::fs::read_dir(&kept_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ns-"))
        .collect();
    assert_eq!(kept.len(), 1);
    let acct = std::fs::read_to_string(
        kept[0]
            .path()
            .join(format!("user-{}", lanco_e2e::uid(ALICE)))
            .join("accounting.jsonl"),
    )
    .unwrap();
    assert!(
        acct.lines().last().unwrap().contains("\"stopped\":true"),
        "{acct}"
    );
    inst.init("ns", EVE, EVE);
    inst.lanco(Some(EVE), &["ns", "run", "-f", "t", "true"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(inst.state_file("ns", "accounting.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn a_missing_task_root_parent_is_a_clear_error() {
    let Some(mut inst) = setup("missing_root") else {
        return;
    };
    // Like system.slice/lanco-tasks.service while that unit is stopped: the
    // root's parent is not lancod's to create.
    inst.kill_lancod(Signal::SIGTERM);
    let gone = format!("{}-absent/root", inst.cgroup_root.display());
    let text = std::fs::read_to_string(&inst.config).unwrap();
    let text = text.replace(
        &format!("cgroup_root = \"{}\"", inst.cgroup_root.display()),
        &format!("cgroup_root = \"{gone}\""),
    );
    std::fs::write(&inst.config, text).unwrap();
    inst.start_lancod();
    inst.lanco(None, &["ns", "init", "-u", ALICE, "-g", OPS])
        .fails(7, "is lanco-tasks.service running?");
    assert!(!std::path::Path::new(&gone).exists());
    assert!(
        !inst.state_dir.join("namespaces/ns.toml").exists(),
        "no registration for a failed init"
    );
}

/// `lancod stop-all` (ExecStop of lanco-tasks.service) stops every task of
/// every namespace through its monitor, so each run is recorded as stopped
/// with its real exit status; a task whose monitor had died is killed too.
#[test]
fn stop_all_ends_every_task_with_its_record() {
    let Some(inst) = setup("stop_all") else {
        return;
    };
    inst.init("a", ALICE, OPS);
    inst.init("b", BOB, BOB);
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["a", "run", "plain", "sleep", &s])
        .ok();
    let trap = format!("trap 'exit 7' TERM; echo ready; while :; do sleep 0.2; done; sleep {s}");
    inst.lanco(Some(ALICE), &["a", "run", "trap", "sh", "-c", &trap])
        .ok();
    inst.lanco(Some(BOB), &["b", "run", "orphan", "sleep", &s])
        .ok();
    inst.signal_monitor("b", "orphan", Signal::SIGKILL);
    assert!(wait_for(Duration::from_secs(5), || inst
        .read_log("a", "trap")
        .contains("ready")));
    assert_eq!(pids_with(&s).len(), 2 + 1);

    let o = inst
        .lancod_cmd()
        .args(["stop-all", "--timeout", "20"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(pids_with(&s).is_empty(), "{:?}", pids_with(&s));
    for ns in ["a", "b"] {
        assert!(
            !inst.ns_cgroup(ns).populated().unwrap(),
            "{ns} still populated"
        );
    }
    let plain = inst.status("a", "plain");
    assert_eq!(plain["last"]["stopped"], true, "{plain}");
    assert_eq!(plain["last"]["exit"]["kind"], "signal", "{plain}");
    assert_eq!(plain["last"]["exit"]["value"], Signal::SIGTERM as i32);
    let trapped = inst.status("a", "trap");
    assert_eq!(trapped["last"]["stopped"], true, "{trapped}");
    assert_eq!(trapped["last"]["exit"]["kind"], "code", "{trapped}");
    assert_eq!(trapped["last"]["exit"]["value"], 7);
    assert_eq!(inst.lanco(Some(BOB), &["b", "check", "orphan"]).code(), 1);
    // Root is told the run's status was lost, and writes nothing in a
    // member's directory: the record is written by its owner's next look.
    let exit_record = inst.user_state_dir("b", BOB).join("task-orphan.exit.json");
    assert_eq!(inst.status("b", "orphan")["last"]["exit"]["kind"], "lost");
    assert!(!exit_record.exists());
    assert_eq!(
        inst.status_as(Some(BOB), "b", "orphan")["last"]["exit"]["kind"],
        "lost"
    );
    assert!(exit_record.exists());
    // Nothing is left that would stop the namespaces from being used again
    // (a cgroup.kill of a namespace's cgroup would: see the next test).
    inst.lanco(Some(ALICE), &["a", "run", "-f", "plain", "true"])
        .ok();
    inst.lanco(Some(BOB), &["b", "run", "-f", "orphan", "true"])
        .ok();
    inst.lanco(Some(BOB), &["b", "run", "-f", "new", "true"])
        .ok();
}

/// After someone kills a namespace's whole cgroup (cgroup.kill), this kernel
/// kills every process later born into a new task cgroup from the monitors'
/// cgroup. `run` must then fail with the reason, and never report a start
/// that did not happen; on a kernel without that behaviour the task runs.
#[test]
fn run_never_reports_a_start_that_did_not_happen() {
    let Some(inst) = setup("killed_ns") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let s = unique_sleep();
    inst.lanco(Some(ALICE), &["ns", "run", "before", "sleep", &s])
        .ok();
    let ns = inst.ns_cgroup("ns");
    ns.kill().unwrap();
    assert!(ns
        .wait_events(Duration::from_secs(10), |e| !e.populated)
        .unwrap());
    let out = inst.lanco(Some(ALICE), &["ns", "run", "after", "sleep", &s]);
    if out.code() == 0 {
        eprintln!("this kernel starts tasks in a killed namespace");
        inst.lanco(Some(ALICE), &["ns", "check", "after"]).ok();
        assert_eq!(pids_with(&s).len(), 1);
    } else {
        out.fails(6, "unable to run sleep: killed by SIGKILL before it ran");
        assert!(pids_with(&s).is_empty());
        assert!(!inst.task_cgroup("ns", "after").exists());
        assert!(!inst.state_file("ns", "task-after.state.json").exists());
        assert_eq!(inst.lanco(Some(ALICE), &["ns", "check", "after"]).code(), 1);
    }
}

fn ask_as(inst: &Install, user: &str, req: &Request) -> Response {
    let bytes = raw_request_as(user, &inst.socket, &wire::encode(req).unwrap());
    wire::read_frame_max(&mut &bytes[..], wire::MAX_REPLY)
        .unwrap_or_else(|e| panic!("no answer frame ({e}): {bytes:?}"))
}

fn code(r: Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => code,
        r => panic!("expected an error, got {r:?}"),
    }
}

#[test]
fn quota_and_listing_requests_are_authorised() {
    let Some(inst) = setup_with("quota_denials", &format!("admin_group = \"{ADMINS}\"\n")) else {
        return;
    };
    inst.init("x", ALICE, OPS);
    inst.lanco(None, &["other", "init", "-u", EVE]).ok();
    let limits = lanco_proto::Limits {
        pids: Some(10),
        ..Default::default()
    };
    // Ceilings: root and the admin group only, whoever asks about which.
    for who in [ALICE, BOB, EVE] {
        let set = Request::Limit {
            ns: ns("x"),
            set: limits.clone(),
            clear: vec![],
        };
        assert_eq!(
            code(ask_as(&inst, who, &set)),
            ErrorCode::PermissionDenied,
            "{who}"
        );
        let init = Request::InitLimited {
            ns: ns("z"),
            owner: Some(who.into()),
            group: None,
            limits: limits.clone(),
        };
        assert_eq!(
            code(ask_as(&inst, who, &init)),
            ErrorCode::PermissionDenied,
            "{who}"
        );
    }
    assert!(!inst.ns_cgroup("z").exists());
    let nothing = Request::Limit {
        ns: ns("x"),
        set: Default::default(),
        clear: vec![],
    };
    assert_eq!(
        ask_as(&inst, ADMIN, &nothing),
        Response::Limited {
            limits: Default::default()
        }
    );
    // Controllers for a member's tasks: members only, the same answer to a
    // stranger whether or not the namespace exists; only the four known.
    let enable = |namespace: &str, c: &str| Request::Enable {
        ns: ns(namespace),
        controllers: vec![c.into()],
    };
    let denied = ask_as(&inst, EVE, &enable("x", "pids"));
    assert_eq!(code(denied.clone()), ErrorCode::PermissionDenied);
    assert_eq!(ask_as(&inst, EVE, &enable("nonexistent", "pids")), denied);
    assert_eq!(
        code(ask_as(&inst, ALICE, &enable("x", "rdma"))),
        ErrorCode::InvalidRequest
    );
    let many = Request::Enable {
        ns: ns("x"),
        controllers: vec!["cpuset".into(); 100],
    };
    assert_eq!(code(ask_as(&inst, ALICE, &many)), ErrorCode::InvalidRequest);
    if !Cgroup::new(&inst.cgroup_root)
        .controllers()
        .unwrap()
        .contains(&"pids".to_string())
    {
        assert_eq!(
            code(ask_as(&inst, BOB, &enable("x", "pids"))),
            ErrorCode::Unsupported
        );
    }
    // Listing: each caller sees the namespaces it may use; the admin group
    // and root see all.
    let names = |who: &str| -> Vec<String> {
        match ask_as(&inst, who, &Request::Namespaces) {
            Response::Namespaces { list } => list.into_iter().map(|n| n.name.to_string()).collect(),
            r => panic!("{who}: {r:?}"),
        }
    };
    assert_eq!(names(ALICE), ["x"]);
    assert_eq!(names(BOB), ["x"]);
    assert_eq!(names(EVE), ["other"]);
    let mut all = names(ADMIN);
    all.sort();
    assert_eq!(all, ["other", "x"]);
}
