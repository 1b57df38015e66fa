#!/usr/bin/env bash
# Boot one of Debian's stock kernels, installed in a trixie test root, under
# QEMU with that root, and run tests/e2e/stock-guest.sh in it: the checks a
# user would make after `apt install toa-dkms`, the in-VM suite's IPv4 and
# IPv6 cases, the FULLNAT end-to-end test.
#
#   scripts/stock-boot.sh ROOT RELEASE RESULTS [--demo|--hooks]
#
# ROOT must be writable (scripts/stock-test.sh and scripts/demo.sh give it
# an overlay over the cached root): the test programs are copied to
# ROOT/opt/toa-test first. The kernel boots unmodified from
# ROOT/usr/lib/modules/RELEASE/vmlinuz, without an initramfs (virtme-ng
# mounts the root over 9p itself). RESULTS gets scripts/vm.sh's files and
# stock-guest.sh's (checks.txt, evidence.txt, suite.txt, e2e.txt).
# --demo: the checks and the end-to-end test only (`make run`); --hooks:
# also the TCP cases with every other hook mechanism.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

root=${1:?usage: stock-boot.sh ROOT RELEASE RESULTS [--demo|--hooks]}
rel=${2:?usage: stock-boot.sh ROOT RELEASE RESULTS [--demo|--hooks]}
results=${3:?usage: stock-boot.sh ROOT RELEASE RESULTS [--demo|--hooks]}
demo=${4:-}
target=${CARGO_TARGET_DIR:-$TOA_CACHE/target}/release
image=$root/usr/lib/modules/$rel/vmlinuz
[ -e "$image" ] || die "kernel $rel is not installed in $root"

# The test programs: built on this (Debian 12) machine, they run on the
# trixie root (same architecture, newer glibc).
payload=/opt/toa-test
mkdir -p "$root$payload"
programs=("$target/toa-balancer" "$TOA_CACHE/bin/toa_server_c" "$TOA_CACHE/bin/toa_udp_server_c"
    "$TOA_ROOT/tests/e2e/fullnat.sh" "$TOA_ROOT/tests/e2e/pods.sh" "$TOA_ROOT/tests/e2e/sockmap.sh"
    "$TOA_ROOT/tests/e2e/stock-guest.sh")
[ "$demo" = --demo ] || programs+=("$target/toa-vmtest" "$target/examples/toa_server" "$target/examples/toa_udp_server")
cp "${programs[@]}" "$root$payload/"
# The BPF programs of tests/e2e/sockmap.sh (run by the --hooks boot only:
# the sockops program and the getpeername ones), built here with clang's
# BPF target and this machine's uapi headers. `make run` (--demo) needs
# neither, nor clang: bootstrap.sh --run does not install it.
if [ "$demo" = --hooks ]; then
    for prog in sockmap getpeername; do
        clang-19 -target bpf -O2 -g -Wall -I/usr/include/x86_64-linux-gnu \
            -c "$TOA_ROOT/tests/bpf/$prog.bpf.c" -o "$root$payload/$prog.bpf.o" \
            || die "tests/bpf/$prog.bpf.c does not build"
    done
fi

# A boot that never reaches the command (QEMU's TCG has hung in early boot,
# before any module is loaded, on a machine overloaded by other VMs) is
# tried once more; anything after the command started counts as it is.
# The limit is a guard against a hung guest, with room for a machine that
# runs other VMs beside this one (make check runs up to four): the --hooks
# boot (the suite twice, the e2e, pods and socket-map tests) took 580 s
# beside three others.
if [ "$demo" = --hooks ]; then
    export TOA_VM_TIMEOUT=${TOA_VM_TIMEOUT:-1500}
else
    export TOA_VM_TIMEOUT=${TOA_VM_TIMEOUT:-900}
fi
for try in 1 2; do
    log "booting Debian's $rel (unmodified) with the trixie root under QEMU"
    rc=0
    TOA_VM_ROOT=$root "$TOA_ROOT/scripts/vm.sh" "$image" "$results" \
        "$payload/stock-guest.sh" "$rel" /toa-results "$payload" $demo || rc=$?
    [ "$rc" != 0 ] && [ "$try" = 1 ] && ! [ -e "$results/output.txt" ] || break
    log "the guest never started the command (console: $(tail -n1 "$results/console.log" | cut -c1-100)); booting again"
    cp "$results/console.log" "$results/../$(basename "$results")-hung-console.log" 2>/dev/null || true
done
exit "$rc"
