"""Filling the namespace: to 1000 tasks for `ls`, then to plan.scale for
the scaling figures (timed: a throughput figure of its own)."""

from lib.log import log
from lib.procfs import sysctl
from lib.user import as_user, u_fill


def to_1000(env, plan, res):
    log("filling to 1000 tasks")
    n = 1000 - env.running
    as_user(env, u_fill, "fill", n, 4)
    env.running += n


def to_scale(env, plan, res):
    log("filling to %d tasks" % plan.scale)
    res.more = max(0, plan.scale - env.running)
    res.fill_s, _ = as_user(env, u_fill, "big", res.more, 4)
    env.running += res.more
    res.running_after_fill = env.running
    res.tasks_big = env.count_tasks()


def report(R, plan, res):
    if res.more:
        R.row("4-way concurrent `run` throughput, %d→%d tasks"
              % (res.running_after_fill - res.more, res.running_after_fill),
              value=res.more / res.fill_s, unit="tasks/s", n=res.more)
    R.extra.append("Tasks running during the scaling figure: %d (target %d), %d lanco-monitor "
                   "processes; pid_max %s." % (res.tasks_big, plan.scale, len(res.mon_big),
                                               sysctl("kernel.pid_max")))
