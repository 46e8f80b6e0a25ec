"""`lanco ls` of 1000 tasks against `ps -e`, interleaved."""

from lib import cgroup
from lib.log import log
from lib.measure import med
from lib.user import as_user, u_interleaved


def measure(env, plan, res):
    log("ls with %d tasks" % env.count_tasks())
    res.ls_xs, res.ps_xs = as_user(env, u_interleaved,
                                   [env.lanco_argv("ls"), ["/bin/ps", "-e", "-o", "pid,args"]],
                                   max(10, plan.n // 5))
    # Payload processes: the monitors cgroup (monitors, and the spawner of
    # issue 9) left out.
    res.ls_procs = len(cgroup.procs_recursive(env.ns_cgroup())) - len(env.monitors_cgroup_pids())
    res.tasks_at_ls = env.count_tasks()


def report(R, plan, res):
    R.row("`ls`, %d tasks × 2 processes (%d payload processes)" % (res.tasks_at_ls, res.ls_procs),
          res.ls_xs, comp="ps -e -o pid,args", comp_xs=res.ps_xs, target="≤ 50 ms",
          met=med(res.ls_xs) <= 50.0)
