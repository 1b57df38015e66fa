#!/usr/bin/env bash
# Boot one of Debian's stock kernels, installed in a trixie test root, under
# QEMU with that root, and run tests/e2e/stock-guest.sh in it: the checks a
# user would make after `apt install toa-dkms`, the in-VM suite's IPv4 and
# IPv6 cases, the FULLNAT end-to-end test.
#
#   scripts/stock-boot.sh ROOT RELEASE RESULTS [--demo]
#
# ROOT must be writable (scripts/stock-test.sh and scripts/demo.sh give it
# an overlay over the cached root): the test programs are copied to
# ROOT/opt/toa-test first. The kernel boots unmodified from
# ROOT/usr/lib/modules/RELEASE/vmlinuz, without an initramfs (virtme-ng
# mounts the root over 9p itself). RESULTS gets scripts/vm.sh's files and
# stock-guest.sh's (checks.txt, evidence.txt, suite.txt, e2e.txt).
# --demo: the checks and the end-to-end test only (`make run`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

root=${1:?usage: stock-boot.sh ROOT RELEASE RESULTS [--demo]}
rel=${2:?usage: stock-boot.sh ROOT RELEASE RESULTS [--demo]}
results=${3:?usage: stock-boot.sh ROOT RELEASE RESULTS [--demo]}
demo=${4:-}
target=${CARGO_TARGET_DIR:-$TOA_CACHE/target}/release
image=$root/usr/lib/modules/$rel/vmlinuz
[ -e "$image" ] || die "kernel $rel is not installed in $root"

# The test programs: built on this (Debian 12) machine, they run on the
# trixie root (same architecture, newer glibc).
payload=/opt/toa-test
mkdir -p "$root$payload"
programs=("$target/toa-balancer" "$TOA_CACHE/bin/toa_server_c"
    "$TOA_ROOT/tests/e2e/fullnat.sh" "$TOA_ROOT/tests/e2e/stock-guest.sh")
[ "$demo" = --demo ] || programs+=("$target/toa-vmtest" "$target/examples/toa_server")
cp "${programs[@]}" "$root$payload/"

log "booting Debian's $rel (unmodified) with the trixie root under QEMU"
TOA_VM_ROOT=$root "$TOA_ROOT/scripts/vm.sh" "$image" "$results" \
    "$payload/stock-guest.sh" "$rel" /toa-results "$payload" $demo
