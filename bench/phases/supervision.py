"""Supervision (issue 10): the task's monitor restarts its command itself.

- Crash to restarted exec, restart_delay 0: a task `--restart always
  --restart-delay 0 --restart-limit 100000/1m` whose command is
  bench/tools/stamp.rs, built here with rustc (static where glibc's static
  libraries are installed). Each run appends `START END` to a file: START is
  CLOCK_MONOTONIC read first thing in its `main`, END the same just before
  it writes the line and exits 1. The figure is the gap from one run's END
  to the next run's START, i.e. exit, the monitor seeing the end, its
  records, its clone3 into the task cgroup, exec and the payload's start-up,
  over runs MEM_AT[0]…MEM_AT[1] (after warm-up). The baseline is the floor of
  starting a command again: `sh -c 'while :; do STAMP FILE; done'` (fork,
  exec, exit, wait), the same payload, file, clock and user, half of it
  right before lanco's loop and half right after.
- The same task's monitor: smaps_rollup (as root) once MEM_AT[0] runs are
  in and again at MEM_AT[1]. Pages it shares with the process it was forked
  from turn private as it first writes them, hence the warm-up; the spawner
  it was forked from must live through both readings (else the pages it
  shared turn private without a write), and the report says when it did not.
- `start` of a definition (`--ready exec`, and the caller's cwd and
  environment, so it runs what `run` runs) against `run` of the same command
  with the same option, interleaved, each SPACE s after the previous command
  like the suite's other warm loops (phases/spawner.py), each task stopped
  untimed after its start.
"""

import json
import os
import shutil
import signal
import subprocess
import time

from lib.env import PAYLOAD
from lib.log import log
from lib.measure import med, spawn, timed
from lib.procfs import smaps_rollup
from lib.user import as_user, u_quiet
from phases.base import u_status_json
from phases.spawner import SPACE, WARM

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                   "stamp.rs")
STAMP = "lanco-bench-stamp"
LOOP = "crashloop"
POLICY = ["--restart", "always", "--restart-delay", "0", "--restart-limit", "100000/1m"]
MEM_AT = (300, 1300)  # runs of the crash loop at which its monitor's memory is read
BASE_RUNS = 500  # gaps kept in each half of the shell loop's baseline
BASE_SKIP = 10  # its first runs, not kept
STALL = 10.0  # s without a new run: the loop is over
RUN_TASK, DEF_TASK = "sup-run", "sup-def"
READY = ["--ready", "exec"]


def build_stamp(env):
    """Builds the payload into the installation's bin; (path, how it is
    linked) or (None, why not)."""
    rustc = shutil.which("rustc")
    if not rustc:
        return None, "no rustc to build bench/tools/stamp.rs"
    out = os.path.join(env.dir, "bin", STAMP)
    argv = [rustc, "--edition", "2021", "-O", "-C", "panic=abort", "-C", "strip=symbols",
            "-o", out, SRC]
    for extra, how in ((["-C", "target-feature=+crt-static"], "static"), ([], "dynamic")):
        p = subprocess.run(argv + extra, capture_output=True, text=True)
        if p.returncode == 0:
            return out, how
    return None, "rustc %s failed: %s" % (SRC, (p.stderr.strip().splitlines() or ["?"])[-1])


def crash_loop(env, plan, res):
    stamp, how = build_stamp(env)
    res.sup = dict(why=None if stamp else how, linked=how)
    if not stamp:
        return
    log("crash loop: %d runs of a `--restart always --restart-delay 0` task, against a shell loop"
        % MEM_AT[1])
    files = [os.path.join(env.home, "stamps-%s" % k) for k in ("sh-before", "lanco", "sh-after")]
    sh = as_user(env, u_shell_loop, stamp, files[0], BASE_SKIP + BASE_RUNS + 1)
    monitor = as_user(env, u_start_loop, stamp, files[1])
    mem = []
    for n in MEM_AT:
        runs = _wait_lines(files[1], n)
        m = smaps_rollup(monitor)
        if runs < n or not m:
            break
        mem.append(dict(runs=runs, smaps=m, spawners=env.spawner_pids()))
    res.sup["status"] = as_user(env, u_stop_loop)
    sh += as_user(env, u_shell_loop, stamp, files[2], BASE_SKIP + BASE_RUNS + 1)
    stamps = _stamps(files[1])
    res.sup.update(mem=mem, runs=len(stamps), base=sh,
                   gaps=_gaps(stamps[MEM_AT[0] - 1:MEM_AT[1]]),
                   accounted=_accounted(env, LOOP))


def u_shell_loop(env, stamp, path, runs):
    """The baseline: gaps of a shell loop of the payload, after BASE_SKIP runs."""
    pid = spawn(["/bin/sh", "-c", 'while :; do "$0" "$1"; done', stamp, path], env.user_env)
    try:
        _wait_lines(path, runs)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return _gaps(_stamps(path)[BASE_SKIP:runs])


def u_start_loop(env, stamp, path):
    """Starts the crash loop; its monitor's pid."""
    timed(env.run_argv(LOOP, [stamp, path], POLICY), env.user_env)
    return u_status_json(env, LOOP)["info"]["monitor_pid"]


def u_stop_loop(env):
    """The loop's `info.supervised` as `status --json` shows it, then stops it."""
    sup = (u_status_json(env, LOOP).get("info") or {}).get("supervised")
    u_quiet(env, env.lanco_argv("stop", LOOP))  # a loop that ended early is not running
    return sup


def _lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_lines(path, n):
    """Waits until the file has n lines, or none came for STALL s; its lines."""
    last, since = -1, time.monotonic()
    while True:
        k = _lines(path)
        if k >= n:
            return k
        if k != last:
            last, since = k, time.monotonic()
        elif time.monotonic() - since > STALL:
            return k
        time.sleep(0.01)


def _stamps(path):
    """[(START, END)] in ns, one per run, in order."""
    with open(path) as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.endswith("\n")]


def _gaps(stamps):
    """ms from each run's END to the next run's START."""
    return [(b[0] - a[1]) / 1e6 for a, b in zip(stamps, stamps[1:])]


def _accounted(env, task):
    """(lines in the accounting journal for the task, the highest `restarts`)."""
    n, restarts = 0, 0
    with open(env.layout.accounting_file(env.ns, env.uid)) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("task") == task:
                n += 1
                restarts = max(restarts, rec.get("restarts", 0))
    return n, restarts


def start_vs_run(env, plan, res):
    log("`start` of a definition vs `run`: %d each, %g s apart" % (plan.n, SPACE))
    res.sup_start = as_user(env, u_start_vs_run, plan.n)


def u_start_vs_run(env, n):
    defenv = [a for k, v in sorted(env.user_env.items()) for a in ("--env", "%s=%s" % (k, v))]
    _u_lanco(env, "define", *READY, "--cwd", env.home, *defenv, DEF_TASK, *PAYLOAD)
    cmds = dict(run=(RUN_TASK, env.run_argv(RUN_TASK, options=READY)),
                start=(DEF_TASK, env.lanco_argv("start", DEF_TASK)))
    out = {k: [] for k in cmds}
    warm = {k: 0 for k in cmds}  # kept iterations with a spawner up before the command
    try:
        for i in range(n + WARM):
            for k in (("run", "start") if i % 2 == 0 else ("start", "run")):
                task, argv = cmds[k]
                time.sleep(SPACE)
                up = bool(env.spawner_pids())
                t = timed(argv, env.user_env, quiet=True)
                timed(env.lanco_argv("stop", task), env.user_env)
                if i >= WARM:
                    out[k].append(t)
                    warm[k] += up
    finally:
        _u_lanco(env, "undefine", "--stop", DEF_TASK)
    out["warm"] = warm
    return out


def _u_lanco(env, *args):
    subprocess.run(env.lanco_argv(*args), env=env.user_env, check=True, capture_output=True)


def report(R, plan, res):
    s = res.sup
    if s["why"]:
        for figure in ("restart: crash to restarted exec", "monitor memory over 1000 restarts"):
            R.row(figure, comp="cannot run here (see notes)", met=False)
        R.notes.append("Supervision rows: no crash loop: %s." % s["why"])
    else:
        _report_loop(R, s)
    st = res.sup_start
    r = R.row("`start` of a definition (`--ready exec`), %d ms apart" % (SPACE * 1000), st["start"],
              comp="`run` of the same command", comp_xs=st["run"], target="≤ 1.2× `run`",
              note="a spawner was up before %d of %d starts and %d of %d runs" % (
                  st["warm"]["start"], len(st["start"]), st["warm"]["run"], len(st["run"])))
    r["met"] = r["median"] / r["comp_median"] <= 1.2


def _report_loop(R, s):
    done = len(s["mem"]) == len(MEM_AT)
    st = s["status"] or {}
    counts = ("%d runs in the stamps, %d accounting lines (highest `restarts` %d), `status "
              "--json` said %s restarts before the stop" % (
                  s["runs"], s["accounted"][0], s["accounted"][1], st.get("restarts", "no")))
    R.row("restart: crash to restarted exec, restart_delay 0 (runs %d–%d of a crash loop)"
          % MEM_AT, s["gaps"], comp="shell loop of the same payload (fork+exec+exit+wait)",
          comp_xs=s["base"], target="≤ 3 ms", met=done and med(s["gaps"]) <= 3.0,
          note=counts + ("" if done else "; the loop stopped early"))
    if not done:
        R.row("monitor memory after %d runs of a crash loop vs after %d" % MEM_AT[::-1],
              comp="the loop stopped after %d runs" % s["runs"], target="no growth", met=False)
        return
    (a, b) = (m["smaps"] for m in s["mem"])
    grew = {k: b[k] - a[k] for k in ("Pss", "Private_Dirty")}
    note = "Pss %d → %d KiB (%+d), Private_Dirty %d → %d KiB (%+d); read after %d and %d runs" % (
        a["Pss"], b["Pss"], grew["Pss"], a["Private_Dirty"], b["Private_Dirty"],
        grew["Private_Dirty"], s["mem"][0]["runs"], s["mem"][1]["runs"])
    if s["mem"][0]["spawners"] != s["mem"][1]["spawners"]:
        note += ("; the spawner changed in between (pids %s → %s): pages the monitor shared "
                 "with it may have turned private" % (s["mem"][0]["spawners"],
                                                      s["mem"][1]["spawners"]))
    R.row("monitor Private_Dirty after %d runs of a crash loop vs after %d" % MEM_AT[::-1],
          value=b["Private_Dirty"], unit="KiB", comp="same monitor after %d runs" % MEM_AT[0],
          comp_value=a["Private_Dirty"], target="no growth (Pss and Private_Dirty)",
          met=all(d <= 0 for d in grew.values()), note=note)
    R.notes.append("Crash loop: the payload (bench/tools/stamp.rs, linked %s) stamps "
                   "CLOCK_MONOTONIC first thing in `main` and just before it exits; a restart is "
                   "the gap from one run's exit stamp to the next run's start stamp. The baseline "
                   "is the same payload in `while :; do …; done` (sh), %d runs right before and %d "
                   "right after lanco's loop." % (s["linked"], BASE_RUNS, BASE_RUNS))
