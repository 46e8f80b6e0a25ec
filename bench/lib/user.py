"""Running as the unprivileged bench user.

as_user(env, fn, *args) runs fn(env, *args) in a forked child that joined a
cgroup of the harness and dropped to the user; fn's result comes back
pickled. Every lanco command but `init` runs this way: lanco refuses `run`
as root in a namespace (its directories are the members'). The u_*
functions here are the user-side steps several phases share.
"""

import os
import pickle
import signal
import traceback

from lib import cgroup
from lib.measure import run_quiet, throughput, timed


def as_user(env, fn, *args, cgroup_path=None):
    """fn(env, *args) as the user, in `cgroup_path` (default: the harness's
    worker cgroup); returns its (picklable) result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(w, env, fn, args, cgroup_path or env.worker_cg)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, val = pickle.loads(data)
    if kind == "err":
        raise RuntimeError("in the user's child:\n" + val)
    return val


def _child(w, env, fn, args, cgroup_path):
    code = 0
    try:
        cgroup.join(cgroup_path, os.getpid())
        drop_to_user(env)
        os.chdir(env.home)
        os.umask(0o022)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        data = pickle.dumps(("ok", fn(env, *args)))
    except BaseException:
        data = pickle.dumps(("err", traceback.format_exc()))
        code = 1
    with os.fdopen(w, "wb") as f:
        f.write(data)
    os._exit(code)


def drop_to_user(env):
    os.setgroups([env.gid])
    os.setgid(env.gid)
    os.setuid(env.uid)


def u_one(env, argv, ok=(0,)):
    return timed(argv, env.user_env, ok)


def u_quiet(env, argv):
    return run_quiet(argv, env.user_env)


def u_fill(env, prefix, count, par):
    """Starts `count` tasks `prefix-0…`, `par` at a time. Returns (seconds,
    [ms per run])."""
    names = ["%s-%d" % (prefix, i) for i in range(count)]
    return throughput([env.run_argv(n) for n in names], env.user_env, par)


def u_interleaved(env, argvs, n, warm=2):
    """[[ms]] for each argv, run round-robin, after `warm` rounds."""
    res = [[] for _ in argvs]
    for k in range(n + warm):
        for i, a in enumerate(argvs):
            t = timed(a, env.user_env)
            if k >= warm:
                res[i].append(t)
    return res
