#!/bin/sh
# In the arm64 guest of scripts/arm64-boot.sh (busybox sh, toa.ko beside
# this script): the architecture and release, then toa loaded and unloaded
# with every hook mechanism in turn, each with the mechanism it chose (its
# "toa loaded (hook=...)" line), any fallback line and the head of
# /proc/net/toa_stats. Fails if a load or an unload fails, or the kernel
# complains (BUG, Oops, WARNING, a splat).
#
#   sh arm64-smoke.sh RELEASE
want_rel=${1:?usage: arm64-smoke.sh RELEASE}
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

echo "uname -m: $(uname -m)"
echo "uname -r: $(uname -r)"
[ "$(uname -m)" = aarch64 ] || fail "not aarch64"
[ "$(uname -r)" = "$want_rel" ] || fail "release is not $want_rel"

for h in auto ftrace kretprobe fprobe direct; do
    dmesg -c >/dev/null
    if [ "$h" = auto ]; then set -- /toa/toa.ko; else set -- /toa/toa.ko "hook=$h"; fi
    if insmod "$@"; then
        chose=$(dmesg | sed -n 's/.*TOA: toa loaded (hook=\([a-z]*\),.*/\1/p')
        echo "hook=$h: loaded, mechanism ${chose:-?}"
        dmesg | grep 'TOA' | grep -v 'no balancer is trusted yet' | sed 's/^/  dmesg: /'
        head -n 3 /proc/net/toa_stats | sed 's/^/  toa_stats: /'
        if rmmod toa; then echo "hook=$h: unloaded"; else fail "rmmod toa (hook=$h)"; fi
    else
        fail "insmod toa.ko hook=$h"
        dmesg | tail -n 5 | sed 's/^/  dmesg: /'
    fi
    if dmesg | grep -qE 'BUG|Oops|WARNING|Call trace|Unable to handle'; then
        fail "kernel complaint with hook=$h"
        dmesg | grep -A 20 -E 'BUG|Oops|WARNING|Unable to handle' | head -n 40
    fi
done
echo "taint: $(cat /proc/sys/kernel/tainted)"
echo "arm64 smoke: $failed failed"
[ "$failed" = 0 ]
