#!/usr/bin/env bash
# `make bench`: what toa costs, in a VM on one test kernel (default 7.3,
# TOA_KERNEL=6.12 for the other, TOA_KERNEL=stock for Debian's stock 7.3.4
# with the packaged module: scripts/bench-stock.sh), with toa-bench
# (crates/toa-test): module unloaded vs loaded with each hook mechanism,
# interleaved repetitions, ratios printed as the last lines. See
# docs/performance.md.
#
# Two runs, two clocks:
#  - icount: one vCPU under QEMU's `-icount shift=0,sleep=off`, where the
#    guest clock counts emulated instructions: exact, repeatable ratios;
#  - wall: two vCPUs under multi-threaded TCG: noisy ratios (median and
#    range), and how IPv6 lookups scale from one thread to two.
#
# BENCH_CLOCKS (default "icount wall"), BENCH_REPS and BENCH_HOOKS (default
# direct,ftrace,kretprobe,fprobe) tune it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

kernel=${TOA_KERNEL:-7.3}
# Debian's stock kernel, with the module DKMS builds from the package.
[ "$kernel" = stock ] && exec scripts/bench-stock.sh
prepare_kernel_and_module "$kernel"
cargo build --release -q -p toa-test --bin toa-bench
hooks=${BENCH_HOOKS:-direct,ftrace,kretprobe,fprobe}
for clock in ${BENCH_CLOCKS:-icount wall}; do
    args=(--module "$KO" --clock "$clock" --hooks "$hooks")
    [ -n "${BENCH_REPS:-}" ] && args+=(--reps "$BENCH_REPS")
    if [ "$clock" = icount ]; then
        export TOA_VM_CPUS=1 TOA_VM_ACCEL=tcg TOA_QEMU_OPTS="-icount shift=0,sleep=off"
    else
        # Two vCPUs on two host threads: the scaling measurement needs them
        # to run at the same time.
        export TOA_VM_CPUS=2 TOA_VM_ACCEL=tcg,thread=multi TOA_QEMU_OPTS=
        args+=(--scaling)
    fi
    log "bench on kernel $kernel, clock $clock"
    TOA_VM_TIMEOUT=3600 scripts/vm.sh "$KDIR" "$TOA_CACHE/results/bench-$kernel-$clock" \
        "$CARGO_TARGET_DIR/release/toa-bench" "${args[@]}"
done
