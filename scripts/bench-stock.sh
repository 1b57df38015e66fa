#!/usr/bin/env bash
# `TOA_KERNEL=stock make bench`: toa-bench on Debian's stock 7.3.4 kernel
# (the distribution's config, built by Debian), with the toa.ko that DKMS
# built for it from the toa-dkms package, in the cached trixie root
# (scripts/stock-root.sh). The root with the package and the kernel
# installed is kept as an overlay layer keyed by the root and the package's
# contents, as `make run` keeps its own. Same clocks and variables as
# scripts/bench.sh (BENCH_CLOCKS, BENCH_REPS, BENCH_HOOKS).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TOA_CACHE/target}

# The overlay is mounted in a mount namespace of this run's own.
if [ -z "${TOA_BENCH_NS:-}" ]; then
    exec env TOA_BENCH_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi

scripts/bootstrap.sh --run
dir=$(scripts/stock-root.sh) || die "the trixie root could not be built"
# shellcheck disable=SC1091
. "$dir/kernels.env"
cargo build --release -q -p toa-test --bin toa-bench
deb=$(scripts/deb.sh)

layers=$TOA_CACHE/bench-layer
layer=$layers/$(basename "$dir")
find "$layers" -mindepth 1 -maxdepth 1 ! -path "$layer" -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$layer/upper" "$layer/work" "$layer/merged"
root=$layer/merged
mount -t overlay overlay -o "lowerdir=$dir/root,upperdir=$layer/upper,workdir=$layer/work" "$root"

key=$(dpkg-deb -I "$deb" control md5sums | sha256sum | cut -c1-16)
if [ "$(cat "$layer/installed" 2>/dev/null)" != "$key" ]; then
    log "apt install ./$(basename "$deb") and linux-image-$NEW in the trixie root (DKMS builds toa.ko)"
    cp "$deb" "$root/tmp/"
    if ! scripts/chroot.sh "$root" apt-get install -y --reinstall "/tmp/$(basename "$deb")" >"$layer/install.log" 2>&1 ||
        ! scripts/chroot.sh "$root" apt-get install -y -t trixie-backports "linux-image-$NEW" "linux-headers-$NEW" \
            >>"$layer/install.log" 2>&1; then
        tail -n 30 "$layer/install.log" >&2
        die "apt install failed (log: $layer/install.log)"
    fi
    rm -f "$root/tmp/$(basename "$deb")"
    echo "$key" >"$layer/installed"
fi
ko=$(cd "$root" && ls lib/modules/"$NEW"/updates/dkms/toa.ko* 2>/dev/null | head -n1)
[ -n "$ko" ] || die "DKMS built no toa.ko for $NEW (log: $layer/install.log)"

mkdir -p "$root/opt/toa-bench"
cp "$CARGO_TARGET_DIR/release/toa-bench" "$root/opt/toa-bench/"
# tun is a module in Debian's kernels; toa-bench loads toa itself.
printf '#!/bin/sh\nmodprobe tun || exit 1\nexec /opt/toa-bench/toa-bench "$@"\n' >"$root/opt/toa-bench/run.sh"
chmod +x "$root/opt/toa-bench/run.sh"

hooks=${BENCH_HOOKS:-direct,ftrace,kretprobe,fprobe}
for clock in ${BENCH_CLOCKS:-icount wall}; do
    bench_args "/$ko" "$clock" "$hooks"
    log "bench on Debian's stock $NEW, clock $clock"
    TOA_VM_ROOT=$root TOA_VM_TIMEOUT=3600 scripts/vm.sh "$root/usr/lib/modules/$NEW/vmlinuz" \
        "$TOA_CACHE/results/bench-stock-$clock" /opt/toa-bench/run.sh "${BENCH_ARGS[@]}"
done
