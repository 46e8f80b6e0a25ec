#!/bin/bash
# End-to-end test of the packaged lanco on a whole machine with every cgroup
# v2 controller (TESTING.md section 3): a Debian bookworm VM booted with qemu
# (software emulation, TCG), the kernel's pure cgroup2 hierarchy with the
# memory, pids, cpu and io controllers, the .deb installed inside and the
# scenario (tests/vm/scenario.sh) run as root and as two tenant users:
# quotas, the OOM killer, fork bombs, cpu limits and weights, top, accounting.
#
#   tests/vm/run.sh [--no-build | --deb FILE] [--keep] [--prepare]
#                   [--timeout SECS] [--scenario FILE]
#
#   --no-build  package the binaries already in $CARGO_TARGET_DIR/release
#               (default target/release).
#   --deb       use this package instead of building one.
#   --keep      keep the work directory (disk image, console log).
#   --prepare   only install the host tools and build the cached image.
#   --timeout   seconds the VM may take from power-on to power-off
#               [$LANCO_VM_TIMEOUT, else 480]; qemu is killed after that.
#   --scenario  run this script in the VM instead of tests/vm/scenario.sh
#               (to try one check without the others).
#
# Runs as root. Installs qemu-system-x86, debootstrap and e2fsprogs when
# missing. The image (debootstrap of bookworm minbase, systemd, Debian's
# cloud kernel and an initramfs, tmux, python3-minimal, jq) is built once
# and cached in /var/cache/lanco-vm/, under a key made of everything that
# goes into it (a change of the package list or of configure_image below
# builds a new one; the older ones are removed). The Debian mirror is the
# host's apt's (tests/lib/debian-mirror.sh) or $LANCO_DEBIAN_MIRROR.
#
# Every run makes a fresh disk from the cached rootfs (mkfs.ext4 -d, no
# mount), writes the .deb and the scenario into it (debugfs), and boots it;
# a oneshot unit in the image runs the scenario with its output on the
# serial console (ttyS0) and powers the VM off. The console goes to a log
# file, kept when anything fails. Prints PASS/FAIL per check and "N passed,
# M failed" at the end; exits non-zero on any failure, and when the VM never
# reached the scenario or never finished it.
#
# LANCO_VM_ACCEL (default tcg) is passed to qemu's -accel: KVM was seen to
# fail on the development machines, which is why the default emulates.
# LANCO_VM_APPEND is added to the kernel's command line (e.g.
# "systemd.show_status=1 loglevel=7" to watch the boot and the power-off).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)

build=1
deb=""
keep=0
prepare_only=0
scenario=$here/scenario.sh
TIMEOUT=${LANCO_VM_TIMEOUT:-480}
while [ $# -gt 0 ]; do
    case "$1" in
    --no-build) build=0 ;;
    --deb) shift; deb=${1:-} ;;
    --keep) keep=1 ;;
    --prepare) prepare_only=1 ;;
    --timeout) shift; TIMEOUT=${1:-} ;;
    --scenario) shift; scenario=${1:-} ;;
    *) echo "usage: $0 [--no-build | --deb FILE] [--keep] [--prepare] [--timeout SECS] [--scenario FILE]" >&2
       exit 2 ;;
    esac
    shift
done
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --timeout wants whole seconds, not '$TIMEOUT'" >&2; exit 2; }
[ -z "$deb" ] || [ -f "$deb" ] || { echo "run.sh: no package $deb" >&2; exit 2; }
[ -f "$scenario" ] || { echo "run.sh: no scenario $scenario" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 2; }

CACHE=/var/cache/lanco-vm
SUITE=bookworm
# What the scenario needs besides minbase: systemd as PID 1 (and udev for
# the devices), the kernel and an initramfs that finds the virtio disk,
# tmux (the TUI test), python3-minimal (a memory hog that touches what it
# allocates), jq (reading JSON), util-linux for setpriv and taskset.
INCLUDE=systemd,systemd-sysv,dbus,udev,kmod,procps,util-linux,tmux,python3-minimal,jq,initramfs-tools,linux-image-cloud-amd64
ACCEL=${LANCO_VM_ACCEL:-tcg}
start_time=$SECONDS

say() { printf '%s\n' "$*"; }
note() { printf '   %s\n' "$*"; }

# ---------------------------------------------------------------- host tools
ensure_tools() {
    local need=() t
    for t in qemu-system-x86_64:qemu-system-x86 debootstrap:debootstrap mkfs.ext4:e2fsprogs \
             debugfs:e2fsprogs dpkg-deb:dpkg flock:util-linux; do
        command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    say "== installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Without recommends: no GUI, firmware or block drivers qemu does not need here.
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        { echo "run.sh: cannot install ${need[*]}" >&2; exit 1; }
}

# debian_mirror: the Debian mirror of the host's apt configuration.
. "$top/tests/lib/debian-mirror.sh"
# test_deb: builds this tree's package with a version suffix.
. "$top/tests/lib/test-deb.sh"

# The image's own settings, applied once to the debootstrapped rootfs ROOT
# (its text is part of the cache key).
configure_image() {
    local root=$1 u
    echo lanco-vm > "$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 lanco-vm\n' > "$root/etc/hosts"
    # Nothing but the scenario on the console; no timers, logins or module
    # loads the scenario does not use (under emulation each costs seconds
    # of the boot); a journal in memory only.
    for u in console-getty.service getty@.service serial-getty@.service \
             systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
             e2scrub_all.timer e2scrub_reap.service fstrim.timer \
             systemd-logind.service modprobe@.service systemd-binfmt.service \
             systemd-update-utmp.service systemd-update-utmp-runlevel.service \
             systemd-journal-flush.service sys-kernel-debug.mount sys-kernel-tracing.mount \
             sys-kernel-config.mount dev-hugepages.mount dev-mqueue.mount; do
        ln -sf /dev/null "$root/etc/systemd/system/$u"
    done
    for u in proc-sys-fs-binfmt_misc.automount sys-fs-fuse-connections.mount \
             systemd-ask-password-console.path systemd-pcrphase.service \
             systemd-pcrphase-sysinit.service systemd-repart.service systemd-firstboot.service \
             systemd-modules-load.service kmod-static-nodes.service; do
        ln -sf /dev/null "$root/etc/systemd/system/$u"
    done
    # Generators run at boot and at every daemon-reload (dpkg -i does one).
    mkdir -p "$root/etc/systemd/system-generators"
    for u in cryptsetup gpt-auto hibernate-resume integritysetup veritysetup system-update \
             debug rc-local sysv getty; do
        ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-$u-generator"
    done
    mkdir -p "$root/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' > "$root/etc/systemd/journald.conf.d/lanco-vm.conf"
    # An initramfs with just what finds the root disk (ext4 is built in):
    # small, so quick to unpack under emulation.
    sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
    printf 'virtio_pci\nvirtio_blk\n' >> "$root/etc/initramfs-tools/modules"
    chroot "$root" update-initramfs -u -k all || return 1
    mkdir -p "$root/lanco-test"
    # Runs the scenario that each run writes into /lanco-test/, between two
    # marker lines the host looks for, then powers the machine off.
    cat > "$root/usr/local/sbin/lanco-vm-run" <<'EOF'
#!/bin/sh
echo
echo "LANCO-VM: scenario starting (uptime $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r))"
if [ -f /lanco-test/scenario.sh ]; then
    LANG=C.UTF-8 bash /lanco-test/scenario.sh /lanco-test/lanco.deb
    rc=$?
else
    echo "FAIL vm: /lanco-test/scenario.sh is not in the image"
    rc=1
fi
echo "LANCO-VM: scenario done (exit $rc, uptime $(cut -d' ' -f1 /proc/uptime) s)"
EOF
    chmod 0755 "$root/usr/local/sbin/lanco-vm-run"
    cat > "$root/etc/systemd/system/lanco-vm-scenario.service" <<'EOF'
[Unit]
Description=lanco test scenario (output on ttyS0, then power off)
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/lanco-vm-run
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity
EOF
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf ../lanco-vm-scenario.service "$root/etc/systemd/system/multi-user.target.wants/lanco-vm-scenario.service"
}

# The cached rootfs for these inputs; built once, under a lock. Its kernel
# and initramfs are in its /boot.
cached_rootfs() {
    local key dir
    key=$(printf '%s\n%s\n%s\nv1\n' "$SUITE" "$INCLUDE" "$(declare -f configure_image)" | sha256sum | cut -c1-12)
    dir=$CACHE/$SUITE-vm-$key
    mkdir -p "$CACHE"
    (
        flock 9
        if [ ! -e "$dir/.complete" ]; then
            local mirror t0=$SECONDS old
            mirror=$(debian_mirror) || exit 1
            say "== debootstrap $SUITE ($INCLUDE) from $mirror into $dir" >&2
            rm -rf --one-file-system "$dir.tmp" "$dir"
            if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$dir.tmp" "$mirror" \
                    > "$CACHE/debootstrap.log" 2>&1; then
                tail -n 20 "$CACHE/debootstrap.log" >&2
                echo "run.sh: debootstrap failed (log: $CACHE/debootstrap.log)" >&2
                exit 1
            fi
            if ! configure_image "$dir.tmp" >> "$CACHE/debootstrap.log" 2>&1; then
                tail -n 20 "$CACHE/debootstrap.log" >&2
                echo "run.sh: configuring the image failed (log: $CACHE/debootstrap.log)" >&2
                exit 1
            fi
            ls "$dir.tmp"/boot/vmlinuz-* "$dir.tmp"/boot/initrd.img-* > /dev/null ||
                { echo "run.sh: no kernel or initramfs in $dir.tmp/boot" >&2; exit 1; }
            mv "$dir.tmp" "$dir"
            touch "$dir/.complete"
            # Images of other inputs are of no more use.
            for old in "$CACHE/$SUITE"-vm-*; do
                [ "$old" = "$dir" ] || rm -rf --one-file-system "$old"
            done
            say "   image cached in $((SECONDS - t0)) s" >&2
        fi
    ) 9> "$CACHE/.lock" || exit 1
    echo "$dir"
}

ensure_tools
ROOTFS=$(cached_rootfs) || exit 1
KERNEL=$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -n 1)
INITRD=$(ls "$ROOTFS"/boot/initrd.img-* | sort -V | tail -n 1)
[ "$prepare_only" = 1 ] && { say "prepared: $ROOTFS (kernel $(basename "$KERNEL"))"; exit 0; }

WORK=$(mktemp -d /var/tmp/lanco-vm.XXXXXX)
CONSOLE=$WORK/console.log
qemu_pid=""
cleanup() {
    local rc=$?
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -KILL "$qemu_pid" 2>/dev/null
        wait "$qemu_pid" 2>/dev/null
    fi
    if [ "$keep" = 1 ]; then
        say "work directory kept: $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------- the package
if [ -z "$deb" ]; then
    say "== building package +vm"
    t0=$SECONDS
    nb=""
    [ "$build" = 1 ] || nb=--no-build
    deb=$(test_deb vm "$WORK/debs" $nb) || { echo "run.sh: build-deb.sh failed" >&2; exit 1; }
    note "built in $((SECONDS - t0)) s: $(basename "$deb")"
fi

# ------------------------------------------------------------ the disk
say "== disk image from $ROOTFS"
t0=$SECONDS
if ! mkfs.ext4 -q -F -L lanco-vm -d "$ROOTFS" "$WORK/disk.img" 2G > "$WORK/mkfs.log" 2>&1; then
    cat "$WORK/mkfs.log" >&2
    echo "run.sh: mkfs.ext4 -d failed" >&2
    exit 1
fi
# The package and the scenario into /lanco-test/, without mounting.
cp "$deb" "$WORK/lanco.deb"
cp "$scenario" "$WORK/scenario.sh"
printf 'cd /lanco-test\nwrite %s lanco.deb\nwrite %s scenario.sh\n' "$WORK/lanco.deb" "$WORK/scenario.sh" \
    > "$WORK/debugfs.cmds"
debugfs -w -f "$WORK/debugfs.cmds" "$WORK/disk.img" > "$WORK/debugfs.log" 2>&1
if ! debugfs -R 'ls -l /lanco-test' "$WORK/disk.img" 2>/dev/null | grep -q 'scenario.sh' ||
   ! debugfs -R 'ls -l /lanco-test' "$WORK/disk.img" 2>/dev/null | grep -q 'lanco.deb'; then
    cat "$WORK/debugfs.log" >&2
    echo "run.sh: could not write the package and the scenario into the disk image" >&2
    exit 1
fi
note "made in $((SECONDS - t0)) s (package $(basename "$deb"))"

# ------------------------------------------------------------------ the VM
say "== booting $(basename "$KERNEL") under qemu (-accel $ACCEL, timeout $TIMEOUT s)"
t_boot=$SECONDS
qemu-system-x86_64 -accel "$ACCEL" -cpu max -m 1024 -smp 2 -nographic -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -drive "file=$WORK/disk.img,format=raw,if=virtio" \
    -nic none -device virtio-rng-pci \
    -append "root=/dev/vda rw console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off systemd.unified_cgroup_hierarchy=1 systemd.show_status=error ${LANCO_VM_APPEND:-}" \
    < /dev/null > "$CONSOLE" 2>&1 &
qemu_pid=$!

# The console without carriage returns and terminal escapes.
plain() { tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g'; }
# Follow the console: print the scenario's lines as they come, until qemu
# exits or the time is up.
timed_out=0
printed=0
while :; do
    if [ -f "$CONSOLE" ]; then
        n=$(wc -l < "$CONSOLE")
        if [ "$n" -gt "$printed" ]; then
            sed -n "$((printed + 1)),${n}p" "$CONSOLE" | plain |
                grep -E '^(PASS|FAIL|== |   |LANCO-VM:)' || true
            printed=$n
        fi
    fi
    kill -0 "$qemu_pid" 2>/dev/null || break
    if [ $((SECONDS - t_boot)) -ge "$TIMEOUT" ]; then
        timed_out=1
        kill -KILL "$qemu_pid" 2>/dev/null
        break
    fi
    sleep 1
done
wait "$qemu_pid" 2>/dev/null
qemu_rc=$?
qemu_pid=""
vm_secs=$((SECONDS - t_boot))
n=$(wc -l < "$CONSOLE")
[ "$n" -gt "$printed" ] && sed -n "$((printed + 1)),${n}p" "$CONSOLE" | plain |
    grep -E '^(PASS|FAIL|== |   |LANCO-VM:)'

# ------------------------------------------------------------- the verdict
clean=$(plain < "$CONSOLE")
passed=$(grep -c '^PASS ' <<< "$clean")
failed=$(grep -c '^FAIL ' <<< "$clean")
begin=$(grep -m1 '^LANCO-VM: scenario starting' <<< "$clean")
end=$(grep -m1 '^LANCO-VM: scenario done' <<< "$clean")
if [ -z "$begin" ]; then
    say "FAIL vm: the VM never reached the scenario ($([ "$timed_out" = 1 ] && echo "killed after $TIMEOUT s" || echo "qemu exited with $qemu_rc"))"
    failed=$((failed + 1))
    tail -n 30 <<< "$clean" | sed 's/^/   | /'
elif [ -z "$end" ]; then
    say "FAIL vm: the scenario never finished ($([ "$timed_out" = 1 ] && echo "killed after $TIMEOUT s" || echo "qemu exited with $qemu_rc"))"
    failed=$((failed + 1))
    tail -n 30 <<< "$clean" | sed 's/^/   | /'
elif [[ "$end" != *"(exit 0,"* ]] && [ "$failed" = 0 ]; then
    say "FAIL vm: the scenario exited non-zero without a FAIL line: $end"
    failed=$((failed + 1))
fi
up_begin=$(sed -n 's/.*scenario starting (uptime \([0-9.]*\) s.*/\1/p' <<< "$begin")
up_end=$(sed -n 's/.*scenario done (exit [0-9]*, uptime \([0-9.]*\) s.*/\1/p' <<< "$end")

say ""
say "vm: boot to scenario ${up_begin:-?} s, scenario done at ${up_end:-?} s (guest uptime);" \
    "qemu ran $vm_secs s; total $((SECONDS - start_time)) s"
if [ "$failed" -gt 0 ] || [ "$passed" = 0 ]; then
    kept=/var/tmp/lanco-vm-console.$(date +%Y%m%d-%H%M%S).$$.log
    cp "$CONSOLE" "$kept" && say "vm: console log kept: $kept"
fi
say "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
