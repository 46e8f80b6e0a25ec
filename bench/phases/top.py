"""`lanco top -b` of 1000 tasks (issue 12): the CPU one snapshot costs,
against `ls` of the same tasks, interleaved.

What a refresh of the full-screen view costs is the second of two samples
taken by one process: `top -b -d 0.01` samples twice (the second with the
PSS figures of the first still fresh, as every refresh after the first),
`top -b -d 0` once; the difference of their CPU times is one refresh.
CPU time is user + system as the kernel charged it to the command (wait4),
start-up included, so `ls`'s is the comparison."""

from lib.log import log
from lib.measure import cpu_timed, med
from lib.user import as_user, u_fill


def u_cpu_interleaved(env, argvs, n, warm=2):
    """[[CPU ms]] for each argv, run round-robin, after `warm` rounds."""
    res = [[] for _ in argvs]
    for k in range(n + warm):
        for i, a in enumerate(argvs):
            _, cpu = cpu_timed(a, env.user_env)
            if k >= warm:
                res[i].append(cpu)
    return res


def measure(env, plan, res):
    # Run alone (--only top), the 1000 tasks are this phase's to start.
    if env.running < 1000:
        log("filling to 1000 tasks for top")
        n = 1000 - env.running
        as_user(env, u_fill, "topfill", n, 4)
        env.running += n
    res.top_tasks = env.count_tasks()
    log("top -b with %d tasks" % res.top_tasks)
    one = env.lanco_argv("top", "-b", "-d", "0")
    two = env.lanco_argv("top", "-b", "-d", "0.01")
    res.top_one, res.top_two, res.top_ls = as_user(
        env, u_cpu_interleaved, [one, two, env.lanco_argv("ls")], max(10, plan.n // 5))
    # Per pair of runs: the second sample's cost.
    res.top_refresh = [b - a for a, b in zip(res.top_one, res.top_two)]


def report(R, plan, res):
    n = res.top_tasks
    R.row("`top -b -d 0` CPU, %d tasks (one sample, every PSS read)" % n, res.top_one,
          comp="`ls` CPU", comp_xs=res.top_ls,
          note="user + system time of the command, start-up included")
    R.row("`top` refresh CPU, %d tasks (second sample of `top -b -d 0.01`)" % n,
          res.top_refresh, comp="`ls` CPU", comp_xs=res.top_ls, target="≤ 50 ms",
          met=med(res.top_refresh) <= 50.0,
          note="CPU of `-d 0.01` minus `-d 0`, paired runs")
