//! lancod against hostile callers, each attack run as a real unprivileged
//! process: a connection flood by one uid (or by many uids) never makes
//! another uid's request fail; a client that sends its request slowly is cut
//! at the request deadline while others are served; a process that exec'd a
//! set-gid program after connecting is not admitted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanco_e2e::{setup, wait_for, Install, ADMIN, ADMINS, ALICE, BOB, EVE, OPS};
use lanco_proto::wire::{self, ErrorCode, Request, Response};
use lanco_proto::NamespaceName;

/// lancod's per-uid bound on concurrent connections.
const PER_UID: usize = 8;

fn ns(s: &str) -> NamespaceName {
    NamespaceName::try_from(s).unwrap()
}

fn ids_of(user: &str) -> (u32, u32) {
    let u = nix::unistd::User::from_name(user).unwrap().unwrap();
    (u.uid.as_raw(), u.gid.as_raw())
}

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_error(r: &Response, want: ErrorCode) -> bool {
    matches!(r, Response::Error { code, .. } if *code == want)
}

/// One process per `uid:gid`, forked by a root Perl that drops to that
/// identity for good (all uids and gids, groups = [gid]) before it touches
/// the socket, so lancod's SO_PEERCRED sees that unprivileged uid. Each keeps
/// `conns` connections to lancod open and idle, sends nothing, and reopens
/// whichever lancod answers or closes after `reopen` seconds: the attack
/// that once made every other user's `run` fail with "lancod is busy". Every
/// quarter second each prints what lancod did to its connections:
/// `uid=U held=H busy=B cut=C closed=D` (H: open, unanswered, for 200 ms or
/// more; B: answered Busy; C: answered otherwise, i.e. cut at the request
/// deadline; D: closed without an answer).
const FLOOD: &str = r#"
use strict; use warnings; use Socket; use IO::Select; use POSIX ();
use Time::HiRes qw(time sleep);
my ($path, $n, $reopen, @ids) = @ARGV;
$| = 1; $SIG{PIPE} = 'IGNORE';
for my $id (@ids) {
    my ($uid, $gid) = split /:/, $id;
    defined(my $pid = fork) or die "fork: $!";
    next if $pid;
    POSIX::setgid($gid) or die "setgid: $!";
    $) = "$gid $gid";
    POSIX::setuid($uid) or die "setuid: $!";
    die "still privileged" if $< != $uid || $> != $uid || $( != $gid || $) != $gid;
    flood($uid);
    exit 0;
}
1 while wait != -1;
sub flood {
    my ($uid) = @_;
    my (@s, @opened, %slot);
    my @again = (0) x $n;
    my ($busy, $cut, $closed, $report) = (0, 0, 0, 0);
    while (1) {
        my $now = time;
        for my $i (0 .. $n - 1) {
            next if $s[$i] || $again[$i] > $now;
            socket(my $c, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
            if (connect($c, pack_sockaddr_un($path))) {
                ($s[$i], $opened[$i], $slot{fileno $c}) = ($c, $now, $i);
            } else {
                $again[$i] = $now + $reopen;
            }
        }
        my $sel = IO::Select->new(grep { defined } @s);
        my @ready = $sel->count ? $sel->can_read(0.05) : ();
        sleep 0.05 unless $sel->count;
        for my $c (@ready) {
            my $got = sysread($c, my $b, 4096);
            if (!$got) { $closed++ }
            elsif (length($b) >= 14 && substr($b, 0, 3) eq "LNC" && substr($b, 12, 2) eq "\x03\x04") { $busy++ }
            else { $cut++ }
            my $i = delete $slot{fileno $c};
            close $c;
            $s[$i] = undef;
            $again[$i] = time + $reopen;
        }
        if (time >= $report) {
            my $t = time;
            my $held = grep { defined $s[$_] && $t - $opened[$_] >= 0.2 } 0 .. $n - 1;
            print "uid=$uid held=$held busy=$busy cut=$cut closed=$closed\n";
            $report = $t + 0.25;
        }
    }
}
"#;

#[derive(Clone, Copy, Debug, Default)]
struct Report {
    held: usize,
    busy: u64,
    cut: u64,
    closed: u64,
}

#[derive(Default)]
struct Seen {
    last: HashMap<u32, Report>,
    max_held: HashMap<u32, usize>,
}

/// A running flood; killed (its whole process group) when dropped.
struct Flood {
    child: Child,
    seen: Arc<Mutex<Seen>>,
}

impl Flood {
    fn start(inst: &Install, ids: &[(u32, u32)], conns: usize, reopen: f64) -> Flood {
        let mut cmd = Command::new("perl");
        cmd.args(["-e", FLOOD])
            .arg(&inst.socket)
            .arg(conns.to_string())
            .arg(reopen.to_string())
            .args(ids.iter().map(|(u, g)| format!("{u}:{g}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("perl");
        let out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut f = HashMap::new();
                for kv in line.split_whitespace() {
                    if let Some((k, v)) = kv.split_once('=') {
                        f.insert(k.to_owned(), v.parse::<u64>().unwrap_or(0));
                    }
                }
                let uid = f["uid"] as u32;
                let r = Report {
                    held: f["held"] as usize,
                    busy: f["busy"],
                    cut: f["cut"],
                    closed: f["closed"],
                };
                let mut s = s.lock().unwrap();
                s.last.insert(uid, r);
                let m = s.max_held.entry(uid).or_default();
                *m = (*m).max(r.held);
            }
        });
        Flood { child, seen }
    }

    fn last(&self, uid: u32) -> Report {
        self.seen
            .lock()
            .unwrap()
            .last
            .get(&uid)
            .copied()
            .unwrap_or_default()
    }

    fn max_held(&self, uid: u32) -> usize {
        self.seen
            .lock()
            .unwrap()
            .max_held
            .get(&uid)
            .copied()
            .unwrap_or(0)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// What everyone but the flooder does with lancod: runs (each one an
/// admission), an admission by hand, init and destroy by an administrator.
/// Every one must succeed.
fn others_are_served(inst: &Install) {
    for i in 0..5 {
        inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
            .ok();
        let user = if i % 2 == 0 { BOB } else { ALICE };
        inst.lanco(Some(user), &["ns", "run", "-f", &format!("u{i}"), "true"])
            .ok();
    }
    let req = wire::encode(&Request::Admit { ns: ns("ns") }).unwrap();
    let got = lanco_e2e::raw_request_as(ALICE, &inst.socket, &req);
    let r: Response = wire::read_frame(&mut &got[..]).unwrap();
    assert_eq!(r, Response::Admitted);
    inst.lanco(Some(ADMIN), &["other", "init", "-u", BOB, "-g", OPS])
        .ok();
    inst.lanco(Some(BOB), &["other", "run", "-f", "t", "true"])
        .ok();
    inst.lanco(None, &["other", "destroy"]).ok();
}

#[test]
fn one_uids_connection_flood_never_fails_another_uids_request() {
    if !lanco_e2e::can_run("flood_one_uid") {
        return;
    }
    let inst = Install::new("flood_one_uid", &format!("admin_group = \"{ADMINS}\"\n"));
    inst.init("ns", ALICE, OPS);
    // eve is in no namespace; she opens 200 connections and keeps them open.
    let (eve, eve_gid) = ids_of(EVE);
    let mut flood = Flood::start(&inst, &[(eve, eve_gid)], 200, 0.3);
    assert!(
        wait_for(Duration::from_secs(15), || flood.last(eve).busy >= 192),
        "eve's connections beyond her bound are answered Busy at once: {:?}",
        flood.last(eve)
    );
    assert!(
        wait_for(Duration::from_secs(5), || flood.last(eve).held >= PER_UID),
        "eve holds at least as many connections as lancod lets her: {:?}",
        flood.last(eve)
    );
    let before = flood.last(eve);
    others_are_served(&inst);
    assert!(flood.alive(), "the flood ran all along");
    assert!(
        wait_for(Duration::from_secs(5), || flood.last(eve).busy
            > before.busy),
        "eve keeps flooding: {before:?} {:?}",
        flood.last(eve)
    );
    assert!(
        flood.max_held(eve) <= PER_UID,
        "eve never held more than {PER_UID}: {}",
        flood.max_held(eve)
    );
    assert!(
        wait_for(Duration::from_secs(10), || flood.last(eve).cut > 0),
        "eve's idle connections are cut at the request deadline: {:?}",
        flood.last(eve)
    );
}

#[test]
fn a_flood_from_many_uids_never_fails_another_uids_request() {
    if !lanco_e2e::can_run("flood_many_uids") {
        return;
    }
    let inst = Install::new("flood_many_uids", &format!("admin_group = \"{ADMINS}\"\n"));
    inst.init("ns", ALICE, OPS);
    // Distinct uids are cheap for some users: useradd gives each 65536
    // subordinate uids (/etc/subuid), which newuidmap lets them use. These
    // 40 uids, each within its own bound, together want more connections
    // than lancod serves at once (and reopen each one lancod closes).
    let ids: Vec<(u32, u32)> = (0..40).map(|i| (3_500_000 + i, 3_500_000 + i)).collect();
    let flood = Flood::start(&inst, &ids, PER_UID, 0.1);
    let turned_away = || -> u64 {
        ids.iter()
            .map(|(u, _)| {
                let r = flood.last(*u);
                r.busy + r.closed
            })
            .sum()
    };
    assert!(
        wait_for(Duration::from_secs(15), || turned_away() > 100),
        "the flood fills lancod's table"
    );
    others_are_served(&inst);
    let displaced: u64 = ids.iter().map(|(u, _)| flood.last(*u).closed).sum();
    assert!(
        displaced > 0,
        "the flood's connections that sent nothing were displaced, not newcomers refused"
    );
    drop(flood);
}

#[test]
fn a_uid_that_floods_lancod_only_delays_itself_and_retries_through() {
    let Some(inst) = setup("flood_self") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    // alice herself holds all her connections, reopening each a second
    // after lancod cuts it at the request deadline.
    let (alice, alice_gid) = ids_of(ALICE);
    let flood = Flood::start(&inst, &[(alice, alice_gid)], PER_UID, 1.0);
    assert!(
        wait_for(Duration::from_secs(10), || flood.last(alice).held
            == PER_UID),
        "alice holds all her connections: {:?}",
        flood.last(alice)
    );
    // Her run is answered Busy until a slot frees, and retries until then.
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
    let turned_away = |uid: u32| {
        let log = std::fs::read_to_string(inst.dir.join("lancod.log")).unwrap();
        log.lines()
            .filter(|l| l.contains("answered Busy") && l.contains(&format!("uid={uid} ")))
            .count()
    };
    assert!(
        turned_away(alice) > 0,
        "the run was turned away at least once"
    );
    // Nobody else waits for her.
    inst.lanco(Some(BOB), &["ns", "run", "-f", "u", "true"])
        .ok();
    assert_eq!(turned_away(ids_of(BOB).0), 0);
}

/// Sends `bytes` to lancod as `user`, all at once (`delay` 0) or one byte
/// every `delay` seconds until lancod answers; returns the seconds until
/// lancod closed the connection, the bytes sent and lancod's answer.
fn slow_client(user: &str, socket: &Path, bytes: &[u8], delay: f64) -> (f64, usize, Response) {
    let perl = r#"use Socket; use Time::HiRes qw(time);
        my ($path, $hex, $delay) = @ARGV; $SIG{PIPE} = 'IGNORE';
        socket(S, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
        connect(S, pack_sockaddr_un($path)) or die "connect: $!";
        my $t0 = time; my $req = pack("H*", $hex);
        my @chunks = $delay > 0 ? split(//, $req) : ($req);
        my $sent = 0;
        for my $c (@chunks) {
            my $r = ''; vec($r, fileno(S), 1) = 1;
            last if select($r, undef, undef, $sent ? $delay : 0) > 0;
            syswrite(S, $c) or last; $sent += length $c;
        }
        my $b = ''; while (sysread(S, my $c, 4096)) { $b .= $c }
        printf "%.3f %d %s\n", time - $t0, $sent, unpack("H*", $b);"#;
    let o = lanco_e2e::as_user(user, "perl")
        .args(["-e", perl])
        .arg(socket)
        .arg(hex(bytes))
        .arg(delay.to_string())
        .output()
        .expect("perl");
    assert!(
        o.status.success(),
        "slow client: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let f: Vec<&str> = text.split_whitespace().collect();
    let answer = unhex(f.get(2).copied().unwrap_or(""));
    let r = wire::read_frame(&mut &answer[..])
        .unwrap_or_else(|e| panic!("no answer frame ({e}): {text:?}"));
    (f[0].parse().unwrap(), f[1].parse().unwrap(), r)
}

#[test]
fn slow_clients_are_cut_at_the_request_deadline_while_others_are_served() {
    let Some(inst) = setup("slow_clients") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let socket = inst.socket.clone();
    let admit = wire::encode(&Request::Admit { ns: ns("ns") }).unwrap();
    // Half a header, then nothing.
    let s = socket.clone();
    let half = std::thread::spawn(move || slow_client(EVE, &s, b"LNC\x01\x05\x00", 0.0));
    // A whole request, a byte every 0.4 s: each read makes progress, so only a
    // deadline for the whole request (not one per read) cuts it off.
    let s = socket.clone();
    let a = admit.clone();
    let dribble = std::thread::spawn(move || slow_client(ALICE, &s, &a, 0.4));
    std::thread::sleep(Duration::from_millis(200));
    inst.lanco(Some(ALICE), &["ns", "run", "-f", "t", "true"])
        .ok();
    inst.lanco(Some(BOB), &["ns", "run", "-f", "u", "true"])
        .ok();
    for (what, h) in [("half a header", half), ("a dribbled request", dribble)] {
        let (secs, sent, r) = h.join().unwrap();
        assert!(
            matches!(&r, Response::Error { code: ErrorCode::InvalidRequest, message } if message.contains("timed out")),
            "{what}: {r:?}"
        );
        // Cut at lancod's 2 s deadline, not after the old 5 s read timeout
        // (generous: the machine is shared).
        assert!((1.5..4.5).contains(&secs), "{what}: cut after {secs} s");
        assert!(sent < admit.len(), "{what}: sent all {sent} bytes");
    }
    // A whole request sent at once is answered as always.
    let (_, _, r) = slow_client(ALICE, &socket, &admit, 0.0);
    assert_eq!(r, Response::Admitted);
}

/// Connects to lancod as `user` (system perl through setpriv), then exec's
/// `perl` (a copy in the private installation, set-gid or not), which sends
/// an Admit request over the inherited connection. Returns lancod's answer,
/// the exec'd process's `Gid:` line and its cgroup2 path.
fn connect_then_exec(
    inst: &Install,
    user: &str,
    perl: &Path,
    namespace: &str,
) -> (Response, String, String) {
    let connect = r#"use Socket; use Fcntl;
        socket(S, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
        connect(S, pack_sockaddr_un($ARGV[0])) or die "connect: $!";
        fcntl(S, F_SETFD, 0) or die "fcntl: $!";
        exec { $ARGV[1] } $ARGV[1], "-e", $ARGV[2], fileno(S), $ARGV[3];
        die "exec: $!";"#;
    // Runs in the exec'd perl: set-gid, so in taint mode (hence the untainting).
    let request = r#"my ($fd) = $ARGV[0] =~ /^(\d+)$/ or die "fd";
        my ($hex) = $ARGV[1] =~ /^([0-9a-f]+)$/ or die "hex";
        open(my $s, "+<&=", $fd) or die "fdopen: $!";
        syswrite($s, pack("H*", $hex)) or die "write: $!";
        my $b = ""; while (sysread($s, my $c, 4096)) { $b .= $c }
        open(my $st, "<", "/proc/self/status") or die; my ($gid) = grep { /^Gid:/ } <$st>;
        open(my $cg, "<", "/proc/self/cgroup") or die; my ($cgl) = grep { /^0::/ } <$cg>;
        print unpack("H*", $b), "\n", $gid, $cgl;"#;
    let req = wire::encode(&Request::Admit { ns: ns(namespace) }).unwrap();
    let o = lanco_e2e::as_user(user, "perl")
        .args(["-e", connect])
        .arg(&inst.socket)
        .arg(perl)
        .arg(request)
        .arg(hex(&req))
        .output()
        .expect("perl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "connect-then-exec: {text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = text.lines();
    let answer = unhex(lines.next().unwrap_or(""));
    let r = wire::read_frame(&mut &answer[..])
        .unwrap_or_else(|e| panic!("no answer frame ({e}): {text:?}"));
    let gid = lines.next().unwrap_or("").to_owned();
    let cgroup = lines.next().unwrap_or("").to_owned();
    (r, gid, cgroup)
}

#[test]
fn a_process_that_execs_a_set_gid_program_after_connecting_is_not_admitted() {
    let Some(inst) = setup("setgid_exec") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let admins = nix::unistd::Group::from_name(ADMINS).unwrap().unwrap().gid;
    let (_, alice_gid) = ids_of(ALICE);
    let ns_cgroup = format!(
        "/{}/",
        inst.ns_cgroup("ns")
            .path()
            .strip_prefix(lanco_proto::cgroupfs::cgroup2_mount().unwrap())
            .unwrap()
            .display()
    );
    let plain = inst.bin.join("perl-plain");
    let setgid = inst.bin.join("perl-setgid");
    for p in [&plain, &setgid] {
        std::fs::copy("/usr/bin/perl", p).unwrap();
    }
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A group alice is not in; chown before chmod (chown clears set-gid).
    std::os::unix::fs::chown(&setgid, None, Some(admins.as_raw())).unwrap();
    std::fs::set_permissions(&setgid, std::fs::Permissions::from_mode(0o2755)).unwrap();

    // The same sequence through the plain copy is admitted: the test can fail.
    let (r, gid, cgroup) = connect_then_exec(&inst, ALICE, &plain, "ns");
    assert_eq!(r, Response::Admitted, "{gid} {cgroup}");
    assert!(
        cgroup.contains(&ns_cgroup),
        "moved into the namespace: {cgroup}"
    );

    let (r, gid, cgroup) = connect_then_exec(&inst, ALICE, &setgid, "ns");
    let gids: Vec<u32> = gid
        .trim_start_matches("Gid:")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert_eq!(
        gids,
        [alice_gid, admins.as_raw(), admins.as_raw(), admins.as_raw()],
        "the exec really changed the effective, saved and fs gids"
    );
    assert!(
        is_error(&r, ErrorCode::PermissionDenied),
        "a set-gid exec after connecting must not be admitted: {r:?}"
    );
    assert!(
        !cgroup.contains(&ns_cgroup),
        "and must not have been moved: {cgroup}"
    );
    let log = std::fs::read_to_string(inst.dir.join("lancod.log")).unwrap();
    assert!(log.contains("changed identity"), "{log}");
}
