"""Where lanco keeps things: the harness's one copy of lanco's path rules.

This mirrors lanco-proto/src/layout.rs, which is the authority (owners and
modes: docs/DESIGN.md, "Layout"); change the two together. Nothing else in
bench/ joins a namespace, uid or task name into a path. The harness checks
this copy against the binaries once per run (phases/base.py asks
`lanco NS status --json` where a task's main pid and its monitor are).

    <cgroup_root>/ns-NS/user-UID/{monitors, task-NAME}     cgroups
    <state_dir>/ns/NS/names/task-NAME.lock                  who owns a name
    <state_dir>/ns/NS/user-UID/task-NAME.{state,exit}.json  a member's records
    <state_dir>/ns/NS/user-UID/spawner.sock                 the member's warm spawner
    <state_dir>/ns/NS/user-UID/accounting.jsonl             a line per finished run
    <log_dir>/lanco-NS/task-NAME.log                        task output

The harness's private installation never holds lanco 0.1 tasks, so the
legacy paths (tasks and monitors straight below ns-NS) are left out.
"""

import os

MONITOR_LEAF = "monitors"
SPAWNER_SOCKET = "spawner.sock"
SPAWNER_COMM = "lanco-spawner"  # a spawner's comm; its argv is any monitor's
STANDBY_COMM = "lanco-standby"  # the fork of it kept ready for the next caller
STATE_SUFFIX = ".state.json"
ACCOUNTING = "accounting.jsonl"
NAMES = "names"
NS_PREFIX = "ns-"
USER_PREFIX = "user-"
TASK_PREFIX = "task-"


class Layout:
    def __init__(self, cgroup_root, state_dir, log_dir):
        self.cgroup_root = cgroup_root
        self.state_dir = state_dir
        self.log_dir = log_dir

    def config_keys(self):
        """The lanco.toml lines that make lanco use this layout."""
        return 'cgroup_root = "%s"\nstate_dir = "%s"\nlog_dir = "%s"\n' % (
            self.cgroup_root, self.state_dir, self.log_dir)

    def ns_cgroup(self, ns):
        return os.path.join(self.cgroup_root, NS_PREFIX + ns)

    def user_cgroup(self, ns, uid):
        """A member's delegated subtree."""
        return os.path.join(self.ns_cgroup(ns), user_entry(uid))

    def monitor_cgroup(self, ns, uid):
        return os.path.join(self.user_cgroup(ns, uid), MONITOR_LEAF)

    def task_cgroup(self, ns, uid, task):
        return os.path.join(self.user_cgroup(ns, uid), task_file(task))

    def ns_state_dir(self, ns):
        return os.path.join(self.state_dir, "ns", ns)

    def user_state_dir(self, ns, uid):
        return os.path.join(self.ns_state_dir(ns), user_entry(uid))

    def names_dir(self, ns):
        return os.path.join(self.ns_state_dir(ns), NAMES)

    def lock_file(self, ns, task):
        """Held by the task's monitor; its owner owns the name."""
        return os.path.join(self.names_dir(ns), task_file(task, ".lock"))

    def state_file(self, ns, uid, task):
        """The running task's state (pids, start time, command)."""
        return os.path.join(self.user_state_dir(ns, uid), task_file(task, STATE_SUFFIX))

    def accounting_file(self, ns, uid):
        """The member's accounting journal: one JSON line per finished run
        (task, run_id, start, end, restarts, exit, …)."""
        return os.path.join(self.user_state_dir(ns, uid), ACCOUNTING)

    def spawner_socket(self, ns, uid):
        """Where the member's warm spawner listens (issue 9); it lives in
        the member's monitors cgroup, named `lanco-spawner` (comm)."""
        return os.path.join(self.user_state_dir(ns, uid), SPAWNER_SOCKET)

    def task_log(self, ns, task):
        return os.path.join(self.log_dir, "lanco-" + ns, task_file(task, ".log"))


def user_entry(uid):
    """`user-UID`: a member's cgroup subtree and state directory."""
    return "%s%d" % (USER_PREFIX, uid)


def task_file(task, suffix=""):
    """`task-NAME{suffix}`: a task's cgroup (no suffix) and its files."""
    return TASK_PREFIX + task + suffix


def state_files(layout, ns, uid):
    """Paths of the member's running tasks' state files."""
    d = layout.user_state_dir(ns, uid)
    try:
        entries = os.listdir(d)
    except FileNotFoundError:
        return []
    return [os.path.join(d, e) for e in entries
            if e.startswith(TASK_PREFIX) and e.endswith(STATE_SUFFIX)]


def task_of_cgroup_entry(entry):
    """The task a cgroup directory entry stands for, or None."""
    return entry[len(TASK_PREFIX):] if entry.startswith(TASK_PREFIX) else None


def task_cgroups(layout, ns, uid):
    """{task name: cgroup path} of every task cgroup in a member's subtree."""
    try:
        entries = os.listdir(layout.user_cgroup(ns, uid))
    except FileNotFoundError:
        return {}
    out = {}
    for e in entries:
        task = task_of_cgroup_entry(e)
        if task is not None:
            out[task] = os.path.join(layout.user_cgroup(ns, uid), e)
    return out
