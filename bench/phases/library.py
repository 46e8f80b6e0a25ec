"""`Namespace::run` from a long-lived process (issue 9): tests/daemon's
lanco-bench-lib, which links lanco-client as a daemon does (no CLI), run
as the user: it starts tasks SPACING_MS apart, times each `run` call in
itself (no process start-up in the figure), stops them, prints JSON.

bench.py builds it alone (`cargo build --release -p lanco-daemon-probe
--bin lanco-bench-lib`: a workspace build would give lanco-client the
CLI's features too) before the installation is made; see build()."""

import json
import os
import shutil
import subprocess

from lib.log import log
from lib.measure import med
from lib.user import as_user

SPACING_MS = 100
WARM = 3
PACKAGE, BIN = "lanco-daemon-probe", "lanco-bench-lib"


def build(repo, bin_dir):
    """Builds the probe; returns (path, None) or (None, why not). The target
    directory: $CARGO_TARGET_DIR, else the one `--bin DIR` is the release
    directory of (LANCO_BENCH_BIN=<target>/release), else the workspace's."""
    cargo = shutil.which("cargo")
    if not cargo:
        return None, "no cargo to build %s" % BIN
    environ = dict(os.environ)
    if not environ.get("CARGO_TARGET_DIR"):
        parent = os.path.dirname(os.path.abspath(bin_dir))
        if os.path.basename(os.path.abspath(bin_dir)) == "release" and \
                os.path.exists(os.path.join(parent, "CACHEDIR.TAG")):
            environ["CARGO_TARGET_DIR"] = parent
    log("building %s (cargo build --release -p %s --bin %s)" % (BIN, PACKAGE, BIN))
    p = subprocess.run([cargo, "build", "--release", "-q", "-p", PACKAGE, "--bin", BIN,
                        "--message-format", "json"], cwd=repo, env=environ,
                       capture_output=True, text=True)
    if p.returncode != 0:
        return None, "`cargo build -p %s --bin %s` failed: %s" % (
            PACKAGE, BIN, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1])
    for line in p.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == BIN \
                and m.get("executable"):
            return m["executable"], None
    return None, "cargo built no %s executable" % BIN


def measure(env, plan, res):
    res.lib, res.lib_note = None, None
    if not env.lib_probe:
        res.lib_note = env.lib_probe_why
        return
    n = max(10, plan.n // 2)
    log("Namespace::run from a long-lived process: %d runs %d ms apart" % (n, SPACING_MS))
    res.lib = as_user(env, u_lib, n)


def u_lib(env, n):
    before = sorted(env.spawner_pids())
    p = subprocess.run([env.lib_probe, env.ns, str(n), str(SPACING_MS), "lib", str(WARM)],
                       env=env.user_env, capture_output=True, text=True, timeout=120)
    after = sorted(env.spawner_pids())
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (env.lib_probe, p.returncode, p.stderr.strip()))
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return dict(run=[x / 1e6 for x in out["run_ns"]], spawn=[x / 1e6 for x in out["spawn_ns"]],
                before=before, after=after)


def report(R, plan, res):
    from phases.spawner import NO_SPAWNER
    if not res.lib:
        R.row("`Namespace::run` from a long-lived process (library), warm",
              comp="cannot run here (see notes)", target="≤ 1 ms", met=False)
        R.notes.append("`Namespace::run` (library): no figure: %s." % res.lib_note)
        return
    lib = res.lib
    seen = bool(lib["before"])
    note = ""
    if not seen:
        note = NO_SPAWNER
    elif lib["before"] != lib["after"]:
        note = "the spawner changed during the loop (pids %s → %s)" % (lib["before"],
                                                                       lib["after"])
    ws = res.spw["warm_spaced"]["run"] if getattr(res, "spw", None) else None
    R.row("`Namespace::run` from a long-lived process (library), warm, %d ms apart" % SPACING_MS,
          lib["run"], comp="`lanco run`, warm, spaced" if ws else None, comp_xs=ws,
          target="≤ 1 ms", met=seen and med(lib["run"]) <= 1.0, note=note)
    # The floor: the same process starting the same command itself, up to
    # its exec (what `run` waits for too), interleaved with the runs.
    R.row("`Namespace::run` (library) vs the floor: the same process spawning /bin/sleep "
          "itself (std `Command::spawn`, returns after the exec), interleaved",
          lib["run"], comp="`Command::spawn` /bin/sleep", comp_xs=lib["spawn"])
