"""run / check / stop of one task at a time, interleaved with exec of
/bin/true: once with the base tasks running (with the peers: `setsid -f`,
pueue add and kill) and once at scale (plan.scale tasks running)."""

import time

from lib.log import log
from lib.measure import med, timed
from lib.user import as_user

WARM = 3  # iterations before those kept


def at_base(env, plan, res):
    log("run/check/stop at %d tasks, %d iterations, with peers" % (plan.base, plan.n))
    res.s10 = _loop(env, plan.n, "s10", True)


def at_scale(env, plan, res):
    log("run/check/stop at %d tasks" % res.tasks_big)
    res.sbig = _loop(env, plan.n, "sbig", False)


def _loop(env, n, tag, with_peers):
    pueue_first = 0
    if with_peers and env.pueue:
        pueue_first = env.pueue_next_id
        env.pueue_next_id += n + WARM  # each iteration adds one pueue task
    return as_user(env, u_scale_loop, n, tag, with_peers, pueue_first)


def u_scale_loop(env, n, tag, with_peers, pueue_first_id):
    """n iterations of: run a new task, check it, stop it (the task count
    stays at its base + 1), interleaved with exec of /bin/true; then, with
    peers, n `setsid -f`, n pueue adds and n pueue kills, each in its own
    loop (both leave work running after they return)."""
    res = _u_lanco(env, n, tag)
    res["setsid"], res["pueue_add"], res["pueue_kill"] = [], [], []
    if with_peers:
        # Also its own loop: `setsid -f` returns before its child has exec'd.
        res["setsid"] = _u_kept(n, lambda: timed([env.setsid, "-f", "/bin/sleep", "1000"],
                                                 env.user_env))
    if with_peers and env.pueue:
        res["pueue_add"], res["pueue_kill"] = _u_pueue(env, n, pueue_first_id)
    return res


def _u_lanco(env, n, tag):
    res = {k: [] for k in ("run", "check", "stop", "true")}
    for i in range(n + WARM):
        name = "%s-%d" % (tag, i)
        t = {"true": timed(["/bin/true"], env.user_env),
             "run": timed(env.run_argv(name), env.user_env),
             "check": timed(env.lanco_argv("check", name), env.user_env),
             "stop": timed(env.lanco_argv("stop", name), env.user_env)}
        if i >= WARM:
            for k, v in t.items():
                res[k].append(v)
    return res


def _u_kept(n, once):
    xs = [once() for _ in range(n + WARM)]
    return xs[WARM:]


def _u_pueue(env, n, first_id):
    # Not interleaved with lanco's iterations: pueued starts each added
    # task in the background after `add` returns, which would land in
    # lanco's next measurement. Its own loop, after lanco's.
    add = _u_kept(n, lambda: timed(env.pueue_argv("add", "--", "sleep", "1000"), env.user_env))
    # pueued starts queued tasks on its own schedule (about a second
    # later); kill them once they run. `pueue kill` returns once the
    # daemon has accepted the request, not once the process is gone.
    time.sleep(2.0)
    kill = [timed(env.pueue_argv("kill", str(first_id + i)), env.user_env)
            for i in range(WARM, n + WARM)]
    return add, kill


def report_run(R, plan, res):
    s10 = res.s10
    r = R.row("`run` (helper up)", s10["run"], comp="exec /bin/true", comp_xs=s10["true"],
              target="≤ 3 ms; ≤ 4× /bin/true")
    r["ratio"] = r["median"] / r["comp_median"]
    r["met"] = r["median"] <= 3.0 and r["ratio"] <= 4.0
    R.row("`run` vs `setsid -f sleep` (floor)", s10["run"], comp="setsid -f", comp_xs=s10["setsid"])
    if s10["pueue_add"]:
        R.row("`run` vs `pueue add`", s10["run"], comp="pueue add", comp_xs=s10["pueue_add"])


def report_check_stop(R, plan, res):
    s10 = res.s10
    r = R.row("`check`", s10["check"], comp="exec /bin/true", comp_xs=s10["true"],
              target="≤ 1.3× /bin/true")
    r["met"] = r["median"] / r["comp_median"] <= 1.3
    R.row("`stop` (task exits on SIGTERM)", s10["stop"],
          comp="pueue kill" if s10["pueue_kill"] else None,
          comp_xs=s10["pueue_kill"] or None, target="≤ 5 ms", met=med(s10["stop"]) <= 5.0)


def report_ratios(R, plan, res):
    for k, label in (("run", "`run`"), ("check", "`check`"), ("stop", "`stop`")):
        r = R.row("%s with %d tasks vs with %d" % (label, res.tasks_big, plan.base), res.sbig[k],
                  comp="same, %d tasks" % plan.base, comp_xs=res.s10[k], target="ratio ≤ 1.2")
        r["met"] = r["median"] / r["comp_median"] <= 1.2
    R.row("control: exec /bin/true with %d tasks vs with %d" % (res.tasks_big, plan.base),
          res.sbig["true"], comp="same, %d tasks" % plan.base, comp_xs=res.s10["true"],
          note="how much the whole machine slowed down, lanco aside")
