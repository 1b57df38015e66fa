#!/usr/bin/env bash
# Install everything toa needs to build its test kernels, the module and the
# host tools, on a fresh Debian 12 (bookworm) machine. Idempotent: a second run
# only checks. Prints the versions it settled on.
#
#   scripts/bootstrap.sh          everything (`make check`)
#   scripts/bootstrap.sh --run    what `make run` needs: no kernel or module
#                                 toolchain (the stock kernel's comes from
#                                 Debian inside the trixie root), only QEMU,
#                                 virtme-ng, debootstrap, Debian's packaging
#                                 tools and a C compiler
#
# Everything that is not a Debian package goes under $TOA_CACHE (default
# ~/.cache/toa), outside the repository.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

mode=${1:-}

# Debian packages. What `make run` needs: the trixie root (debootstrap), the
# package (dpkg-buildpackage, debhelper, dh_dkms), the test programs (gcc),
# virtme-ng's venv, and what virtme-ng itself runs on the host to boot a
# kernel (modprobe to find the guest's modules, a static busybox for its
# initramfs).
APT_PACKAGES=(
    debootstrap dpkg-dev debhelper dh-dkms
    gcc make xz-utils python3 python3-venv
    kmod busybox-static
)
# The rest: rustc-web is Debian's rustc 1.96 (installs /usr/bin/rustc); the
# test kernels and toa.ko for them are built with it and only with it.
[ "$mode" = --run ] || APT_PACKAGES+=(
    rustc-web rust-web-src rust-web-clippy rustfmt-web
    clang-19 lld-19 llvm-19 libclang-19-dev
    flex bison bc libelf-dev libssl-dev cpio
    dwarves
    udev
    iproute2
    nginx-light curl nftables libnetfilter-queue1 dkms dnsmasq-base
)
BINDGEN_VERSION=0.72.1
CARGO_FUZZ_VERSION=0.13.1
VIRTME_NG_VERSION=1.42

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # nginx must not start a daemon on the build machine: we only run it in VMs.
    if ! [ -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # A first install on a fresh machine can trip over a trigger ordering in
    # dpkg; finishing the configuration and trying once more settles it.
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        log "apt-get failed once; finishing configuration and retrying"
        dpkg --configure -a || true
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# QEMU from bookworm-backports (10.x). Bookworm's own QEMU 7.2 runs guests
# whose ftrace/kprobe code patching races with other vCPUs (spurious int3
# and NULL-jump oopses in the guest while toa is loaded and unloaded under
# load); 10.x does not. Installed with a private apt configuration (the
# machine's sources plus bookworm-backports), leaving apt's setup alone.
# qemu-system-arm (qemu-system-aarch64) boots Debian's stock arm64 kernel
# (scripts/arm64-boot.sh).
qemu=()
for q in x86:x86_64 arm:aarch64; do
    qemu-system-"${q#*:}" --version 2>/dev/null | grep -qE 'version (9|[1-9][0-9])\.' || qemu+=("qemu-system-${q%%:*}")
done
# qemu-img: the arm64 root's per-run overlays (scripts/arm64-stock-test.sh).
command -v qemu-img >/dev/null || qemu+=(qemu-utils)
if ((${#qemu[@]})); then
    log "installing ${qemu[*]} from bookworm-backports"
    apt_bookworm_backports -qq update
    DEBIAN_FRONTEND=noninteractive apt_bookworm_backports -y -qq install -t bookworm-backports \
        --no-install-recommends "${qemu[@]}" >/dev/null
fi

# virtme-ng from PyPI in a venv of its own.
if ! "$TOA_TOOLS/venv/bin/vng" --version 2>/dev/null | grep -q "$VIRTME_NG_VERSION"; then
    log "installing virtme-ng $VIRTME_NG_VERSION"
    /usr/bin/python3 -m venv "$TOA_TOOLS/venv"
    "$TOA_TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
        "virtme-ng==$VIRTME_NG_VERSION"
fi
if [ "$mode" = --run ]; then
    log "qemu: $(qemu-system-x86_64 --version | head -n1); $("$TOA_TOOLS/venv/bin/vng" --version)"
    exit 0
fi

# bindgen-cli from crates.io, pinned, built with rustup's cargo (any cargo will
# do: bindgen is a host tool that only needs libclang).
mkdir -p "$TOA_TOOLS"
if ! "$TOA_TOOLS/bin/bindgen" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
    log "installing bindgen-cli $BINDGEN_VERSION"
    LIBCLANG_PATH=/usr/lib/llvm-19/lib cargo install --quiet --locked \
        --root "$TOA_TOOLS" --version "$BINDGEN_VERSION" bindgen-cli
fi

# cargo-fuzz from crates.io, pinned (run with RUSTC_BOOTSTRAP=1: the
# machine's toolchain is stable, libFuzzer's sanitizer flags are not).
if ! "$TOA_TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --quiet --locked --root "$TOA_TOOLS" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

# The compilers the kernels and the module are built with; the kernel build
# cache key is made of these lines.
check_toolchain -v
log "qemu: $(qemu-system-x86_64 --version | head -n1)"
