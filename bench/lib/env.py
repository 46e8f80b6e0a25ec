"""The run's environment: one explicit object, built by setup() and torn down
by cleanup(), passed to every phase.

Each run gets a private installation: its own lancod, socket, state and log
directories, cgroup root <cgroup2>/lanco-bench-XXXX, and
<cgroup2>/lanco-bench-aux-XXXX/{worker,daemons,pueue} for the harness's own
children, lancod and pueued, so everything is killed by cgroup.kill and
rmdir'd at the end, even when a phase failed.
"""

import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from lib import cgroup, daemons, layout, procfs
from lib.log import log

NAMESPACE = "benchns"
# What every task runs unless told: two processes (sh waits for sleep), both
# gone at SIGTERM.
PAYLOAD = ["/bin/sh", "-c", "sleep 1000; exit 0"]


class Env:
    """Installation (dir, cgroups, layout), user, binaries, configuration and
    the daemons of one run; plus two counters the phases keep up to date."""

    def __init__(self):
        self.dir = None  # the private installation; None until setup() made it
        self.mount = self.mount_opts = None
        self.mount_point_opts = None  # the per-mount options (mount_opts: the super options)
        self.favordynmods = None  # whether the cgroup2 mount has favordynmods on
        self.cg_root = self.aux_cg = self.worker_cg = self.daemon_cg = self.pueue_cg = None
        self.layout = None
        self.ns = NAMESPACE
        self.user = self.group = self.uid = self.gid = self.home = self.user_env = None
        self.lanco = self.lancod = self.setsid = self.pueue = self.pueued = None
        self.cfg = self.act_cfg = self.sock = self.act_sock = self.pueue_cfg = None
        self.lancod_proc = self.pueued_proc = None
        self.lib_probe = None  # tests/daemon's lanco-bench-lib, in the installation
        self.lib_probe_why = None  # why there is none
        self.no_nspawn = False  # no booted-container phase
        self.nspawn_build = False  # may tests/nspawn/run.sh --prepare install and build
        self.running = 0  # tasks the phases started and left running
        self.pueue_next_id = 0  # the id pueued gives the next task added
        self.notes = []  # for the report, about the set-up

    # -- commands, as the user runs them --------------------------------------

    def lanco_argv(self, *args):
        return [self.lanco, self.ns] + list(args)

    def run_argv(self, name, payload=None, options=()):
        """`lanco NS run [OPTIONS] NAME` of PAYLOAD unless told."""
        return self.lanco_argv("run", *options, name) + (payload or PAYLOAD)

    def pueue_argv(self, *args):
        return [self.pueue, "-c", self.pueue_cfg] + list(args)

    # -- the bench user's tasks, where lib/layout.py puts them -----------------

    def ns_cgroup(self):
        return self.layout.ns_cgroup(self.ns)

    def task_cgroup(self, name):
        return self.layout.task_cgroup(self.ns, self.uid, name)

    def task_cgroups(self):
        """{name: cgroup} of the bench user's tasks."""
        return layout.task_cgroups(self.layout, self.ns, self.uid)

    def monitor_cgroup(self):
        return self.layout.monitor_cgroup(self.ns, self.uid)

    def monitors_cgroup_pids(self):
        """Every process in the member's monitors cgroup: the tasks'
        monitors and, once issue 9's warm path is built, the spawner."""
        return cgroup.procs_recursive(self.monitor_cgroup())

    def monitor_pids(self):
        """The tasks' monitors: the monitors cgroup without the spawner and
        its standby (the fork it keeps ready for the next caller)."""
        pids = self.monitors_cgroup_pids()
        return [p for p in pids
                if procfs.comm(p) not in (layout.SPAWNER_COMM, layout.STANDBY_COMM)]

    def spawner_pids(self):
        """The member's warm spawner(s): the process named `lanco-spawner`
        (comm) in its monitors cgroup. Works as root and as the user. [] when none lives
        (or this build has no warm path)."""
        return self._spawners_among(self.monitors_cgroup_pids())

    def _spawners_among(self, pids):
        """The spawner: of the processes named `lanco-spawner`, the oldest (a
        fork of it has its comm for a few microseconds, until it names
        itself a standby or a monitor). One member, so at most one."""
        named = [p for p in pids if procfs.comm(p) == layout.SPAWNER_COMM]
        started = {}
        for p in named:
            try:
                with open("/proc/%d/stat" % p) as f:
                    started[p] = int(f.read().rsplit(")", 1)[1].split()[19])
            except (OSError, ValueError, IndexError):
                pass
        return sorted(started, key=started.get)[:1]

    def kill_spawners(self, timeout=5.0):
        """SIGKILLs the member's spawner(s) (as root or as the user) and
        waits until they are gone; the next `run` is then cold. Returns how
        many there were."""
        pids = self.spawner_pids()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(not procfs.is_zombie(p) for p in pids):
            time.sleep(0.001)
        return len(pids)

    def count_tasks(self):
        return len(self.task_cgroups())


def setup(env, args):
    """Fills in env: cgroups, user, binaries, configs, lancod, the namespace,
    pueued."""
    env.mount, env.mount_point_opts, env.mount_opts = cgroup.cgroup2_mount_info()
    env.favordynmods = cgroup.favordynmods(env.mount_point_opts, env.mount_opts)
    env.dir = tempfile.mkdtemp(prefix="lanco-bench-")
    os.chmod(env.dir, 0o755)
    _user(env, args.user)
    _cgroups(env)
    _binaries(env, args)
    _configs(env)
    os.environ["LANCO_CONFIG"] = env.cfg
    env.lancod_proc = daemons.start_lancod(env)
    subprocess.run([env.lanco, env.ns, "init", "-u", env.user, "-g", env.group], check=True)
    if env.pueue:
        daemons.start_pueued(env)
    else:
        env.notes.append("pueue is not installed: no pueue figures.")


def _user(env, name):
    """The unprivileged user every timed command runs as, in its primary
    group (which lanco's `init` needs the namespace's owner to be in)."""
    pw = pwd.getpwnam(name)
    env.user, env.uid, env.gid = name, pw.pw_uid, pw.pw_gid
    env.group = grp.getgrgid(env.gid).gr_name
    env.home = os.path.join(env.dir, "home")
    run_dir = os.path.join(env.home, "run")
    os.makedirs(run_dir, mode=0o700)
    for d in (env.home, run_dir):
        os.chown(d, env.uid, env.gid)


def _cgroups(env):
    suffix = os.path.basename(env.dir).split("-")[-1]
    env.cg_root = os.path.join(env.mount, "lanco-bench-" + suffix)
    env.aux_cg = os.path.join(env.mount, "lanco-bench-aux-" + suffix)
    env.worker_cg = os.path.join(env.aux_cg, "worker")
    env.daemon_cg = os.path.join(env.aux_cg, "daemons")
    env.pueue_cg = os.path.join(env.aux_cg, "pueue")
    for d in (env.aux_cg, env.worker_cg, env.daemon_cg, env.pueue_cg):
        os.mkdir(d)
    for d in (env.worker_cg, env.pueue_cg):
        os.chown(d, env.uid, env.gid)
        os.chown(os.path.join(d, "cgroup.procs"), env.uid, env.gid)
    env.layout = layout.Layout(env.cg_root, os.path.join(env.dir, "state"),
                               os.path.join(env.dir, "log"))


def _binaries(env, args):
    """Copies lanco's binaries (and pueue's) into the installation: the user
    cannot reach ~root/.cargo/bin or, maybe, the build directory."""
    bindir = os.path.join(env.dir, "bin")
    os.mkdir(bindir)
    for b in ("lanco", "lancod", "lanco-monitor"):
        shutil.copy2(os.path.join(args.bin, b), bindir)
    if args.lib_probe_path:
        shutil.copy2(args.lib_probe_path, bindir)
        env.lib_probe = os.path.join(bindir, os.path.basename(args.lib_probe_path))
    env.lanco = os.path.join(bindir, "lanco")
    env.lancod = os.path.join(bindir, "lancod")
    env.setsid = shutil.which("setsid")
    if args.pueue and os.path.exists(args.pueue) and args.pueued and os.path.exists(args.pueued):
        for b in (args.pueue, args.pueued):
            shutil.copy2(b, bindir)
        env.pueue = os.path.join(bindir, os.path.basename(args.pueue))
        env.pueued = os.path.join(bindir, os.path.basename(args.pueued))


def _configs(env):
    """lanco.toml for lancod kept up, lanco-act.toml for the same
    installation behind a second, socket-activated lancod; the user's
    environment points at the first."""
    # The installation's monitor, named: lanco does not look beside itself.
    keys = env.layout.config_keys() + 'monitor = "%s"\n' % os.path.join(
        env.dir, "bin", "lanco-monitor")
    env.sock = os.path.join(env.dir, "lancod.sock")
    env.act_sock = os.path.join(env.dir, "act.sock")
    env.cfg = os.path.join(env.dir, "lanco.toml")
    cgroup.write(env.cfg, 'socket = "%s"\nidle_timeout = 0\n' % env.sock + keys)
    env.act_cfg = os.path.join(env.dir, "lanco-act.toml")
    cgroup.write(env.act_cfg, 'socket = "%s"\nidle_timeout = 1\n' % env.act_sock + keys)
    env.user_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": env.home,
        "LANCO_CONFIG": env.cfg,
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": os.path.join(env.home, "run"),
    }


def cleanup(env):
    """Kills every task cgroup at once (the monitors then record, rmdir and
    exit), then everything else by cgroup.kill, and removes the cgroups."""
    log("cleaning up")
    if env.cg_root is None:
        return
    if env.layout and os.path.isdir(env.ns_cgroup()):
        for cg in env.task_cgroups().values():
            try:
                cgroup.write(os.path.join(cg, "cgroup.kill"), "1")
            except OSError:
                pass
        # The spawner (issue 9) is no task's: it would linger until its
        # idle exit. The cgroup.kill below ends it.
        end = time.monotonic() + 60
        while env.monitor_pids() and time.monotonic() < end:
            time.sleep(0.1)
    cgroup.kill(env.cg_root)
    cgroup.kill(env.aux_cg)
    for p in (env.lancod_proc, env.pueued_proc):
        if p:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    cgroup.rmdir_tree(env.cg_root)
    cgroup.rmdir_tree(env.aux_cg)
