"""Dependencies (issue 11): starting and stopping tasks that `needs` others,
each as ONE command, against a single task without dependencies.

Every task of the phase is `/bin/sleep 1000` with `ready = "exec"` (and
the user's home as cwd: its user-database home does not exist), all defined
by generated files given to `lanco NS apply` (the chain's and the
fan-in's in one, timed, for a row of its own):
- a chain of plan.chain tasks: chain-1 needs chain-0, chain-2 needs
  chain-1, …; `start chain-LAST` starts the whole chain, each task ready
  before its dependent starts; `stop --force chain-0` stops every task
  that needs it, dependents first, then chain-0;
- a fan-in of plan.fan tasks each needing `fan-hub`: ONE `start` naming the
  plan.fan tasks (lanco starts a command's targets in parallel, at most 16
  at a time, after the hub they all need is ready), then `stop --force
  fan-hub`;
- `dep-single`, needing nothing: the baseline. `start dep-single` then
  `stop dep-single`, each SPACE s after the previous command (like the
  suite's other warm loops, phases/spawner.py), WARM + 2k times (2k kept),
  with that definition alone in the namespace, before anything else: `start`
  reads and parses every member's definitions, so the chain's and the
  fan-in's would add their cost to every single start (~30 µs each here, a
  first quick run's 152 doubled the single start on a busy host). The same
  loop, WARM + k times, runs again after the fan-in with all of the phase's
  definitions in place, for a row of its own: what a start of one task pays
  for that many definitions.
Per task is a transition's wall time divided by the tasks it started or
stopped (the hub not counted). Targets (issue 11): per task ≤ 2× the
single `start` (chain start) and ≤ 2× the single `stop` (chain stop); the
fan-in rows print their ratio with no target.

Each transition is bounded (LIMIT): a `start` or `stop` that has not
returned by then is killed and the phase fails with what it saw, as it does
when one exits non-zero or leaves the tasks other than the contract says
(every one running after the start, none after the stop): a benchmark does
not work around lanco's bugs. While each runs, a thread of the harness
(root) counts the transition's task cgroups every SAMPLE s, which says
whether the second half of the tasks took as long as the first (a cost that
grows with the number of tasks would show there).

Memory: while the chain runs, smaps_rollup (as root) of each chain task's
monitor (the pid its state file names), summed and per monitor; the
baseline is as many plain `lanco run`s of the same command (4 at a time,
like phases/fill.py), read the same way; the same number of monitors, so
the shared file pages (libc, lanco-monitor) are split as many ways in both
readings. Pss_Anon and Private_Dirty, which do not depend on that split,
are in the note. The plain tasks are then stopped one `stop` at a time,
each timed: every `stop` reads the state of every running task of the
namespace (the transition's nodes), so the first of them (the namespace
full) get a row of their own against the single `stop`.

Leaves nothing running. The definitions stay (no later phase reads them:
`run`, `stop`, `check` and `ls` do not): `undefine` takes one task, and
each reads every definition, so undefining a full run's ~1650 one by one
would take the phase's time again.
"""

import json
import os
import select
import signal
import threading
import time

from lib import cgroup, layout
from lib.log import log
from lib.measure import Failed, med, pct, throughput, timed
from lib.procfs import loadavg, smaps_rollup
from lib.user import as_user
from phases.spawner import SPACE, WARM

CMD = ["/bin/sleep", "1000"]
SINGLE, HUB = "dep-single", "fan-hub"
SAMPLE = 0.1  # s between two counts of a transition's task cgroups
PLAIN_PAR = 4  # plain runs started at a time, for the memory baseline
MEM_FIELDS = ("Pss", "Pss_Anon", "Private_Dirty", "Rss")


def chain(plan):
    return ["chain-%d" % i for i in range(plan.chain)]


def fan(plan):
    return ["fan-%d" % i for i in range(plan.fan)]


def limit_s(tasks):
    """How long a transition of `tasks` tasks may take before the phase
    calls it hung: 30 s plus 100 ms a task (a single start takes ~10–20 ms
    here, the target is 2× that)."""
    return 30 + 0.1 * tasks


def toml(env, names, needs=None):
    """A definitions file of the tasks `names`, each needing needs(i) (or
    nothing)."""

    def table(name, needs=None):
        return ('[task.%s]\ncmd = [%s]\ncwd = "%s"\nready = "exec"\n%s\n'
                % (name, ", ".join('"%s"' % a for a in CMD), env.home,
                   'needs = ["%s"]\n' % needs if needs else ""))

    return "".join(table(t, needs and needs(i)) for i, t in enumerate(names))


def graph_toml(env, plan):
    """The chain, the hub and the fan, in one file."""
    c = chain(plan)
    return (toml(env, c, lambda i: c[i - 1] if i else None) + toml(env, [HUB])
            + toml(env, fan(plan), lambda i: HUB))


def measure(env, plan, res):
    c, f = chain(plan), fan(plan)
    k = max(5, min(20, plan.n // 2))  # the baseline keeps 2k single start/stop pairs, the
    # loop with every definition in place k
    d = res.deps = dict(loadavg=loadavg(), k=k)
    log("dependencies: a %d-task chain, a %d-task fan-in, single start/stop %d + %d; "
        "load average %s" % (len(c), len(f), 2 * k, k, " ".join(d["loadavg"])))
    as_user(env, u_apply, os.path.join(env.home, "single.toml"), toml(env, [SINGLE]))
    d["single"] = as_user(env, u_single, 2 * k)

    path = os.path.join(env.home, "deps.toml")
    d["apply_ms"], d["defs"] = as_user(env, u_apply, path, graph_toml(env, plan))

    log("dependencies: memory baseline, %d plain runs" % len(c))
    d["plain_mem"], d["plain_stops"] = _plain_memory(env, ["plain-%d" % i for i in range(len(c))])

    log("dependencies: `start %s` (%d tasks)" % (c[-1], len(c)))
    d["chain_start"] = _transition(env, ["start", c[-1]], c, up=True)
    d["chain_mem"] = _memory(env, c)
    d["chain_mem_all"] = _all_monitors(env)
    log("dependencies: `stop --force %s`" % c[0])
    d["chain_stop"] = _transition(env, ["stop", "--force", c[0]], c, up=False)

    log("dependencies: `start` of %d tasks needing %s" % (len(f), HUB))
    d["fan_start"] = _transition(env, ["start"] + f, f + [HUB], up=True)
    log("dependencies: `stop --force %s`" % HUB)
    d["fan_stop"] = _transition(env, ["stop", "--force", HUB], f + [HUB], up=False)

    log("dependencies: single start/stop again, %d definitions in place" % (d["defs"] + 1))
    d["single_defs"] = as_user(env, u_single, k)


# -- as the user ----------------------------------------------------------------


def u_apply(env, path, text):
    with open(path, "w") as fh:
        fh.write(text)
    return timed(env.lanco_argv("apply", path), env.user_env), text.count("[task.")


def u_single(env, k):
    """WARM + k pairs of `start SINGLE`, `stop SINGLE`, each SPACE s after the
    previous command; the k last of each, and before how many of the kept
    starts a spawner was up."""
    out = dict(start=[], stop=[], warm=0)
    for i in range(WARM + k):
        time.sleep(SPACE)
        up = bool(env.spawner_pids())
        t = timed(env.lanco_argv("start", SINGLE), env.user_env, quiet=True)
        time.sleep(SPACE)
        s = timed(env.lanco_argv("stop", SINGLE), env.user_env)
        if i >= WARM:
            out["start"].append(t)
            out["stop"].append(s)
            out["warm"] += up
    return out


def u_bounded(env, args, limit, errfile):
    """`lanco NS ARGS`, SPACE s after the previous command, stderr to
    errfile: (wall ms, exit status or None if it had not returned after
    `limit` s and was killed, whether a spawner was up before it,
    time.monotonic() at its spawn)."""
    time.sleep(SPACE)
    up = bool(env.spawner_pids())
    argv = env.lanco_argv(*args)
    fd = os.open(errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    mono = time.monotonic()
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env.user_env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, fd, 2)])
    os.close(fd)
    pidfd = os.pidfd_open(pid)
    done, _, _ = select.select([pidfd], [], [], limit)
    if not done:
        os.kill(pid, signal.SIGKILL)
    _, st = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    os.close(pidfd)
    return (t1 - t0) / 1e6, os.waitstatus_to_exitcode(st) if done else None, up, mono


def u_run_all(env, argvs):
    """Every argv, PLAIN_PAR at a time (each must exit 0); seconds."""
    return throughput(argvs, env.user_env, PLAIN_PAR)[0]


def u_stop_each(env, names):
    """`stop` of each task in turn, back to back: [ms], in order."""
    return [timed(env.lanco_argv("stop", t), env.user_env) for t in names]


# -- as root ----------------------------------------------------------------


def _cgroups_of(env, names):
    """How many of the tasks have a task cgroup (a monitor made it for a run
    and removes it when the task stops)."""
    want = {layout.task_file(t) for t in names}
    try:
        return len(want.intersection(os.listdir(env.layout.user_cgroup(env.ns, env.uid))))
    except FileNotFoundError:
        return 0


def _running(env, names):
    return [t for t in names if cgroup.populated(env.task_cgroup(t))]


def _transition(env, args, names, up):
    """One `lanco NS ARGS` that starts (`up`) or stops every task of `names`,
    timed as the user, its progress sampled here; fails the phase unless it
    exits 0 within its limit and leaves every one of them running (`up`) or
    none."""
    lim = limit_s(len(names))
    errfile = os.path.join(env.home, "deps-stderr")
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.monotonic(), _cgroups_of(env, names)))
            stop.wait(SAMPLE)

    th = threading.Thread(target=sample)
    th.start()
    try:
        ms, code, spawner, t0 = as_user(env, u_bounded, args, lim, errfile)
    finally:
        stop.set()
        th.join()
    cmd = "lanco %s %s" % (env.ns, " ".join(args if len(args) < 6 else args[:3] + ["…"]))
    if code is None or code != 0:
        raise Failed("%s %s; its stderr ended with: %s" % (
            cmd, "had not returned after %.0f s (killed)" % lim if code is None
            else "exited %d after %.0f ms" % (code, ms), _tail(errfile)))
    running = _running(env, names)
    if len(running) != (len(names) if up else 0):
        raise Failed("%s exited 0 after %.0f ms but %d of its %d tasks run (%s); stderr ended "
                     "with: %s" % (cmd, ms, len(running), len(names), _some(running)
                                   if not up else _some(sorted(set(names) - set(running))),
                                   _tail(errfile)))
    return dict(ms=ms, tasks=len(names), spawner=spawner, progress=_quarters(samples, t0, len(names), up),
                stderr_lines=_lines(errfile))


def _quarters(samples, t0, n, up):
    """For 1/4, 2/4, 3/4 of the tasks: s from the command's spawn (t0) to the
    first sample that saw that many with a cgroup (a start) or without (a
    stop); None where no sample did."""
    def first(q):
        return next((t - t0 for t, k in samples if (k >= q * n if up else k <= (1 - q) * n)),
                    None)
    return [first(q) for q in (0.25, 0.5, 0.75)]


def _tail(path, n=3):
    try:
        with open(path, errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return "(no stderr file)"
    return " | ".join(lines[-n:]) or "(nothing)"


def _lines(path):
    with open(path, "rb") as fh:
        return fh.read().count(b"\n")


def _some(names, k=5):
    return ", ".join(names[:k]) + (" …" if len(names) > k else "") if names else "none"


def _memory(env, names):
    """MEM_FIELDS (KiB) of each task's monitor, found in its state file."""
    out = []
    for t in names:
        with open(env.layout.state_file(env.ns, env.uid, t)) as fh:
            pid = json.load(fh)["monitor_pid"]
        m = smaps_rollup(pid)
        if m:
            out.append({k: m.get(k, 0) for k in MEM_FIELDS})
    return out


def _all_monitors(env):
    """(how many lanco-monitor processes the member's monitors cgroup holds,
    the spawner included; their Pss summed, KiB)."""
    pids = env.monitors_cgroup_pids()
    return len(pids), sum(m["Pss"] for m in map(smaps_rollup, pids) if m)


def _plain_memory(env, names):
    """Plain `run`s of CMD (no dependency), PLAIN_PAR at a time; their
    monitors' memory as _memory reads it, and the times of their `stop`s,
    one at a time (the namespace emptying)."""
    as_user(env, u_run_all, [env.run_argv(t, CMD, ["--ready", "exec"]) for t in names])
    running = _running(env, names)
    if len(running) != len(names):
        raise Failed("%d plain runs exited 0 but %d of them run" % (len(names), len(running)))
    mem = _memory(env, names)
    stops = as_user(env, u_stop_each, names)
    return mem, stops


# -- the rows ----------------------------------------------------------------


def report(R, plan, res):
    d = res.deps
    single = d["single"]
    comp = "single `%s`, no dependencies, its definition alone (median of %d, %g s apart)"
    R.row("`apply` of one file of %d definitions (a %d-task chain, a hub and %d tasks needing it)"
          % (d["defs"], plan.chain, plan.fan), value=d["apply_ms"],
          note="%.2f ms per definition" % (d["apply_ms"] / d["defs"]))
    rows = (("chain_start", "start", "`start` of a %d-task `needs` chain, one `start chain-%d`"
             % (plan.chain, plan.chain - 1), plan.chain, "≤ 2× single `start`"),
            ("chain_stop", "stop", "`stop --force chain-0` of the running %d-task chain"
             % plan.chain, plan.chain, "≤ 2× single `stop`"),
            ("fan_start", "start", "`start` of %d tasks that each need `%s` (one `start` naming "
             "the %d; the hub pulled in)" % (plan.fan, HUB, plan.fan), plan.fan, None),
            ("fan_stop", "stop", "`stop --force %s` of the %d running tasks that need it"
             % (HUB, plan.fan), plan.fan, None))
    for key, base, what, n, target in rows:
        t = d[key]
        per = t["ms"] / n
        R.row(what + ": per task", value=per, n=n, comp=comp % (base, len(single[base]), SPACE),
              comp_xs=single[base], target=target,
              met=per <= 2 * med(single[base]) if target else None,
              note="total %.2f s for %d tasks%s; a quarter, half, three quarters of the task "
              "cgroups %s after %s s%s" % (
                  t["ms"] / 1000, t["tasks"], " (the hub included)" if t["tasks"] != n else "",
                  "up" if base == "start" else "gone", ", ".join(map(_s, t["progress"])),
                  "" if t["spawner"] else "; no spawner was up before it"))
    ps = d["plain_stops"]
    k = min(100, len(ps) // 4)
    R.row("plain `stop` of one task with %d–%d plain tasks running (the first %d of %d stops "
          "one after the other)" % (len(ps) - k + 1, len(ps), k, len(ps)), ps[:k],
          comp=comp % ("stop", len(single["stop"]), SPACE), comp_xs=single["stop"],
          note="the last %d, with %d–1 running: median %.2f ms; all %d took %.1f s; the "
          "suite's %d background tasks ran too"
          % (k, k, med(ps[-k:]), len(ps), sum(ps) / 1000, plan.base))
    sd = d["single_defs"]
    for base in ("start", "stop"):
        R.row("single `%s`, no dependencies, with the phase's %d definitions in place"
              % (base, d["defs"] + 1), sd[base], comp=comp % (base, len(single[base]), SPACE),
              comp_xs=single[base])
    R.notes.append("Dependency rows: load average %s at the phase's start; a spawner was up "
                   "before %d of the %d kept single starts (%d of %d with the definitions in "
                   "place); each single `start`/`stop` and each transition ran %g s after the "
                   "previous command. Task cgroups up (or gone) are counted every %g s by the "
                   "harness, from the command's spawn: a quarter, half and three quarters of the "
                   "total when every task costs the same."
                   % (" ".join(d["loadavg"]), single["warm"], len(single["start"]), sd["warm"],
                      len(sd["start"]), SPACE, SAMPLE))
    _report_memory(R, plan, d)


def _s(x):
    return "—" if x is None else "%.2f" % x


def _report_memory(R, plan, d):
    ch, pl = d["chain_mem"], d["plain_mem"]

    def col(mem, k):
        return [m[k] for m in mem]

    def sum_mib(mem):
        return sum(col(mem, "Pss")) / 1024
    note = ("Pss_Anon median %d KiB (plain %d), Private_Dirty %d KiB (plain %d); sum %.1f MiB over "
            "%d monitors (plain %.1f MiB over %d)" % (
                med(col(ch, "Pss_Anon")), med(col(pl, "Pss_Anon")), med(col(ch, "Private_Dirty")),
                med(col(pl, "Private_Dirty")), sum_mib(ch), len(ch), sum_mib(pl), len(pl)))
    pss = col(ch, "Pss")
    R.row("monitor Pss, %d-task `needs` chain running (per monitor)" % plan.chain, pss,
          unit="KiB", comp="plain `run`s, %d running, read the same way" % len(pl),
          comp_xs=col(pl, "Pss"), target="≤ 256 KiB (issue 4)", met=pct(pss, 95) <= 256,
          note=note)
    n_all, pss_all = d["chain_mem_all"]
    R.row("monitor Pss, %d-task `needs` chain running (sum)" % plan.chain, value=sum_mib(ch),
          unit="MiB", comp="plain `run`s, %d running" % len(pl), comp_value=sum_mib(pl),
          note="every lanco-monitor process of the member in the namespace then: %d, %.1f MiB "
          "(the chain's, the other phases' tasks', the spawner)" % (n_all, pss_all / 1024))
