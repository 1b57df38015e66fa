#!/bin/bash
# Inside the arm64 guest (scripts/arm64-stock-test.sh through arm64-boot.sh),
# chrooted in a per-run overlay of the arm64 root (scripts/arm64-root.sh),
# booted on the stock arm64 kernel installed there: what an arm64 backend's
# operator does and sees. `apt install ./toa-dkms_<version>_all.deb` (the
# same package as amd64's), DKMS building toa.ko here, natively, for the
# running kernel; the C example servers compiled with the root's gcc; then
# tests/e2e/stock-guest.sh, as on amd64's stock kernels: modprobe, modinfo,
# dmesg, the in-VM suite's cases, the FULLNAT end-to-end test.
#
#   arm64-stock-guest.sh RELEASE [--demo]
#
# /toa holds the package, the test programs cross-built for aarch64
# (toa-vmtest, toa-balancer, the Rust example servers), the C servers'
# sources and the test scripts. Prints ok/not ok lines, then every result
# file between `=== FILE name` and `=== END` lines for the host.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -uo pipefail
rel=${1:?usage: arm64-stock-guest.sh RELEASE [--demo]}
mode=${2:-}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive
passed=0 failed=0
check() { # check NAME STATUS [detail]
    if [ "$2" = 0 ]; then
        passed=$((passed + 1)); echo "ok - $1"
    else
        failed=$((failed + 1)); echo "not ok - $1${3:+: $3}"
    fi
}
res=/toa-results
payload=/opt/toa-test
rm -rf "$res" "$payload" && mkdir -p "$res" "$payload"
{
    check "uname -m is aarch64" "$([ "$(uname -m)" = aarch64 ]; echo $?)" "$(uname -m)"
    deb=$(ls /toa/toa-dkms_*_all.deb)
    start=$(date +%s)
    apt-get install -y "$deb" >"$res/install.log" 2>&1
    check "apt install ./$(basename "$deb") exits 0 ($(($(date +%s) - start)) s: DKMS builds toa.ko in the guest)" $? \
        "$(tail -n 5 "$res/install.log")"
    tr -d '\r' <"$res/install.log" | sed -n '/^Setting up toa-dkms/,$p' | grep -v '^$' | sed 's/^/    /'
    status=$(dkms status toa 2>&1)
    check "dkms status: toa installed for $rel" "$(grep -q "$rel.*installed" <<<"$status"; echo $?)" "$status"
    for f in /var/lib/dkms/toa/*/build/make.log /var/lib/dkms/toa/*/"$rel"/*/log/make.log; do
        [ -e "$f" ] && cp "$f" "$res/make.log"
    done
    grep -h '^toa: ' "$res/make.log" 2>/dev/null | sed 's/^/    /'
    warnings=$(grep -E '(^|[^a-z])warning(\[|:)' "$res/make.log" 2>/dev/null)
    check "DKMS's build of toa: no compiler warning" "$([ -z "$warnings" ]; echo $?)" "$(head -n 3 <<<"$warnings")"
    ok=0
    for name in toa_server toa_udp_server; do
        gcc -std=gnu11 -O2 -Wall -Wextra -Werror -I /toa/uapi "/toa/$name.c" -o "$payload/${name}_c" || ok=1
    done
    check "the C example servers build with the root's gcc" "$ok"
    echo "$passed passed, $failed failed"
} >"$res/install.txt" 2>&1
cat "$res/install.txt"
for f in toa-vmtest toa-balancer toa_server toa_udp_server fullnat.sh pods.sh stock-guest.sh; do
    [ -e "/toa/$f" ] && cp "/toa/$f" "$payload/"
done
rc=0
[ "$failed" = 0 ] || rc=1
if [ "$rc" = 0 ]; then
    bash "$payload/stock-guest.sh" "$rel" "$res" "$payload" $mode || rc=1
fi
# The kernel log after all of it.
splats=$(dmesg | grep -E 'BUG:|Oops|WARNING:|UBSAN|refcount_t|list_(add|del) corruption')
if [ -z "$splats" ]; then
    printf '%s\n' "ok - kernel log clean (no WARNING/BUG/Oops)" "1 passed, 0 failed" >"$res/kernel.txt"
else
    { echo "not ok - kernel log clean: $(echo "$splats" | head -n 3)"; dmesg | tail -n 60; echo "0 passed, 1 failed"; } >"$res/kernel.txt"
    rc=1
fi
for f in "$res"/*.txt "$res/make.log"; do
    [ -e "$f" ] || continue
    echo "=== FILE $(basename "$f")"
    cat "$f"
    echo "=== END"
done
exit "$rc"
