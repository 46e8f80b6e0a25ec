"""`lanco run` warm and cold (issue 9), each interleaved with exec of
/bin/true, as the user:

- warm, spaced: runs SPACE s apart with the member's spawner alive (each
  task stopped, untimed, before the pause);
- warm, back to back: runs one after the other (stopped after the loop);
- cold, spaced: the user SIGKILLs its spawner before each run (waits until
  it is gone), then SPACE s later the run goes through lancod's admission;
- in the same cold loop, the two figures the cold target is made of: one
  migration of a process between two cgroups of the harness, SPACE s after
  the previous one (what admission's write to cgroup.procs waits for on a
  stock mount), and a cold run right after such a migration (the kernel's
  grace period then already under way or past: the admission path without
  that wait). Target: cold ≤ that + one migration + 1 ms.

Whether a spawner lived is read before and after every warm run (its pid
set must be the same, else the run was cold or the spawner changed); when
none is ever seen, the warm figures are the cold path and the report says so.
"""

import os
import signal
import time

from lib import cgroup
from lib.log import log
from lib.measure import med, spawn, timed
from lib.user import as_user

SPACE = 0.3  # seconds between spaced runs
WARM = 2  # iterations before those kept


def measure(env, plan, res):
    n_spaced = max(10, plan.n // 2)
    n_cold = max(8, plan.n // 4)
    log("run warm (%d spaced %g s, %d back to back) and cold (%d, spawner killed before each)"
        % (n_spaced, SPACE, plan.n, n_cold))
    res.spw = as_user(env, u_warm_cold, n_spaced, plan.n, n_cold)
    res.spw_mig50 = getattr(res, "mig", None)


def u_warm_cold(env, n_spaced, n_b2b, n_cold):
    out = {}
    out["spawner_at_start"] = env.spawner_pids()
    out["warm_spaced"] = _u_warm_spaced(env, n_spaced)
    out["warm_b2b"] = _u_warm_b2b(env, n_b2b)
    out["cold"] = _u_cold(env, n_cold)
    return out


def _u_stop(env, name):
    timed(env.lanco_argv("stop", name), env.user_env)


def _u_warm_spaced(env, n):
    r = dict(run=[], true=[], warm=0, seen=0)
    for i in range(n + WARM):
        name = "warm-%d" % i
        before = sorted(env.spawner_pids())
        time.sleep(SPACE)
        tt = timed(["/bin/true"], env.user_env)
        t = timed(env.run_argv(name), env.user_env)
        after = sorted(env.spawner_pids())
        _u_stop(env, name)
        if i >= WARM:
            r["run"].append(t)
            r["true"].append(tt)
            r["seen"] += bool(before)
            r["warm"] += bool(before) and before == after
    return r


def _u_warm_b2b(env, n):
    r = dict(run=[], true=[])
    names = []
    before = sorted(env.spawner_pids())
    try:
        for i in range(n + WARM):
            name = "b2b-%d" % i
            tt = timed(["/bin/true"], env.user_env)
            t = timed(env.run_argv(name), env.user_env)
            names.append(name)
            if i >= WARM:
                r["run"].append(t)
                r["true"].append(tt)
        after = sorted(env.spawner_pids())
    finally:
        for name in names:
            _u_stop(env, name)
    r["before"], r["after"] = before, after
    return r


class _Mover:
    """A /bin/sleep of the user's, moved between two cgroups of the harness's
    worker cgroup (the user's own: worker/cgroup.procs is chowned to it), as
    admission moves a monitor: one write to cgroup.procs."""

    def __init__(self, env):
        self.cgs = [os.path.join(env.worker_cg, "spw-mig-%s" % x) for x in "ab"]
        for d in self.cgs:
            os.mkdir(d)
        self.pid = spawn(["/bin/sleep", "1000"], env.user_env)
        self.k = 0

    def move(self):
        """ms of one move."""
        self.k += 1
        t0 = time.perf_counter_ns()
        cgroup.join(self.cgs[self.k % 2], self.pid)
        return (time.perf_counter_ns() - t0) / 1e6

    def close(self):
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        for d in self.cgs:
            try:
                os.rmdir(d)
            except OSError:
                pass


def _u_cold(env, n):
    r = dict(run=[], true=[], mig=[], primed=[], killed=0, restarted=0)
    mover = _Mover(env)
    try:
        for i in range(n + WARM):
            keep = i >= WARM
            # Cold, spaced: no spawner, and SPACE s since any migration.
            killed = env.kill_spawners()
            time.sleep(SPACE)
            m = mover.move()
            time.sleep(SPACE)
            tt = timed(["/bin/true"], env.user_env)
            name = "cold-%d" % i
            t = timed(env.run_argv(name), env.user_env)
            restarted = bool(env.spawner_pids())
            _u_stop(env, name)
            # Cold, right after a migration: the admission path without
            # the grace-period wait.
            env.kill_spawners()
            mover.move()
            name = "primed-%d" % i
            tp = timed(env.run_argv(name), env.user_env)
            _u_stop(env, name)
            if keep:
                r["run"].append(t)
                r["true"].append(tt)
                r["mig"].append(m)
                r["primed"].append(tp)
                r["killed"] += killed > 0
                r["restarted"] += restarted
    finally:
        mover.close()
    return r


def warm_path_seen(res):
    """Whether any warm run found a spawner alive."""
    w = res.spw["warm_spaced"]
    return w["seen"] > 0 or bool(res.spw["warm_b2b"]["before"])


NO_SPAWNER = "no spawner seen: the warm path is not in this build (every run went through lancod's admission)"


def report(R, plan, res):
    s = res.spw
    seen = warm_path_seen(res)
    ws, wb, c = s["warm_spaced"], s["warm_b2b"], s["cold"]
    for label, w in (("spaced %d ms apart" % (SPACE * 1000), ws), ("back to back", wb)):
        r = R.row("`run`, warm, %s (spawner up)" % label, w["run"], comp="exec /bin/true",
                  comp_xs=w["true"], target="≤ 2.5 ms; ≤ 3× /bin/true")
        r["ratio"] = r["median"] / r["comp_median"]
        r["met"] = seen and r["median"] <= 2.5 and r["ratio"] <= 3.0
        if not seen:
            r["note"] = NO_SPAWNER
        elif w is ws and ws["warm"] < len(ws["run"]):
            r["note"] = "%d of %d runs found the same spawner before and after" % (
                ws["warm"], len(ws["run"]))
        elif w is wb and wb["before"] != wb["after"]:
            r["note"] = "the spawner changed during the loop (pids %s → %s)" % (
                wb["before"], wb["after"])
    R.row("kernel: the user moves a process between cgroups, %d ms apart (in the cold loop)"
          % (SPACE * 1000), c["mig"])
    R.row("`run`, cold, right after a migration (admission without the grace-period wait)",
          c["primed"], comp="exec /bin/true", comp_xs=c["true"])
    a, m = med(c["primed"]), med(c["mig"])
    goal = a + m + 1.0
    note = ("target = %.2f (cold right after a migration) + %.2f (one migration, %d ms apart, "
            "same loop) + 1 ms" % (a, m, SPACE * 1000))
    if res.spw_mig50:
        note += "; with the 50 ms-spaced migration row instead: %.2f ms" % (
            a + med(res.spw_mig50) + 1.0)
    if seen:
        note += "; a spawner was killed before %d of %d runs, and one was alive after %d" % (
            c["killed"], len(c["run"]), c["restarted"])
    r = R.row("`run`, cold, spaced %d ms apart (spawner killed before each)" % (SPACE * 1000),
              c["run"], comp="exec /bin/true", comp_xs=c["true"],
              target="≤ admission + one migration + 1 ms (= %.2f ms)" % goal,
              met=med(c["run"]) <= goal, note=note)
    if not seen:
        R.notes.append("Warm `run`: %s. The warm rows are cold runs, the cold rows the same "
                       "path with the spawner kill a no-op." % NO_SPAWNER)
    else:
        R.notes.append("Warm `run`: a spawner was alive before %d of %d spaced runs (the same "
                       "one after, %d); back to back, spawner pids %s before and %s after the "
                       "loop." % (ws["seen"], len(ws["run"]), ws["warm"], wb["before"],
                                  wb["after"]))
