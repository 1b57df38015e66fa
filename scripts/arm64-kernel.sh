#!/usr/bin/env bash
# Cross-build toa.ko on this (amd64) machine for Debian's stock arm64 kernel,
# with exactly the toolchain that built that kernel, and print where
# everything is, as shell assignments on stdout:
#
#   scripts/arm64-kernel.sh
#     RELEASE=7.3.4+deb13-arm64
#     IMAGE=...   the kernel (vmlinuz: an uncompressed arm64 Image)
#     MODULES=... its /usr/lib/modules/RELEASE (linux-modules-RELEASE)
#     BUSYBOX=... a static arm64 busybox (busybox-static, trixie)
#     KO=...      toa.ko, cross-built for it
#     ROOT=...    the cross root (below)
#
#   scripts/arm64-kernel.sh --kernel   the same without KO (nothing built)
#
# The cross root ($TOA_CACHE/roots/cross-arm64-<key>/root) is a small amd64
# trixie made with debootstrap, with arm64 as a foreign dpkg architecture
# (in that root only) and Debian's own cross-building path for out-of-tree
# modules: `apt install linux-headers-RELEASE:arm64` brings the arm64 headers,
# the amd64 linux-kbuild (host tools) and gcc-14-aarch64-linux-gnu (the
# headers' .kernelvariables set ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-).
# trixie's rustc 1.85.1 and bindgen 0.71.1 are the kernel's
# (CONFIG_RUSTC_VERSION_TEXT, CONFIG_BINDGEN_VERSION_TEXT); linux-source-SERIES
# of the headers' version is what scripts/rust-meta.sh rebuilds the Rust
# metadata from (Debian's headers lack it), once per release, cached in the
# root's /var/cache/toa-kbuild. The arm64 kernel, modules and busybox are
# downloaded with the root's apt and unpacked with dpkg-deb -x beside it:
# nothing arm64 is ever run on this machine (no binfmt_misc).
# Cache key: the pin, the package lists, the mirror, this script's recipe.
# toa.ko is rebuilt (incrementally) on every run from the working tree;
# a compiler warning fails it, as in scripts/build-module.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PIN=7.3.4+deb13-arm64
CROSS="rustc rust-src bindgen gcc make xz-utils bc"
GUEST="busybox-static"

mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/bootstrap.sh"

key=$( {
    echo "$PIN $CROSS $GUEST $mirror"
    sed -n '/^# --- recipe ---/,/^# --- end of recipe ---/p' "$0"
} | sha256sum | cut -c1-12)
dir=$TOA_CACHE/roots/cross-arm64-$key
root=$dir/root
in_root() { "$TOA_ROOT/scripts/chroot.sh" "$root" "$@"; }
mkdir -p "$TOA_CACHE/roots"
exec 9>"$TOA_CACHE/roots/.lock-cross-arm64"
flock 9

# --- recipe ---
if ! [ -e "$dir/.complete" ]; then
    # Cross roots of other keys are stale.
    find "$TOA_CACHE/roots" -mindepth 1 -maxdepth 1 -name 'cross-arm64-*' ! -path "$dir" -exec rm -rf {} +
    start=$SECONDS
    log "building an amd64 trixie cross root for Debian's arm64 kernel in $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    debootstrap --variant=minbase trixie "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 \
        || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie trixie-updates trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$root/etc/apt/apt.conf.d/90toa-cross" <<EOF
APT::Install-Recommends "false";
DPkg::Options { "--force-unsafe-io"; };
EOF
    apt_root() { in_root apt-get -q -y "$@" >>"$dir/apt.log" 2>&1 || { tail -n 30 "$dir/apt.log" >&2; die "apt-get $* failed in the cross root"; }; }
    in_root dpkg --add-architecture arm64
    apt_root update
    # The pin, else the newest kernel of its series (backports drop old ones).
    rel=$PIN
    series=$(echo "$PIN" | cut -d. -f1,2)
    if ! in_root apt-cache show "linux-headers-$rel:arm64" >/dev/null 2>&1; then
        rel=$(in_root apt-cache search --names-only "^linux-headers-${series//./\\.}\.[0-9]+\+deb13-arm64\$" \
            | cut -d' ' -f1 | sed 's/^linux-headers-//' | sort -V | tail -n1)
        [ -n "$rel" ] || die "no linux-headers-$series.*+deb13-arm64 in trixie-backports"
        log "linux-headers-$PIN is no longer in trixie-backports: taking $rel"
    fi
    ver=$(in_root apt-cache show "linux-headers-$rel:arm64" | sed -n 's/^Version: //p' | head -n1)
    # shellcheck disable=SC2086
    apt_root install $CROSS
    log "installing linux-headers-$rel:arm64 (with the amd64 linux-kbuild and aarch64-linux-gnu-gcc-14) and linux-source-$series=$ver"
    apt_root install -t trixie-backports "linux-headers-$rel:arm64" "linux-source-$series=$ver"
    log "downloading the arm64 kernel $rel and $GUEST"
    mkdir -p "$root/tmp/debs"
    in_root sh -c "cd /tmp/debs && apt-get -q -o APT::Sandbox::User=root download \
        linux-binary-$rel:arm64=$ver linux-modules-$rel:arm64=$ver linux-base-$rel:arm64=$ver \
        $(for p in $GUEST; do printf '%s:arm64 ' "$p"; done)" >>"$dir/apt.log" 2>&1 \
        || { tail -n 20 "$dir/apt.log" >&2; die "downloading the arm64 kernel failed"; }
    mkdir -p "$dir/arm64"
    for deb in "$root"/tmp/debs/*.deb; do dpkg-deb -x "$deb" "$dir/arm64"; done
    rm -rf "$root/tmp/debs"
    apt_root clean
    # shellcheck disable=SC2016
    in_root dpkg-query -W -f='${Package}:${Architecture} ${Version}\n' >"$dir/packages.txt"
    echo "$rel" >"$dir/release"
    log "cross root ready in $((SECONDS - start)) s: $(in_root rustc --version), $(in_root bindgen --version 2>&1 | head -n1), $(in_root aarch64-linux-gnu-gcc-14 --version | head -n1)"
    touch "$dir/.complete"
fi
# --- end of recipe ---

rel=$(cat "$dir/release")
image=$dir/arm64/usr/lib/modules/$rel/vmlinuz
modules=$dir/arm64/usr/lib/modules/$rel
busybox=$dir/arm64/usr/bin/busybox
if ! [ -e "$image" ] || ! [ -x "$busybox" ]; then die "$dir is incomplete: remove it and run again"; fi
if [ "${1:-}" = --kernel ]; then
    printf '%s\n' "RELEASE=$rel" "IMAGE=$image" "MODULES=$modules" "BUSYBOX=$busybox" "ROOT=$root"
    exit 0
fi

# toa.ko: the module's sources copied into the root (timestamps kept, so a
# rebuild is incremental), the Rust metadata made or found by rust-meta.sh,
# then the Makefile as DKMS runs it.
build=$root/build/toa
mkdir -p "$build"
(cd "$TOA_ROOT" && tar cf - Kbuild Makefile dkms.conf src include scripts/kbuild-env.sh scripts/rust-meta.sh scripts/rust-meta.mk) \
    | tar xf - -C "$build"
start=$SECONDS
in_root env TOA_META_CACHE=/var/cache/toa-kbuild sh /build/toa/scripts/rust-meta.sh "/usr/src/linux-headers-$rel" \
    >"$dir/rust-meta.log" 2>&1 || { tail -n 30 "$dir/rust-meta.log" >&2; die "the Rust metadata for $rel failed (log: $dir/rust-meta.log)"; }
meta_secs=$((SECONDS - start))
start=$SECONDS
out=$(in_root env TOA_META_CACHE=/var/cache/toa-kbuild make -C /build/toa KDIR="/usr/src/linux-headers-$rel" modules 2>&1) \
    || { echo "$out" >&2; die "toa.ko cross-build for $rel failed"; }
if grep -E '(^|[^a-z])(warning|error)(\[|:)' <<<"$out" >&2; then die "toa.ko cross-build for $rel has warnings"; fi
ko=$build/toa.ko
log "Rust metadata for $rel: ${meta_secs} s; toa.ko: $((SECONDS - start)) s"

# The module must carry the stock kernel's vermagic (MODVERSIONS is off:
# nothing else is checked at load time).
want=$(/sbin/modinfo -F vermagic "$(find "$modules/kernel" -name '*.ko*' -print -quit)")
have=$(/sbin/modinfo -F vermagic "$ko")
if [ -z "$want" ] || [ "$have" != "$want" ]; then die "toa.ko's vermagic '$have' is not the kernel's '$want'"; fi
log "toa.ko: $(file -b "$ko" | cut -d, -f1-2); vermagic $have"

printf '%s\n' "RELEASE=$rel" "IMAGE=$image" "MODULES=$modules" "BUSYBOX=$busybox" "KO=$ko" "ROOT=$root"
