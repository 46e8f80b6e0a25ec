"""The cgroup2 filesystem, as root sees it (and small file helpers)."""

import errno
import os
import time

from lib.log import log


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def cgroup2_mount():
    """(mount point, super options) of the first cgroup2 mount."""
    mnt, _, sup = cgroup2_mount_info()
    return mnt, sup


def cgroup2_mount_info():
    """(mount point, per-mount options, super options) of the first cgroup2
    mount, from /proc/self/mountinfo. cgroup2's own options (nsdelegate,
    favordynmods, memory_recursiveprot, …) are super options."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4], left.split()[5], right.split()[2]
    raise SystemExit("no cgroup2 mount in /proc/self/mountinfo")


def favordynmods(mount_opts, super_opts):
    """Whether the cgroup2 mount has `favordynmods` on (either option list)."""
    return "favordynmods" in (mount_opts.split(",") + super_opts.split(","))


def join(path, pid):
    """Moves pid into the cgroup at path."""
    write(os.path.join(path, "cgroup.procs"), str(pid))


def procs(path):
    try:
        return [int(x) for x in read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def procs_recursive(path):
    pids = []
    for d, _, _ in os.walk(path):
        pids += procs(d)
    return pids


def populated(path):
    """A cgroup that is gone is empty: its file missing (ENOENT), or
    removed between the open and the read (ENODEV; a monitor removes its
    task's cgroup as soon as it empties)."""
    try:
        for line in read(os.path.join(path, "cgroup.events")).splitlines():
            k, v = line.split()
            if k == "populated":
                return v == "1"
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            return False
        raise
    return False


def kill(path, timeout=10.0):
    """cgroup.kill a subtree and wait for it to empty."""
    if not os.path.isdir(path):
        return
    try:
        write(os.path.join(path, "cgroup.kill"), "1")
    except OSError as e:
        log("cgroup.kill %s: %s" % (path, e))
    end = time.monotonic() + timeout
    while populated(path) and time.monotonic() < end:
        time.sleep(0.01)


def rmdir_tree(path):
    """rmdir a cgroup subtree depth-first (after its processes are gone)."""
    if not os.path.isdir(path):
        return
    for d, _, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(d)
        except OSError as e:
            log("rmdir %s: %s" % (d, e))
