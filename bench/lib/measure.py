"""Timing and statistics.

Every figure is timed the same way: wall time from posix_spawn(2) of the
command to waitpid(2) of it, stdout and stdin on /dev/null. The callers run
in a child that dropped to the bench user (lib/user.py). `quiet` also sends
stderr there, for commands that report success on it (`lanco start`)."""

import os
import pickle
# os.wait4 builds its rusage from this module: loaded here, as root, since the
# user the timed commands run as may not read the interpreter's library.
import resource  # noqa: F401
import signal
import statistics
import time

from lib.procfs import smaps_rollup

_devnull = None


class Failed(Exception):
    pass


def spawn(argv, environ, quiet=False):
    global _devnull
    if _devnull is None:
        _devnull = os.open("/dev/null", os.O_RDWR)
    fds = (0, 1, 2) if quiet else (0, 1)
    return os.posix_spawn(argv[0], argv, environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, _devnull, fd) for fd in fds])


def timed(argv, environ, ok=(0,), quiet=False):
    """Wall milliseconds from spawn to reaped exit."""
    t0 = time.perf_counter_ns()
    pid = spawn(argv, environ, quiet)
    _, st = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    code = os.waitstatus_to_exitcode(st)
    if code not in ok:
        raise Failed("%s exited %d" % (" ".join(argv), code))
    return (t1 - t0) / 1e6


def run_quiet(argv, environ):
    pid = spawn(argv, environ)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)


def throughput(argvs, environ, par):
    """Runs every argv, `par` at a time. Returns (seconds, [ms per command])."""
    t0 = time.perf_counter_ns()
    running = {}
    lat = []
    todo = list(argvs)
    while todo or running:
        while todo and len(running) < par:
            argv = todo.pop(0)
            running[spawn(argv, environ)] = time.perf_counter_ns()
        pid, st = os.waitpid(-1, 0)
        if pid in running:
            lat.append((time.perf_counter_ns() - running.pop(pid)) / 1e6)
            code = os.waitstatus_to_exitcode(st)
            if code != 0:
                raise Failed("a run in the throughput loop exited %d" % code)
    return (time.perf_counter_ns() - t0) / 1e9, lat


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


class MemorySampler:
    """Samples a process's smaps_rollup every `period` s from a forked child
    for as long as the `with` block runs; then .samples holds
    [(Rss, Pss, Private_Dirty)] in KiB."""

    def __init__(self, pid, period=0.005):
        self.pid, self.period, self.samples = pid, period, []

    def __enter__(self):
        self._r, w = os.pipe()
        self._child = os.fork()
        if self._child == 0:
            os.close(self._r)
            self._sample(w)
        os.close(w)
        return self

    def _sample(self, w):
        samples = []
        stop = [False]
        signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
        parent = os.getppid()
        while not stop[0] and os.getppid() == parent:
            m = smaps_rollup(self.pid)
            if m:
                samples.append((m["Rss"], m["Pss"], m.get("Private_Dirty", 0)))
            time.sleep(self.period)
        with os.fdopen(w, "wb") as f:
            f.write(pickle.dumps(samples))
        os._exit(0)

    def __exit__(self, *exc):
        os.kill(self._child, signal.SIGTERM)
        with os.fdopen(self._r, "rb") as f:
            data = f.read()
        # Empty if the child was stopped before it set its handler.
        self.samples = pickle.loads(data) if data else []
        os.waitpid(self._child, 0)
        return False


def cpu_timed(argv, environ, ok=(0,)):
    """(wall ms, CPU ms) of one command: spawn to reaped exit, and the user
    plus system time the kernel charged to it (wait4's rusage)."""
    t0 = time.perf_counter_ns()
    pid = spawn(argv, environ)
    _, st, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    code = os.waitstatus_to_exitcode(st)
    if code not in ok:
        raise Failed("%s exited %d" % (" ".join(argv), code))
    return (t1 - t0) / 1e6, (ru.ru_utime + ru.ru_stime) * 1e3
