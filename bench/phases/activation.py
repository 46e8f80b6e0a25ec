"""`lanco run` when lancod must first be socket-activated: a second lancod
of the same installation behind systemd-socket-activate, started anew for
each run and let go after it. The user's warm spawner (issue 9) is killed
before each run, else the run would not reach lancod at all; and after the
loop, so that later phases start one under the main config."""

import os
import shutil
import subprocess
import time

from lib import cgroup
from lib.log import log
from lib.measure import med, timed
from lib.user import as_user, u_one, u_quiet


def measure(env, plan, res):
    log("socket-activated run")
    res.act = None
    exe = shutil.which("systemd-socket-activate")
    if not exe:
        return
    uenv = dict(env.user_env, LANCO_CONFIG=env.act_cfg)
    xs, true_xs = [], []
    logf = open(os.path.join(env.dir, "lancod-act.log"), "ab")
    for i in range(max(8, plan.n // 8) + 1):
        p = _activator(env, exe, logf)
        name = "act-%d" % i
        env.kill_spawners()
        t = as_user(env, u_one_env, env.run_argv(name), uenv)
        tt = as_user(env, u_one, ["/bin/true"])
        if i > 0:
            xs.append(t)
            true_xs.append(tt)
        # Stop the task (untimed) and let the helper go.
        as_user(env, u_quiet, env.lanco_argv("stop", name))
        p.terminate()
        p.wait()
    env.kill_spawners()
    res.act = (xs, true_xs)


def _activator(env, exe, logf):
    """systemd-socket-activate listening on the activated config's socket,
    lancod not yet started."""
    try:
        os.unlink(env.act_sock)
    except FileNotFoundError:
        pass
    environ = dict(os.environ, LANCO_CONFIG=env.act_cfg, LANCOD_LOG="warn")
    p = subprocess.Popen([exe, "-l", env.act_sock, "-E", "LANCO_CONFIG=" + env.act_cfg,
                          "-E", "LANCOD_LOG=warn", env.lancod], env=environ, stdout=logf,
                         stderr=logf, preexec_fn=lambda: _activator_preexec(env))
    for _ in range(500):
        if os.path.exists(env.act_sock):
            break
        time.sleep(0.005)
    os.chmod(env.act_sock, 0o666)  # world-connectable, as lancod.socket makes it
    time.sleep(0.05)  # let it reach poll()
    # Make sure lancod is not running yet: the activator's own image.
    if cgroup.read("/proc/%d/comm" % p.pid).strip() == "lancod":
        raise SystemExit("lancod already running before the first request")
    return p


def _activator_preexec(env):
    cgroup.join(env.daemon_cg, os.getpid())
    # The socket must be world-connectable, as systemd's lancod.socket makes it.
    os.umask(0)


def u_one_env(env, argv, environ):
    return timed(argv, environ)


def report(R, plan, res):
    if res.act:
        axs, atrue = res.act
        R.row("`run`, helper socket-activated", axs, comp="exec /bin/true", comp_xs=atrue,
              target="≤ 10 ms", met=med(axs) <= 10.0)
