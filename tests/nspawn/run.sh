#!/bin/bash
# End-to-end test of the packaged lanco on a real, booted systemd
# (TESTING.md section 2): a Debian bookworm container under systemd-nspawn,
# the .deb installed inside, two real users in two namespaces.
#
#   tests/nspawn/run.sh [--layout hybrid|unified|both] [--no-build]
#                       [--deb OLD.deb --deb2 NEW.deb] [--keep]
#
#   --layout    cgroup layout of the container: hybrid (the host's default
#               here), unified (pure cgroup2), both (default).
#   --no-build  package the binaries already in $CARGO_TARGET_DIR/release
#               (default target/release).
#   --deb/--deb2  use these packages (the second must have a higher version)
#               instead of building two.
#   --keep      keep the work directory (default: removed).
#   --prepare   only install the host tools and build the cached rootfs.
#
# Runs as root. Installs systemd-container and debootstrap when missing.
# The debootstrapped rootfs is cached in /var/cache/lanco-nspawn/ (about 45 s
# to build once); every run copies it to a fresh directory. Prints PASS/FAIL
# per check and "N passed, M failed" at the end; exits non-zero on any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)

layouts="hybrid unified"
build=1
deb1="" deb2=""
keep=0
prepare_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --layout) shift; [ "$1" = both ] && layouts="hybrid unified" || layouts=$1 ;;
    --no-build) build=0 ;;
    --deb) shift; deb1=$1 ;;
    --deb2) shift; deb2=$1 ;;
    --keep) keep=1 ;;
    --prepare) prepare_only=1 ;;
    *) echo "usage: $0 [--layout hybrid|unified|both] [--no-build] [--deb OLD --deb2 NEW] [--keep] [--prepare]" >&2; exit 2 ;;
    esac
    shift
done
for l in $layouts; do
    case "$l" in hybrid|unified) ;; *) echo "bad layout $l" >&2; exit 2 ;; esac
done

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 2; }

CACHE=/var/cache/lanco-nspawn
SUITE=bookworm
# man-db: systemd-analyze verify checks the units' Documentation= man pages.
INCLUDE=systemd,systemd-sysv,dbus,procps,man-db
DEADLINE=${LANCO_NSPAWN_DEADLINE:-300}   # seconds for the scenarios (after build and cache)
start_time=$SECONDS

say() { printf '%s\n' "$*"; }
note() { printf '   %s\n' "$*"; }

# ---------------------------------------------------------------- host tools
ensure_tools() {
    if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
        say "== installing systemd-container debootstrap"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq systemd-container debootstrap >/dev/null ||
            { echo "run.sh: cannot install systemd-container debootstrap" >&2; exit 1; }
    fi
}

# The Debian mirror the host's apt uses, from its deb822 .sources files and
# one-line .list files, or $LANCO_DEBIAN_MIRROR. An enabled "deb" entry with
# an http, https or file URI whose suite is $SUITE wins; else one whose suite
# is another Debian release name. No mirror is named here: a machine whose apt
# has none must say which one to use.
debian_mirror() {
    if [ -n "${LANCO_DEBIAN_MIRROR:-}" ]; then echo "$LANCO_DEBIAN_MIRROR"; return 0; fi
    local files=() f m
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] && m=$(awk -v suite="$SUITE" '
        # rank: 0 = the suite we debootstrap, 1 = another Debian release.
        function rank(suites,   s, n, i, r) {
            n = split(suites, s, " "); r = 9
            for (i = 1; i <= n; i++) {
                if (s[i] == suite) return 0
                if (s[i] ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)$/) r = 1
            }
            return r
        }
        function consider(types, uris, suites, enabled,   u, r) {
            if (tolower(enabled) == "no" || (" " types " ") !~ / deb /) return
            split(uris, u, " ")
            if (u[1] !~ /^(https?|file):\/\//) return
            r = rank(suites)
            if (r < 9) print r, ++seq, u[1]
        }
        function flush() {
            if (uris != "") consider(types, uris, suites, enabled)
            types = uris = suites = enabled = ""
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {            # deb822: stanzas of "Key: value" lines
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^#/ || $0 ~ /^[ \t]/) next   # comments, continuation lines
            if (match($0, /^[A-Za-z][A-Za-z0-9-]*:/)) {
                k = tolower(substr($0, 1, RLENGTH - 1)); v = substr($0, RLENGTH + 1)
                gsub(/^[ \t]+|[ \t]+$/, "", v)
                if (k == "types") types = v; else if (k == "uris") uris = v
                else if (k == "suites") suites = v; else if (k == "enabled") enabled = v
            }
            next
        }
        {                                    # one-line: deb [ options ] URI SUITE COMPONENT...
            sub(/#.*/, "")
            if ($1 != "deb") next
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            consider("deb", $i, $(i + 1), "")
        }
        END { flush() }' "${files[@]}" | sort -n -k1,1 -k2,2 | head -n 1 | cut -d' ' -f3)
    if [ -z "$m" ]; then
        echo "run.sh: no Debian mirror for $SUITE in the host's apt sources" \
            "(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list, *.sources);" \
            "set LANCO_DEBIAN_MIRROR to the URL of a Debian archive that has $SUITE" >&2
        return 1
    fi
    echo "$m"
}

# The cached rootfs for this include list; built once, under a lock.
cached_rootfs() {
    local key dir
    key=$(printf '%s %s v1' "$SUITE" "$INCLUDE" | sha256sum | cut -c1-12)
    dir=$CACHE/$SUITE-minbase-$key
    mkdir -p "$CACHE"
    (
        flock 9
        if [ ! -e "$dir/.complete" ]; then
            local mirror t0=$SECONDS
            mirror=$(debian_mirror) || exit 1
            say "== debootstrap $SUITE ($INCLUDE) from $mirror into $dir" >&2
            rm -rf --one-file-system "$dir.tmp" "$dir"
            if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$dir.tmp" "$mirror" \
                    > "$CACHE/debootstrap.log" 2>&1; then
                tail -n 20 "$CACHE/debootstrap.log" >&2
                echo "run.sh: debootstrap failed (log: $CACHE/debootstrap.log)" >&2
                exit 1
            fi
            # Image defaults for every test container: quiet console, no
            # getty, journal kept across the test's reboot.
            mkdir -p "$dir.tmp/var/log/journal"
            ln -sf /dev/null "$dir.tmp/etc/systemd/system/console-getty.service"
            ln -sf /dev/null "$dir.tmp/etc/systemd/system/getty@.service"
            ln -sf /dev/null "$dir.tmp/etc/systemd/system/systemd-networkd-wait-online.service"
            mv "$dir.tmp" "$dir"
            touch "$dir/.complete"
            say "   rootfs cached in $((SECONDS - t0)) s" >&2
        fi
    ) 9> "$CACHE/.lock" || exit 1
    echo "$dir"
}

ensure_tools
ROOTFS_CACHE=$(cached_rootfs) || exit 1
[ "$prepare_only" = 1 ] && { say "prepared: $ROOTFS_CACHE"; exit 0; }

# ------------------------------------------------------------- the packages
WORK=$(mktemp -d /var/tmp/lanco-nspawn.XXXXXX)
chmod 0755 "$WORK"
nspawn_pid=""
ct_cg2=""
host_cg_dirs=()

cleanup() {
    local rc=$?
    stop_container
    local d
    for d in "${host_cg_dirs[@]}"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    if [ "$keep" = 1 ]; then
        say "work directory kept: $WORK"
    else
        # Nothing may stay mounted below the work directory.
        if findmnt -rn -o TARGET | grep -q "^$WORK/"; then
            findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | xargs -r -n1 umount -l 2>/dev/null
        fi
        rm -rf --one-file-system "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$deb1" ]; then
    base=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$top/Cargo.toml")
    say "== building packages $base+nspawn1 and $base+nspawn2"
    t0=$SECONDS
    nb=""
    [ "$build" = 1 ] || nb=--no-build
    deb1=$(LANCO_DEB_DIR=$WORK/debs "$top/packaging/build-deb.sh" $nb "$base+nspawn1" | tail -n 1) ||
        { echo "run.sh: build-deb.sh failed" >&2; exit 1; }
    deb2=$(LANCO_DEB_DIR=$WORK/debs "$top/packaging/build-deb.sh" --no-build "$base+nspawn2" | tail -n 1) ||
        { echo "run.sh: build-deb.sh failed" >&2; exit 1; }
    note "built in $((SECONDS - t0)) s"
elif [ -z "$deb2" ]; then
    echo "run.sh: --deb needs --deb2 (a higher version)" >&2
    exit 2
fi
ver1=$(dpkg-deb -f "$deb1" Version)
ver2=$(dpkg-deb -f "$deb2" Version)
dpkg --compare-versions "$ver2" gt "$ver1" || { echo "run.sh: $ver2 is not newer than $ver1" >&2; exit 2; }

# ------------------------------------------------------------------ checks
passed=0 failed=0 layout=-
LOG=$WORK/steps.log
: > "$LOG"

# check NAME CMD...: runs CMD (a function of this script), prints PASS/FAIL.
check() {
    local name=$1
    shift
    local mark
    mark=$(wc -l < "$LOG")
    printf '\n### [%s] %s\n' "$layout" "$name" >> "$LOG"
    if "$@" >> "$LOG" 2>&1; then
        say "PASS [$layout] $name"
        passed=$((passed + 1))
        return 0
    fi
    say "FAIL [$layout] $name"
    tail -n +"$((mark + 1))" "$LOG" | tail -n 25 | sed 's/^/   | /'
    failed=$((failed + 1))
    return 1
}

# ct CMD...: run CMD as root inside the container (all its namespaces; the
# process stays outside the container's cgroup tree).
ct() { timeout "${CT_TIMEOUT:-60}" nsenter -t "$leader" -a "$@" < /dev/null; }
# as_user USER CMD...: run CMD as USER in a transient service of the
# container's systemd, like a daemon that calls lanco; exit status passed on.
as_user() {
    local u=$1
    shift
    timeout "${CT_TIMEOUT:-60}" nsenter -t "$leader" -a \
        systemd-run --quiet --wait --pipe --collect --service-type=exec -p User="$u" -- "$@" < /dev/null
}
# Expect exit status 0 / non-zero, echoing what ran.
ok() { echo "+ $*"; "$@"; local rc=$?; [ $rc = 0 ] || echo "  -> exit $rc, expected 0"; return $rc; }
fails() { echo "+ (expect failure) $*"; "$@"; local rc=$?; [ $rc != 0 ] || echo "  -> exit 0, expected failure"; [ $rc != 0 ]; }

# Boot the container (rootfs $ROOT) and wait until its systemd is up.
boot_container() {
    local tag=$1 env=() args=()
    # hybrid: nspawn's default on a hybrid host (like this project's).
    if [ "$layout" = unified ]; then
        env=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
        args=(systemd.unified_cgroup_hierarchy=1)
    fi
    # A cgroup of our own on the host, so that nspawn's payload/ and
    # supervisor/ subgroups never collide with another run's.
    local cgname=lanco-nspawn-$$-$layout-$tag h hierarchies=()
    local cg2
    cg2=$(sed -n 's/^[^ ]* [^ ]* [^ ]* [^ ]* \([^ ]*\) .* - cgroup2 .*/\1/p' /proc/self/mountinfo | head -n 1)
    [ -n "$cg2" ] && hierarchies+=("$cg2")
    [ -d /sys/fs/cgroup/systemd ] && grep -q ' /sys/fs/cgroup/systemd .* - cgroup ' /proc/self/mountinfo &&
        hierarchies+=(/sys/fs/cgroup/systemd)
    local own2 own1
    own2=$(sed -n 's/^0:://p' /proc/self/cgroup)
    own1=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)
    (
        for h in "${hierarchies[@]}"; do
            if [ "$h" = /sys/fs/cgroup/systemd ]; then d=$h${own1%/}/$cgname; else d=$h${own2%/}/$cgname; fi
            mkdir -p "$d" && echo 0 > "$d/cgroup.procs" 2>/dev/null || true
        done
        exec env "${env[@]}" systemd-nspawn -q -D "$ROOT" --boot --register=no --keep-unit \
            --private-network --machine="$MACHINE" --console=passive --timezone=off --resolv-conf=off \
            "${args[@]}"
    ) >> "$WORK/console-$layout.log" 2>&1 &
    nspawn_pid=$!
    for h in "${hierarchies[@]}"; do
        if [ "$h" = /sys/fs/cgroup/systemd ]; then host_cg_dirs+=("$h${own1%/}/$cgname"); else host_cg_dirs+=("$h${own2%/}/$cgname"); fi
    done
    ct_cg2=$cg2${own2%/}/$cgname
    leader=""
    local i
    for i in $(seq 1 100); do
        leader=$(pgrep -P "$nspawn_pid" -x systemd | head -n 1)
        [ -n "$leader" ] && break
        kill -0 "$nspawn_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$leader" ] || { echo "container did not start"; tail -n 20 "$WORK/console-$layout.log"; return 1; }
    for i in $(seq 1 300); do
        ct test -S /run/systemd/private && break
        sleep 0.1
    done
    local state
    state=$(CT_TIMEOUT=90 ct systemctl is-system-running --wait)
    echo "system state: $state (leader pid $leader)"
    [ "$state" = running ] || { ct systemctl --failed --no-pager; return 1; }
}

# Power the container off (or kill it) and wait for nspawn.
stop_container() {
    [ -n "$nspawn_pid" ] || return 0
    local i
    if kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null   # nspawn asks the container's systemd to power off
        for i in $(seq 1 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if kill -0 "$nspawn_pid" 2>/dev/null; then
        echo "container did not power off in 15 s: killing it" >&2
        kill_cgroup "$ct_cg2"
        kill -KILL "$nspawn_pid" 2>/dev/null
    fi
    wait "$nspawn_pid" 2>/dev/null
    # Whatever nspawn left behind (it does not kill the payload when killed).
    kill_cgroup "$ct_cg2"
    nspawn_pid=""
}
# kill_cgroup DIR: SIGKILL every process in a host cgroup of this run.
kill_cgroup() {
    local d=$1 f i
    [ -n "$d" ] && [ -d "$d" ] || return 0
    if [ -e "$d/cgroup.kill" ]; then
        echo 1 > "$d/cgroup.kill" 2>/dev/null
    else
        find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    fi
    for i in $(seq 1 50); do
        [ -z "$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break
        sleep 0.1
    done
}

# Reboot the container: nspawn exits with 133, then boot the same rootfs again.
reboot_container() {
    ct systemctl reboot || true
    local rc=0 i
    for i in $(seq 1 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    wait "$nspawn_pid"
    rc=$?
    nspawn_pid=""
    echo "nspawn exited with $rc (133 = container rebooted)"
    [ $rc = 133 ] || return 1
    boot_container after-reboot
}

# --------------------------------------------------- container-side helpers
cgroot() {
    ct sh -c 'm=$(sed -n "s/^[^ ]* [^ ]* [^ ]* [^ ]* \([^ ]*\) .* - cgroup2 .*/\1/p" /proc/self/mountinfo | head -n 1); echo "$m/system.slice/lanco-tasks.service"'
}
# Long-lived processes of a task (the payload's `sleep 0.3` children come and
# go), wherever its cgroup is: ns-NS/task-T (0.1 layout) or
# ns-NS/user-UID/task-T (0.2's per-user subtrees).
task_pids() {
    ct sh -c 'find "$1" -mindepth 1 -maxdepth 2 -type d -name "task-$2" 2>/dev/null |
        while read -r d; do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done |
        while read -r p; do c=$(tr "\0" " " < /proc/$p/cmdline 2>/dev/null) || continue
            [ "$c" = "sleep 0.3 " ] || echo "$p"; done | sort -n' sh "$CGROOT/ns-$1" "$2"
}
# The monitors of a namespace: ns-NS/monitors (0.1), ns-NS/user-UID/monitors (0.2).
monitor_pids() {
    ct sh -c 'find "$1" -mindepth 1 -maxdepth 2 -type d -name monitors 2>/dev/null |
        while read -r d; do cat "$d/cgroup.procs" 2>/dev/null; done | sort -n' sh "$CGROOT/ns-$1"
}
# The path of a task's exit record: state_dir/ns-NS/ (0.1 layout) or
# state_dir/ns/NS/user-UID/ (0.2).
exit_record() {
    ct sh -c 'for f in /var/lib/lanco/ns/"$1"/user-*/task-"$2".exit.json /var/lib/lanco/ns-"$1"/task-"$2".exit.json; do
        [ -e "$f" ] && { echo "$f"; exit 0; }; done; echo "/var/lib/lanco/(no exit record of $1/$2)"' sh "$1" "$2"
}
log_size() { ct stat -c %s "/var/log/lanco-$1/task-$2.log" 2>/dev/null || echo 0; }
helper_starts() { ct journalctl -q -o cat -u lancod.service --no-pager 2>/dev/null | grep -c '^Started '; }
# wait_starts N: until the journal shows more than N starts of the helper.
wait_starts() {
    local i n
    for i in $(seq 1 20); do
        n=$(helper_starts)
        [ "$n" -gt "$1" ] && { echo "helper starts: $1 -> $n"; return 0; }
        sleep 0.1
    done
    echo "helper starts: $1 -> $n (no new start)"
    return 1
}
wait_helper_exit() { # the helper exits by itself within idle_timeout (2 s) + slack
    local i
    for i in $(seq 1 40); do
        [ "$(ct systemctl is-active lancod.service)" != active ] && return 0
        sleep 0.25
    done
    return 1
}
# The ticking payload: a background sleep (a second process in the task) and
# a line every 0.3 s. Its only short-lived process is `sleep 0.3`, which
# task_pids leaves out (a `$(date)` here once put a passing subshell, with
# the same command line as the loop, into a snapshot).
TICKER='sleep 100000 & n=0; while :; do n=$((n + 1)); echo "tick $n"; sleep 0.3; done'

# -------------------------------------------------------------- the checks
c_boot() { boot_container first; }
c_verify_units() {
    ok ct systemd-analyze verify lancod.socket lancod.service lanco-tasks.service
}
c_install() {
    cp "$deb1" "$deb2" "$ROOT/root/"
    ok ct dpkg -i "/root/$(basename "$deb1")" || return 1
    ok ct dpkg-query -W -f '${Version}\n' lanco
    # No logrotate snippet (packaging/NOTES.md): the monitor bounds the logs.
    fails ct test -e /etc/logrotate.d/lanco || return 1
    # The test's helper lingers 2 s instead of 30.
    ok ct sed -i 's/^idle_timeout *=.*/idle_timeout = 2/' /etc/lanco/lanco.toml
    ct grep -n idle_timeout /etc/lanco/lanco.toml
}
c_units_state() {
    local s t h
    s=$(ct systemctl is-active lancod.socket); t=$(ct systemctl is-active lanco-tasks.service)
    h=$(ct systemctl is-active lancod.service)
    echo "lancod.socket=$s lanco-tasks.service=$t lancod.service=$h"
    ct systemctl is-enabled lancod.socket lanco-tasks.service
    [ "$s" = active ] && [ "$t" = active ] && [ "$h" != active ] &&
        [ "$(ct systemctl is-enabled lancod.socket)" = enabled ] &&
        [ "$(ct systemctl is-enabled lanco-tasks.service)" = enabled ]
}
c_security() {
    ct systemd-analyze security --no-pager lancod.service | tail -n 1
}
c_users() {
    ok ct useradd -m -s /bin/sh alice && ok ct useradd -m -s /bin/sh bob
}
c_init_activates() {
    local before after
    before=$(helper_starts)
    ok ct lanco nsa init -u alice -g alice || return 1
    wait_starts "$before" || return 1
    ok ct lanco nsb init -u bob -g bob
}
c_idle_exit() {
    wait_helper_exit || { echo "lancod.service still active"; return 1; }
    local r
    r=$(ct systemctl show -P Result lancod.service)
    echo "lancod.service inactive, Result=$r"
    [ "$r" = success ]
}
c_run_activates() {
    local before after
    before=$(helper_starts)
    ok as_user alice lanco nsa run t1 sh -c "$TICKER" || return 1
    wait_starts "$before"
}
c_tour() {
    ok as_user alice lanco nsa check t1 || return 1
    local out
    out=$(as_user alice lanco nsa ls); echo "ls: $out"
    grep -qw t1 <<< "$out" || return 1
    ok as_user alice lanco nsa status t1 || return 1
    sleep 1
    local sz
    sz=$(log_size nsa t1); echo "log size $sz"
    [ "$sz" -gt 0 ] || return 1
    ok as_user alice grep -q tick /var/log/lanco-nsa/task-t1.log || return 1
    ok as_user alice lanco nsa run t2 sh -c 'echo short; sleep 0.5' || return 1
    sleep 2
    fails as_user alice lanco nsa check t2 || return 1
    ok as_user alice grep -q short /var/log/lanco-nsa/task-t2.log || return 1
    ok as_user bob lanco nsb run b1 sh -c "$TICKER"
}
c_refusals() {
    local bad=0
    fails as_user alice lanco nsa run t1 true || bad=1           # already running
    fails as_user bob lanco nsa run x true || bad=1              # not bob's namespace
    fails as_user bob lanco nsa stop t1 || bad=1                 # ditto
    fails as_user bob lanco nsa check t1 || bad=1                # nobody outside may check
    fails as_user bob cat /var/log/lanco-nsa/task-t1.log || bad=1
    fails as_user bob lanco nsc init || bad=1                    # only root/admin_group
    fails as_user alice lanco nsa run 'bad/name' true || bad=1
    fails as_user alice lanco nsa run t3 /nonexistent/command || bad=1
    fails as_user alice lanco nsa check t3 || bad=1
    ok as_user alice lanco nsa check t1 || bad=1
    return $bad
}
# The helper's capabilities suffice for the namespace's directories: owner,
# group, setgid (a missing CAP_FSETID silently drops the bit).
c_ns_dirs() {
    local out
    out=$(ct stat -c '%a %U:%G %n' /var/lib/lanco/ns-nsa /var/log/lanco-nsa "$CGROOT/ns-nsa" \
        "$CGROOT/ns-nsa/cgroup.procs" "$CGROOT/ns-nsa/monitors/cgroup.procs"); echo "$out"
    grep -q '^2770 alice:alice /var/lib/lanco/ns-nsa$' <<< "$out" &&
        grep -q '^2770 alice:alice /var/log/lanco-nsa$' <<< "$out" &&
        grep -q "^[0-7]* alice:alice $CGROOT/ns-nsa\$" <<< "$out"
}
snapshot() {
    SNAP_T1=$(task_pids nsa t1); SNAP_B1=$(task_pids nsb b1)
    SNAP_MON=$(monitor_pids nsa; monitor_pids nsb)
    SNAP_LOG=$(log_size nsa t1)
    echo "t1: $(echo $SNAP_T1) b1: $(echo $SNAP_B1) monitors: $(echo $SNAP_MON) log: $SNAP_LOG"
    [ -n "$SNAP_T1" ] && [ -n "$SNAP_B1" ]
}
# Same processes, log still growing, check and stop still answer.
unchanged() {
    local t1 b1 mon sz
    sleep 1
    t1=$(task_pids nsa t1); b1=$(task_pids nsb b1); mon=$(monitor_pids nsa; monitor_pids nsb)
    sz=$(log_size nsa t1)
    echo "t1: $(echo $t1) b1: $(echo $b1) monitors: $(echo $mon) log: $SNAP_LOG -> $sz"
    local bad=0
    [ "$t1" = "$SNAP_T1" ] || { echo "t1's processes changed"; bad=1; }
    [ "$b1" = "$SNAP_B1" ] || { echo "b1's processes changed"; bad=1; }
    [ "$mon" = "$SNAP_MON" ] || { echo "monitors changed"; bad=1; }
    [ "$sz" -gt "$SNAP_LOG" ] || { echo "log did not grow"; bad=1; }
    ok as_user alice lanco nsa check t1 || bad=1
    ok as_user bob lanco nsb check b1 || bad=1
    SNAP_LOG=$sz
    return $bad
}
c_restart_helper() { ok ct systemctl restart lancod.service && unchanged; }
c_restart_socket() { ok ct systemctl restart lancod.socket && ok ct systemctl is-active lancod.socket && unchanged; }
c_reexec() {
    local t0 t1
    t0=$(ct systemctl show -P ActiveEnterTimestampMonotonic lanco-tasks.service)
    ok ct systemctl daemon-reexec || return 1
    sleep 1
    t1=$(ct systemctl show -P ActiveEnterTimestampMonotonic lanco-tasks.service)
    [ "$t0" = "$t1" ] || { echo "lanco-tasks.service was restarted"; return 1; }
    ok ct systemctl is-active lanco-tasks.service && unchanged
}
c_upgrade() {
    local t0 m0 t1 m1 v
    t0=$(ct systemctl show -P ActiveEnterTimestampMonotonic lanco-tasks.service)
    m0=$(ct systemctl show -P MainPID lanco-tasks.service)
    ok ct dpkg -i --force-confold "/root/$(basename "$deb2")" || return 1
    v=$(ct dpkg-query -W -f '${Version}' lanco); echo "installed: $v"
    [ "$v" = "$ver2" ] || return 1
    t1=$(ct systemctl show -P ActiveEnterTimestampMonotonic lanco-tasks.service)
    m1=$(ct systemctl show -P MainPID lanco-tasks.service)
    [ "$t0" = "$t1" ] && [ "$m0" = "$m1" ] || { echo "lanco-tasks.service was restarted ($m0 -> $m1)"; return 1; }
    ok ct grep -q '^idle_timeout = 2' /etc/lanco/lanco.toml || return 1   # conffile kept
    unchanged || return 1
    ok as_user bob lanco nsb run b2 sleep 100000
}
c_status_shows_tasks() {
    local out p
    out=$(ct systemctl status --no-pager --lines=0 lanco-tasks.service); echo "$out"
    for p in $SNAP_T1 $SNAP_B1; do
        grep -q -- "─$p " <<< "$out" || { echo "pid $p not shown"; return 1; }
    done
}
c_stop_task() {
    ok as_user alice lanco nsa stop t1 || return 1
    fails as_user alice lanco nsa check t1 || return 1
    local left
    left=$(task_pids nsa t1); [ -z "$left" ] || { echo "left behind: $left"; return 1; }
    for p in $SNAP_T1; do ct test -d "/proc/$p" && { echo "pid $p survives"; return 1; }; done
    return 0
}
c_reboot() {
    ok as_user alice lanco nsa run t4 sleep 100000 || return 1
    reboot_container || return 1
    CGROOT=$(cgroot)
    ok ct systemctl is-active lanco-tasks.service || return 1
    ok ct test -d "$CGROOT/ns-nsa" || return 1
    ok ct test -d "$CGROOT/ns-nsb" || return 1
    ok ct ls "$CGROOT"
    fails as_user alice lanco nsa check t4 || return 1    # the reboot ended it
    ok as_user alice lanco nsa run t5 sh -c "$TICKER" || return 1
    ok as_user alice lanco nsa check t5 || return 1
    ok as_user bob lanco nsb run b3 sleep 100000 || return 1
    ok as_user bob lanco nsb run b7 sh -c 'trap "exit 7" TERM; while :; do sleep 0.2; done'
}
c_stop_root() {
    local pids
    pids=$(task_pids nsa t5; task_pids nsb b3; task_pids nsb b7; monitor_pids nsa; monitor_pids nsb)
    echo "before: $(echo $pids)"
    [ -n "$pids" ] || return 1
    ok ct systemctl stop lanco-tasks.service || return 1
    local p bad=0
    for p in $pids; do ct test -d "/proc/$p" && { echo "pid $p survives"; bad=1; }; done
    fails as_user alice lanco nsa check t5 || bad=1
    fails as_user bob lanco nsb check b3 || bad=1
    # ExecStop (lancod stop-all) had each monitor stop its task: the records
    # say so, with the task's real status (not "lost"), and the unit ends
    # cleanly, not by timeout.
    local rec
    for rec in "$(exit_record nsa t5)" "$(exit_record nsb b3)" "$(exit_record nsb b7)"; do
        ok ct grep -q '"stopped": true' "$rec" || bad=1
        fails ct grep -q '"lost"' "$rec" || bad=1
    done
    ok ct sh -c "tr -d ' \n' < '$(exit_record nsb b7)' | grep -q '\"exit\":{\"kind\":\"code\",\"value\":7}'" || bad=1
    fails ct systemctl is-failed --quiet lanco-tasks.service || bad=1
    return $bad
}
c_destroy() {
    # The task root is stopped, and with it the helper (PartOf=); this request
    # starts the helper and, through it, the task root again.
    ok ct lanco nsb destroy || return 1
    ok ct systemctl is-active lanco-tasks.service || return 1
    fails ct test -e "$CGROOT/ns-nsb" || return 1
    fails ct test -e /var/lib/lanco/namespaces/nsb.toml || return 1
    fails as_user bob lanco nsb run b9 true
}
c_remove_purge() {
    ok ct systemctl start lanco-tasks.service || return 1   # (already active)
    ok as_user alice lanco nsa run t6 sleep 100000 || return 1
    local p
    p=$(task_pids nsa t6)
    ok ct dpkg -r lanco || return 1
    [ "$(ct systemctl is-active lancod.socket)" != active ] || { echo "socket still active"; return 1; }
    ok ct systemctl is-active lanco-tasks.service || return 1
    for q in $p; do ok ct test -d "/proc/$q" || return 1; done
    ok ct dpkg -P lanco || return 1
    fails ct test -e /var/lib/lanco || return 1
    fails ct test -e /etc/lanco || return 1
    ok ct systemctl stop lanco-tasks.service
}

run_layout() {
    layout=$1
    local t0=$SECONDS
    say "== layout: $layout"
    run_checks
    stop_container
    note "layout $layout took $((SECONDS - t0)) s"
}

run_checks() {
    ROOT=$WORK/$layout/root
    MACHINE=lanco-t$$-$layout
    mkdir -p "$WORK/$layout"
    cp -a "$ROOTFS_CACHE" "$ROOT"
    echo "$MACHINE" > "$ROOT/etc/hostname"

    check "container boots (systemd running)" c_boot || return 0
    CGROOT=$(cgroot)
    check "cgroup layout" ct sh -c "grep cgroup /proc/self/mountinfo | awk '{print \$5, \$(NF-2)}'; cat /proc/1/cgroup"
    check "dpkg -i $ver1" c_install || return 0
    check "systemd-analyze verify (all units)" c_verify_units
    check "socket listening, task root active, both enabled, helper not running" c_units_state
    check "systemd-analyze security lancod.service" c_security &&
        note "$(grep 'Overall exposure' "$LOG" | tail -n 1)"
    check "users alice and bob" c_users || return 0
    check "root's init activates the helper" c_init_activates || return 0
    check "helper exits after idle_timeout" c_idle_exit
    check "alice's run activates the helper again" c_run_activates || return 0
    check "quick tour: check, ls, status, log, short task" c_tour
    check "refusals" c_refusals
    check "namespace directories: owner, group, setgid" c_ns_dirs
    check "snapshot of running tasks" snapshot || return 0
    check "systemctl restart lancod.service: tasks untouched" c_restart_helper
    check "systemctl restart lancod.socket: tasks untouched" c_restart_socket
    check "systemctl daemon-reexec: tasks untouched" c_reexec
    check "dpkg -i $ver2 (upgrade): tasks untouched, task root not restarted" c_upgrade
    check "systemctl status lanco-tasks.service shows the tasks" c_status_shows_tasks
    check "stop ends the task and leaves nothing" c_stop_task
    check "reboot: namespaces back without init, users run at once" c_reboot
    check "systemctl stop lanco-tasks.service ends every task" c_stop_root
    check "root destroys an idle namespace (helper and task root start on demand)" c_destroy
    check "dpkg -r leaves the task root running; dpkg -P removes state and config" c_remove_purge
}

(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$DEADLINE" & sp=$!
    wait "$sp" && { echo "run.sh: deadline of $DEADLINE s reached" >&2; kill -TERM $$; }
) &
watchdog=$!
for l in $layouts; do
    run_layout "$l"
done
kill "$watchdog" 2>/dev/null

say ""
say "nspawn: total $((SECONDS - start_time)) s (log: $LOG$([ "$keep" = 1 ] || echo ', removed'))"
say "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
