#!/usr/bin/env python3
"""Where a lanco command sleeps: off-CPU intervals from a scheduler trace.

    perf record -e sched:sched_switch -e sched:sched_wakeup -g -a -o run.data -- sleep 2 &
    sleep 0.5; lanco NS run TASK CMD...; wait
    bench/tools/offcpu.py run.data [MIN_MS]

Prints each interval longer than MIN_MS (default 0.5) that a process spent
asleep (state S or D), with its duration and the kernel and user frames of
the stack it went to sleep with. This is how docs/DESIGN.md ("The start
path") found the RCU grace period a cold `run` waits for in lancod's
cgroup.procs write (synchronize_rcu under percpu_down_write).
"""

import re
import subprocess
import sys

SKIP = {"__schedule", "schedule", "__traceiter_sched_switch", "schedule_timeout",
        "schedule_preempt_disabled"}
SWITCH = re.compile(r"\s(\d+\.\d+): sched:sched_switch: prev_comm=(\S+) prev_pid=(\d+) \S+ "
                    r"prev_state=(\S+) ==> next_comm=\S+ next_pid=(\d+)")


def main():
    data = sys.argv[1]
    min_s = float(sys.argv[2]) / 1e3 if len(sys.argv) > 2 else 0.0005
    out = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True,
                         check=True).stdout
    asleep = {}
    for rec in out.split("\n\n"):
        lines = [l for l in rec.strip().split("\n") if l.strip()]
        m = SWITCH.search(lines[0]) if lines else None
        if not m:
            continue
        t, comm, pid, state, nxt = float(m[1]), m[2], int(m[3]), m[4], int(m[5])
        if nxt in asleep:
            t0, c, s, stack = asleep.pop(nxt)
            if t - t0 >= min_s:
                print("%8.3f ms  %s[%d] %s at %.4f: %s" % ((t - t0) * 1e3, c, nxt, s, t0,
                                                           " < ".join(stack)))
        if state in ("S", "D"):
            frames = [l.split()[1].split("+")[0] for l in lines[1:]]
            asleep[pid] = (t, comm, state, [f for f in frames if f not in SKIP][:9])


if __name__ == "__main__":
    main()
