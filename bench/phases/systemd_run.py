"""systemd-run of a transient service: only where a systemd manager runs."""

import shutil
import subprocess
import time

from lib.cgroup import read


def measure(env, plan, res):
    res.sdr, res.sdr_note = None, None
    exe = shutil.which("systemd-run")
    if not exe:
        res.sdr_note = "systemd-run: not installed."
        return
    p = subprocess.run([exe, "--unit", "lanco-bench-probe", "--collect", "--quiet", "/bin/true"],
                       capture_output=True, text=True, timeout=20)
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[0]
        res.sdr_note = ("systemd-run could not run here (PID 1 is `%s`, not systemd): "
                        "`%s`. No figure for it." % (read("/proc/1/comm").strip(), why))
        return
    # A systemd is there: time it like the others (as root: transient system
    # units need a privileged caller or polkit).
    xs = []
    for i in range(30):
        t0 = time.perf_counter_ns()
        subprocess.run([exe, "--unit", "lanco-bench-%d" % i, "--collect", "--quiet",
                        "/bin/sleep", "1000"], check=True)
        xs.append((time.perf_counter_ns() - t0) / 1e6)
        subprocess.run(["systemctl", "stop", "lanco-bench-%d" % i])
    res.sdr = xs


def report(R, plan, res):
    if res.sdr:
        R.row("`run` vs `systemd-run`", res.s10["run"], comp="systemd-run", comp_xs=res.sdr)
    else:
        R.row("`run` vs `systemd-run`", res.s10["run"],
              comp="systemd-run: cannot run here (see notes)")
    if res.sdr_note:
        R.notes.append(res.sdr_note)
