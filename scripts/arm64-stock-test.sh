#!/usr/bin/env bash
# toa on Debian's stock arm64 kernel the way an arm64 server gets it (part of
# make check; `make run TOA_ARCH=arm64` is its --demo):
#
#  1. `make deb` (the same Architecture: all package as amd64's); the test
#     programs cross-built for aarch64 (static, musl: toa-vmtest,
#     toa-balancer, the Rust example servers);
#  2. the cached arm64 trixie root (scripts/arm64-root.sh: the stock
#     linux-image-7.3.4+deb13-arm64 and headers, linux-source-7.3, trixie's
#     rustc/bindgen/gcc-14, dkms), seen through a qcow2 overlay that lives
#     only as long as this run;
#  3. the stock arm64 kernel booted under qemu-system-aarch64 (TCG) on that
#     root (tests/e2e/arm64-stock-guest.sh): `apt install ./toa-dkms...deb`,
#     DKMS building toa.ko natively in the guest (the Rust metadata rebuilt
#     from linux-source, as on amd64); then tests/e2e/stock-guest.sh:
#     modprobe, modinfo, dmesg, the in-VM suite's cases, the FULLNAT
#     end-to-end test (nginx, Python, dnsmasq, the NAT64-aware C server).
#
#   scripts/arm64-stock-test.sh [--demo]
#
# Prints ok/not ok lines, the guest's evidence and `N passed, M failed,
# K skipped`. Results and logs: $TOA_CACHE/results/arm64-stock/.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"
mode=${1:-}

passed=0 failed=0 skipped=0

res=$TOA_CACHE/results/arm64-stock
rm -rf "$res" && mkdir -p "$res"
stage=$TOA_CACHE/arm64-stock-run
rm -rf "$stage" && mkdir -p "$stage"

deb=$(scripts/deb.sh)
check "make deb: $(basename "${deb:-none}")" $?
[ -n "$deb" ] || finish
cp "$deb" "$stage/"

# The test programs, for aarch64 (static: they run on any arm64 root).
target=aarch64-unknown-linux-musl
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TOA_CACHE/target}
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >&2
fi
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    cargo build --release -q --target "$target" -p toa-balancer -p toa-test --bin toa-balancer --bin toa-vmtest \
    && CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
        cargo build --release -q --target "$target" -p toa-client --example toa_server --example toa_udp_server
check "the test programs cross-build for $target" $?
out=$CARGO_TARGET_DIR/$target/release
cp "$out/toa-vmtest" "$out/toa-balancer" "$out/examples/toa_server" "$out/examples/toa_udp_server" \
    examples/toa_server.c examples/toa_udp_server.c \
    tests/e2e/fullnat.sh tests/e2e/pods.sh tests/e2e/stock-guest.sh "$stage/" || finish
mkdir -p "$stage/uapi" && cp -r include/uapi/. "$stage/uapi/"

vars=$(scripts/arm64-root.sh)
check "arm64 trixie root with Debian's stock arm64 kernel (debootstrap --foreign, finished under user-mode emulation; cached)" $?
DISK='' RELEASE=''
while IFS='=' read -r k v; do
    case $k in DISK | RELEASE) printf -v "$k" '%s' "$v" ;; esac
done <<<"$vars"
[ -n "$DISK" ] || finish
booted=$(scripts/arm64-kernel.sh --kernel | sed -n 's/^RELEASE=//p')
check "the root's kernel is the one booted ($RELEASE)" "$([ "$booted" = "$RELEASE" ]; echo $?)" "booted $booted"
qemu-img create -q -f qcow2 -b "$DISK" -F raw "$stage/overlay.qcow2"
check "per-run qcow2 overlay over the cached root" $?

# TOA_ARM64_FILES takes paths without spaces: the stage directory's.
files=$(find "$stage" -mindepth 1 -maxdepth 1 ! -name overlay.qcow2 | tr '\n' ' ')
rc=0
TOA_ARM64_DISK=$stage/overlay.qcow2 TOA_ARM64_MEM=2G TOA_ARM64_FILES=$files \
    TOA_VM_TIMEOUT=${TOA_VM_TIMEOUT:-3600} \
    scripts/arm64-boot.sh "$res/vm" tests/e2e/arm64-stock-guest.sh $mode >"$res/boot.log" 2>&1 || rc=$?
check "the arm64 guest ran the package test to its end, exit 0" "$rc" "$(tail -n 3 "$res/boot.log")"
# The guest's result files, from its console.
awk -v dir="$res" '/^=== FILE /{f=dir "/" $3; printf "" >f; next} /^=== END$/{f=""; next} f{print >>f}' \
    "$res/vm/output.txt"
sed -n '/^TOA-ARM64-START/,/^=== FILE/p' "$res/vm/output.txt" | grep -E '^ok|^not ok|^    ' | cut -c1-220
for f in install checks suite e2e kernel; do
    [ "$mode" = --demo ] && [ "$f" = suite ] && continue
    count "$res/$f.txt" "arm64 $f"
done
sed -n '/^server /,/^$/p' "$res/e2e.txt" 2>/dev/null | sed 's/^/    /'
sed 's/^/    /' "$res/evidence.txt" 2>/dev/null | grep -E '^    (#|[0-9]|filename|vermagic|signer|\[)'
rm -f "$stage/overlay.qcow2"
finish
