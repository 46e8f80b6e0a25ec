#!/usr/bin/env python3
"""lanco benchmark suite: lanco against its peers, in one run.

Run it through bench/run.sh (as root): that script installs what this needs
(python3, pueue, systemd's socket activator), builds lanco and calls this.

Every figure is timed by this harness the same way: the wall time from
posix_spawn(2) of the command to waitpid(2) of it, measured in a child of
this script that dropped to an unprivileged user, with stdout on /dev/null.
Baselines (exec of /bin/true, setsid -f, pueue) are measured by the same
code in the same run, interleaved with lanco's iterations where it makes
sense, so a noisy neighbour hits both alike. Figures are medians and p95s.

Nothing here asserts: a benchmark prints figures (shared/TESTING.md).

Where things are:
  lib/env.py      the run's environment (installation, user, binaries,
                  config, daemons): set up, passed to every phase, torn down
  lib/layout.py   lanco's paths (mirrors lanco-proto/src/layout.rs)
  lib/user.py     running as the unprivileged user
  lib/measure.py  timing, throughput, statistics, memory sampling
  lib/report.py   the rows and the markdown of docs/BENCHMARKS.md
  phases/*.py     the phases and the rows each one's figures make
  this file       the plan, the phases in order, the rows in order
"""

import argparse
import os
import shutil
import types

from lib import env as environment
from lib.cgroup import cgroup2_mount_info, favordynmods, write
from lib.log import elapsed, log
from lib.procfs import loadavg, machine, sysctl
from lib.report import Report, render
from phases import (accounting, activation, base, deps, fill, forkbomb, library, ls, memory,
                    migration, scale, spawner, supervision, systemd_run, throughput, top)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Plan:
    """How much to measure."""

    def __init__(self, iterations, scale, quick=False):
        self.n = iterations  # iterations of each latency loop, after warm-up
        self.scale = scale  # tasks running for the scaling figures
        self.base = 10  # tasks running in the background: the "10" of the scaling figures
        self.pace = 0.2  # the paced fork bomb: each process forks every PACE s
        self.chain = 100 if quick else 1000  # tasks of the dependency chain (issue 11)
        self.fan = 50 if quick else 500  # tasks needing one hub (issue 11)


# In order: each phase starts from the tasks the ones before left running.
PHASES = [
    base.start,  # plan.base tasks; lib/layout.py checked against lanco
    systemd_run.measure,
    migration.measure,
    scale.at_base,  # run/check/stop with the peers
    activation.measure,  # kills the spawner before each run and after
    spawner.measure,  # run warm (spaced, back to back) and cold (issue 9)
    library.measure,  # Namespace::run from a long-lived process
    supervision.crash_loop,  # restart latency and monitor memory over 1300 runs (issue 10)
    supervision.start_vs_run,  # `start` of a definition vs `run`
    deps.measure,  # a chain and a fan-in of `needs` (issue 11); leaves nothing running
    systemd_run.in_container,  # boots tests/nspawn's rootfs, powers it off
    forkbomb.paced,
    forkbomb.paced_floor,
    forkbomb.saturating,
    throughput.sequential,  # up to 100 tasks
    memory.monitors_at_100,
    throughput.sequential_pueue,
    throughput.concurrent,  # up to 500 tasks, lancod's memory sampled
    fill.to_1000,
    ls.measure,
    accounting.measure,  # a 1,000,000-line journal in place of the user's, then put back
    top.measure,  # top -b of the same 1000 tasks (issue 12)
    fill.to_scale,
    memory.monitors_at_scale,
    scale.at_scale,
    memory.lancod_at_end,
]

# The table's rows, in order.
REPORT = [
    scale.report_run,
    spawner.report,
    library.report,
    systemd_run.report,
    migration.report,
    activation.report,
    scale.report_check_stop,
    supervision.report,
    deps.report,
    forkbomb.report,
    ls.report,
    accounting.report,
    top.report,
    memory.report_at_100,
    memory.report_at_scale,
    throughput.report_lancod,
    memory.report_lancod_end,
    scale.report_ratios,
    throughput.report,
    fill.report,
    forkbomb.report_sizes,
]


def main():
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (bench/run.sh)")
    plan = Plan(args.iterations, args.scale, args.quick)
    phases, reports = PHASES, REPORT
    if args.only:
        phases, reports = only(args.only)
    R = Report(machine())
    mnt, mnt_opts, super_opts = cgroup2_mount_info()
    R.machine["cgroup2"] = dict(mount=mnt, mount_opts=mnt_opts, super_opts=super_opts,
                                favordynmods=favordynmods(mnt_opts, super_opts))
    log("cgroup2 mount %s (%s; %s): favordynmods %s" % (
        mnt, mnt_opts, super_opts, "ON: NOT the stock mount" if R.machine["cgroup2"][
            "favordynmods"] else "off (stock)"))
    # Monitors no longer hold inotify instances (they poll cgroup.events), so
    # fs.inotify.max_user_instances (128 by default) is left as it is: the
    # 5000-task figures also show one user running far more than 128 tasks.
    R.notes.append("fs.inotify.max_user_instances: %s (left as it is)."
                   % sysctl("fs.inotify.max_user_instances"))
    env = environment.Env()
    env.no_nspawn, env.nspawn_build = args.no_nspawn, args.nspawn_build
    if args.lib_probe == "none":
        env.lib_probe_why = "--lib-probe none"
    elif args.only and "library" not in args.only.split(","):
        env.lib_probe_why = "--only"  # no phase of this run uses it: not built
    elif args.lib_probe:
        args.lib_probe_path = args.lib_probe
    else:
        args.lib_probe_path, env.lib_probe_why = library.build(REPO, args.bin)
    res = types.SimpleNamespace()
    try:
        environment.setup(env, args)
        log("installation in %s, cgroup root %s" % (env.dir, env.cg_root))
        for phase in phases:
            phase(env, plan, res)
        for report in reports:
            report(R, plan, res)
    finally:
        environment.cleanup(env)
        if env.dir:
            shutil.rmtree(env.dir, ignore_errors=True)
    R.notes += env.notes
    R.machine["loadavg_end"] = loadavg()
    R.elapsed = elapsed()
    md = render(R, args.user, plan.n)
    if args.out:
        write(args.out, md)
        log("wrote %s" % args.out)
    print(md)


def only(names):
    """The phases and report functions of the modules named (`--only`), after
    base.start (the background tasks every phase assumes). For developing a
    phase: a module whose figures need another module's results (spawner's
    migration row, memory's tasks from throughput) gets only what it has."""
    mods = set(names.split(","))
    known = {f.__module__.split(".")[-1] for f in PHASES + REPORT}
    if mods - known:
        raise SystemExit("--only: no phase module %s (there are: %s)"
                         % (", ".join(sorted(mods - known)), ", ".join(sorted(known))))
    pick = [f for f in PHASES if f.__module__.split(".")[-1] in mods]
    return ([base.start] + [f for f in pick if f is not base.start],
            [f for f in REPORT if f.__module__.split(".")[-1] in mods])


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="directory with lanco, lancod, lanco-monitor")
    ap.add_argument("--user", default="lancobench")
    ap.add_argument("--pueue", default=shutil.which("pueue") or os.path.expanduser("~/.cargo/bin/pueue"))
    ap.add_argument("--pueued", default=shutil.which("pueued") or os.path.expanduser("~/.cargo/bin/pueued"))
    ap.add_argument("--scale", type=int, default=5000, help="tasks running for the scaling figure")
    ap.add_argument("--iterations", type=int, default=100, help="iterations of the latency loops")
    ap.add_argument("--out", default=None, help="markdown report to write")
    ap.add_argument("--quick", action="store_true", help="few iterations, small scale (development)")
    ap.add_argument("--only", metavar="MODULE[,MODULE…]", default=None,
                    help="run only the phases of these modules of bench/phases (after base.start) "
                    "and print their rows; writes no report (development)")
    ap.add_argument("--lib-probe", default=None,
                    help="a built lanco-bench-lib to use (default: build it with cargo; "
                    "`none`: no library figure)")
    ap.add_argument("--no-nspawn", action="store_true",
                    help="no systemd-run figure from a booted container")
    ap.add_argument("--nspawn-build", action=argparse.BooleanOptionalAction, default=None,
                    help="let tests/nspawn/run.sh --prepare install systemd-nspawn and build its "
                    "rootfs if missing (default: yes, except with --quick)")
    args = ap.parse_args()
    if args.quick:
        args.iterations, args.scale = 15, 300
    if args.nspawn_build is None:
        args.nspawn_build = not args.quick
    if args.only:
        args.out = None  # a partial table is no docs/BENCHMARKS.md
    args.lib_probe_path = None
    return args


if __name__ == "__main__":
    main()
