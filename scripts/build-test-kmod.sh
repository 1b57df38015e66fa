#!/usr/bin/env bash
# Build the test-only kernel modules of tests/kmod/ (toa_claim.ko: claims
# inet_getname the way a live patch would; toa_owner.ko: a kernel user of
# sk_user_data) for one kernel tree, in a build directory of their own;
# print the directory on stdout.
#
#   scripts/build-test-kmod.sh KDIR BUILD_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kdir=${1:?usage: build-test-kmod.sh KDIR BUILD_DIR}
dir=${2:?usage: build-test-kmod.sh KDIR BUILD_DIR}
mkdir -p "$dir"
cp -p "$TOA_ROOT"/tests/kmod/* "$dir/"
env=$("$TOA_ROOT/scripts/kbuild-env.sh" "$kdir")
# shellcheck disable=SC2086 # word splitting of the make variables is wanted
out=$(make -C "$kdir" M="$dir" $env modules 2>&1) || { echo "$out" >&2; die "test modules build failed"; }
if grep -E '(^|[^a-z])(warning|error)(\[|:)' <<<"$out" >&2; then
    die "test modules build has warnings"
fi
echo "$dir"
