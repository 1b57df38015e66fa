#!/usr/bin/env bash
# `make check-latest`: the package on the newest kernels Debian offers on
# the day it runs, unpinned (not part of make check: the archive moves, a
# test must not): the newest amd64 kernel of trixie-backports (with
# trixie's toolchain or backports' one, whichever it names) and of sid
# (with sid's), each through scripts/debian-kernel-test.sh. A Debian kernel
# that breaks toa is caught the day it appears.
#
# Prints each run's lines and one `N passed, M failed, K skipped`.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"
passed=0 failed=0 skipped=0
for dist in trixie-backports sid; do
    log "the newest kernel of $dist"
    rc=0
    scripts/debian-kernel-test.sh "$dist" >"$TOA_CACHE/latest-$dist.txt" || rc=$?
    grep -vE '^[0-9]+ passed, [0-9]+ failed' "$TOA_CACHE/latest-$dist.txt" | sed "s/^/$dist: /"
    read -r p f s <<<"$(summary_of "$TOA_CACHE/latest-$dist.txt")"
    if [ -z "$p" ]; then
        echo "not ok - $dist: printed no summary"
        failed=$((failed + 1))
        continue
    fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        echo "not ok - $dist: scripts/debian-kernel-test.sh exits $rc"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
