#!/usr/bin/env bash
# `make bench`: what toa costs, in a VM, on one or more kernels in one run:
# TOA_KERNEL is a list (default "7.3"; "7.3 6.12 stock arm64" for all;
# "stock" is Debian's stock 7.3.4 with the packaged module:
# scripts/bench-stock.sh; "arm64" Debian's stock arm64 7.3.4 under
# qemu-system-aarch64, icount only: scripts/arm64-suite.sh --bench), with
# toa-bench (crates/toa-test): module unloaded vs loaded with each hook mechanism, interleaved repetitions.
# Each run ends with a table of the cost per operation, unloaded and per
# variant with its delta and ratio; the last lines repeat every kernel's
# table. See docs/performance.md.
#
# Two runs per kernel, two clocks:
#  - icount: one vCPU under QEMU's `-icount shift=0,sleep=off`, where the
#    guest clock counts emulated instructions: exact, repeatable ratios;
#  - wall: two vCPUs under multi-threaded TCG: noisy ratios (median and
#    range), and how IPv6 lookups scale from one thread to two.
#
# BENCH_CLOCKS (default "icount wall"), BENCH_REPS, BENCH_NETFILTER=1 (empty
# nftables chains on toa's hooks, loaded or not: a host that already uses
# netfilter) and BENCH_HOOKS (default
# direct,ftrace,kretprobe,fprobe) tune it. BENCH_OMIT breaks a variant's
# cost down by hook: each word label=symbol,... adds the module built
# without those hooks (TOA_BENCH_OMIT, src/glue/entry.c) as a variant with
# BENCH_OMIT_HOOK (default direct+udp=0), e.g. BENCH_OMIT="destruct=
# inet_sock_destruct syn=tcp_conn_request,tcp_check_req recv=syn_recv_sock".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

# One kernel: the results land in $TOA_CACHE/results/bench-<kernel>-<clock>.
bench_one() {
    local kernel=$1 clock
    # Debian's stock kernel, with the module DKMS builds from the package.
    if [ "$kernel" = stock ]; then
        scripts/bench-stock.sh
        return
    fi
    # Debian's stock arm64 kernel under qemu-system-aarch64 (icount only).
    if [ "$kernel" = arm64 ]; then
        scripts/arm64-suite.sh --bench "$TOA_CACHE/results/bench-arm64-icount"
        return
    fi
    prepare_kernel_and_module "$kernel"
    cargo build --release -q -p toa-test --bin toa-bench
    # Breakdowns: per BENCH_OMIT word (label=symbol,symbol), the module
    # built without those hooks, as one more variant (BENCH_OMIT_HOOK).
    local variants=$hooks word label ko
    for word in ${BENCH_OMIT:-}; do
        label=${word%%=*}
        ko=$(TOA_BENCH_OMIT=$(tr , ' ' <<<"${word#*=}") \
            scripts/build-module.sh "$KDIR" "$TOA_CACHE/module/$kernel-omit-$label")
        cp "$ko" "$(dirname "$ko")/toa-omit-$label.ko"
        variants+=",${BENCH_OMIT_HOOK:-direct+udp=0}@$(dirname "$ko")/toa-omit-$label.ko"
    done
    for clock in ${BENCH_CLOCKS:-icount wall}; do
        bench_args "$KO" "$clock" "$variants"
        log "bench on kernel $kernel, clock $clock"
        TOA_VM_TIMEOUT=3600 scripts/vm.sh "$KDIR" "$TOA_CACHE/results/bench-$kernel-$clock" \
            "$CARGO_TARGET_DIR/release/toa-bench" "${BENCH_ARGS[@]}"
    done
}

hooks=${BENCH_HOOKS:-direct,ftrace,kretprobe,fprobe}
kernels=${TOA_KERNEL:-7.3}
for kernel in $kernels; do
    bench_one "$kernel"
done
# Every kernel's table together: the table is the last lines of each
# run's output, from its "# ... per operation" heading on.
for kernel in $kernels; do
    clocks=${BENCH_CLOCKS:-icount wall}
    [ "$kernel" = arm64 ] && clocks=icount
    for clock in $clocks; do
        out=$TOA_CACHE/results/bench-$kernel-$clock/output.txt
        echo
        echo "## kernel $kernel, clock $clock"
        if [ -s "$out" ] && grep -q '^# .* per operation' "$out"; then
            sed -n '/^# .* per operation/,$p' "$out"
        else
            echo "no table: the run failed (see $out)"
        fi
    done
done
