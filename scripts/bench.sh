#!/usr/bin/env bash
# `make bench`: what toa costs, in a VM on one test kernel (default 7.3,
# TOA_KERNEL=6.12 for the other), with toa-bench (crates/toa-test): module
# unloaded vs loaded with each hook mechanism, interleaved repetitions,
# ratios printed as the last lines. See docs/performance.md.
#
# BENCH_REPS (default 7) and BENCH_HOOKS (default kretprobe,fprobe) tune it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

kernel=${TOA_KERNEL:-7.3}
prepare_kernel_and_module "$kernel"
cargo build --release -q -p toa-test --bin toa-bench
TOA_VM_TIMEOUT=3600 scripts/vm.sh "$KDIR" "$TOA_CACHE/results/bench-$kernel" \
    "$CARGO_TARGET_DIR/release/toa-bench" --module "$KO" \
    --reps "${BENCH_REPS:-7}" --hooks "${BENCH_HOOKS:-kretprobe,fprobe}"
