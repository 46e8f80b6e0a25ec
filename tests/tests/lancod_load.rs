//! lancod against hostile callers, each attack run as a real unprivileged
//! process: a process that exec'd a set-gid program after connecting is not
//! admitted.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use lanco_e2e::{setup, Install, ADMINS, ALICE, OPS};
use lanco_proto::wire::{self, ErrorCode, Request, Response};
use lanco_proto::NamespaceName;

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
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "perl",
            "-e",
            connect,
        ])
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
