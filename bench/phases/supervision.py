"""Supervision (issue 10): the task's monitor restarts its command itself.

- Crash to restarted exec, restart_delay 0: a task `--restart always
  --restart-delay 0 --restart-limit 1000/500ms` whose command is
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
- Monitor memory: a second crash loop, the same but for a 100 ms window in its
  restart limit (see LIMITS), its monitor's smaps_rollup read (as root)
  once MEM_AT[0] runs are in and again at MEM_AT[1]; each reading is the
  median of MEM_READ_S s of samples (see _footprint). Pages the monitor
  shares with the process it was forked from turn private as it first
  writes them, hence the warm-up; that process (the spawner) must live
  through both readings (else the pages it shared turn private without a
  write), and the report says when it did not. The latency loop's monitor
  is read the same way, for a note.
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
from statistics import median_low

from lib.env import PAYLOAD
from lib.log import log
from lib.measure import med, spawn, timed
from lib.procfs import smaps_rollup
from lib.user import as_user, u_one, u_quiet
from phases.spawner import SPACE, WARM

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                   "stamp.rs")
STAMP = "lanco-bench-stamp"
POLICY = ["--restart", "always", "--restart-delay", "0", "--restart-limit"]
# The crash loops, by task name: their restart limits. The monitor keeps the
# time of each restart within the limit's window (16 bytes each, up to
# COUNT). The latency loop's limit is issue 10's, a minute: its monitor
# grows by design as the loop goes on. The memory loop's window is 100 ms:
# at most ~150 restart times (a restart takes ~0.7 ms at the very least),
# reached within the warm-up, so what grows after it is what the monitor
# keeps per restart besides.
LATENCY, MEMORY = "crashloop", "crashloop-100ms"
LIMITS = {LATENCY: "1000/500ms", MEMORY: "1000/100ms"}
MEM_AT = (300, 1300)  # runs of a crash loop at which its monitor's memory is read
MEM_READ_S, MEM_PERIOD = 0.3, 0.002  # how long and how often each reading samples
# Read from smaps_rollup. "No growth" is judged on Anonymous: every anonymous
# page the monitor maps, shared or not, which is what a leak adds. The
# others move with sharing alone: Pss_File with the number of processes
# mapping libc and lanco-monitor, Pss_Anon and Private_Dirty with the
# spawner and standbys that still share pages the monitor was forked with
# (seen: Private_Dirty +4 KiB, Pss_Anon +3, Anonymous +0 between two
# readings; the same phase re-run read +0 on all).
MEM_FIELDS = ("Pss", "Pss_Anon", "Pss_File", "Private_Dirty", "Anonymous")
GROWTH = ("Anonymous",)
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
    log("crash loops: %d runs of `--restart always --restart-delay 0` tasks, and a shell loop"
        % MEM_AT[1])
    path = {k: os.path.join(env.home, "stamps-" + k) for k in ("sh1", LATENCY, "sh2", MEMORY)}
    runs = BASE_SKIP + BASE_RUNS + 1
    sh = as_user(env, u_shell_loop, stamp, path["sh1"], runs)
    loops = {LATENCY: _crash_loop(env, stamp, LATENCY, path[LATENCY])}
    sh += as_user(env, u_shell_loop, stamp, path["sh2"], runs)
    loops[MEMORY] = _crash_loop(env, stamp, MEMORY, path[MEMORY])
    res.sup.update(loops=loops, base=sh)


def _crash_loop(env, stamp, task, path):
    """Runs a crash loop to MEM_AT[1] runs, reading its monitor's memory at
    each of MEM_AT; its stamps' gaps over MEM_AT, memory readings, and
    counts of its runs."""
    as_user(env, u_one, env.run_argv(task, [stamp, path], POLICY + [LIMITS[task]]))
    monitor = _state(env, task).get("monitor_pid")
    mem = []
    for n in MEM_AT if monitor else ():
        runs = _wait_lines(path, n)
        m = _footprint(monitor)
        if runs < n or not m:
            break
        mem.append(dict(m, runs=runs, spawners=env.spawner_pids()))
    state = _state(env, task).get("supervised") or {}
    as_user(env, u_quiet, env.lanco_argv("stop", task))  # a loop that ended early is not running
    stamps = _stamps(path)
    return dict(mem=mem, runs=len(stamps), gaps=_gaps(stamps[MEM_AT[0] - 1:MEM_AT[1]]),
                restarts=state.get("restarts"), accounted=_accounted(env, task))


def _footprint(pid):
    """The monitor's MEM_FIELDS (KiB), each the median of MEM_READ_S s of
    readings; None once it is gone. A single reading can land in a passing
    state: while the child it clones for a run has not exec'd yet, the two
    share every anonymous page and the monitor's Private_Dirty drops to a
    few KiB (a fifth of the readings in a crash loop, here); a transient
    mapping adds a page or two now and then. The median is the monitor
    between those."""
    xs = []
    end = time.monotonic() + MEM_READ_S
    while time.monotonic() < end:
        m = smaps_rollup(pid)
        if not m:
            return None
        xs.append(m)
        time.sleep(MEM_PERIOD)
    return dict({k: median_low([x.get(k, 0) for x in xs]) for k in MEM_FIELDS}, samples=len(xs))


def u_shell_loop(env, stamp, path, runs):
    """The baseline: gaps of a shell loop of the payload, after BASE_SKIP runs."""
    pid = spawn(["/bin/sh", "-c", 'while :; do "$0" "$1"; done', stamp, path], env.user_env)
    try:
        _wait_lines(path, runs)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return _gaps(_stamps(path)[BASE_SKIP:runs])


def _state(env, task):
    """A crash loop's state file ({} when it is not running): it stays
    between runs, where `status` can also find the task not running yet."""
    try:
        with open(env.layout.state_file(env.ns, env.uid, task)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


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
        _report_latency(R, s)
        _report_memory(R, s)
    st = res.sup_start
    r = R.row("`start` of a definition (`--ready exec`), %d ms apart" % (SPACE * 1000), st["start"],
              comp="`run` of the same command", comp_xs=st["run"], target="≤ 1.2× `run`",
              note="a spawner was up before %d of %d starts and %d of %d runs" % (
                  st["warm"]["start"], len(st["start"]), st["warm"]["run"], len(st["run"])))
    r["met"] = r["median"] / r["comp_median"] <= 1.2


def _done(loop):
    return len(loop["mem"]) == len(MEM_AT)


def _report_latency(R, s):
    lp = s["loops"][LATENCY]
    note = "%d runs stamped, %d accounting lines (highest `restarts` %d), the state file said %s " \
        "restarts before the stop" % (lp["runs"], lp["accounted"][0], lp["accounted"][1],
                                      lp["restarts"])
    R.row("restart: crash to restarted exec, restart_delay 0, limit %s (runs %d–%d of a crash "
          "loop)" % ((LIMITS[LATENCY],) + MEM_AT), lp["gaps"],
          comp="shell loop of the same payload (fork+exec+exit+wait)", comp_xs=s["base"],
          target="≤ 3 ms", met=_done(lp) and med(lp["gaps"]) <= 3.0,
          note=note + ("" if _done(lp) else "; the loop stopped early"))
    R.notes.append("Crash loops: the payload (bench/tools/stamp.rs, linked %s) stamps "
                   "CLOCK_MONOTONIC first thing in `main` and just before it exits 1; a restart "
                   "is the gap from one run's exit stamp to the next run's start stamp. The "
                   "baseline is the same payload in `while :; do …; done` (sh), %d runs right "
                   "before and %d right after lanco's loop." % (s["linked"], BASE_RUNS, BASE_RUNS))


def _growth(loop):
    """How the monitor's memory changed between the two readings, in words;
    whether none of GROWTH grew."""
    a, b = loop["mem"]
    words = ", ".join("%s %d → %d KiB (%+d)" % (k, a[k], b[k], b[k] - a[k]) for k in MEM_FIELDS)
    words += "; read after %d and %d runs, each the median of %d and %d samples" % (
        a["runs"], b["runs"], a["samples"], b["samples"])
    if a["spawners"] != b["spawners"]:
        words += ("; the spawner changed in between (pids %s → %s): pages the monitor shared "
                  "with it may have turned private" % (a["spawners"], b["spawners"]))
    return words, all(b[k] <= a[k] for k in GROWTH)


def _report_memory(R, s):
    lp = s["loops"][MEMORY]
    figure = "monitor memory after %d runs of a crash loop vs after %d (limit %s)" % (
        MEM_AT[1], MEM_AT[0], LIMITS[MEMORY])
    if not _done(lp):
        R.row(figure, comp="the loop stopped after %d runs" % lp["runs"], target="no growth",
              met=False)
        return
    a, b = lp["mem"]
    note, flat = _growth(lp)
    R.row(figure + ": Anonymous", value=b["Anonymous"], unit="KiB",
          comp="same monitor after %d runs" % MEM_AT[0], comp_value=a["Anonymous"],
          target="no growth (Anonymous)", met=flat, note=note)
    lat = s["loops"][LATENCY]
    if _done(lat):
        R.notes.append("Monitor memory in the latency loop, whose limit (%s) keeps the time of "
                       "every restart within a minute (16 bytes each, up to COUNT, by design): "
                       "%s."
                       % (LIMITS[LATENCY], _growth(lat)[0]))
