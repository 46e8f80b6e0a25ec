"""systemd-run of a transient service, for comparison: on this host where
a systemd manager runs (measure), and in a booted Debian container under
systemd-nspawn (in_container), the rootfs of tests/nspawn/run.sh."""

import os
import platform
import shutil
import subprocess
import time

from lib import cgroup
from lib.cgroup import read
from lib.log import log
from lib.measure import med

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NSPAWN_SCRIPT = os.path.join(REPO, "tests", "nspawn", "run.sh")
NSPAWN_CACHE = "/var/cache/lanco-nspawn"  # tests/nspawn/run.sh's $CACHE
BUDGET = 120.0  # seconds for the whole container phase, preparing included
SPACE = 0.3  # seconds between spaced calls, as the warm `run` rows
CT_N = 20  # timed calls in each loop (after CT_WARM)
CT_WARM = 2


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
        res.sdr_note = ("systemd-run could not run on the host (PID 1 is `%s`, not systemd): "
                        "`%s`." % (read("/proc/1/comm").strip(), why))
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


# The loop inside the container, as root there: perl-base is in the minbase
# rootfs, Time::HiRes is not, so CLOCK_MONOTONIC comes from the syscall.
# Each round: exec /bin/true, then systemd-run (both fork+exec+wait by
# perl's system LIST), times in ns on one line.
CT_LOOP = r'''
my ($n, $space, $nr) = @ARGV;
sub now { my $t = "\0" x 16; syscall($nr, 1, $t) == 0 or die "clock_gettime: $!\n";
          my ($s, $ns) = unpack("q q", $t); return $s * 1000000000 + $ns; }
sub timed { my $t0 = now(); my $rc = system(@_); my $t1 = now();
            die "@_: status $rc\n" if $rc != 0; return $t1 - $t0; }
$| = 1;
for my $i (1 .. $n) {
    select(undef, undef, undef, $space) if $space > 0;
    my $t = timed("/bin/true");
    my $s = timed("systemd-run", "--quiet", "--collect", "/bin/sleep", "1000");
    print "$t $s\n";
}
'''
CLOCK_GETTIME = {"x86_64": 228, "aarch64": 113}


def in_container(env, plan, res):
    """systemd-run timed inside a booted Debian container (tests/nspawn/run.sh's
    cached rootfs, booted read-only under an overlay: the cache is not
    written), same run. Bounded by BUDGET; always powers the container off.
    On any obstacle res.ct_note says why and there is no figure."""
    res.ct, res.ct_note = None, None
    t_end = time.monotonic() + BUDGET
    why = _ct_obstacle(env)
    if why:
        res.ct_note = why
        return
    log("systemd-run in a booted container (tests/nspawn's rootfs)")
    rootfs, why = _rootfs(env, t_end)
    if not rootfs:
        res.ct_note = why
        return
    ct = _Container(env, rootfs)
    try:
        why = ct.boot(t_end)
        if why:
            res.ct_note = why
            return
        res.ct = {}
        for tag, space in (("spaced", SPACE), ("b2b", 0)):
            xs, why = ct.loop(CT_N + CT_WARM, space, t_end)
            if why:
                res.ct, res.ct_note = None, why
                return
            xs = xs[CT_WARM:]
            res.ct[tag] = dict(true=[a for a, _ in xs], sdr=[b for _, b in xs])
        res.ct["systemd"] = ct.version
    finally:
        ct.poweroff()
        log("container powered off (%.0f s in the phase)" % (BUDGET - (t_end - time.monotonic())))


def _ct_obstacle(env):
    if env.no_nspawn:
        return "systemd-run in a container: not run (--no-nspawn)."
    nr = CLOCK_GETTIME.get(platform.machine())
    if nr is None:
        return ("systemd-run in a container: not run: no clock_gettime syscall number known "
                "for %s (the in-container loop reads CLOCK_MONOTONIC by syscall)."
                % platform.machine())
    if not os.path.isfile(NSPAWN_SCRIPT):
        return "systemd-run in a container: not run: %s is missing." % NSPAWN_SCRIPT
    if not env.nspawn_build:
        if not shutil.which("systemd-nspawn"):
            return ("systemd-run in a container: not run: systemd-nspawn is not installed and "
                    "this run may not install it (`tests/nspawn/run.sh --prepare` does, or "
                    "run the full suite).")
        if not _cached():
            return ("systemd-run in a container: not run: no cached rootfs in %s and this run "
                    "may not build one (`tests/nspawn/run.sh --prepare`, ~1 min, or run the "
                    "full suite)." % NSPAWN_CACHE)
    return None


def _cached():
    try:
        return any(os.path.exists(os.path.join(NSPAWN_CACHE, d, ".complete"))
                   for d in os.listdir(NSPAWN_CACHE))
    except OSError:
        return False


def _rootfs(env, t_end):
    """tests/nspawn/run.sh --prepare: installs systemd-container and
    debootstrap if missing, builds the rootfs once, prints its path."""
    try:
        p = subprocess.run([NSPAWN_SCRIPT, "--prepare"], capture_output=True, text=True,
                           timeout=max(1.0, t_end - time.monotonic() - 45), start_new_session=True)
    except subprocess.TimeoutExpired:
        return None, ("systemd-run in a container: not run: `tests/nspawn/run.sh --prepare` "
                      "did not finish within the phase's %d s." % BUDGET)
    for line in p.stdout.splitlines():
        if line.startswith("prepared: "):
            path = line[len("prepared: "):].strip()
            if os.path.isdir(path):
                return path, None
    tail = (p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or
            ["exit %d" % p.returncode])[-1]
    return None, ("systemd-run in a container: not run: `tests/nspawn/run.sh --prepare` "
                  "failed: `%s`." % tail)


class _Container:
    """The rootfs booted with systemd-nspawn as tests/nspawn/run.sh boots it
    (pure cgroup2 layout), but read-only with a tmpfs overlay on top
    (--volatile=overlay: no copy to make and remove), in a cgroup of the
    harness's aux tree (killed and removed by the run's cleanup too)."""

    def __init__(self, env, rootfs):
        self.env, self.rootfs = env, rootfs
        self.cg = os.path.join(env.aux_cg, "nspawn")
        self.proc = self.leader = None
        self.version = "?"
        self.logf = os.path.join(env.dir, "nspawn-console.log")

    def boot(self, t_end):
        os.mkdir(self.cg)
        machine = "lanco-bench-%d" % os.getpid()  # [a-z0-9-] only: a valid machine name
        environ = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        with open(self.logf, "ab") as logf:
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "-q", "-D", self.rootfs, "--volatile=overlay", "--boot",
                 "--register=no", "--keep-unit", "--private-network", "--machine=" + machine,
                 "--console=passive", "--timezone=off", "--resolv-conf=off",
                 "systemd.unified_cgroup_hierarchy=1"],
                env=environ, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                preexec_fn=lambda: cgroup.join(self.cg, os.getpid()))
        while time.monotonic() < t_end and self.proc.poll() is None:
            self.leader = _child_named(self.proc.pid, "systemd")
            if self.leader:
                break
            time.sleep(0.05)
        if not self.leader:
            return "systemd-run in a container: not run: the container did not start (%s)." % (
                self._console_tail())
        # As run.sh: systemctl needs the manager's private socket first.
        try:
            while self.ct(["test", "-S", "/run/systemd/private"], t_end).returncode != 0:
                if self.proc.poll() is not None or time.monotonic() > t_end - 20:
                    return ("systemd-run in a container: not run: its systemd never opened "
                            "/run/systemd/private (%s)." % self._console_tail())
                time.sleep(0.1)
            p = self.ct(["systemctl", "is-system-running", "--wait"], t_end)
        except subprocess.TimeoutExpired:
            return "systemd-run in a container: not run: its systemd did not finish booting in time."
        st = p.stdout.strip()
        if st not in ("running", "degraded"):
            return "systemd-run in a container: not run: its systemd says `%s` (%s)." % (
                st, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1])
        self.version = (self.ct(["systemctl", "--version"], t_end).stdout.splitlines()
                        or ["?"])[0]
        return None

    def ct(self, argv, t_end, stdin=None):
        return subprocess.run(["nsenter", "-t", str(self.leader), "-a"] + argv, input=stdin,
                              capture_output=True, text=True,
                              timeout=max(1.0, t_end - time.monotonic() - 15))

    def loop(self, n, space, t_end):
        nr = CLOCK_GETTIME[platform.machine()]
        try:
            p = self.ct(["perl", "-e", CT_LOOP, str(n), str(space), str(nr)], t_end)
        except subprocess.TimeoutExpired:
            return None, "systemd-run in a container: the timing loop did not finish in time."
        if p.returncode != 0:
            return None, "systemd-run in a container: the timing loop failed: `%s`." % (
                (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1])
        xs = [tuple(float(v) / 1e6 for v in line.split()) for line in p.stdout.splitlines()
              if line.strip()]
        return xs, None

    def poweroff(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log("container did not power off in 15 s: killing it")
                cgroup.kill(self.cg)
                self.proc.kill()
                self.proc.wait()
        # What nspawn leaves behind when killed.
        cgroup.kill(self.cg)
        cgroup.rmdir_tree(self.cg)

    def _console_tail(self):
        try:
            return " / ".join(read(self.logf).strip().splitlines()[-3:]) or "no output"
        except OSError:
            return "no output"


def _child_named(ppid, comm):
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = read("/proc/%s/stat" % d)
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if name == comm and int(stat[stat.rindex(")") + 2:].split()[1]) == ppid:
            return int(d)
    return None


def report(R, plan, res):
    warm = getattr(res, "spw", None)
    ct = getattr(res, "ct", None)
    if ct:
        for tag, label, key in (("spaced", "spaced %d ms apart" % (SPACE * 1000), "warm_spaced"),
                                ("b2b", "back to back", "warm_b2b")):
            xs = warm[key]["run"] if warm else res.s10["run"]
            R.row("`run`, warm, %s vs `systemd-run` in a booted container" % label, xs,
                  comp="systemd-run --quiet --collect /bin/sleep 1000 (%s, as root)" % ct["systemd"],
                  comp_xs=ct[tag]["sdr"])
        R.notes.append(
            "systemd-run was timed inside a Debian container booted with systemd-nspawn "
            "(tests/nspawn/run.sh's rootfs, pure cgroup2 layout, same kernel and mount, same run) "
            "by a perl loop there (fork+exec+wait, CLOCK_MONOTONIC), %d calls each spaced %d ms "
            "and back to back, as root (transient system units). Exec of /bin/true in the same "
            "loops: %.2f ms spaced, %.2f ms back to back (the harness's, on the host: %s)."
            % (CT_N, SPACE * 1000, med(ct["spaced"]["true"]), med(ct["b2b"]["true"]),
               "%.2f ms" % med(warm["warm_spaced"]["true"]) if warm else "—"))
    else:
        R.row("`run` vs `systemd-run` in a booted container", res.s10["run"],
              comp="systemd-run: cannot run here (see notes)")
        R.notes.append((res.ct_note or "systemd-run in a container: not run.") + " No figure for it.")
    if res.sdr:
        R.row("`run` vs `systemd-run` on this host", res.s10["run"], comp="systemd-run",
              comp_xs=res.sdr)
    if res.sdr_note:
        R.notes.append(res.sdr_note)
