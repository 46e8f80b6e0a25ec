#!/bin/bash
# The scenario of the qemu stage (tests/vm/run.sh), run by the VM's oneshot
# unit as root, on a pure cgroup2 hierarchy with every controller:
#
#   bash scenario.sh LANCO.deb
#
# Installs the package, makes users alice and bob (group tenants) and carol
# (group others), and tests as them what only a kernel with the memory, pids,
# cpu and io controllers shows (issue 12, "Where this is tested"): namespace
# ceilings a member cannot raise and that bind a task with a higher own
# limit, the OOM killer ending a task at --memory as a whole, a fork bomb
# held at --pids, --cpu and --cpu-weight, `top -b --json` and the TUI in
# tmux, `accounting --by user`; and first the baseline (socket activation,
# init, run/check/ls/stop, refusals).
#
# Every check prints "PASS name" or "FAIL name: why" (then the tail of what
# it ran, indented with "   | "), and the end "N passed, M failed". Checks
# compare what lanco says with what the kernel says: they read memory.max,
# pids.current, cpu.stat and memory.events themselves. A check that needs a
# feature the package lacks FAILs, it never passes by default.
set -uo pipefail

DEB=${1:-/lanco-test/lanco.deb}
CG2=/sys/fs/cgroup
CGROOT=$CG2/system.slice/lanco-tasks.service
STATE=/var/lib/lanco
T=/tmp/lanco-vm          # helper programs and "go" files, readable by all
STEPS=/root/steps.log
passed=0 failed=0
t_start=$(cut -d' ' -f1 /proc/uptime)

mkdir -p "$T" && chmod 0755 "$T"
: > "$STEPS"

# ---------------------------------------------------------------- harness
# check NAME FUNC [ARGS...]: runs FUNC, its output into $STEPS; PASS if it
# returns 0, else FAIL with the last "WHY:" line it printed as the reason
# and the tail of its output.
check() {
    local name=$1 mark why rc t0
    shift
    mark=$(wc -l < "$STEPS")
    printf '\n### %s\n' "$name" >> "$STEPS"
    t0=$(now_us)
    "$@" >> "$STEPS" 2>&1
    rc=$?
    echo "### took $(( ($(now_us) - t0) / 1000 )) ms" >> "$STEPS"
    if [ $rc = 0 ]; then
        echo "PASS $name"
        passed=$((passed + 1))
        return 0
    fi
    why=$(tail -n +"$((mark + 1))" "$STEPS" | sed -n 's/^WHY: //p' | tail -n 1)
    echo "FAIL $name: ${why:-exit status $rc}"
    tail -n +"$((mark + 1))" "$STEPS" | grep -v '^WHY: ' | tail -n 20 | cut -c1-300 | sed 's/^/   | /'
    failed=$((failed + 1))
    return 1
}
why() { echo "WHY: $*"; return 1; }

# as USER CMD...: CMD as USER (real and effective ids, its groups), with
# the user's login variables. (No `timeout` or `env` in between: under
# emulation every exec costs; the host's timeout ends a hung scenario.)
as() {
    local u=$1
    shift
    HOME="/home/$u" USER="$u" LOGNAME="$u" SHELL=/bin/bash LANG=C.UTF-8 \
        PATH=/usr/local/bin:/usr/bin:/bin TERM=xterm-256color \
        setpriv --reuid="$u" --regid="$u" --init-groups -- "$@" < /dev/null
}
# Expect exit status 0 / a given status, echoing what ran.
ok() { echo "+ $*"; "$@"; local rc=$?; [ $rc = 0 ] || echo "  -> exit $rc, expected 0"; return $rc; }
status_is() { # status_is N CMD...
    local want=$1 rc
    shift
    echo "+ (expect exit $want) $*"
    "$@"
    rc=$?
    [ $rc = "$want" ] || { echo "  -> exit $rc, expected $want"; return 1; }
}

declare -A UIDS=()        # set once the users exist
uid_of() { echo "${UIDS[$1]:-$(id -u "$1")}"; }
ns_cg() { echo "$CGROOT/ns-$1"; }
task_cg() { echo "$CGROOT/ns-$1/user-$(uid_of "$2")/task-$3"; }   # NS USER TASK
# rd FILE: a cgroup file's content (one line), or "(absent)".
rd() { if [ -e "$1" ]; then head -c 4096 "$1" | head -n 1; else echo "(absent)"; fi; }
keyed() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print "" }' "$1" 2>/dev/null; } # FILE KEY
procs() { cat "$1/cgroup.procs" 2>/dev/null; }   # a cgroup's processes (not below)
# all_procs DIR: every process in DIR and below.
all_procs() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -n; }
alive() { local p; for p in "$@"; do [ -d "/proc/$p" ] && echo "$p"; done; }
now_us() { echo "${EPOCHREALTIME/./}"; }
# nap SECS: sleep without a process (a read that times out on a pipe
# nobody writes).
exec {NAPFD}<> <(:)
nap() { read -r -t "$1" -u "$NAPFD" _ || :; }
# expect_file FILE VALUE: the file's first line is VALUE.
expect_file() {
    local got
    got=$(rd "$1")
    echo "$1: $got"
    [ "$got" = "$2" ] || why "$1 reads '$got', expected '$2'"
}
# wait_until SECS 'CODE': until the shell code CODE succeeds (tried every
# 0.1 s, and once more at the end), at most SECS seconds.
wait_until() {
    local end=$(($(now_us) + $1 * 1000000))
    while [ "$(now_us)" -lt "$end" ]; do
        eval "$2" > /dev/null 2>&1 && return 0
        nap 0.1
    done
    eval "$2" > /dev/null 2>&1
}
# refused FILE...: the sum of "max" in these pids.events files: forks
# refused at a pids limit. (Up to Linux 6.12 a refused fork counts in the
# forking task's cgroup, whichever ancestor's limit refused it; later
# kernels count it where the limit is, and up the tree.)
refused() {
    local f k v n=0
    for f in "$@"; do
        while read -r k v; do [ "$k" = max ] && n=$((n + v)); done < "$f"
    done
    echo "$n"
}
# sample_pressed CURRENT SECS EVENTS...: presses a pids limit. Reads CURRENT
# (pids.current) every 0.1 s, until 3 s after the refused forks of EVENTS
# (pids.events files) first grew, or SECS at most (emulated forks are slow:
# how long the limit takes to reach varies). Prints "LARGEST-CURRENT
# REFUSED-BEFORE REFUSED-AFTER".
sample_pressed() {
    local cur=$1 max=0 v n=0 ev0 ev now stop=0 end=$(($(now_us) + $2 * 1000000))
    shift 2
    ev0=$(refused "$@")
    while now=$(now_us); [ "$now" -lt "$end" ]; do
        read -r v < "$cur" 2> /dev/null && [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt "$max" ] && max=$v
        n=$((n + 1))
        if [ "$stop" = 0 ] && [ "$(refused "$@")" -gt "$ev0" ]; then
            stop=1
            end=$((now + 3000000))
        fi
        nap 0.1
    done
    echo "$max $ev0 $(refused "$@")"
    echo "($n samples of $cur)" >&2
}
# record NS USER TASK: the task's exit record (JSON) from the state directory.
record() { cat "$STATE/ns/$1/user-$(uid_of "$2")/task-$3.exit.json" 2>/dev/null; }
# json_num JSON FILTER: a jq filter's value, "" when null or missing.
json_num() { jq -r "$2 // empty" <<< "$1" 2>/dev/null; }

# Runs made in namespace lim, per user: each one that started leaves one
# line in its member's accounting journal (the accounting check compares).
declare -A RUNS=([alice]=0 [bob]=0)
# lrun USER [OPTIONS...] TASK CMD...: lanco lim run as USER, counted.
# (Options go before TASK: after it, everything is the command.)
lrun() {
    local u=$1 rc
    shift
    echo "+ as $u: lanco lim run $*"
    as "$u" lanco lim run --stop-timeout 2 "$@"
    rc=$?
    [ $rc = 0 ] && RUNS[$u]=$((RUNS[$u] + 1))
    [ $rc = 0 ] || echo "  -> exit $rc"
    return $rc
}

# ------------------------------------------------------- helper programs
# hog.py MIB [GO]: a child `sleep` (so the task has two processes), then,
# once the file GO exists, allocates and touches MIB MiB, 1 MiB at a time,
# and holds it.
cat > "$T/hog.py" <<'EOF'
import os, sys, time
mib = int(sys.argv[1])
go = sys.argv[2] if len(sys.argv) > 2 else None
if os.fork() == 0:
    os.execvp("sleep", ["sleep", "100000"])
if go:
    while not os.path.exists(go):
        time.sleep(0.05)
held = []
for i in range(1, mib + 1):
    held.append(b"x" * (1 << 20))
    if i % 16 == 0:
        print("hog: %d MiB" % i, flush=True)
print("hog: holding %d MiB" % mib, flush=True)
while True:
    time.sleep(3600)
EOF
# bomb.py: a fork bomb that never gives up: every process forks forever,
# every 0.2 s; a refused fork is retried a second later (a refused fork
# costs a copy of the process: enough of them would stall an emulated CPU).
cat > "$T/bomb.py" <<'EOF'
import os, time
while True:
    try:
        os.fork()
        time.sleep(0.2)
    except OSError:
        time.sleep(1)
EOF
# spawn.py N GO: once GO exists, starts N `sleep`s, retrying refused forks
# every 0.1 s until it has them all.
cat > "$T/spawn.py" <<'EOF'
import os, sys, time
n, go = int(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.05)
made = refused = 0
while True:
    if made < n:
        try:
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "100000"])
            made += 1
            continue
        except OSError:
            refused += 1
    time.sleep(0.1)
EOF
chmod 0644 "$T"/*.py
# python3's own files into the page cache now, charged to this cgroup: a
# task's memory limit then holds its allocations only, and reaches the OOM
# killer without first evicting and re-reading the interpreter.
python3 -S -c 'import os, sys, time' 2> /dev/null
BUSY='while :; do :; done'

# ================================================================ checks
k_kernel() {
    uname -a
    grep ' - cgroup' /proc/self/mountinfo
    local fs c ctl
    fs=$(stat -fc %T "$CG2")
    ctl=$(cat "$CG2/cgroup.controllers")
    echo "$CG2: $fs; controllers: $ctl; cpus: $(nproc)"
    [ "$fs" = cgroup2fs ] || why "$CG2 is $fs, not a pure cgroup2 hierarchy"
    for c in memory pids cpu io; do
        [[ " $ctl " == *" $c "* ]] || why "$CG2/cgroup.controllers lacks $c: '$ctl'" || return 1
    done
    [ "$(nproc)" -ge 2 ] || why "the weight test needs 2 CPUs, the VM has $(nproc)"
}

k_install() {
    ok dpkg -i "$DEB" || why "dpkg -i $(basename "$DEB") failed" || return 1
    ok dpkg-query -W -f '${Version}\n' lanco
    # Stops below happen at once; the helper lingers 2 s, not 30.
    sed -i 's/^idle_timeout *=.*/idle_timeout = 2/' /etc/lanco/lanco.toml
    ok systemctl is-active lanco-tasks.service lancod.socket ||
        why "lanco-tasks.service or lancod.socket is not active after the install"
}

k_users() {
    groupadd -f tenants && groupadd -f others || return 1
    ok useradd -m -s /bin/bash -G tenants alice && ok useradd -m -s /bin/bash -G tenants bob &&
        ok useradd -m -s /bin/bash -G others carol || why "useradd failed"
    id alice; id bob; id carol
    local u
    for u in alice bob carol; do UIDS[$u]=$(id -u "$u"); done
}

# Socket activation: no helper runs until the first request; root's init
# starts it.
k_activation() {
    local before after
    before=$(systemctl show -P ActiveEnterTimestampMonotonic lancod.service)
    echo "lancod.service before: $(systemctl is-active lancod.service), entered active at ${before:-0}"
    [ "$(systemctl is-active lancod.socket)" = active ] || why "lancod.socket is not listening" || return 1
    [ "$(systemctl is-active lancod.service)" != active ] || why "lancod.service runs before any request" || return 1
    ok lanco base init -u alice -g tenants || why "lanco base init -u alice -g tenants failed" || return 1
    after=$(systemctl show -P ActiveEnterTimestampMonotonic lancod.service)
    echo "lancod.service after: entered active at $after"
    [ "${after:-0}" -gt "${before:-0}" ] || why "the init did not start lancod.service through its socket"
}

k_init() {
    local d
    d=$(ns_cg base)
    stat -c '%a %U:%G %n' "$d" "$d/cgroup.procs"
    [ "$(stat -c '%a %U:%G' "$d")" = "750 root:tenants" ] || why "$d is not 0750 root:tenants"
}

k_tour() {
    local out
    ok as alice lanco base run t1 sleep 100000 || why "alice's run failed" || return 1
    ok as alice lanco base check t1 || why "check: t1 is not running" || return 1
    out=$(as alice lanco base ls); echo "$out"
    grep -qw t1 <<< "$out" || why "ls does not list t1" || return 1
    local cg p
    cg=$(task_cg base alice t1); p=$(procs "$cg")
    echo "t1's processes: $p"
    [ -n "$p" ] || why "no process in $cg" || return 1
    ok as alice lanco base stop t1 || why "stop failed" || return 1
    status_is 1 as alice lanco base check t1 || why "check after stop: not exit 1" || return 1
    [ -z "$(alive $p)" ] || why "t1's processes outlived the stop: $(alive $p)"
}

# A member of the namespace's group checks another member's task.
k_bob_checks() {
    local cg=$(task_cg base alice t2)
    ok as alice lanco base run t2 sleep 100000 || why "alice's run of t2 failed" || return 1
    stat -c '%a %U:%G %n' "$(dirname "$cg")" "$cg" "$cg/cgroup.events" "$cg/cgroup.procs"
    ok as bob lanco base check t2 || why "bob (same group) cannot check alice's t2" || return 1
    ok as bob lanco base status t2 || why "bob cannot see the status of alice's t2"
}
k_bob_stops() {
    ok as bob lanco base stop t2 || why "bob (same group) cannot stop alice's t2" || return 1
    status_is 1 as alice lanco base check t2 || why "t2 still runs after bob's stop"
}

k_bob_refused() {
    status_is 3 as bob lanco base run t1 true || why "bob's run of alice's task name t1 was not refused with exit 3"
}

k_carol_refused() {
    status_is 4 as carol lanco base run c1 true || why "carol (not in tenants) was not refused with exit 4"
}

# ------------------------------------------------------ namespace ceilings
QUOTA_OK=0
k_quota_init() {
    ok lanco quota init -u alice -g tenants --memory 128M --pids 32 ||
        why "lanco quota init --memory 128M --pids 32 failed (namespace ceilings not built?)" || return 1
    QUOTA_OK=1
    local d; d=$(ns_cg quota)
    stat -c '%a %U:%G %n' "$d/memory.max" "$d/pids.max" "$d/cgroup.subtree_control"
    expect_file "$d/memory.max" 134217728 || return 1
    expect_file "$d/pids.max" 32 || return 1
    [ "$(stat -c '%U' "$d/memory.max")" = root ] && [ "$(stat -c '%U' "$d/pids.max")" = root ] ||
        why "the ceiling files are not root's"
}
need_quota() { [ "$QUOTA_OK" = 1 ] || why "no namespace quota with ceilings (its init failed above)"; }

# A member writing the ceilings of its namespace gets EACCES, and they stay.
k_quota_eacces() {
    need_quota || return 1
    local d f out rc bad=0
    d=$(ns_cg quota)
    for f in memory.max pids.max; do
        echo "+ as alice: echo max > $d/$f"
        out=$(as alice sh -c "echo max > $d/$f" 2>&1); rc=$?
        echo "exit $rc: $out"
        [ $rc != 0 ] && grep -qi 'permission denied' <<< "$out" ||
            { why "alice's write to $f: exit $rc, '$out' (expected EACCES)"; bad=1; }
    done
    expect_file "$d/memory.max" 134217728 || bad=1
    expect_file "$d/pids.max" 32 || bad=1
    return $bad
}

k_quota_limit_refused() {
    need_quota || return 1
    status_is 4 as alice lanco quota limit --memory 1G || why "alice's lanco quota limit --memory 1G: not refused with exit 4" || return 1
    expect_file "$(ns_cg quota)/memory.max" 134217728
}

# A task with --memory 512M in a namespace capped at 128M allocates 300 MiB:
# the ceiling's OOM kill ends it; the task's own limit was never reached.
QBIG_WARN=""
k_quota_binds() {
    need_quota || return 1
    local cg d oom0 oom1 rc rec err
    d=$(ns_cg quota)
    rm -f "$T/go-big"
    echo "+ as alice: lanco quota run --memory 512M big python3 hog.py 300 go-big"
    err=$(as alice lanco quota run --stop-timeout 2 --memory 512M big python3 -S "$T/hog.py" 300 "$T/go-big" 2>&1 >/dev/null)
    rc=$?
    QBIG_WARN=$err
    echo "exit $rc; stderr: $err"
    [ $rc = 0 ] || why "run --memory 512M in quota failed (exit $rc): $err" || return 1
    cg=$(task_cg quota alice big)
    wait_until 5 '[ -n "$(procs "$cg")" ]'
    expect_file "$cg/memory.max" 536870912 || return 1
    oom0=$(keyed "$d/memory.events" oom_kill)
    touch "$T/go-big"
    echo "+ as alice: lanco quota wait --timeout 60 big"
    as alice lanco quota wait --timeout 60 big; rc=$?
    oom1=$(keyed "$d/memory.events" oom_kill)
    echo "wait: exit $rc; ns-quota memory.events: $(tr '\n' ' ' < "$d/memory.events")"
    [ $rc = 137 ] || why "big did not end by SIGKILL (wait exit $rc, expected 137)" || return 1
    [ "${oom1:-0}" -gt "${oom0:-0}" ] || why "ns-quota's oom_kill count did not grow ($oom0 -> $oom1)" || return 1
    rec=$(record quota alice big); echo "record: $rec"
    [ "$(json_num "$rec" .oom_kills)" -gt 0 ] 2>/dev/null || why "big's exit record has no oom_kills" || return 1
    # The limit that bound it: the least of its own and the ceiling.
    [ "$(json_num "$rec" .memory_limit)" = 134217728 ] || why "big's record: memory_limit is not the binding 128 MiB" || return 1
    local peak; peak=$(json_num "$rec" .peak_memory_bytes)
    [ -n "$peak" ] && [ "$peak" -le 134217728 ] || why "big's peak memory $peak is not within the 128 MiB ceiling"
}
k_quota_warns() {
    need_quota || return 1
    echo "run's stderr: $QBIG_WARN"
    [ -n "$QBIG_WARN" ] || why "run --memory 512M under a 128M ceiling printed no warning"
}

# Three tasks of two members, each wanting 17 processes, in a namespace
# capped at 32 (its monitors count too): never more than 32 together.
k_quota_pids() {
    need_quota || return 1
    local d t u max ev0 ev1 ev bad=0
    d=$(ns_cg quota)
    rm -f "$T/go-pids"
    for t in alice:p1 alice:p2 bob:p3; do
        u=${t%%:*}; t=${t#*:}
        ok as "$u" lanco quota run --stop-timeout 2 "$t" python3 -S "$T/spawn.py" 16 "$T/go-pids" ||
            why "$u's run of $t failed" || return 1
    done
    ev=()
    # Refused forks count where the forking process is charged: its task's
    # cgroup if pids is enabled there (Linux 6.1), else the namespace's.
    ev=("$d/pids.events")
    for t in alice:p1 alice:p2 bob:p3; do ev+=("$(task_cg quota "${t%%:*}" "${t#*:}")/pids.events"); done
    touch "$T/go-pids"
    read -r max ev0 ev1 < <(sample_pressed "$d/pids.current" 40 "${ev[@]}")
    echo "ns-quota: pids.max $(rd "$d/pids.max"), largest pids.current $max; forks refused (the tasks' pids.events max) $ev0 -> $ev1"
    for t in alice:p1 alice:p2 bob:p3; do
        echo "task ${t#*:}: pids.current $(rd "$(task_cg quota "${t%%:*}" "${t#*:}")/pids.current")"
    done
    ok as alice lanco quota stop p1; ok as alice lanco quota stop p2; ok as bob lanco quota stop p3
    [ "$max" -le 32 ] || { why "ns-quota held $max processes, over its ceiling of 32"; bad=1; }
    [ "$max" -ge 28 ] || { why "ns-quota reached only $max processes: the tasks did not press the ceiling"; bad=1; }
    [ "$ev1" -gt "$ev0" ] || { why "no fork was refused at the ceiling (pids.events max $ev0 -> $ev1)"; bad=1; }
    return $bad
}

# ------------------------------------------------------------ task limits
k_lim_init() {
    ok lanco lim init -u alice -g tenants || why "lanco lim init failed"
}

# Every task limit option lands in the task's cgroup file.
k_limit_files() {
    local cg
    lrun alice --memory 96M --memory-high 48M --pids 20 --cpu 1.5 --cpu-weight 200 --io-weight 500 \
        files sleep 100000 || why "run with every limit option failed" || return 1
    cg=$(task_cg lim alice files)
    local bad=0
    expect_file "$cg/memory.max" 100663296 || bad=1
    expect_file "$cg/memory.high" 50331648 || bad=1
    expect_file "$cg/pids.max" 20 || bad=1
    expect_file "$cg/cpu.max" "150000 100000" || bad=1
    expect_file "$cg/cpu.weight" 200 || bad=1
    expect_file "$cg/io.weight" "default 500" || bad=1
    expect_file "$cg/memory.oom.group" 1 || bad=1
    ok as alice lanco lim stop files
    return $bad
}

# hog allocates 200 MiB under --memory 64M; bystander runs beside it.
HOG_OK=0 BY_PIDS=""
k_oom_kill() {
    local cg rc p
    lrun alice bystander sleep 100000 || why "the bystander's run failed" || return 1
    BY_PIDS=$(procs "$(task_cg lim alice bystander)")
    rm -f "$T/go-hog"
    lrun alice --memory 64M hog python3 -S "$T/hog.py" 200 "$T/go-hog" || why "run --memory 64M failed" || return 1
    cg=$(task_cg lim alice hog)
    wait_until 5 '[ "$(procs "$cg" | wc -l)" -ge 2 ]'
    p=$(procs "$cg"); echo "hog's processes: $(echo $p)"
    expect_file "$cg/memory.max" 67108864 || return 1
    expect_file "$cg/memory.oom.group" 1 || return 1
    touch "$T/go-hog"
    echo "+ as alice: lanco lim wait --timeout 60 hog"
    as alice lanco lim wait --timeout 60 hog; rc=$?
    echo "wait: exit $rc"
    as alice lanco lim logs hog | tail -n 3
    dmesg | grep -iE 'oom|killed process' | tail -n 5
    [ $rc = 137 ] || why "hog did not end by SIGKILL (wait exit $rc, expected 137)" || return 1
    [ -z "$(alive $p)" ] || why "processes of hog outlived the OOM kill: $(alive $p) (memory.oom.group?)" || return 1
    status_is 1 as alice lanco lim check hog || why "check says hog still runs" || return 1
    HOG_OK=1
}
k_oom_record() {
    [ "$HOG_OK" = 1 ] || why "no OOM-killed hog (above)" || return 1
    local rec js out
    rec=$(record lim alice hog); echo "exit record: $rec"
    [ "$(json_num "$rec" .oom_kills)" -gt 0 ] 2>/dev/null || why "the exit record has no oom_kills" || return 1
    [ "$(json_num "$rec" .memory_limit)" = 67108864 ] || why "the exit record's memory_limit is not 64 MiB" || return 1
    js=$(as alice lanco lim status --json hog); echo "status --json: $js"
    [ "$(jq -r '.last.oom_kills // 0' <<< "$js")" -gt 0 ] 2>/dev/null || why "status --json: last.oom_kills is not > 0" || return 1
    out=$(as alice lanco lim status hog); echo "status: $out"
    grep -q 'OOM' <<< "$out" || why "status does not say OOM"
}
k_oom_bystander() {
    [ "$HOG_OK" = 1 ] || why "no OOM kill beside it to be untouched by (above)" || return 1
    local cg p
    cg=$(task_cg lim alice bystander)
    p=$(procs "$cg")
    echo "bystander's processes before: $(echo $BY_PIDS), now: $(echo $p); memory.events: $(tr '\n' ' ' < "$cg/memory.events" 2>/dev/null)"
    [ -n "$BY_PIDS" ] && [ "$p" = "$BY_PIDS" ] || why "the bystander's processes changed" || return 1
    ok as alice lanco lim check bystander || why "the bystander is not running" || return 1
    local k; k=$(keyed "$cg/memory.events" oom_kill)
    [ "${k:-0}" = 0 ] || why "the bystander has oom_kill $k"
}

# bob's fork bomb under --pids 64.
BOMB_PIDS=""
k_bomb() {
    local cg max ev0 ev bad=0
    lrun bob --pids 64 bomb python3 -S "$T/bomb.py" || why "run --pids 64 failed" || return 1
    cg=$(task_cg lim bob bomb)
    expect_file "$cg/pids.max" 64 || return 1
    read -r max ev0 ev < <(sample_pressed "$cg/pids.current" 30 "$cg/pids.events")
    [ -e "$cg/pids.peak" ] && echo "pids.peak: $(rd "$cg/pids.peak")"
    BOMB_PIDS=$(all_procs "$cg")
    echo "bomb: largest pids.current $max, pids.events max $ev0 -> $ev, $(echo "$BOMB_PIDS" | wc -w) processes now"
    [ "$max" -le 64 ] || { why "the bomb reached $max processes, over its limit of 64"; bad=1; }
    if [ -e "$cg/pids.peak" ] && [ "$(rd "$cg/pids.peak")" -gt 64 ]; then why "pids.peak over 64"; bad=1; fi
    [ "$max" -ge 56 ] || { why "the bomb reached only $max processes: it did not press the limit"; bad=1; }
    [ "$ev" -gt "$ev0" ] || { why "no fork was refused (pids.events max $ev0 -> $ev)"; bad=1; }
    return $bad
}
k_bomb_stop() {
    [ -n "$BOMB_PIDS" ] || why "no bomb running (above)" || return 1
    local cg left
    cg=$(task_cg lim bob bomb)
    ok as bob lanco lim stop bomb || why "stop bomb failed" || return 1
    wait_until 5 '[ -z "$(alive $BOMB_PIDS)" ]'
    left=$(alive $BOMB_PIDS); echo "survivors of the $(echo "$BOMB_PIDS" | wc -w) processes: ${left:-none}"
    [ -z "$left" ] || why "survivors: $(echo $left)" || return 1
    [ -z "$(all_procs "$cg")" ] || why "processes left in $cg: $(all_procs "$cg" | xargs)" || return 1
    status_is 1 as bob lanco lim check bomb || why "check says bomb still runs"
}
k_bomb_record() {
    local rec
    rec=$(record lim bob bomb); echo "record: $rec"
    [ -n "$rec" ] || why "no exit record for bomb" || return 1
    [ "$(json_num "$rec" .forks_refused)" -gt 0 ] 2>/dev/null || why "the exit record has no forks_refused"
}

# The cpu tasks run side by side, and one 5 s window measures them all
# (cpu.stat usage_usec deltas): spin, a busy loop under --cpu 0.5, pinned to
# CPU 0; w100 and w300, two busy loops of one member with --cpu-weight 100
# and 300, pinned to CPU 1 (siblings, so the weights split that CPU).
CPU_SPIN_ERR="" CPU_W_ERR=""
declare -A CPU_USED=() CPU_THROTTLED=() CPU_WALL=() CPU_WEIGHT=()
# cpustat CGROUP: sets U and TH to its cpu.stat usage_usec and
# throttled_usec, and AT to the time read (µs), without starting a process
# (with both CPUs busy, an awk would take long enough to skew the window).
cpustat() {
    local k v
    U=0 TH=0
    while read -r k v; do
        case $k in usage_usec) U=$v ;; throttled_usec) TH=$v ;; esac
    done < "$1/cpu.stat"
    AT=$(now_us)
}
cpu_window() {
    local t cg U TH AT
    declare -A u0=() th0=() at0=()
    lrun alice --cpu 0.5 spin taskset -c 0 sh -c "$BUSY" || CPU_SPIN_ERR="run --cpu 0.5 failed"
    lrun alice --cpu-weight 100 w100 taskset -c 1 sh -c "$BUSY" || CPU_W_ERR="run --cpu-weight 100 failed"
    lrun alice --cpu-weight 300 w300 taskset -c 1 sh -c "$BUSY" || CPU_W_ERR=${CPU_W_ERR:-"run --cpu-weight 300 failed"}
    for t in w100 w300; do CPU_WEIGHT[$t]=$(rd "$(task_cg lim alice $t)/cpu.weight"); done
    if [ -z "$CPU_SPIN_ERR" ] || [ -z "$CPU_W_ERR" ]; then
        nap 1
        for t in spin w100 w300; do
            cpustat "$(task_cg lim alice $t)" 2> /dev/null
            u0[$t]=$U th0[$t]=$TH at0[$t]=$AT
        done
        nap 5
        for t in spin w100 w300; do
            cpustat "$(task_cg lim alice $t)" 2> /dev/null
            CPU_USED[$t]=$((U - ${u0[$t]})) CPU_THROTTLED[$t]=$((TH - ${th0[$t]})) CPU_WALL[$t]=$((AT - ${at0[$t]}))
        done
    fi
    # spin stays, for top.
    as alice lanco lim stop w100 > /dev/null 2>&1
    as alice lanco lim stop w300 > /dev/null 2>&1
    return 0
}
k_cpu_max() {
    local cg pct
    cpu_window
    [ -z "$CPU_SPIN_ERR" ] || why "$CPU_SPIN_ERR" || return 1
    cg=$(task_cg lim alice spin)
    expect_file "$cg/cpu.max" "50000 100000" || return 1
    pct=$(( ${CPU_USED[spin]} * 1000 / ${CPU_WALL[spin]} ))
    echo "spin: ${CPU_USED[spin]} us of CPU in ${CPU_WALL[spin]} us: $((pct / 10)).$((pct % 10)) % of one CPU; throttled ${CPU_THROTTLED[spin]} us"
    [ "$pct" -ge 450 ] && [ "$pct" -le 550 ] || why "spin used $((pct / 10)).$((pct % 10)) % of one CPU, not 45-55 %" || return 1
    [ "${CPU_THROTTLED[spin]}" -gt 0 ] || why "cpu.stat shows no throttling"
}
k_cpu_weight() {
    local da db r w
    [ -z "$CPU_W_ERR" ] || why "$CPU_W_ERR" || return 1
    echo "cpu.weight: w100 ${CPU_WEIGHT[w100]}, w300 ${CPU_WEIGHT[w300]}"
    [ "${CPU_WEIGHT[w100]}" = 100 ] && [ "${CPU_WEIGHT[w300]}" = 300 ] ||
        why "cpu.weight reads ${CPU_WEIGHT[w100]} and ${CPU_WEIGHT[w300]}, not 100 and 300" || return 1
    da=${CPU_USED[w100]}; db=${CPU_USED[w300]}; w=${CPU_WALL[w100]}
    [ "$da" -gt 0 ] || why "w100 got no CPU at all" || return 1
    r=$((db * 100 / da))
    echo "in $w us: w100 $da us, w300 $db us: 1:$((r / 100)).$(printf %02d $((r % 100))) (accepted 1:2 to 1:4.5)"
    [ $((da + db)) -ge $((w * 6 / 10)) ] || why "CPU 1 was not contended: together $((da + db)) us of $w" || return 1
    [ "$r" -ge 200 ] && [ "$r" -le 450 ] || why "the split was 1:$((r / 100)).$(printf %02d $((r % 100))), not 1:2-1:4.5"
}

# ------------------------------------------------------------------- top
# jq: the entry for $name: the deepest object with a direct value equal to
# $name ({"name": "zbig", ...}), else an object under the key $name.
JQ_OBJ='([.. | objects | select(any(.[]; . == $name))] | last)
    // ([.. | objects | to_entries[] | select(.key == $name and (.value | type) == "object") | .value] | first)
    // empty'
# jq: "path value" for every number in the input.
JQ_NUMS='paths(numbers) as $p | "\($p | map(tostring) | join(".")) \(getpath($p))"'

# zbig holds 32 MiB under --memory 64M (for top, sorted by memory).
k_top_tasks() {
    lrun alice --memory 64M zbig python3 -S "$T/hog.py" 32 || why "run zbig --memory 64M failed" || return 1
    local cg; cg=$(task_cg lim alice zbig)
    wait_until 20 '[ "$(cat "$cg/memory.current")" -ge 33554432 ]' ||
        why "zbig's memory.current stayed at $(rd "$cg/memory.current")"
}
k_top_json() {
    local js obj nums cur bad=0 cg
    js=$(as alice lanco lim top -b --json); echo "top -b --json (exit $?):"; echo "$js" | head -c 3000; echo
    jq -e . <<< "$js" > /dev/null || why "top -b --json printed no JSON" || return 1
    # zbig: its memory limit (bytes) and memory.current within 20 %.
    cg=$(task_cg lim alice zbig); cur=$(rd "$cg/memory.current")
    obj=$(jq -c --arg name zbig "$JQ_OBJ" <<< "$js")
    [ -n "$obj" ] || why "no entry for zbig" || return 1
    nums=$(jq -r "$JQ_NUMS" <<< "$obj"); echo "zbig's numbers:"; echo "$nums"; echo "kernel: memory.current $cur"
    awk '$2 == 67108864' <<< "$nums" | grep -q . || { why "zbig's entry lacks its memory limit 67108864"; bad=1; }
    awk -v c="$cur" '$1 ~ /mem/ && $2 >= c * 0.8 && $2 <= c * 1.2' <<< "$nums" | grep -q . ||
        { why "zbig's entry has no memory figure within 20 % of memory.current $cur"; bad=1; }
    # spin: its cpu limit (0.5 CPUs, 50 %, or 50000 µs of 100000) under a
    # key with "cpu" in its path, and, under another without max, limit or
    # quota, its use: near 50 % of one CPU (a percentage or a fraction), or
    # the kernel's usage_usec so far (within 10 %).
    obj=$(jq -c --arg name spin "$JQ_OBJ" <<< "$js")
    [ -n "$obj" ] || { why "no entry for spin"; return 1; }
    cg=$(task_cg lim alice spin)
    nums=$(jq -r "$JQ_NUMS" <<< "$obj"); echo "spin's numbers:"; echo "$nums"
    echo "kernel: cpu.max $(rd "$cg/cpu.max"), usage_usec $(keyed "$cg/cpu.stat" usage_usec)"
    awk '$1 ~ /cpu/ && ($2 == 0.5 || $2 == 50 || $2 == 50000)' <<< "$nums" | grep -q . ||
        { why "spin's entry lacks its cpu limit (0.5, 50 or 50000)"; bad=1; }
    awk -v u="$(keyed "$cg/cpu.stat" usage_usec)" '$1 ~ /cpu/ && $1 !~ /max|limit|quota/ &&
            (($2 >= 35 && $2 <= 65) || ($2 >= 0.35 && $2 <= 0.65) || ($2 >= u * 0.9 && $2 <= u * 1.1))' <<< "$nums" |
        grep -q . || { why "spin's entry has no CPU use near 50 % of one CPU (nor its usage_usec)"; bad=1; }
    return $bad
}
k_top_ceilings() {
    need_quota || return 1
    local js
    js=$(as alice lanco quota top -b --json); echo "$js" | head -c 2000; echo
    jq -e . <<< "$js" > /dev/null || why "top -b --json printed no JSON" || return 1
    jq -r "$JQ_NUMS" <<< "$js" | awk '$2 == 134217728' | grep -q . || why "no memory ceiling 134217728 in quota's top" || return 1
    jq -r "$JQ_NUMS" <<< "$js" | awk '$1 ~ /pid/ && $2 == 32' | grep -q . || why "no pids ceiling 32 in quota's top"
}

# The TUI in tmux, as alice: it shows the tasks, `m` sorts by memory, `K`
# then `y` stops the selected task.
TMUX_SOCK=lanco-vm
tm() { as alice tmux -L "$TMUX_SOCK" "$@"; }
pane() { tm capture-pane -p -t top; }
row() { grep -n -w -- "$2" <<< "$1" | head -n 1 | cut -d: -f1; }   # SCREEN NAME: its first line
# zbig_first SCREEN: zbig's row is above spin's and bystander's.
zbig_first() {
    local z sp by
    z=$(row "$1" zbig); sp=$(row "$1" spin); by=$(row "$1" bystander)
    echo "rows: zbig $z, spin $sp, bystander $by"
    [ -n "$z" ] && [ -n "$sp" ] && [ -n "$by" ] && [ "$z" -lt "$sp" ] && [ "$z" -lt "$by" ]
}
k_tui() {
    local s1 s2 s3 i
    ok tm new-session -d -s top -x 160 -y 45 "lanco lim top -d 1" || why "tmux new-session failed" || return 1
    # Until it shows the three tasks, or top has exited (and the session with it).
    wait_until 15 '! tm has-session -t top || { x=$(pane); grep -qw bystander <<< "$x" && grep -qw zbig <<< "$x" && grep -qw spin <<< "$x"; }'
    tm has-session -t top || why "lanco lim top exited at once (the session is gone)" || return 1
    s1=$(pane); echo "--- screen:"; echo "$s1"
    for i in zbig spin bystander; do
        grep -qw "$i" <<< "$s1" || why "the TUI does not show task $i" || return 1
    done
    tm send-keys -t top m
    wait_until 5 'zbig_first "$(pane)"'
    s2=$(pane); echo "--- after m:"; echo "$s2"
    zbig_first "$s2" || why "sorted by memory, zbig (32 MiB) is not above spin and bystander" || return 1
    # Select the top row (zbig: k moves up, and stops at the top), stop it.
    for i in 1 2 3 4 5 6; do tm send-keys -t top k; done
    nap 0.5
    s2=$(pane)
    tm send-keys -t top K
    nap 1.5
    s3=$(pane); echo "--- after K:"; echo "$s3"
    # The prompt K brought (new lines that ask y/n): if it names a task, it is zbig.
    local asked
    asked=$(grep -vxF -f <(printf '%s\n' "$s2") <<< "$s3" | grep -iE 'y/n|\[y|\?')
    echo "--- prompt: $asked"
    if grep -qwE 'spin|bystander' <<< "$asked" && ! grep -qw zbig <<< "$asked"; then
        tm send-keys -t top n
        why "K asked about another task than the top row's zbig: $(echo $asked)" || return 1
    fi
    tm send-keys -t top y
    wait_until 15 '! as alice lanco lim check zbig' ||
        why "zbig still runs after K, y" || return 1
    echo "--- after y:"; pane
    ok as alice lanco lim check spin && ok as alice lanco lim check bystander ||
        why "K, y stopped more than the selected task" || return 1
    local rec; rec=$(record lim alice zbig); echo "zbig's record: $rec"
    [ "$(jq -r .stopped <<< "$rec")" = true ] || why "zbig's record does not say stopped"
}
k_tui_quit() {
    tm has-session -t top 2>/dev/null || why "the TUI was no longer running" || return 1
    tm send-keys -t top q
    wait_until 5 '! tm has-session -t top' ||
        why "q did not quit the TUI"
}

# --------------------------------------------------------------- accounting
# The runs of namespace lim, each member's journal against `accounting --by
# user --json`: runs, CPU time, and OOM kills per user and in total.
k_accounting() {
    local t u js obj nums want have n cpu oom j total=0 bad=0
    for t in spin bystander zbig; do as alice lanco lim stop "$t" > /dev/null 2>&1; done
    for u in alice bob; do
        j=$STATE/ns/lim/user-$(uid_of $u)/accounting.jsonl
        wait_until 10 '[ "$(cat "$j" 2>/dev/null | wc -l)" -ge "${RUNS[$u]}" ]'
        echo "$u: ${RUNS[$u]} runs started; journal $j has $(wc -l < "$j" 2>/dev/null || echo 0) lines"
    done
    js=$(as alice lanco lim accounting --by user --json); echo "accounting --by user --json (exit $?):"; echo "$js" | head -c 3000; echo
    jq -e . <<< "$js" > /dev/null || why "accounting printed no JSON" || return 1
    for u in alice bob; do
        j=$STATE/ns/lim/user-$(uid_of $u)/accounting.jsonl
        n=$(wc -l < "$j"); total=$((total + n))
        [ "$n" = "${RUNS[$u]}" ] || { why "$u's journal has $n records for ${RUNS[$u]} runs"; bad=1; }
        cpu=$(jq -s 'map(.cpu_usec) | add // 0' "$j"); oom=$(jq -s 'map(select((.oom_kills // 0) > 0)) | length' "$j")
        echo "$u's records: $n runs, cpu_usec $cpu, OOM-killed runs $oom"
        obj=$(jq -c --arg name "$u" "$JQ_OBJ" <<< "$js")
        [ -n "$obj" ] || { why "no group for $u"; bad=1; continue; }
        nums=$(jq -r "$JQ_NUMS" <<< "$obj"); echo "$u's group: $obj"
        awk -v n="$n" '$1 ~ /(^|\.)runs$/ && $2 == n' <<< "$nums" | grep -q . || { why "$u: runs is not $n"; bad=1; }
        # CPU: in µs exactly, or in seconds (rounded to 0.01 s at worst).
        awk -v c="$cpu" '$1 ~ /cpu/ && ($2 == c || ($2 * 1e6 - c <= 5000 && c - $2 * 1e6 <= 5000))' <<< "$nums" | grep -q . ||
            { why "$u: no CPU figure equal to the records' $cpu µs"; bad=1; }
        if [ "$oom" -gt 0 ]; then
            awk -v o="$oom" '$1 ~ /oom/ && $2 == o' <<< "$nums" | grep -q . || { why "$u: OOM kills are not $oom"; bad=1; }
        fi
    done
    jq -r "$JQ_NUMS" <<< "$js" | awk -v n="$total" '$1 ~ /total/ && $1 ~ /runs/ && $2 == n' | grep -q . ||
        { why "no total of $total runs"; bad=1; }
    return $bad
}

# ------------------------------------------------------------------- run
echo "== kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
check "vm: pure cgroup2 with memory pids cpu io" k_kernel
check "dpkg -i $(basename "$DEB")" k_install || { echo "0 passed, 1 failed"; exit 1; }
check "users alice, bob (tenants), carol (others)" k_users

echo "== baseline"
check "lancod socket activation: root's init starts the helper" k_activation
check "namespace base: cgroup root:tenants 0750" k_init
check "alice: run, check, ls, stop" k_tour
check "bob (same group) checks alice's task" k_bob_checks
check "bob (same group) stops alice's task" k_bob_stops
check "bob's run of alice's task name is refused (exit 3)" k_bob_refused
check "carol (not a member) is refused (exit 4)" k_carol_refused

echo "== namespace ceilings (quota: --memory 128M --pids 32)"
check "root inits quota with ceilings on ns-quota/" k_quota_init
check "alice writing the ceilings gets EACCES, they stay" k_quota_eacces
check "alice's lanco limit is refused (exit 4)" k_quota_limit_refused
check "the 128M ceiling OOM-kills a task with --memory 512M" k_quota_binds
check "run warns about a task limit above the ceiling" k_quota_warns
check "the --pids 32 ceiling holds across three tasks of two members" k_quota_pids

echo "== task limits (lim)"
check "root inits lim" k_lim_init
check "every limit option is written to the task's cgroup" k_limit_files
check "past --memory 64M a task is OOM-killed as a whole" k_oom_kill
check "the OOM-killed run's record and status say so" k_oom_record
check "the other task of the namespace is untouched" k_oom_bystander
check "a fork bomb under --pids 64 never exceeds 64" k_bomb
check "stop ends the fork bomb, no survivors" k_bomb_stop
check "the fork bomb's record counts refused forks" k_bomb_record
check "a busy loop under --cpu 0.5 uses 45-55 % of one CPU" k_cpu_max
check "cpu-weight 100 and 300 on one CPU split about 1:3" k_cpu_weight

echo "== top"
check "zbig holds 32 MiB under --memory 64M" k_top_tasks
check "top -b --json shows limits and usage as the kernel does" k_top_json
check "top -b --json shows the namespace ceilings" k_top_ceilings
check "the TUI shows the tasks, sorts by memory, stops with K y" k_tui
check "q quits the TUI" k_tui_quit

echo "== accounting"
check "accounting --by user --json matches the records" k_accounting

tm kill-server > /dev/null 2>&1
t_end=$(cut -d' ' -f1 /proc/uptime)
echo "== scenario took $(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.0f", b - a }') s"
echo "$passed passed, $failed failed"
# Everything the checks ran, for the console log the host keeps on failure.
echo "LANCO-VM: steps log follows"
sed "s/^/| /" "$STEPS"
echo "LANCO-VM: steps log ends"
[ "$failed" = 0 ]
