#!/usr/bin/env bash
# The main job, end to end (`make run`): builds what it needs (toolchain,
# test kernel, toa.ko, the balancer's TOA program: all cached), boots the
# kernel under QEMU and runs tests/e2e/fullnat.sh: a client, a FULLNAT
# balancer (nftables DNAT+SNAT, conntrack, toa-balancer) and a backend with
# nginx, Python's http.server and a NAT64-aware C server; prints what the
# servers saw without and with toa.ko, side by side.
#
# TOA_KERNEL=6.12 runs it on the gcc-built 6.12 kernel instead of 7.3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

kernel=${TOA_KERNEL:-7.3}
prepare_kernel_and_module "$kernel"
cargo build --release -q -p toa-balancer
mkdir -p "$TOA_CACHE/bin"
gcc -O2 -Wall -I include/uapi examples/toa_server.c -o "$TOA_CACHE/bin/toa_server_c"
log "running the FULLNAT topology in a VM on kernel $kernel"
scripts/vm.sh "$KDIR" "$TOA_CACHE/results/demo-$kernel" tests/e2e/fullnat.sh \
    "insmod $KO" "rmmod toa" "$CARGO_TARGET_DIR/release/toa-balancer" "$TOA_CACHE/bin/toa_server_c"
