#!/bin/sh
# In the arm64 guest of scripts/arm64-boot.sh (busybox sh, toa.ko beside
# this script): the architecture and release, then toa loaded and unloaded
# with every hook mechanism in turn, each with the mechanism it chose (its
# "toa loaded (hook=...)" line), any fallback line and the head of
# /proc/net/toa_stats, and an HTTP fetch over IPv4 and IPv6 loopback
# (busybox httpd and wget) while it is loaded. Fails if a load, an unload
# or a fetch fails, or the kernel complains (BUG, Oops, WARNING, a splat).
#
#   sh arm64-smoke.sh RELEASE
want_rel=${1:?usage: arm64-smoke.sh RELEASE}
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

echo "uname -m: $(uname -m)"
echo "uname -r: $(uname -r)"
[ "$(uname -m)" = aarch64 ] || fail "not aarch64"
[ "$(uname -r)" = "$want_rel" ] || fail "release is not $want_rel"

mkdir -p /tmp/www && echo toa-arm64 >/tmp/www/index.html
for h in auto ftrace kretprobe fprobe direct; do
    dmesg -c >/dev/null
    if [ "$h" = auto ]; then set -- /toa/toa.ko; else set -- /toa/toa.ko "hook=$h"; fi
    if insmod "$@"; then
        chose=$(dmesg | sed -n 's/.*TOA: toa loaded (hook=\([a-z]*\),.*/\1/p')
        echo "hook=$h: loaded, mechanism ${chose:-?}"
        dmesg | grep 'TOA' | grep -v 'no balancer is trusted yet' | sed 's/^/  dmesg: /'
        head -n 3 /proc/net/toa_stats | sed 's/^/  toa_stats: /'
        # Connections through the hooked functions (accept, the child
        # socket's creation), over IPv4 and IPv6 loopback: they must work
        # with toa loaded (no balancer is trusted: nothing is rewritten).
        for a in 127.0.0.1 '[::1]'; do
            httpd -p "$a:8080" -h /tmp/www
            sleep 0.2
            got=$(wget -q -T 10 -O - "http://$a:8080/index.html" 2>&1)
            killall httpd 2>/dev/null
            if [ "$got" = "toa-arm64" ]; then echo "  http over $a: ok"; else fail "http over $a with hook=$h: $got"; fi
        done
        grep -E '^syn_recv_sock_no_toa|^getname_toa_bypass' /proc/net/toa_stats | sed 's/^/  toa_stats: /'
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
