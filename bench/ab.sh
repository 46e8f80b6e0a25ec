#!/bin/bash
# Interleaved A/B of a warm `Namespace::run` (issue 9), the method behind
# the A/B figures in bench/NOTES.md: the library probe lanco-bench-lib and
# the monitor, built from OLD_REV and from the working tree, run in turns
# (old, new, old, ...) as an unprivileged member of one private
# installation, one namespace per side. A busy neighbour on a shared host
# then slows both sides alike, which separate runs minutes apart do not
# give. Prints each side's median, quartiles and floor (the probe starting
# /bin/sleep itself).
#
#   sudo bench/ab.sh OLD_REV [ROUNDS [RUNS [SPACING_MS]]]    (5, 40, 50)
#
# OLD_REV is built in a temporary git worktree, into target/ab-old (kept,
# so the next A/B builds incrementally). A revision before 151b75a has no
# .cargo/config.toml: its lanco and lanco-monitor come out dynamically
# linked, so such an A/B measures the static link too. Nothing is installed; the private
# lancod, its namespaces, cgroups and directories go at the end.
set -euo pipefail

usage="usage: sudo bench/ab.sh OLD_REV [ROUNDS [RUNS [SPACING_MS]]]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/ab.sh: run as root: it starts a private lancod" >&2; exit 2; }
old_rev=$1 rounds=${2:-5} runs=${3:-40} spacing=${4:-50}
repo=$(cd "$(dirname "$0")/.." && pwd)
git -C "$repo" rev-parse -q --verify "$old_rev^{commit}" >/dev/null ||
    { echo "bench/ab.sh: no such revision: $old_rev" >&2; exit 2; }

# The unprivileged member, as bench/run.sh makes it.
user=lancobench
getent group "$user" >/dev/null || groupadd --system "$user"
id -u "$user" >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin -g "$user" "$user"

cg2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' \
    /proc/self/mountinfo | head -n1)
[ -n "$cg2" ] || { echo "bench/ab.sh: no cgroup2 mount" >&2; exit 1; }
tmp=$(mktemp -d /tmp/lanco-ab.XXXXXX)
chmod 755 "$tmp"
cgroot=$cg2/lanco-ab-${tmp##*.}
lancod_pid=

cleanup() {
    set +e
    for ns in abold abnew; do
        LANCO_CONFIG=$tmp/new.toml "$tmp/new/lanco" "$ns" destroy --force >/dev/null 2>&1
    done
    [ -n "$lancod_pid" ] && kill "$lancod_pid" 2>/dev/null
    if [ -d "$cgroot" ]; then
        echo 1 >"$cgroot/cgroup.kill"
        sleep 0.5
        find "$cgroot" -depth -type d -exec rmdir {} + 2>/dev/null
    fi
    git -C "$repo" worktree remove --force "$tmp/src" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# The probe alone: built with the workspace, the library would get the
# CLI's features (bench/NOTES.md).
build() { # SRC TARGET_DIR OUT
    (cd "$1" && export CARGO_TARGET_DIR=$2 &&
        cargo build -q --release -p lanco-client --bin lanco-monitor --bin lanco &&
        cargo build -q --release -p lancod &&
        cargo build -q --release -p lanco-daemon-probe --bin lanco-bench-lib)
    mkdir -p "$3"
    cp "$2"/release/{lanco,lancod,lanco-monitor,lanco-bench-lib} "$3"/
}
git -C "$repo" worktree add -q --detach "$tmp/src" "$old_rev"
echo "building $old_rev and the working tree" >&2
build "$tmp/src" "$repo/target/ab-old" "$tmp/old"
build "$repo" "$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')" "$tmp/new"

for side in old new; do
    cat >"$tmp/$side.toml" <<EOF
socket = "$tmp/lancod.sock"
cgroup_root = "$cgroot"
state_dir = "$tmp/state"
log_dir = "$tmp/log"
idle_timeout = 0
monitor = "$tmp/$side/lanco-monitor"
EOF
done
LANCO_CONFIG=$tmp/new.toml setsid "$tmp/new/lancod" >"$tmp/lancod.log" 2>&1 &
lancod_pid=$!
for _ in $(seq 50); do [ -S "$tmp/lancod.sock" ] && break; sleep 0.1; done
for ns in abold abnew; do
    LANCO_CONFIG=$tmp/new.toml "$tmp/new/lanco" "$ns" init -u "$user" -g "$user" 2>/dev/null
done

as_user() { setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"; }
for r in $(seq "$rounds"); do
    for side in old new; do
        as_user env LANCO_CONFIG="$tmp/$side.toml" "$tmp/$side/lanco-bench-lib" \
            "ab$side" "$runs" "$spacing" "r$r" 3 >"$tmp/$side-$r.json"
    done
done
python3 - "$tmp" "$old_rev" <<'EOF'
import glob, json, statistics, sys
tmp, rev = sys.argv[1:]
for side, name in (("old", rev), ("new", "working tree")):
    run, floor = [], []
    for f in glob.glob(f"{tmp}/{side}-*.json"):
        d = json.load(open(f))
        run += d["run_ns"]
        floor += d["spawn_ns"]
    q = statistics.quantiles(run, n=4)
    print(f"{name}: Namespace::run median {statistics.median(run) / 1e6:.3f} ms "
          f"(p25 {q[0] / 1e6:.3f}, p75 {q[2] / 1e6:.3f}, n={len(run)}); "
          f"floor {statistics.median(floor) / 1e6:.3f} ms")
EOF
