"""`lanco NS accounting` over a 1,000,000-line journal (issue 12: under 1 s),
against reading the same file with `wc -l` (the floor: the bytes alone) and
summing its cpu_usec with `python3 -c` and the json module (what a script
would do).

The journal is generated as the bench user's own, in place of the user's
journal for the phase (the user's lines are set aside and put back): lines
like a monitor writes, over 500 task names and a year of ends. Each command
reads it from the page cache (one untimed read first). Besides the wall
time, the CPU time (user + sys) of each command is kept: on a
host shared with other work the wall time says more about the neighbours."""

import os
import random
import time

from lib.log import log
from lib.measure import med, spawn
from lib.user import as_user

LINES = 1_000_000
ROUNDS = 5  # lanco and wc -l, interleaved
PY_ROUNDS = 2  # python3 takes seconds

SUM_CPU = ("import json,sys\n"
           "print(sum(json.loads(l)['cpu_usec'] for l in open(sys.argv[1], 'rb')))\n")


def measure(env, plan, res):
    log("accounting over a %d-line journal" % LINES)
    res.acct = as_user(env, u_accounting, env.layout.accounting_file(env.ns, env.uid))


def u_accounting(env, journal):
    saved = journal + ".bench-saved"
    had = os.path.exists(journal)
    if had:
        os.rename(journal, saved)
    try:
        t0 = time.monotonic()
        generate(env, journal)
        made_s = time.monotonic() - t0
        size = os.path.getsize(journal)
        lanco = env.lanco_argv("accounting")
        wc = ["/usr/bin/wc", "-l", journal]
        py = ["/usr/bin/python3", "-c", SUM_CPU, journal]
        run(env, wc)  # into the page cache
        out = dict(size=size, made_s=made_s, lanco=[], wc=[], py=[])
        for _ in range(ROUNDS):
            out["lanco"].append(run(env, lanco))
            out["wc"].append(run(env, wc))
        for _ in range(PY_ROUNDS):
            out["py"].append(run(env, py))
        return out
    finally:
        os.unlink(journal)
        if had:
            os.rename(saved, journal)


def run(env, argv):
    """(wall ms, CPU ms: user + sys) of one command, stdout on /dev/null.
    The CPU time is what the reaped child adds to this process's children's
    times (os.times; wait4's rusage needs the resource module, which not
    every python3 has)."""
    c0 = os.times()
    t0 = time.perf_counter_ns()
    pid = spawn(argv, env.user_env)
    _, st = os.waitpid(pid, 0)
    wall = (time.perf_counter_ns() - t0) / 1e6
    c1 = os.times()
    if os.waitstatus_to_exitcode(st) != 0:
        raise RuntimeError("%s exited %d" % (" ".join(argv), os.waitstatus_to_exitcode(st)))
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    return wall, cpu * 1e3


def generate(env, path):
    """LINES exit records as a monitor writes them (serde_json, compact),
    their fields varied."""
    rnd = random.Random(12)
    t0 = 1_790_000_000
    head = '{"namespace":"%s","task":"job%d","run_id":"%016x","user":"%s","uid":%d,' \
           '"command":["/bin/sh","-c","backup --incremental /srv/data%d"],"pid":%d,"start":%d,' \
           '"start_time":"2026-09-21T12:00:00Z","end":%d,"end_time":"2026-09-21T12:05:00Z",' \
           '"exit":{"kind":"code","value":%d},"stopped":false,"killed_after_timeout":false,' \
           '"cpu_usec":%d,"peak_memory_bytes":%d,"peak_memory_source":"memory.peak",' \
           '"log":"/var/log/lanco-%s/task-job%d.log","notes":[]}\n'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w") as f:
        buf = []
        for i in range(LINES):
            start = t0 + i * 31
            buf.append(head % (env.ns, i % 500, rnd.getrandbits(64), env.user, env.uid, i % 97,
                               10_000 + i % 30_000, start, start + rnd.randrange(1, 600),
                               0 if i % 10 else 1, rnd.randrange(5_000_000),
                               rnd.randrange(1 << 20, 1 << 30), env.ns, i % 500))
            if len(buf) == 10_000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))


def report(R, plan, res):
    a = res.acct
    wall = [w for w, _ in a["lanco"]]
    cpu = [c for _, c in a["lanco"]]
    R.row("`accounting` over a 1,000,000-line journal (%d MB)" % (a["size"] // 10**6), wall,
          comp="wc -l", comp_xs=[w for w, _ in a["wc"]], target="< 1 s", met=med(wall) < 1000.0,
          note="CPU %.0f ms (user + sys); wc -l CPU %.0f ms"
          % (med(cpu), med([c for _, c in a["wc"]])))
    R.row("the same journal's cpu_usec summed by `python3 -c` (json)", [w for w, _ in a["py"]],
          note="CPU %.0f ms" % med([c for _, c in a["py"]]))
    R.notes.append("The 1,000,000-line journal (%d bytes) was generated in %.1f s; `accounting` "
                   "reads it with one thread per CPU (%d here) and a scanner for the usual line "
                   "(lanco-client/src/accounting/line.rs)." % (a["size"], a["made_s"],
                                                                 os.cpu_count() or 1))
