#!/usr/bin/env bash
# Fuzz one target of crates/toa-core/fuzz (the module's pure Rust) with
# cargo fuzz (libFuzzer + AddressSanitizer) for a bounded time.
#
#   scripts/fuzz.sh TARGET SECONDS [--save]
#
# The saved corpus (crates/toa-core/fuzz/corpus/TARGET) seeds the run; new
# inputs go to a scratch directory, unless --save, which adds them to the
# saved corpus and minimizes it (what `make fuzz` does). Exits non-zero on
# a crash, a failed assertion, a leak or a timeout; the input is left in
# crates/toa-core/fuzz/artifacts/TARGET.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

target=${1:?usage: fuzz.sh TARGET SECONDS [--save]}
seconds=${2:?usage: fuzz.sh TARGET SECONDS [--save]}
export PATH=$TOA_TOOLS/bin:$PATH RUSTC_BOOTSTRAP=1
cd "$TOA_ROOT/crates/toa-core"
corpus=fuzz/corpus/$target
if [ "${3:-}" = --save ]; then
    cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -timeout=10
    cargo fuzz cmin "$target" "$corpus"
else
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    cargo fuzz run "$target" "$scratch" "$corpus" -- -max_total_time="$seconds" -timeout=10
fi
