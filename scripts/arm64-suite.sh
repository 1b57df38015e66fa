#!/usr/bin/env bash
# `make arm64-suite`: the VM suite (crates/toa-test's toa-vmtest, built for
# aarch64 as a static musl binary) on Debian's stock arm64 kernel under
# qemu-system-aarch64, with toa.ko cross-built for it
# (scripts/arm64-kernel.sh) and the kernel's own tun.ko, in the busybox
# guest of scripts/arm64-boot.sh.
#
#   scripts/arm64-suite.sh RESULTS [TOA-VMTEST-ARGS...]
#   scripts/arm64-suite.sh --bench RESULTS [TOA-BENCH-ARGS...]
#
# --bench runs toa-bench instead (`TOA_KERNEL=arm64 make bench`), on one
# vCPU under `-icount shift=0,sleep=off`: instructions per operation with
# each hook mechanism arm64 has (BENCH_HOOKS, BENCH_REPS as make bench).
#
# Without arguments: the groups in ONLY (below) but the cases in SKIP,
# under each hook mechanism arm64 has (TOA_ARM64_HOOKS, default
# auto,ftrace,kretprobe,fprobe; auto is direct there). The groups left out need
# what the busybox guest lacks (iproute2's netns and setpriv for local:
# and namespaces:, the test kernel modules for owners: and two hooks:
# cases, bpftrace for one, which skips): see README, "Where it runs".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The cases run on arm64: every group the busybox guest can serve.
ONLY=("lifecycle:" "ipv4:" "ipv6:" "producers:" "trust:" "handshakes:" "udp:" "hooks:" "stress:")
# Left out: they need programs the guest lacks (Python; the example
# servers, built for amd64; iproute2's netns and setpriv for the
# namespace cases; the test kernel modules of tests/kmod, built for amd64).
SKIP=("Python" "C example server" "Rust example server" "toa_udp lists the namespace"
    "namespaces:" "another module" "live-patch-like claimer")
cd "$TOA_ROOT"
prog=toa-vmtest
if [ "${1:-}" = --bench ]; then
    prog=toa-bench
    shift
fi
results=${1:?usage: arm64-suite.sh [--bench] RESULTS [ARGS...]}
shift
target=aarch64-unknown-linux-musl
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TOA_CACHE/target}
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    log "rustup target add $target (the guest's test runner)"
    rustup target add "$target" >&2
fi
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    cargo build --release -q -p toa-test --bin "$prog" --target "$target"

MODULES=''
while IFS='=' read -r k v; do
    [ "$k" = MODULES ] && MODULES=$v
done < <(scripts/arm64-kernel.sh)
[ -d "$MODULES" ] || die "scripts/arm64-kernel.sh printed no modules directory"
stage=$TOA_CACHE/arm64-suite
rm -rf "$stage" && mkdir -p "$stage"
tun=$(find "$MODULES" -name 'tun.ko*' | head -n1)
[ -n "$tun" ] || die "no tun.ko in $MODULES"
case $tun in
*.xz) xz -dc "$tun" >"$stage/tun.ko" ;;
*.zst) zstd -qdc "$tun" >"$stage/tun.ko" ;;
*) cp "$tun" "$stage/tun.ko" ;;
esac
cp "$CARGO_TARGET_DIR/$target/release/$prog" "$stage/$prog"

if [ "$prog" = toa-bench ]; then
    [ $# -gt 0 ] || set -- --clock icount --hooks "${BENCH_HOOKS:-auto,ftrace,kretprobe,fprobe}" \
        ${BENCH_REPS:+--reps "$BENCH_REPS"}
    export TOA_ARM64_CPUS=1 TOA_ARM64_QEMU_OPTS="-icount shift=0,sleep=off"
elif [ $# -eq 0 ]; then
    # 10 unload cycles under churn per mechanism (100 on amd64: 500 s
    # here); TOA_ARM64_CYCLES another count (make check: 5).
    set -- --hooks "${TOA_ARM64_HOOKS:-auto,ftrace,kretprobe,fprobe}" --cycles "${TOA_ARM64_CYCLES:-10}"
    for o in "${ONLY[@]}"; do set -- "$@" --only "$o"; done
    for s in "${SKIP[@]}"; do set -- "$@" --skip "$s"; done
    # TOA_ARM64_SKIP: more to leave out (space-separated names or groups).
    for s in ${TOA_ARM64_SKIP:-}; do set -- "$@" --skip "$s"; done
fi
TOA_ARM64_FILES="$stage/tun.ko $stage/$prog" TOA_ARM64_MEM=2G \
    TOA_VM_TIMEOUT=${TOA_VM_TIMEOUT:-3600} \
    scripts/arm64-boot.sh "$results" "$TOA_ROOT/tests/e2e/arm64-suite.sh" "$prog" "$@"
