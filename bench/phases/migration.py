"""The kernel's part of admission: root moving one process into another
cgroup (one write to cgroup.procs), spaced like separate `lanco run`s.
Slow (a synchronize_rcu each) unless the cgroup2 mount favours dynamic
modifications; see bench/NOTES.md."""

import os
import subprocess
import time

from lib import cgroup
from lib.measure import med

MOVES = 20


def measure(env, plan, res):
    a = os.path.join(env.aux_cg, "mig-a")
    b = os.path.join(env.aux_cg, "mig-b")
    for d in (a, b):
        os.mkdir(d)
    p = subprocess.Popen(["/bin/sleep", "1000"])
    xs = []
    try:
        for i in range(MOVES):
            time.sleep(0.05)
            t0 = time.perf_counter_ns()
            cgroup.join(a if i % 2 == 0 else b, p.pid)
            xs.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        p.kill()
        p.wait()
    res.mig = xs
    res.mount_opts = env.mount_opts


def report(R, plan, res):
    R.row("kernel: root moves a process between cgroups (admission floor)", res.mig,
          note="mount options: %s" % res.mount_opts)
    if med(res.mig) < 2.0:
        R.notes.append("Moving a process between cgroups took %.2f ms here: this host migrates "
                       "fast (`favordynmods`, or the kernel's per-threadgroup rwsem once it was "
                       "enabled since boot). On a stock cgroup2 mount each migration waits for an "
                       "RCU grace period, ~10–25 ms, and a cold `run` (no spawner) pays it once in "
                       "lancod's admission (bench/NOTES.md, item 1)." % med(res.mig))
    else:
        R.notes.append("Moving a process between cgroups took %.2f ms here (an RCU grace period "
                       "per migration, stock cgroup2 mount); a cold `run` (no spawner) pays it once "
                       "in lancod's admission, started early by the client (docs/DESIGN.md, "
                       "\"The start path\"); a warm one not at all. `favordynmods` on the cgroup2 mount brings it to ~0.3 ms "
                       "(bench/NOTES.md, item 1)." % med(res.mig))
