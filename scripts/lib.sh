# Shared settings for toa's scripts. Source it; do not run it.

TOA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Kernel trees, toolchain extras and VM results live outside the repository.
TOA_CACHE=${TOA_CACHE:-$HOME/.cache/toa}
TOA_TOOLS=$TOA_CACHE/tools
export TOA_ROOT TOA_CACHE TOA_TOOLS

# Debian's rustc (rustc-web) builds the kernels and the module; rustup's rustc,
# first in PATH on these machines, has no rust-src and must not be picked up.
KRUSTC=/usr/bin/rustc
KBINDGEN=$TOA_TOOLS/bin/bindgen
export LIBCLANG_PATH=/usr/lib/llvm-19/lib

log() { printf '\033[1m[toa]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[toa] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Print the exact compiler versions in use, one per line (also the cache key).
toolchain_versions() {
    echo "rustc: $($KRUSTC --version)"
    echo "bindgen: $($KBINDGEN --version 2>/dev/null)"
    echo "clang: $(clang-19 --version | head -n1)"
    echo "gcc: $(gcc --version | head -n1)"
}

# Fail unless the kernel toolchain is Debian's and complete; with "-v",
# also print the versions.
check_toolchain() {
    [ -x "$KRUSTC" ] || die "$KRUSTC missing: apt-get install rustc-web rust-web-src"
    "$KRUSTC" --version | grep -q '^rustc 1\.96\.' \
        || die "$KRUSTC is not rustc 1.96 (rustc-web): $($KRUSTC --version)"
    [ -d "$($KRUSTC --print sysroot)/lib/rustlib/src/rust/library/core" ] \
        || die "no rust-src for $KRUSTC: apt-get install rust-web-src"
    [ -x "$KBINDGEN" ] || die "bindgen missing: run scripts/bootstrap.sh"
    if [ "${1:-}" = -v ]; then toolchain_versions | sed 's/^/[toa] toolchain /' >&2; fi
}

# apt-get with the machine's sources plus bookworm-backports, in a private
# configuration and state under $TOA_CACHE: the machine's apt setup is left
# alone (QEMU 10 for the VMs, scripts/bootstrap.sh; qemu-user,
# scripts/arm64-user.sh).
apt_bookworm_backports() {
    local d=$TOA_CACHE/apt-bookworm-backports mirror
    mkdir -p "$d/parts" "$d/lists/partial" "$d/cache/archives/partial"
    cp /etc/apt/sources.list.d/debian.sources "$d/parts/debian.sources"
    mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "${mirror:-http://deb.debian.org/debian}" >"$d/parts/backports.sources"
    apt-get -o APT::Sandbox::User=root -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$d/parts" \
        -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" "$@"
}

# Bootstrap, then build (or find in the cache) test kernel $1 and toa.ko for
# it; sets KDIR and KO. Host tools go to $CARGO_TARGET_DIR (exported).
prepare_kernel_and_module() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TOA_CACHE/target}
    "$TOA_ROOT/scripts/bootstrap.sh"
    KDIR=$("$TOA_ROOT/scripts/kernel.sh" "$1")
    KO=$("$TOA_ROOT/scripts/build-module.sh" "$KDIR" "$TOA_CACHE/module/$1")
}

# The Rust metadata toa-dkms builds on first install (/var/cache/toa-dkms in
# a test root) depends only on the kernel, its source, the toolchain and
# the package's rust-meta.sh/rust-meta.mk, never on toa's code: a warm run
# hands the last run's back to the new root, and rust-meta.sh itself reuses
# a kernel's only while its stamp (all of the above) matches, rebuilding
# it otherwise. meta_seed KEEP ROOT before the package goes in; meta_keep
# KEEP ROOT once DKMS has built; KEEP is a directory beside the cached root
# (keyed with it). meta_said REL LOG...: what the package did, from DKMS's
# make.logs, for the output.
meta_seed() {
    [ -d "$1" ] || return 0
    mkdir -p "$2/var/cache/toa-dkms" && cp -a "$1/." "$2/var/cache/toa-dkms/"
}
meta_keep() {
    [ -d "$2/var/cache/toa-dkms" ] || return 0
    rm -rf "$1.new" && mkdir -p "$1.new" && cp -a "$2/var/cache/toa-dkms/." "$1.new/" \
        && rm -rf "$1" && mv "$1.new" "$1"
}
meta_said() {
    local rel=$1 t
    shift
    t=$(cat "$@" 2>/dev/null | tr -d '\r' | sed -n "s/^toa: kernel $rel: Rust metadata ready in \([0-9]*\) s.*/\1/p" | tail -n1)
    if [ -n "$t" ]; then
        echo "    Rust metadata for $rel: built from linux-source in $t s (kept for the next run)"
    else
        echo "    Rust metadata for $rel: the last run's, reused (rust-meta.sh's stamp matched: same kernel, source, toolchain and scripts)"
    fi
}

# summary_of FILE: "PASSED FAILED SKIPPED" from the last line of FILE that
# is a test summary (`N passed, M failed`, maybe `, K skipped`); nothing if
# FILE has none.
summary_of() {
    sed -nE 's/^([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/\1 \2 \4/p' "$1" 2>/dev/null \
        | tail -n1 | awk '{print $1, $2, ($3 == "" ? 0 : $3)}'
}

# A test script's tally (stock-test.sh, fresh-test.sh, arm64-stock-test.sh,
# debian-kernel-test.sh; install-test.sh and preflight-test.sh use check and
# print their own summary): the script sets passed=0 failed=0 skipped=0, then
# check NAME STATUS [detail] prints ok/not ok and counts it; count FILE NAME
# [shown] adds FILE's own summary (a FILE without one is a failure) and
# shows its not ok/skip lines (with shown, the caller has shown FILE's lines
# already: only the tally); finish prints `N passed, M failed, K skipped` and exits
# non-zero if anything failed. What failed is also listed in the array
# failures (check.sh names them at its end).
failures=()
check() {
    if [ "$2" = 0 ]; then
        passed=$((passed + 1)); echo "ok - $1"
    else
        failed=$((failed + 1)); failures+=("$1"); echo "not ok - $1${3:+: $3}"
    fi
}
count() {
    local p f s
    read -r p f s <<<"$(summary_of "$1")"
    if [ -z "$p" ]; then check "$2: printed no summary" 1; return; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    [ "$f" = 0 ] || failures+=("$2: $f case(s)")
    [ -n "${3:-}" ] || grep -E '^(not ok|skip) ' "$1" | sed "s/^/    $2: /"
    echo "    $2: $p passed, $f failed, $s skipped"
}
finish() {
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" = 0 ]
    exit
}

# bench_args MODULE CLOCK HOOKS: toa-bench's arguments for one clock of
# `make bench` in BENCH_ARGS, with the VM settings of that clock exported:
# icount, one vCPU whose guest clock counts instructions; wall, two vCPUs
# on two host threads (the scaling measurement needs them at once).
bench_args() {
    BENCH_ARGS=(--module "$1" --clock "$2" --hooks "$3")
    [ -n "${BENCH_REPS:-}" ] && BENCH_ARGS+=(--reps "$BENCH_REPS")
    [ -n "${BENCH_NETFILTER:-}" ] && BENCH_ARGS+=(--netfilter)
    if [ "$2" = icount ]; then
        export TOA_VM_CPUS=1 TOA_VM_ACCEL=tcg TOA_QEMU_OPTS="-icount shift=0,sleep=off"
    else
        export TOA_VM_CPUS=2 TOA_VM_ACCEL=tcg,thread=multi TOA_QEMU_OPTS=
        BENCH_ARGS+=(--scaling)
    fi
}
