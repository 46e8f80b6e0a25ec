#!/bin/bash
# lanco's benchmark suite: lanco against its peers in one run.
#
#   sudo bench/run.sh            # the full suite; writes docs/BENCHMARKS.md
#   sudo bench/run.sh --quick    # a short development run; writes nothing
#
# Run as root on a cgroup v2 host (the helper, the namespace and the private
# cgroups need it; every timed command runs as an unprivileged user). The
# script installs what it needs on a fresh Debian machine: python3, perl,
# systemd's socket activator (package systemd), procps, and pueue (with
# cargo; a first install takes a few minutes and is not part of the suite's
# own run time). Set LANCO_BENCH_BIN=DIR to benchmark prebuilt binaries
# instead of building with `cargo build --release`.
#
# Other options are passed to bench/bench.py (--iterations N, --scale N,
# --out FILE, --lib-probe PATH|none, --no-nspawn, --[no-]nspawn-build,
# --only MODULE[,MODULE…] to run one phase module while developing it); see
# `bench/bench.py --help`. bench.py builds tests/daemon's lanco-bench-lib
# itself (the library figure), and the systemd-run figure boots the rootfs of
# tests/nspawn/run.sh (building it with that script's --prepare in full runs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: run as root" >&2
    exit 2
fi

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
command -v perl >/dev/null || need_apt+=(perl)
command -v setsid >/dev/null || need_apt+=(util-linux)
command -v setpriv >/dev/null || need_apt+=(util-linux)
[ -x /bin/ps ] || need_apt+=(procps)
command -v systemd-socket-activate >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bench: installing ${need_apt[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

# pueue, the peer: from crates.io, pinned so figures stay comparable.
PUEUE_VERSION=${PUEUE_VERSION:-4.0.4}
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v pueue >/dev/null || ! command -v pueued >/dev/null; then
    if command -v cargo >/dev/null; then
        echo "bench: installing pueue $PUEUE_VERSION with cargo (a few minutes)" >&2
        cargo install --locked --version "$PUEUE_VERSION" pueue >&2 ||
            echo "bench: pueue could not be installed; its figures will be missing" >&2
    else
        echo "bench: no cargo, so no pueue; its figures will be missing" >&2
    fi
fi

if [ -n "${LANCO_BENCH_BIN:-}" ]; then
    bin=$LANCO_BENCH_BIN
else
    (cd "$repo" && cargo build --release --bins -q)
    bin=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
fi

# The unprivileged user every timed command runs as.
user=lancobench
getent group "$user" >/dev/null || groupadd --system "$user"
id -u "$user" >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin -g "$user" "$user"

out=()
quick=0
for a in "$@"; do [ "$a" = --quick ] && quick=1; done
[ $quick = 1 ] || out=(--out "$repo/docs/BENCHMARKS.md")

exec python3 "$here/bench.py" --bin "$bin" --user "$user" \
    --pueue "$(command -v pueue || echo none)" --pueued "$(command -v pueued || echo none)" \
    "${out[@]}" "$@"
