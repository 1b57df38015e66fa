#!/usr/bin/env bash
# Build toa.ko for one kernel tree in a build directory of its own (Kbuild
# writes objects next to the sources, so each kernel gets a copy), first with
# clippy as the Rust compiler, then with rustc. Any compiler or clippy warning
# fails the build. Prints the path of toa.ko on stdout.
#
#   scripts/build-module.sh KDIR BUILD_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kdir=${1:?usage: build-module.sh KDIR BUILD_DIR}
dir=${2:?usage: build-module.sh KDIR BUILD_DIR}
mkdir -p "$dir"
# Copy the module's sources, keeping timestamps so rebuilds are incremental.
(cd "$TOA_ROOT" && tar cf - Kbuild Makefile dkms.conf src include scripts/kbuild-env.sh scripts/rust-meta.sh scripts/rust-meta.mk) | tar xf - -C "$dir"

build() {
    local out
    out=$(make -C "$dir" KDIR="$kdir" "$@" 2>&1) || { echo "$out" >&2; die "toa.ko build failed ($*)"; }
    if grep -E '(^|[^a-z])(warning|error)(\[|:)' <<<"$out" >&2; then
        die "toa.ko build has warnings ($*)"
    fi
}
# Clippy compiles the crate too: force both passes over the Rust sources.
touch "$dir/src/toa_main.rs"
build CLIPPY=1
touch "$dir/src/toa_main.rs"
build
echo "$dir/toa.ko"
