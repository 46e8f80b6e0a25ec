#!/bin/bash
# Builds the lanco .deb with dpkg-deb (no cargo-deb, no debhelper).
#
#   packaging/build-deb.sh [--no-build] [VERSION]
#
# VERSION defaults to the workspace version in Cargo.toml; it must be the
# version the binaries say (`lanco --version`), with at most a +SUFFIX or
# ~SUFFIX. --no-build skips
# `cargo build --release --workspace` and packages the binaries already in
# $LANCO_BIN_DIR (default: where cargo puts them, $CARGO_TARGET_DIR/release
# or target/release), e.g. to make a second package with another suffix
# from the same build. The package is written to
# $LANCO_DEB_DIR (default: target/deb) and its path printed on the last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)

build=1
if [ "${1:-}" = "--no-build" ]; then
    build=0
    shift
fi
version=${1:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$top/Cargo.toml")}
if ! [[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]]; then
    echo "build-deb: bad version '$version'" >&2
    exit 2
fi
arch=$(dpkg --print-architecture)
# cargo resolves a relative CARGO_TARGET_DIR from where it runs: $top.
case "${CARGO_TARGET_DIR:-}" in
"") cargo_target=$top/target ;;
/*) cargo_target=$CARGO_TARGET_DIR ;;
*) cargo_target=$top/$CARGO_TARGET_DIR ;;
esac
bindir=${LANCO_BIN_DIR:-$cargo_target/release}
outdir=${LANCO_DEB_DIR:-$top/target/deb}

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-deb: $1 not found (apt-get install -y $2)" >&2; exit 1; }; }
need dpkg-deb dpkg
need gzip gzip

if [ "$build" = 1 ]; then
    (cd "$top" && cargo build --release --workspace)
fi
for b in lanco lancod lanco-monitor lanco-gen; do
    [ -x "$bindir/$b" ] || { echo "build-deb: $bindir/$b missing (cargo build --release --workspace)" >&2; exit 1; }
done
# One version source: what `lanco --version` says is the workspace version
# the binaries were built from, and the package's version is that same one
# (a test build may add a +SUFFIX or ~SUFFIX, as tests/lib/test-deb.sh does).
# Packaging other binaries under a bumped version would make them disagree.
built=$("$bindir/lanco" --version | sed -n 's/^lanco //p')
if [ "$built" != "${version%%[+~]*}" ]; then
    echo "build-deb: $bindir/lanco is version '$built', the package would be $version: build the binaries of version ${version%%[+~]*} (its Cargo.toml), or package them as $built" >&2
    exit 2
fi

pkg=lanco_${version}_${arch}
stage=$outdir/$pkg
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$outdir"

inst() { # inst MODE SRC DEST
    install -D -m "$1" "$2" "$stage$3"
}

# Binaries (stripped: the release profile keeps symbols).
inst 0755 "$bindir/lanco" /usr/bin/lanco
inst 0755 "$bindir/lancod" /usr/bin/lancod
inst 0755 "$bindir/lanco-monitor" /usr/libexec/lanco/lanco-monitor
inst 0755 "$top/systemd/lanco-tasks-hold" /usr/libexec/lanco/lanco-tasks-hold
if command -v strip >/dev/null 2>&1; then
    for f in "$stage/usr/bin/lanco" "$stage/usr/bin/lancod" "$stage/usr/libexec/lanco/lanco-monitor"; do
        if [ "$(head -c 4 "$f")" = $'\x7fELF' ]; then
            strip --strip-unneeded "$f"
        fi
    done
fi

# Units.
for u in lancod.socket lancod.service lanco-tasks.service lanco-enabled.service \
         lanco-account.service lanco-account.timer; do
    inst 0644 "$top/systemd/$u" "/lib/systemd/system/$u"
done

# Configuration (conffiles) and the state directory.
inst 0644 "$here/etc/lanco.toml" /etc/lanco/lanco.toml
install -d -m 0755 "$stage/var/lib/lanco"

# Man pages (lanco(1), lanco-COMMAND(1), lanco.toml(5)) and the completion
# scripts, which ask `lanco __complete` for their candidates.
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$bindir/lanco-gen" "$gen"
mkdir -p "$stage/usr/share/man/man1" "$stage/usr/share/man/man5" "$stage/usr/share/man/man8"
for m in "$gen"/man/*.1; do
    gzip -9n < "$m" > "$stage/usr/share/man/man1/$(basename "$m").gz"
done
gzip -9n < "$gen/man/lanco.toml.5" > "$stage/usr/share/man/man5/lanco.toml.5.gz"
gzip -9n < "$here/man/lancod.8" > "$stage/usr/share/man/man8/lancod.8.gz"
inst 0644 "$gen/completions/lanco.bash" /usr/share/bash-completion/completions/lanco
inst 0644 "$gen/completions/_lanco" /usr/share/zsh/vendor-completions/_lanco
inst 0644 "$gen/completions/lanco.fish" /usr/share/fish/vendor_completions.d/lanco.fish

# Documentation required by policy.
mkdir -p "$stage/usr/share/doc/lanco"
cat > "$stage/usr/share/doc/lanco/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lanco

Files: *
Copyright: the lanco authors
License: ISC
EOF
printf 'lanco (%s) unstable; urgency=medium\n\n  * Package built from the lanco source tree.\n\n -- lanco developers <lanco@localhost>  %s\n' \
    "$version" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
    gzip -9n > "$stage/usr/share/doc/lanco/changelog.gz"

# Maintainer scripts and conffiles.
for s in preinst postinst prerm postrm; do
    install -m 0755 "$here/debian/$s" "$stage/DEBIAN/$s"
done
printf '/etc/lanco/lanco.toml\n' > "$stage/DEBIAN/conffiles"

# Depends from the binaries' shared libraries.
depends="libc6, libgcc-s1"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    shl=$(mktemp -d)
    mkdir -p "$shl/debian"
    printf 'Source: lanco\n\nPackage: lanco\nArchitecture: any\n' > "$shl/debian/control"
    if d=$(cd "$shl" && dpkg-shlibdeps -O "$stage/usr/bin/lanco" "$stage/usr/bin/lancod" \
            "$stage/usr/libexec/lanco/lanco-monitor" 2>/dev/null); then
        d=${d#shlibs:Depends=}
        [ -z "$d" ] || depends=$d
    fi
    rm -rf "$shl"
fi

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: lanco
Version: $version
Architecture: $arch
Maintainer: lanco developers <lanco@localhost>
Installed-Size: $size
Depends: $depends
Recommends: systemd
Section: admin
Priority: optional
Homepage: https://example.invalid/lanco
Description: launch, name, log and stop long-running tasks of users and daemons
 lanco starts tasks on behalf of ordinary users and daemons, tracks each in
 a cgroup v2 directory of its own, logs its output and lets anyone allowed
 check, list, measure and stop it by name. Tasks survive restarts of the
 program that asked for them and upgrades of lanco itself.
 .
 The privileged helper lancod is socket-activated and exits when idle; the
 tasks live in the delegated cgroup of lanco-tasks.service.
EOF

deb=$outdir/$pkg.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
