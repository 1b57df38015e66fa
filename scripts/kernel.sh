#!/usr/bin/env bash
# Build (or find in the cache) a test kernel from Debian's kernel source
# packages, and print its build directory (the KDIR for toa.ko) on stdout.
#
#   scripts/kernel.sh 7.3        linux-source-7.3 (trixie-backports), clang/LLVM 19
#   scripts/kernel.sh 6.12       linux-source-6.12 (bookworm-security), gcc
#   scripts/kernel.sh 7.3-debug  7.3 + KASAN, KFENCE, lockdep, kmemleak, ...
#
# Config: `make tinyconfig` + the fragments in scripts/kconfig/, merged with
# the kernel's merge_config.sh and checked line by line; never a hand edit.
# Cache: $TOA_CACHE/kernels/<flavour>-<debian version>-<key>, where the key
# hashes the source package version, the fragments, the toolchain versions
# and this script's build recipe. A finished build is reused as it is.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

flavour=${1:?usage: kernel.sh 7.3|6.12|7.3-debug}

# Pinned Debian source package versions; if the archive has moved on (a
# backports suite keeps only its newest), the newest is taken and said so.
PIN_6_12=6.12.117-1~deb12u1
PIN_7_3=7.3.4-1~bpo13+1

case $flavour in
    7.3) series=7.3 cc=llvm fragments=(toa-test.config) ;;
    7.3-debug) series=7.3 cc=llvm fragments=(toa-test.config toa-debug.config) ;;
    6.12) series=6.12 cc=gcc fragments=(toa-test.config toa-test-6.12.config) ;;
    *) die "unknown kernel flavour '$flavour' (7.3, 6.12, 7.3-debug)" ;;
esac

# make variables for the kernel and, identically, for toa.ko (Makefile).
kmake_vars=(RUSTC="$KRUSTC" HOSTRUSTC="$KRUSTC" BINDGEN="$KBINDGEN"
    RUSTFMT=/usr/bin/rustfmt CLIPPY_DRIVER=/usr/bin/clippy-driver)
[ "$cc" = llvm ] && kmake_vars+=(LLVM=-19)

debs=$TOA_CACHE/debs
mkdir -p "$debs" "$TOA_CACHE/src" "$TOA_CACHE/kernels"

# apt-get with a private source list for trixie-backports, on the mirror the
# machine already uses, so the machine's own apt state is left untouched.
apt_backports() {
    local d=$TOA_CACHE/apt-trixie-backports
    local mirror
    mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' \
        /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-backports main" \
        >"$d/sources.list"
    apt-get -q -o APT::Sandbox::User=root -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" "$@"
}

# Download linux-source-$series into $debs; print the .deb's path.
fetch_deb() {
    local pkg=linux-source-$series pin apt
    if [ "$series" = 7.3 ]; then pin=$PIN_7_3 apt=apt_backports; else pin=$PIN_6_12 apt=apt-get; fi
    local want=$debs/${pkg}_${pin//:/%3a}_all.deb
    if [ -s "$want" ]; then echo "$want"; return; fi
    [ "$series" = 7.3 ] && apt_backports update >/dev/null
    (cd "$debs" && $apt download "$pkg=$pin" >/dev/null 2>&1) || {
        log "$pkg $pin is no longer in the archive; taking the newest $series"
        (cd "$debs" && $apt download "$pkg" >/dev/null 2>&1) || die "cannot download $pkg"
    }
    ls -t "$debs"/${pkg}_*_all.deb | head -n1
}

deb=$(fetch_deb)
debver=$(dpkg-deb -f "$deb" Version)
src=$TOA_CACHE/src/linux-$debver
if ! [ -e "$src/.complete" ]; then
    log "unpacking $(basename "$deb")"
    rm -rf "$src" && mkdir -p "$src"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' \
        | tar -xJ -C "$src" --strip-components=1
    touch "$src/.complete"
fi

check_toolchain
key=$( {
    echo "$debver $flavour"
    for f in "${fragments[@]}"; do cat "$TOA_ROOT/scripts/kconfig/$f"; done
    toolchain_versions
    # The tools are named by their place in the default cache, so that
    # caches sharing one tools directory (TOA_CACHE set elsewhere) share
    # the kernels built with it too.
    echo "${kmake_vars[*]}" | sed "s|$TOA_TOOLS|$HOME/.cache/toa/tools|g"
    sed -n '/^# --- recipe ---/,$p' "$0"
} | sha256sum | cut -c1-12)
out=$TOA_CACHE/kernels/$flavour-$debver-$key
ln -sfn "$(basename "$out")" "$TOA_CACHE/kernels/$flavour"
# If another run is building this very kernel, wait for it to finish (then
# the recipe below finds it complete) instead of building it over it.
if ! [ -e "$out/.complete" ] && [ -e "$TOA_CACHE/kernels/.$flavour.lock" ]; then
    flock "$TOA_CACHE/kernels/.$flavour.lock" true
fi

# --- recipe ---
if [ -e "$out/.complete" ]; then
    log "kernel $flavour ($debver) cached: $out"
    echo "$out"
    exit 0
fi
exec 9>"$TOA_CACHE/kernels/.$flavour.lock"
flock 9
log "building kernel $flavour from linux-source-$series $debver ($cc) in $out"
rm -rf "$out" && mkdir -p "$out"
kmake() { make -s -C "$src" O="$out" "${kmake_vars[@]}" "$@"; }
kmake tinyconfig >/dev/null
frag_paths=()
for f in "${fragments[@]}"; do frag_paths+=("$TOA_ROOT/scripts/kconfig/$f"); done
(cd "$out" && "$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${frag_paths[@]}" >/dev/null)
kmake olddefconfig >/dev/null
# Every requested line must be in the result (a symbol whose dependencies are
# missing is dropped silently by Kconfig, CONFIG_RUST among them).
lost=$(cat "${frag_paths[@]}" | grep -E '^(CONFIG_|# CONFIG_)' | while read -r line; do
    grep -qxF -- "$line" "$out/.config" || echo "$line"
done)
[ -z "$lost" ] || die "kernel config for $flavour lost these lines: $(echo $lost)"
start=$SECONDS
kmake -j"$(($(nproc) + 1))" bzImage modules
log "kernel $flavour built in $((SECONDS - start)) s"
touch "$out/.complete"
echo "$out"
