"""Starting many tasks: one at a time, then four at a time while lancod's
memory is sampled; pueue add the same way, in the same run."""

import time

from lib.log import log
from lib.measure import MemorySampler, med, pct, throughput
from lib.procfs import smaps_rollup
from lib.user import as_user, u_fill

CONCURRENT = 400  # tasks started four at a time


def sequential(env, plan, res):
    """lanco, one at a time, up to 100 tasks running."""
    log("sequential run throughput")
    res.seq_n = 100 - plan.base
    res.seq_s, _ = as_user(env, u_fill, "seq", res.seq_n, 1)
    env.running += res.seq_n


def sequential_pueue(env, plan, res):
    res.pueue_seq = None
    if env.pueue:
        log("pueue add throughput")
        res.pueue_seq = as_user(env, u_pueue_throughput, res.seq_n, 1)
        env.pueue_next_id += res.seq_n
        time.sleep(2.0)  # let pueued start what it queued before lanco's next figure


def concurrent(env, plan, res):
    """lanco four at a time, sampling lancod's memory meanwhile; then pueue."""
    log("4-way concurrent run throughput (sampling lancod's memory)")
    with MemorySampler(env.lancod_proc.pid) as sampler:
        res.par_s, res.par_lat = as_user(env, u_fill, "par", CONCURRENT, 4)
    res.lancod_samples = sampler.samples
    env.running += CONCURRENT
    res.pueue_par = None
    if env.pueue:
        res.pueue_par = as_user(env, u_pueue_throughput, CONCURRENT, 4)
        env.pueue_next_id += CONCURRENT
    res.pueued_mem = smaps_rollup(env.pueued_proc.pid) if env.pueued_proc else None


def u_pueue_throughput(env, count, par):
    return throughput([env.pueue_argv("add", "--", "sleep", "1000") for _ in range(count)],
                      env.user_env, par)


def report_lancod(R, plan, res):
    rss = [s[0] / 1024 for s in res.lancod_samples]
    pueued = res.pueued_mem
    R.row("lancod Rss while serving 4-way runs (%d samples)" % len(rss), rss, unit="MiB",
          comp="pueued Rss" if pueued else None,
          comp_value=pueued["Rss"] / 1024 if pueued else None,
          target="≤ 8 MiB", met=max(rss) <= 8 if rss else None,
          note="max %.2f MiB; Pss median %.2f MiB"
          % (max(rss), med([s[1] / 1024 for s in res.lancod_samples])) if rss else "")


def report(R, plan, res):
    R.row("sequential `run` throughput", value=res.seq_n / res.seq_s, unit="tasks/s", n=res.seq_n,
          comp="pueue add" if res.pueue_seq else None,
          comp_value=(res.seq_n / res.pueue_seq[0]) if res.pueue_seq else None)
    R.row("4-way concurrent `run` throughput", value=CONCURRENT / res.par_s, unit="tasks/s",
          n=CONCURRENT, comp="pueue add" if res.pueue_par else None,
          comp_value=(CONCURRENT / res.pueue_par[0]) if res.pueue_par else None,
          note="per-run latency median %.2f ms, p95 %.2f ms"
          % (med(res.par_lat), pct(res.par_lat, 95)))
