"""The tasks running in the background for the whole run (the "10" of the
scaling figures), and a check that bench/lib/layout.py agrees with lanco."""

import json
import os
import subprocess

from lib import cgroup
from lib.user import as_user, u_fill


def start(env, plan, res):
    as_user(env, u_fill, "base", plan.base, 1)
    env.running = plan.base
    check_layout(env, "base-0")


def u_status_json(env, name):
    out = subprocess.run(env.lanco_argv("status", "--json", name), env=env.user_env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def check_layout(env, name):
    """lib/layout.py against the binaries, on one running task: where `lanco
    status` says its main pid, monitor and log are, and that its state and
    lock files are where the layout puts them. A mismatch stops the run:
    every figure that reads cgroups would be wrong."""
    st = as_user(env, u_status_json, name)
    info = st.get("info") or {}
    lay = env.layout
    wrong = []
    if st.get("state") != "running" or not info:
        wrong.append("status: %r" % st)
    elif info["pid"] not in cgroup.procs(env.task_cgroup(name)):
        wrong.append("main pid %d not in %s" % (info["pid"], env.task_cgroup(name)))
    elif info["monitor_pid"] not in env.monitor_pids():
        wrong.append("monitor pid %d not in %s" % (info["monitor_pid"], env.monitor_cgroup()))
    elif info["log"] != lay.task_log(env.ns, name):
        wrong.append("log %s, not %s" % (info["log"], lay.task_log(env.ns, name)))
    for f in (lay.state_file(env.ns, env.uid, name), lay.lock_file(env.ns, name)):
        if not os.path.isfile(f):
            wrong.append("no %s" % f)
    if wrong:
        raise SystemExit("bench/lib/layout.py disagrees with lanco (lanco-proto/src/layout.rs): "
                         + "; ".join(wrong))
