"""What /proc says about processes and the machine."""

import os
import platform

from lib.cgroup import read


def smaps_rollup(pid):
    """{'Rss': kB, 'Pss': kB, 'Private_Dirty': kB, ...}, or None once pid is gone."""
    out = {}
    try:
        for line in read("/proc/%d/smaps_rollup" % pid).splitlines()[1:]:
            k, v = line.split(":", 1)
            out[k.strip()] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out


def smaps_of(pids):
    """smaps_rollup of each pid still there."""
    return [m for m in (smaps_rollup(p) for p in pids) if m]


def comm(pid):
    """The process's name, or None once it is gone."""
    try:
        return read("/proc/%s/comm" % pid).rstrip("\n")
    except OSError:
        return None


def cmdline(pid):
    """The process's arguments, or None once it is gone (or unreadable)."""
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def is_zombie(pid):
    """A zombie, dead, or gone altogether."""
    try:
        return read("/proc/%s/stat" % pid).rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def all_pids():
    return [p for p in os.listdir("/proc") if p.isdigit()]


def loadavg():
    return read("/proc/loadavg").split()[:3]


def sysctl(name):
    return read("/proc/sys/" + name.replace(".", "/")).strip()


def machine():
    cpu = "?"
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) // 1024
    return dict(nproc=os.cpu_count(), kernel=platform.release(), cpu=cpu, mem_mib=mem,
                loadavg=loadavg())
