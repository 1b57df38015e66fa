#!/usr/bin/env bash
# The main job, end to end (`make run`), the way a user gets toa, without
# building a kernel: `make deb`; a Debian 13 root with Debian's stock 7.2
# kernel (scripts/stock-root.sh, cached); `apt install` of the package there
# (DKMS builds toa.ko for that kernel, rebuilding the Rust metadata its
# headers lack); the unmodified kernel booted under QEMU on that root, where
# `modprobe toa` loads what DKMS installed and tests/e2e/fullnat.sh runs: a
# client, a FULLNAT balancer (nftables DNAT+SNAT, conntrack, toa-balancer)
# and a backend with nginx, Python's http.server and a NAT64-aware C server.
# Prints what the servers saw without and with toa.ko, side by side.
#
# The root with the package installed is kept as an overlay layer (keyed by
# the root and the package's contents): a second run only boots, and a
# changed package is reinstalled over it (DKMS rebuilds toa.ko only).
#
# TOA_KERNEL=7.3 (or 6.12) runs the demo on a self-built test kernel with
# the host's root instead (builds that kernel the first time, ~10 min).
# TOA_ARCH=arm64 runs it on Debian's stock arm64 kernel under
# qemu-system-aarch64, in an arm64 trixie root where apt installs the same
# package and DKMS builds toa.ko (scripts/arm64-stock-test.sh --demo; the
# first run makes the root under user-mode emulation: see README, "Where it
# runs").
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TOA_CACHE/target}

case ${TOA_ARCH:-amd64} in
amd64 | x86_64) ;;
arm64 | aarch64)
    scripts/bootstrap.sh --run
    exec scripts/arm64-stock-test.sh --demo
    ;;
*) die "TOA_ARCH=${TOA_ARCH}: amd64 or arm64" ;;
esac

# The C example servers the guest runs (TCP with the NAT64 lookup, UDP).
build_servers() {
    mkdir -p "$TOA_CACHE/bin"
    local name
    for name in toa_server toa_udp_server; do
        gcc -std=gnu11 -O2 -Wall -I include/uapi "examples/$name.c" -o "$TOA_CACHE/bin/${name}_c" \
            || die "examples/$name.c does not build"
    done
}

if [ -n "${TOA_KERNEL:-}" ]; then
    prepare_kernel_and_module "$TOA_KERNEL"
    cargo build --release -q -p toa-balancer
    build_servers
    log "running the FULLNAT topology in a VM on kernel $TOA_KERNEL"
    exec scripts/vm.sh "$KDIR" "$TOA_CACHE/results/demo-$TOA_KERNEL" tests/e2e/fullnat.sh \
        "insmod $KO" "rmmod toa" "$CARGO_TARGET_DIR/release/toa-balancer" "$TOA_CACHE/bin/toa_server_c" \
        "$TOA_CACHE/bin/toa_udp_server_c"
fi

# The overlay is mounted in a mount namespace of this run's own.
if [ -z "${TOA_DEMO_NS:-}" ]; then
    exec env TOA_DEMO_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi

scripts/bootstrap.sh --run
# The root is network-bound, the host programs CPU-bound: both at once.
rootdir=$(mktemp)
trap 'rm -f "$rootdir"' EXIT
scripts/stock-root.sh >"$rootdir" &
root_job=$!
cargo build --release -q -p toa-balancer
build_servers
deb=$(scripts/deb.sh)
wait "$root_job" || die "the trixie root could not be built"
dir=$(cat "$rootdir")
# shellcheck disable=SC1091
. "$dir/kernels.env"

# The root as this machine's user left it last time: an overlay layer.
layers=$TOA_CACHE/run-layer
layer=$layers/$(basename "$dir")
find "$layers" -mindepth 1 -maxdepth 1 ! -path "$layer" -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$layer/upper" "$layer/work" "$layer/merged"
root=$layer/merged
mount -t overlay overlay -o "lowerdir=$dir/root,upperdir=$layer/upper,workdir=$layer/work" "$root"

key=$(dpkg-deb -I "$deb" control md5sums | sha256sum | cut -c1-16)
if [ "$(cat "$layer/installed" 2>/dev/null)" != "$key" ]; then
    log "apt install ./$(basename "$deb") in the trixie root (DKMS builds toa.ko for $OLD)"
    cp "$deb" "$root/tmp/"
    if ! scripts/chroot.sh "$root" apt-get install -y --reinstall "/tmp/$(basename "$deb")" >"$layer/install.log" 2>&1; then
        tail -n 30 "$layer/install.log" >&2
        die "apt install of the package failed (log: $layer/install.log)"
    fi
    rm -f "$root/tmp/$(basename "$deb")"
    grep -E '^(toa:|Building initial module|Autoinstall|Sign|Installing /|Warning|Error)' "$layer/install.log" | sed 's/^/    /' >&2
    echo "$key" >"$layer/installed"
else
    log "toa-dkms (this package) already installed in the trixie root"
fi

res=$TOA_CACHE/results/demo
boot_rc=0
scripts/stock-boot.sh "$root" "$OLD" "$res" --demo >/dev/null || boot_rc=$?
sed 's/^/    /' "$res/checks.txt" >&2 2>/dev/null || true
if [ -s "$res/e2e.txt" ]; then cat "$res/e2e.txt"; else tail -n 40 "$res/console.log" >&2; fi
# Green only if the VM ran the guest to its end with a clean kernel log and
# every check of the guest and of the end-to-end test passed.
[ "$boot_rc" = 0 ] || log "the VM run failed (status $boot_rc; $res/console.log)"
[ "$boot_rc" = 0 ] && [ "$(summary_of "$res/e2e.txt" | cut -d' ' -f2)" = 0 ] \
    && [ "$(summary_of "$res/checks.txt" | cut -d' ' -f2)" = 0 ] && ! [ -s "$res/splats.txt" ]
