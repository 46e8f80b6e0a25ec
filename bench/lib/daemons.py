"""The long-running daemons of a run: lancod (as root, kept up) and pueued
(as the user), each in the harness's daemons or pueue cgroup."""

import os
import subprocess
import time

from lib import cgroup
from lib.log import log
from lib.user import as_user, drop_to_user, u_quiet


def start_lancod(env):
    environ = dict(os.environ, LANCO_CONFIG=env.cfg, LANCOD_LOG="warn")
    logf = open(os.path.join(env.dir, "lancod.log"), "ab")
    p = subprocess.Popen([env.lancod], env=environ, stdout=logf, stderr=logf,
                         preexec_fn=lambda: cgroup.join(env.daemon_cg, os.getpid()))
    if not _wait_for(env.sock):
        raise SystemExit("lancod did not create %s" % env.sock)
    return p


def start_pueued(env):
    """pueued as the user, with its own directory and socket; on failure
    env.pueue is None and the pueue figures are left out."""
    pd = os.path.join(env.home, "pueue")
    os.mkdir(pd)
    os.chown(pd, env.uid, env.gid)
    env.pueue_cfg = os.path.join(env.home, "pueue.yml")
    cgroup.write(env.pueue_cfg, """shared:
  pueue_directory: %s
  runtime_directory: %s
  use_unix_socket: true
  unix_socket_path: %s/pueue.socket
""" % (pd, pd, pd))
    os.chown(env.pueue_cfg, env.uid, env.gid)

    def demote():
        cgroup.join(env.pueue_cg, os.getpid())
        drop_to_user(env)

    logf = open(os.path.join(env.dir, "pueued.log"), "ab")
    env.pueued_proc = subprocess.Popen([env.pueued, "-c", env.pueue_cfg], env=env.user_env,
                                       stdout=logf, stderr=logf, preexec_fn=demote, cwd=env.home)
    if not _wait_for(os.path.join(pd, "pueue.socket")):
        log("pueued did not start; see %s/pueued.log" % env.dir)
        env.pueue = None
        return
    try:
        if as_user(env, u_quiet, env.pueue_argv("parallel", "0")) != 0:
            raise RuntimeError("pueue parallel 0 failed")
    except Exception as e:
        log("pueue setup failed: %s" % e)
        env.pueue = None


def _wait_for(path, tries=500, nap=0.01):
    for _ in range(tries):
        if os.path.exists(path):
            return True
        time.sleep(nap)
    return False
