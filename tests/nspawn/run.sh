#!/bin/bash
# End-to-end test of the packaged lanco on a real, booted systemd
# (TESTING.md section 2): a Debian bookworm container under systemd-nspawn,
# the .deb installed inside, two real users in two namespaces.
#
#   tests/nspawn/run.sh [--layout hybrid|unified|both] [--no-build]
#                       [--deb OLD.deb --deb2 NEW.deb] [--keep] [--prepare]
#                       [--prev-ref REF | --prev-deb FILE]
#                       [--no-migration | --migration-only]
#
#   --layout    cgroup layout of the container: hybrid (the host's default
#               here), unified (pure cgroup2), both (default).
#   --no-build  package the binaries already in $CARGO_TARGET_DIR/release
#               (default target/release).
#   --deb/--deb2  use these packages (the second must have a higher version)
#               instead of building two.
#   --keep      keep the work directory (default: removed).
#   --prepare   only install the host tools and build the cached rootfs.
#   --prev-ref  the commit of the previous release (0.1 layout) that the
#               migration scenario upgrades from [$LANCO_PREV_REF, else
#               970ec59]; its release binaries are built from `git archive`
#               in $LANCO_PREV_TARGET_DIR [/var/cache/lanco-nspawn/prev-target]
#               and packaged by its own packaging/build-deb.sh. A ref that is
#               not in this clone is a FAIL, not a skip.
#   --prev-deb  use this package of the previous release instead.
#   --no-migration / --migration-only  leave out / run only the migration
#               scenario (it runs in the unified layout, when that is tested).
#
# Scenarios: per layout, the current package on a fresh system (install,
# activation, restarts, upgrade, reboot, stop-all, remove, purge); in the
# unified layout also the migration: a host running the previous release
# keeps its running tasks through the upgrade to this one.
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
PREV_REF=${LANCO_PREV_REF:-970ec59}
prev_deb_arg=""
migration=1        # 0: --no-migration; only: --migration-only
while [ $# -gt 0 ]; do
    case "$1" in
    --layout) shift; [ "$1" = both ] && layouts="hybrid unified" || layouts=$1 ;;
    --no-build) build=0 ;;
    --deb) shift; deb1=$1 ;;
    --deb2) shift; deb2=$1 ;;
    --keep) keep=1 ;;
    --prepare) prepare_only=1 ;;
    --prev-ref) shift; PREV_REF=$1 ;;
    --prev-deb) shift; prev_deb_arg=$1 ;;
    --no-migration) migration=0 ;;
    --migration-only) migration=only ;;
    *) echo "usage: $0 [--layout hybrid|unified|both] [--no-build] [--deb OLD --deb2 NEW] [--keep] [--prepare]" \
            "[--prev-ref REF | --prev-deb FILE] [--no-migration | --migration-only]" >&2; exit 2 ;;
    esac
    shift
done
for l in $layouts; do
    case "$l" in hybrid|unified) ;; *) echo "bad layout $l" >&2; exit 2 ;; esac
done
if [ "$migration" = only ]; then
    layouts=unified
elif [ "$migration" = 1 ] && [[ " $layouts " != *" unified "* ]]; then
    migration=0
    echo "run.sh: the migration scenario runs in the unified layout only: not run" >&2
fi

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 2; }

CACHE=/var/cache/lanco-nspawn
PREV_TARGET=${LANCO_PREV_TARGET_DIR:-$CACHE/prev-target}
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

# debian_mirror: the Debian mirror of the host's apt configuration.
. "$top/tests/lib/debian-mirror.sh"
# test_deb: builds this tree's package with a version suffix.
. "$top/tests/lib/test-deb.sh"

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
    say "== building packages +nspawn1 and +nspawn2"
    t0=$SECONDS
    nb=""
    [ "$build" = 1 ] || nb=--no-build
    deb1=$(test_deb nspawn1 "$WORK/debs" $nb) && deb2=$(test_deb nspawn2 "$WORK/debs" --no-build) ||
        { echo "run.sh: build-deb.sh failed" >&2; exit 1; }
    note "built in $((SECONDS - t0)) s: $(basename "$deb1") $(basename "$deb2")"
elif [ -z "$deb2" ]; then
    echo "run.sh: --deb needs --deb2 (a higher version)" >&2
    exit 2
fi
ver1=$(dpkg-deb -f "$deb1" Version)
ver2=$(dpkg-deb -f "$deb2" Version)
dpkg --compare-versions "$ver2" gt "$ver1" || { echo "run.sh: $ver2 is not newer than $ver1" >&2; exit 2; }

# The previous release's package, for the migration scenario: its own
# sources (git archive of $PREV_REF, unpacked once per commit under $CACHE),
# its own Cargo.lock, its own build-deb.sh and version. The target directory
# is kept across runs, so only the first run pays for the release build.
prev_deb="" prev_ver=""
build_prev_deb() {
    local commit src t0=$SECONDS
    if [ -n "$prev_deb_arg" ]; then
        prev_deb=$prev_deb_arg
    else
        commit=$(git -C "$top" rev-parse --verify --quiet "$PREV_REF^{commit}") || {
            echo "the previous release $PREV_REF is not a commit of the clone in $top."
            echo "The migration scenario builds the previous package from it: use a full clone"
            echo "(git fetch --unshallow), set LANCO_PREV_REF or --prev-ref to a previous-release"
            echo "commit that is here, or give the package with --prev-deb FILE."
            return 1
        }
        src=$CACHE/prev-src/$commit
        echo "building the previous release from $PREV_REF ($commit) in $src, target $PREV_TARGET"
        mkdir -p "$CACHE/prev-src"
        (
            flock 8
            if [ ! -e "$src/.complete" ]; then
                rm -rf "$src" && mkdir -p "$src" &&
                    git -C "$top" archive --format=tar "$commit" | tar -x -C "$src" &&
                    touch "$src/.complete" || exit 1
            fi
            cd "$src" && CARGO_TARGET_DIR=$PREV_TARGET cargo build --release --workspace --locked || exit 1
            mkdir -p "$WORK/debs-prev"
            LANCO_BIN_DIR=$PREV_TARGET/release LANCO_DEB_DIR=$WORK/debs-prev \
                "$src/packaging/build-deb.sh" --no-build > "$WORK/debs-prev/out" || exit 1
        ) 8> "$CACHE/.prev.lock" || { echo "building the previous package failed"; return 1; }
        prev_deb=$(tail -n 1 "$WORK/debs-prev/out")
    fi
    prev_ver=$(dpkg-deb -f "$prev_deb" Version) || return 1
    echo "previous package: $prev_deb, version $prev_ver ($((SECONDS - t0)) s)"
    dpkg --compare-versions "$ver1" gt "$prev_ver" ||
        { echo "this tree's package $ver1 is not newer than the previous release's $prev_ver"; return 1; }
}

# ------------------------------------------------------------------ checks
# Owners and modes are checked against docs/DESIGN.md, "Every cgroup,
# directory and file". Mode of log_dir/lanco-NS/: 3770 there (setgid, so that
# logs get the namespace's group and members read each other's); the first
# layout note of 0.2 said 1770.
LOG_DIR_MODE=3770
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
# The monitors of a namespace: ns-NS/monitors (0.1), ns-NS/user-UID/monitors
# (0.2), without the members' warm spawners (comm lanco-spawner) and their
# standbys (lanco-standby), which come and go with use.
monitor_pids() {
    ct sh -c 'find "$1" -mindepth 1 -maxdepth 2 -type d -name monitors 2>/dev/null |
        while read -r d; do cat "$d/cgroup.procs" 2>/dev/null; done |
        while read -r p; do case "$(cat /proc/$p/comm 2>/dev/null)" in lanco-spawner|lanco-standby) ;; *) echo "$p" ;; esac; done |
        sort -n' sh "$CGROOT/ns-$1"
}
# expect_stat MODE USER:GROUP PATH...: each PATH has that mode (stat %a)
# and owner; "-" for any of the three matches anything.
expect_stat() {
    local mode=$1 user=${2%%:*} group=${2#*:} p got m u g bad=0
    shift 2
    for p in "$@"; do
        got=$(ct stat -c '%a %U %G' "$p" 2>&1)
        read -r m u g <<< "$got"
        if [ -n "$g" ] && { [ "$mode" = - ] || [ "$m" = "$mode" ]; } &&
            { [ "$user" = - ] || [ "$u" = "$user" ]; } && { [ "$group" = - ] || [ "$g" = "$group" ]; }; then
            echo "ok   $m $u:$g $p"
        else
            echo "BAD  $p: $got; expected $mode $user:$group"
            bad=1
        fi
    done
    return $bad
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
    ok ct systemd-analyze verify lancod.socket lancod.service lanco-tasks.service lanco-enabled.service
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
    ct systemctl is-enabled lancod.socket lanco-tasks.service lanco-enabled.service
    [ "$s" = active ] && [ "$t" = active ] && [ "$h" != active ] &&
        [ "$(ct systemctl is-enabled lancod.socket)" = enabled ] &&
        [ "$(ct systemctl is-enabled lanco-tasks.service)" = enabled ] &&
        [ "$(ct systemctl is-enabled lanco-enabled.service)" = enabled ]
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
# The namespace's directories as in docs/DESIGN.md's table, made by the helper
# under its sandbox's capabilities (a missing CAP_FSETID silently drops
# setgid). alice has run tasks, so her subtree exists.
c_ns_dirs() {
    local auid bad=0
    auid=$(ct id -u alice)
    expect_stat 711 root:root "$CGROOT" /var/lib/lanco/ns || bad=1
    expect_stat 750 root:alice "$CGROOT/ns-nsa" /var/lib/lanco/ns/nsa || bad=1
    expect_stat 644 root:alice "$CGROOT/ns-nsa/cgroup.procs" || bad=1
    expect_stat 1770 root:alice /var/lib/lanco/ns/nsa/names || bad=1
    expect_stat "$LOG_DIR_MODE" root:alice /var/log/lanco-nsa || bad=1
    expect_stat 2750 alice:alice "$CGROOT/ns-nsa/user-$auid" "$CGROOT/ns-nsa/user-$auid/monitors" \
        "/var/lib/lanco/ns/nsa/user-$auid" || bad=1
    return $bad
}
# README.md's administrator block, as it stands (the lines after the marker
# "<!-- nspawn: administrator -->", inside the next fence), one command per
# line, comments dropped: `sudo -u USER CMD` runs as USER, `sudo CMD` as root,
# anything else as alice (an ordinary user). Each must succeed; then what
# the block claims is checked. So the README cannot drift from the product.
readme_admin_block() {
    awk '/<!-- nspawn: administrator -->/ { m = 1; next }
         m && /^```/ { if (f) exit; f = 1; next }
         m && f' "$top/README.md"
}
# out_of PATTERN: the output of the README command matching PATTERN (grep -E).
readme_out_of() {
    local f
    for f in "$WORK"/readme.*; do
        head -n 1 "$f" | grep -Eq -- "$1" && { tail -n +2 "$f"; return 0; }
    done
    echo "(no README command matches $1)"
}
c_readme_admin() {
    local line cmd n=0 f rest user rc bad=0
    rm -f "$WORK"/readme.*
    while IFS= read -r line; do
        cmd=$(sed -E 's/ {2,}#.*$//; s/[[:space:]]+$//' <<< "$line")
        [ -z "$cmd" ] && continue
        case "$cmd" in \#*) continue ;; esac
        n=$((n + 1))
        f=$WORK/readme.$(printf %02d $n)
        echo "$cmd" > "$f"
        case "$cmd" in
        "sudo -u "*)
            rest=${cmd#sudo -u }; user=${rest%% *}; rest=${rest#* }
            as_user "$user" sh -c "$rest" >> "$f" 2>&1 ;;
        "sudo "*) ct sh -c "${cmd#sudo }" >> "$f" 2>&1 ;;
        *) as_user alice sh -c "$cmd" >> "$f" 2>&1 ;;
        esac
        rc=$?
        echo "+ $cmd  -> exit $rc"
        tail -n +2 "$f" | sed 's/^/    /'
        [ $rc = 0 ] || { bad=1; echo "  FAILED: README line: $cmd"; }
    done < <(readme_admin_block)
    [ "$n" -ge 10 ] || { echo "only $n commands found in README.md's administrator block"; return 1; }
    [ $bad = 0 ] || return 1
    # What the block says happened.
    readme_out_of '^sudo lanco web accounting' | grep -qw hello || { echo "accounting lists no run of hello"; bad=1; }
    readme_out_of '^sudo lancod destroyed$' | grep -Eq '^web-[0-9]+  destroyed ' || { echo "lancod destroyed listed no web-STAMP"; bad=1; }
    readme_out_of '^sudo lancod destroyed show web' | grep -q '/user-[0-9]*/accounting.jsonl$' || { echo "show gave no accounting journal"; bad=1; }
    readme_out_of '^sudo lancod destroyed show web' | grep -q '/task-hello.log$' || { echo "show gave no log of hello"; bad=1; }
    fails ct sh -c 'ls -d /var/lib/lanco/destroyed/web-* /var/log/lanco.destroyed/web-* 2>/dev/null | grep .' || bad=1
    fails ct test -e /var/lib/lanco/namespaces/web.toml || bad=1
    fails ct test -e /var/lib/lanco/namespaces/shop.toml || bad=1
    # An owner outside the group is refused with the fix, exit 2.
    local msg
    msg=$(ct lanco web2 init -u www-data -g alice 2>&1); rc=$?
    echo "init outside the group: exit $rc: $msg"
    { [ $rc = 2 ] && grep -q 'usermod -aG alice www-data' <<< "$msg"; } || bad=1
    fails ct test -e /var/lib/lanco/namespaces/web2.toml || bad=1
    # lancod's journal names namespace and uid. (Whether the edit was seen
    # by a running lancod or by the next one depends on the 2 s idle exit
    # here; tests/tests/admin.rs covers the running one.)
    local j
    j=$(ct journalctl -q -o cat -u lancod.service --no-pager)
    for want in 'init of web allowed for uid 0' 'init of shop allowed for uid [0-9]+' \
            'admitted pid [0-9]+ of uid [0-9]+ into web'; do
        grep -Eq "$want" <<< "$j" && echo "journal: $want" || { echo "journal lacks: $want"; bad=1; }
    done
    return $bad
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
# Enabled definitions, started at boot by lanco-enabled.service: alice's
# and bob's (in their own namespaces); carol's, made group-writable, and
# bob's in carol's namespace nsc after bob has left its group, are not.
# alice's task prints its NoNewPrivs and seccomp state: nothing of a unit's
# sandbox may reach it, so they are those of the container's PID 1 (nspawn
# confines the whole container with a filter of its own).
c_enabled_define() {
    ok as_user alice lanco nsa define --enable ea sh -c \
        'grep -E "^(NoNewPrivs|Seccomp|Seccomp_filters):" /proc/self/status; id; exec sleep 100001' || return 1
    ok as_user alice lanco nsa define ed sleep 100002 || return 1
    ok as_user bob lanco nsb define --enable eb sleep 100003 || return 1
    ok ct groupadd crew && ok ct useradd -m -s /bin/sh -G crew carol && ok ct usermod -aG crew bob || return 1
    ok ct lanco nsc init -u carol -g crew || return 1
    ok as_user carol lanco nsc define --enable ec sleep 100004 || return 1
    ok as_user carol chmod g+w "/var/lib/lanco/ns/nsc/user-$(ct id -u carol)/defs.toml" || return 1
    ok as_user bob lanco nsc define --enable ebc sleep 100005 || return 1
    ok ct gpasswd -d bob crew
}
c_enabled_after_reboot() {
    local j bad=0 p
    ok as_user alice lanco nsa check ea || bad=1
    ok as_user bob lanco nsb check eb || bad=1
    fails as_user alice lanco nsa check ed || bad=1            # not enabled
    fails as_user carol lanco nsc check ec || bad=1            # group-writable
    fails ct lanco nsc check ebc || bad=1                      # bob left crew
    for p in $(task_pids nsa ea); do
        [ "$(ct stat -c %U "/proc/$p")" = alice ] || { echo "ea's pid $p is not alice's"; bad=1; }
    done
    for p in $(task_pids nsb eb); do
        [ "$(ct stat -c %U "/proc/$p")" = bob ] || { echo "eb's pid $p is not bob's"; bad=1; }
    done
    ct cat /var/log/lanco-nsa/task-ea.log
    local k want
    for k in NoNewPrivs Seccomp Seccomp_filters; do
        want=$(ct grep "^$k:" /proc/1/status)
        echo "PID 1: $want"
        ok ct grep -qx "$want" /var/log/lanco-nsa/task-ea.log || bad=1
    done
    j=$(ct journalctl -b -q -o cat -u lanco-enabled.service --no-pager); echo "$j"
    grep -qx "lanco-nsc user $(ct id -u carol): defs.toml is group-writable; enabled tasks not started" <<< "$j" ||
        { echo "no journal line for carol's group-writable defs.toml"; bad=1; }
    grep -q "^lanco-nsc user $(ct id -u bob): bob is no longer a member of namespace nsc .*; enabled tasks not started$" <<< "$j" ||
        { echo "no journal line for bob, removed from crew"; bad=1; }
    ok ct systemctl is-active --quiet lanco-tasks.service || bad=1
    fails ct systemctl is-failed --quiet lanco-enabled.service || bad=1
    return $bad
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
    # The logs too, kept ones included (README.md, "Install").
    fails ct sh -c 'ls -d /var/log/lanco-* /var/log/lanco.destroyed 2>/dev/null | grep .' || return 1
    for q in $p; do ok ct test -d "/proc/$q" || return 1; done    # tasks still run
    ok ct systemctl stop lanco-tasks.service
}

# ------------------------------------------------- the migration scenario
# A host running the previous release (0.1 layout) keeps its running tasks
# through the upgrade: install the previous package, two members of one
# group each run a task, upgrade, then with the new lanco check, list and
# stop them, run and stop new tasks, and compare the migrated namespace
# with docs/DESIGN.md's table of owners and modes.

# proc_ids PID...: "PID:STARTTIME" for each (STARTTIME from /proc/PID/stat,
# so a reused pid does not pass for the same process), "PID:gone" if none.
proc_ids() {
    ct sh -c 'for p; do s=$(sed "s/.*) //" /proc/$p/stat 2>/dev/null | cut -d" " -f20)
        echo "$p:${s:-gone}"; done' sh "$@"
}
# The members' tasks are ticking loops, so the logs show they go on writing.
m_install_prev() {
    cp "$prev_deb" "$deb1" "$ROOT/root/"
    ok ct dpkg -i "/root/$(basename "$prev_deb")" || return 1
    local v
    v=$(ct dpkg-query -W -f '${Version}' lanco); echo "installed: $v"
    [ "$v" = "$prev_ver" ] || return 1
    ok ct test -f /etc/logrotate.d/lanco || return 1        # its snippet, which the upgrade removes
    ok ct systemctl is-active lanco-tasks.service lancod.socket
}
m_users() {
    ok ct groupadd team && ok ct useradd -m -s /bin/sh -G team carol &&
        ok ct useradd -m -s /bin/sh -G team dave || return 1
    M_CUID=$(ct id -u carol); M_DUID=$(ct id -u dave)
    echo "carol=$M_CUID dave=$M_DUID group team=$(ct getent group team)"
}
m_prev_tasks() {
    ok ct lanco nsm init -u carol -g team || return 1
    ok as_user carol lanco nsm run c1 sh -c "$TICKER" || return 1
    ok as_user dave lanco nsm run d1 sh -c "$TICKER" || return 1
    ok as_user carol lanco nsm check d1 || return 1
    ok as_user dave lanco nsm check c1 || return 1
    # An idle namespace whose cgroups are then removed: the postinst's
    # `lancod restore` must bring them back (the sign that it ran).
    ok ct lanco nsx init -u carol -g team || return 1
    ok ct find "$CGROOT/ns-nsx" -depth -type d -exec rmdir {} + || return 1
    fails ct test -e "$CGROOT/ns-nsx" || return 1
    sleep 1
    M_C1=$(task_pids nsm c1); M_D1=$(task_pids nsm d1); M_MON=$(monitor_pids nsm)
    M_IDS=$(proc_ids $M_C1 $M_D1 $M_MON)
    M_LOG=$(log_size nsm c1)
    M_TASKROOT=$(ct systemctl show -P MainPID lanco-tasks.service)
    echo "c1: $(echo $M_C1) d1: $(echo $M_D1) monitors: $(echo $M_MON) c1 log: $M_LOG task root MainPID: $M_TASKROOT"
    echo "ids: $(echo $M_IDS)"
    ct find "$CGROOT/ns-nsm" -type d
    [ -n "$M_C1" ] && [ -n "$M_D1" ] && [ -n "$M_MON" ] && [[ "$M_IDS" != *gone* ]]
}
m_upgrade() {
    local out rc v m
    echo "+ dpkg -i $(basename "$deb1")"
    out=$(ct dpkg -i --force-confdef --force-confold "/root/$(basename "$deb1")" 2>&1); rc=$?
    echo "$out"
    [ $rc = 0 ] || { echo "  -> exit $rc"; return 1; }
    v=$(ct dpkg-query -W -f '${Version}' lanco); echo "installed: $v"
    [ "$v" = "$ver1" ] || return 1
    m=$(ct systemctl show -P MainPID lanco-tasks.service)
    [ "$m" = "$M_TASKROOT" ] || { echo "lanco-tasks.service was restarted ($M_TASKROOT -> $m)"; return 1; }
    # preinst/postinst: dpkg-maintscript-helper rm_conffile.
    ok ct ls -la /etc/logrotate.d/
    fails ct sh -c 'ls -d /etc/logrotate.d/lanco* 2>/dev/null | grep .' || return 1
    ! grep -q "'lancod restore' failed" <<< "$out" || { echo "the postinst's restore failed"; return 1; }
    ok ct test -d "$CGROOT/ns-nsx"
}
# Right after the upgrade, before any request: the postinst's restore has
# migrated the namespace (cgroups and logs rows of DESIGN.md's table).
m_layout_cgroup_log() {
    local bad=0
    expect_stat 711 root:root "$CGROOT" || bad=1
    expect_stat 750 root:team "$CGROOT/ns-nsm" "$CGROOT/ns-nsx" || bad=1
    expect_stat 644 root:team "$CGROOT/ns-nsm/cgroup.procs" "$CGROOT/ns-nsm/cgroup.threads" \
        "$CGROOT/ns-nsm/cgroup.subtree_control" || bad=1
    expect_stat "$LOG_DIR_MODE" root:team /var/log/lanco-nsm || bad=1
    return $bad
}
m_layout_state() {
    local bad=0
    expect_stat 755 root:root /var/lib/lanco || bad=1
    expect_stat 700 root:root /var/lib/lanco/namespaces || bad=1
    expect_stat 600 root:root /var/lib/lanco/namespaces/nsm.toml /var/lib/lanco/namespaces/nsx.toml || bad=1
    expect_stat 711 root:root /var/lib/lanco/ns || bad=1
    expect_stat 750 root:team /var/lib/lanco/ns/nsm /var/lib/lanco/ns/nsx || bad=1
    expect_stat 1770 root:team /var/lib/lanco/ns/nsm/names /var/lib/lanco/ns/nsx/names || bad=1
    # 0.1's state directory stays while its monitors run (they write their
    # exit records there).
    ok ct test -d /var/lib/lanco/ns-nsm || bad=1
    return $bad
}
m_check_ls() {
    local u out bad=0
    for u in carol dave; do
        ok as_user $u lanco nsm check c1 || bad=1
        ok as_user $u lanco nsm check d1 || bad=1
        out=$(as_user $u lanco nsm ls); echo "ls as $u:"; echo "$out"
        grep -qw c1 <<< "$out" && grep -qw d1 <<< "$out" || { echo "ls as $u misses c1 or d1"; bad=1; }
    done
    return $bad
}
m_same_processes() {
    local ids p sz bad=0
    sleep 1
    ids=$(proc_ids $M_C1 $M_D1 $M_MON)
    echo "before: $(echo $M_IDS)"; echo "after:  $(echo $ids)"
    [ "$ids" = "$M_IDS" ] || { echo "the 0.1 tasks' or monitors' processes changed"; bad=1; }
    for p in $M_C1 $M_D1; do
        ct grep -q "/lanco-tasks.service/ns-nsm/" "/proc/$p/cgroup" ||
            { echo "pid $p is no longer in ns-nsm: $(ct cat /proc/$p/cgroup)"; bad=1; }
    done
    sz=$(log_size nsm c1); echo "c1 log: $M_LOG -> $sz"
    [ "$sz" -gt "$M_LOG" ] || { echo "c1's log did not grow"; bad=1; }
    return $bad
}
# wait_gone PID...: until none of these processes lives (5 s).
wait_gone() {
    local i left
    for i in $(seq 1 50); do
        left=$(proc_ids "$@" | grep -v ':gone$')
        [ -z "$left" ] && return 0
        sleep 0.1
    done
    echo "still alive: $(echo $left)"
    return 1
}
m_stop_prev() {
    local bad=0
    ok as_user carol lanco nsm stop c1 || bad=1
    ok as_user dave lanco nsm stop d1 || bad=1
    # Not running: exit status 1.
    as_user carol lanco nsm check c1; [ $? = 1 ] || { echo "check c1: expected exit 1"; bad=1; }
    as_user dave lanco nsm check d1; [ $? = 1 ] || { echo "check d1: expected exit 1"; bad=1; }
    wait_gone $M_C1 $M_D1 $M_MON || bad=1
    return $bad
}
# Once the 0.1 monitors are gone, `lancod restore` retires 0.1's state
# directory into destroyed/.
m_retire_prev_state() {
    ok ct lancod restore || return 1
    fails ct test -e /var/lib/lanco/ns-nsm || return 1
    ok ct ls -la /var/lib/lanco/destroyed/
    ok ct sh -c 'ls -d /var/lib/lanco/destroyed/nsm-* | grep .' || return 1
    # Kept entries keep their modes; the root-only parent closes them.
    expect_stat 700 root:root /var/lib/lanco/destroyed
}
m_new_tasks() {
    local bad=0
    ok as_user carol lanco nsm run c2 sh -c 'echo c2 started; exec sleep 100000' || return 1
    ok as_user dave lanco nsm run d2 sleep 100000 || return 1
    ok as_user dave lanco nsm check c2 || bad=1
    ok as_user carol lanco nsm check d2 || bad=1
    # Members read each other's logs.
    sleep 0.3
    local out
    out=$(as_user dave lanco nsm logs c2); echo "dave's logs c2 (exit $?): $out"
    grep -q 'c2 started' <<< "$out" || { echo "dave cannot read c2's log"; bad=1; }
    M_C2=$(task_pids nsm c2); M_D2=$(task_pids nsm d2)
    echo "c2: $(echo $M_C2) d2: $(echo $M_D2)"
    [ -n "$M_C2" ] && [ -n "$M_D2" ] || bad=1
    return $bad
}
# A name belongs to the member who ran it first, running or not: another
# member's run is refused with exit 3.
m_name_owner() {
    ok as_user carol lanco nsm run c3 true || return 1
    sleep 0.5
    as_user dave lanco nsm run c3 true; local rc=$?
    [ $rc = 3 ] || { echo "dave's run of carol's c3: exit $rc, expected 3"; return 1; }
}
# The running new tasks' cgroups, state and logs (DESIGN.md's table, per user).
m_layout_user() {
    local u uid t cg st bad=0 gw
    for u in carol:$M_CUID:c2 dave:$M_DUID:d2; do
        uid=${u#*:}; t=${uid#*:}; uid=${uid%%:*}; u=${u%%:*}
        cg=$CGROOT/ns-nsm/user-$uid; st=/var/lib/lanco/ns/nsm/user-$uid
        expect_stat 2750 "$u:team" "$cg" "$cg/monitors" "$cg/task-$t" "$st" || bad=1
        expect_stat 644 "$u:team" "$cg/cgroup.procs" "$cg/cgroup.threads" "$cg/cgroup.subtree_control" \
            "$cg/monitors/cgroup.procs" || bad=1
        expect_stat 644 root:root "$cg/cgroup.max.descendants" || bad=1
        # cgroup.kill and cgroup.freeze are the only group-writable files.
        gw=$(ct find "$cg/task-$t" -maxdepth 1 -type f -perm -g+w -printf '%f ' | tr ' ' '\n' | sort | xargs)
        [ "$gw" = "cgroup.freeze cgroup.kill" ] || { echo "BAD  group-writable in task-$t: '$gw'"; bad=1; }
        expect_stat 640 "$u:team" "$st/task-$t.state.json" || bad=1
        expect_stat 660 "$u:team" "$st/task-$t.sock" || bad=1
        expect_stat 640 "$u:-" /var/lib/lanco/ns/nsm/names/task-$t.lock || bad=1     # name owner : creator's gid
        expect_stat 640 "$u:team" /var/log/lanco-nsm/task-$t.log || bad=1
    done
    return $bad
}
m_stop_new() {
    local bad=0
    ok as_user carol lanco nsm stop c2 || bad=1
    ok as_user dave lanco nsm stop d2 || bad=1
    as_user carol lanco nsm check c2; [ $? = 1 ] || { echo "check c2: expected exit 1"; bad=1; }
    as_user dave lanco nsm check d2; [ $? = 1 ] || { echo "check d2: expected exit 1"; bad=1; }
    wait_gone $M_C2 $M_D2 || bad=1
    return $bad
}

run_migration() {
    layout=unified
    local t0=$SECONDS
    say "== migration: ${prev_ver:-$PREV_REF} -> $ver1 (layout: $layout)"
    if [ -z "$prev_deb" ]; then
        say "   not run: no previous package (its FAIL above)"
        return
    fi
    migration_checks
    stop_container
    note "migration took $((SECONDS - t0)) s"
}

migration_checks() {
    ROOT=$WORK/migration/root
    MACHINE=lanco-t$$-mig
    mkdir -p "$WORK/migration"
    cp -a "$ROOTFS_CACHE" "$ROOT"
    echo "$MACHINE" > "$ROOT/etc/hostname"

    check "migration: container boots" boot_container migration || return 0
    CGROOT=$(cgroot)
    check "migration: dpkg -i $prev_ver (built from $PREV_REF)" m_install_prev || return 0
    check "migration: users carol and dave in group team" m_users || return 0
    check "migration: under $prev_ver, carol and dave each run a task in nsm" m_prev_tasks || return 0
    check "migration: dpkg -i $ver1: task root not restarted, 0.1's logrotate conffile removed, postinst ran lancod restore" m_upgrade || return 0
    check "migration: ns cgroup root:team 0750, log dir root:team $LOG_DIR_MODE (before any request)" m_layout_cgroup_log
    check "migration: state directories as in DESIGN.md's table (before any request)" m_layout_state
    check "migration: carol and dave with $ver1: check says running, ls lists both" m_check_ls
    check "migration: the 0.1 tasks and monitors are the same processes, still writing" m_same_processes
    check "migration: stop ends each 0.1 task, nothing left" m_stop_prev
    check "migration: lancod restore retires 0.1's state dir into destroyed/" m_retire_prev_state
    check "migration: carol and dave run new tasks in the migrated namespace" m_new_tasks || return 0
    check "migration: dave's run of carol's task name is refused (exit 3)" m_name_owner
    check "migration: the new tasks' cgroups, state and logs as in DESIGN.md's table" m_layout_user
    check "migration: stop ends the new tasks, nothing left" m_stop_new
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
    check "namespace directories: owners and modes as in DESIGN.md, setgid kept" c_ns_dirs
    check "README.md's administrator block, command by command" c_readme_admin
    check "snapshot of running tasks" snapshot || return 0
    check "systemctl restart lancod.service: tasks untouched" c_restart_helper
    check "systemctl restart lancod.socket: tasks untouched" c_restart_socket
    check "systemctl daemon-reexec: tasks untouched" c_reexec
    check "dpkg -i $ver2 (upgrade): tasks untouched, task root not restarted" c_upgrade
    check "systemctl status lanco-tasks.service shows the tasks" c_status_shows_tasks
    check "stop ends the task and leaves nothing" c_stop_task
    check "enabled definitions: alice, bob; carol's group-writable; bob's after leaving nsc's group" c_enabled_define
    check "reboot: namespaces back without init, users run at once" c_reboot
    check "after reboot: enabled tasks back as their definers, unsandboxed; skips in the journal" c_enabled_after_reboot
    check "systemctl stop lanco-tasks.service ends every task" c_stop_root
    check "root destroys an idle namespace (helper and task root start on demand)" c_destroy
    check "dpkg -r leaves the task root running; dpkg -P removes state, config and logs" c_remove_purge
}

if [ "$migration" != 0 ]; then
    layout=build
    if check "previous release's package (from ${prev_deb_arg:-$PREV_REF})" build_prev_deb; then
        note "$(grep '^previous package: ' "$LOG" | tail -n 1)"
    else
        prev_deb=""
    fi
fi

(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$DEADLINE" & sp=$!
    wait "$sp" && { echo "run.sh: deadline of $DEADLINE s reached" >&2; kill -TERM $$; }
) &
watchdog=$!
if [ "$migration" != only ]; then
    for l in $layouts; do
        run_layout "$l"
    done
fi
[ "$migration" = 0 ] || run_migration
kill "$watchdog" 2>/dev/null

say ""
say "nspawn: total $((SECONDS - start_time)) s (log: $LOG$([ "$keep" = 1 ] || echo ', removed'))"
say "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
