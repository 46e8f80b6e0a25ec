"""Memory of the monitors (per task) and of lancod, read from smaps_rollup
as root."""

from lib import cgroup
from lib.measure import pct
from lib.procfs import smaps_of, smaps_rollup


def monitors_at_100(env, plan, res):
    """Every monitor's and every payload process's memory with 100 tasks
    (the spawner of issue 9 is no task's monitor: on a row of its own)."""
    res.mon = smaps_of(env.monitor_pids())
    res.spawner_mem = smaps_of(env.spawner_pids())
    res.payload_pss = [m["Pss"] for cg in env.task_cgroups().values()
                       for m in smaps_of(cgroup.procs(cg))]
    res.tasks_at_mem = env.count_tasks()


def monitors_at_scale(env, plan, res):
    res.mon_big = smaps_of(env.monitor_pids())


def lancod_at_end(env, plan, res):
    res.lancod_end = smaps_rollup(env.lancod_proc.pid)
    # every task left running, plus the run/check/stop loops' tasks (with
    # issue 9's spawner most of these runs never reach lancod)
    res.admissions = env.running + 2 * plan.n


def report_at_100(R, plan, res):
    n, mon = res.tasks_at_mem, res.mon
    pss = [m["Pss"] for m in mon]
    R.row("monitor Pss, %d tasks (per monitor)" % n, pss, unit="KiB", comp="payload process Pss",
          comp_xs=res.payload_pss, target="≤ 256 KiB", met=pct(pss, 95) <= 256)
    R.row("monitor Rss, %d tasks (per monitor)" % n, [m["Rss"] for m in mon], unit="KiB")
    R.row("monitor Private_Dirty, %d tasks (per monitor)" % n,
          [m["Private_Dirty"] for m in mon], unit="KiB")
    sp = getattr(res, "spawner_mem", None)
    if sp:
        R.row("spawner Pss, %d tasks (issue 9; Rss %d KiB)" % (n, sp[0]["Rss"]),
              [m["Pss"] for m in sp], unit="KiB")


def report_at_scale(R, plan, res):
    if res.mon_big:
        pss = [m["Pss"] for m in res.mon_big]
        R.row("monitor Pss, %d tasks (per monitor)" % res.tasks_big, pss, unit="KiB",
              target="≤ 256 KiB", met=pct(pss, 95) <= 256)


def report_lancod_end(R, plan, res):
    if res.lancod_end:
        rss = res.lancod_end["Rss"] / 1024
        R.row("lancod Rss after %d runs" % res.admissions, value=rss, unit="MiB",
              target="≤ 8 MiB", met=rss <= 8)
