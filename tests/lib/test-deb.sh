# Sourced by the test stages that install the package (tests/nspawn/run.sh,
# tests/vm/run.sh). Needs $top, the repository's root.
#
# test_deb SUFFIX OUTDIR [--no-build]: builds the package of this tree with
# packaging/build-deb.sh, versioned <workspace version>+SUFFIX, into OUTDIR,
# and prints its path. --no-build packages the release binaries already
# built instead of running cargo build first.
test_deb() {
    local suffix=$1 outdir=$2 nb=${3:-} base
    base=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$top/Cargo.toml")
    LANCO_DEB_DIR=$outdir "$top/packaging/build-deb.sh" $nb "$base+$suffix" | tail -n 1
}
