#!/bin/sh
# In the arm64 guest of scripts/arm64-boot.sh (busybox sh; toa.ko, tun.ko
# and PROGRAM, toa-vmtest (the VM suite's runner) or toa-bench cross-built
# for aarch64, beside this script): the architecture and release, then
# PROGRAM with the arguments (toa-vmtest's own: --only PREFIX..., --hooks
# ...) against Debian's stock arm64 kernel. toa-vmtest prints the summary
# line.
#
#   sh arm64-suite.sh RELEASE PROGRAM ARGS...
want_rel=${1:?usage: arm64-suite.sh RELEASE PROGRAM ARGS...}
prog=${2:?usage: arm64-suite.sh RELEASE PROGRAM ARGS...}
shift 2
echo "uname -m: $(uname -m)"
echo "uname -r: $(uname -r)"
if [ "$(uname -m)" != aarch64 ] || [ "$(uname -r)" != "$want_rel" ]; then
    echo "not the arm64 kernel $want_rel"
    echo "0 passed, 1 failed"
    exit 1
fi
# tun is a module in Debian's kernels (here without modprobe's tree).
if ! [ -e /sys/module/tun ] && ! insmod /toa/tun.ko; then
    echo "insmod tun.ko failed"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "toa.ko $(tr '\0' '\n' </toa/toa.ko | grep -m1 '^vermagic=')"
"/toa/$prog" --module /toa/toa.ko "$@"
rc=$?
dmesg | grep -E 'TOA: toa loaded|TOA: .*instead' | sed 's/^\[[^]]*\] //' | sort | uniq -c | sed 's/^/dmesg: /'
if dmesg | grep -qE 'BUG:|Oops|WARNING:|UBSAN|KASAN|refcount_t|list_(add|del) corruption'; then
    echo "the kernel complained:"
    dmesg | grep -E -A20 'BUG:|Oops|WARNING:|UBSAN|KASAN|refcount_t|list_(add|del) corruption' | head -n 60
    echo "0 passed, 1 failed"
    exit 1
fi
exit $rc
