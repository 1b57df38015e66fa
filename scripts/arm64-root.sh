#!/usr/bin/env bash
# An arm64 Debian trixie root, as an arm64 server tracking trixie-backports
# has it, made without running anything arm64 on this (amd64) machine, and
# print where it is, as shell assignments on stdout:
#
#   scripts/arm64-root.sh
#     DISK=...     the root: an ext4 disk image (boot it with
#                  TOA_ARM64_DISK=<a qcow2 overlay over it> scripts/arm64-boot.sh)
#     RELEASE=...  the stock arm64 kernel installed in it (7.3.4+deb13-arm64)
#
# What is in it: Debian's stock linux-image-RELEASE and linux-headers-RELEASE
# (trixie-backports), linux-source-SERIES, trixie's rustc 1.85.1, rust-src,
# bindgen 0.71.1, gcc-14, make and dkms (what toa-dkms needs to build toa),
# and the programs the tests run (iproute2, nftables, nginx, curl, python3,
# dnsmasq, gcc for the test servers), and the Rust metadata toa-dkms makes
# for that kernel (in /var/cache/toa-dkms, by the package's own
# scripts/rust-meta.sh: about N min under emulation, once per root).
#
# How: `debootstrap --foreign --arch=arm64` on this machine downloads and
# unpacks the base system (nothing runs); the tree becomes an ext4 image
# (mkfs.ext4 -d); Debian's stock arm64 kernel boots it under
# qemu-system-aarch64 (scripts/arm64-boot.sh, TCG, QEMU's user network) and
# the guest finishes debootstrap's second stage and installs the rest with
# apt from the mirror (scripts/arm64-root-guest.sh). No binfmt_misc handler
# is registered: that is the shared host kernel's.
#
# Cached in $TOA_CACHE/roots/arm64-<key> (key: the pin, the package lists,
# the mirror, this recipe, the guest's and the metadata scripts); roots of
# other keys are removed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PIN=7.3.4+deb13-arm64
TOOLCHAIN="dkms rustc rust-src bindgen gcc make xz-utils openssl"
GUEST="kmod procps iproute2 python3 curl nginx-light nftables dnsmasq-base libc6-dev bpftrace"
SIZE=12G

mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/bootstrap.sh"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 missing: apt install e2fsprogs"

key=$( {
    echo "$PIN $TOOLCHAIN $GUEST $SIZE $mirror"
    sed -n '/^# --- recipe ---/,$p' "$0"
    cat "$TOA_ROOT/scripts/arm64-root-guest.sh" "$TOA_ROOT"/scripts/{rust-meta.sh,rust-meta.mk,kbuild-env.sh}
} | sha256sum | cut -c1-12)
dir=$TOA_CACHE/roots/arm64-$key
mkdir -p "$TOA_CACHE/roots"
exec 9>"$TOA_CACHE/roots/.lock-arm64"
flock 9
find "$TOA_CACHE/roots" -mindepth 1 -maxdepth 1 -name 'arm64-*' ! -path "$dir" -exec rm -rf {} +
if [ -e "$dir/.complete" ]; then
    log "arm64 root cached: $dir ($(cat "$dir/release"))"
    printf '%s\n' "DISK=$dir/root.img" "RELEASE=$(cat "$dir/release")"
    exit 0
fi

# --- recipe ---
start=$SECONDS
log "building an arm64 trixie root in $dir (first stage here, the rest in an arm64 guest)"
rm -rf "$dir" && mkdir -p "$dir"
tree=$dir/tree
debootstrap --foreign --arch=arm64 --variant=minbase trixie "$tree" "$mirror" >"$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap --foreign failed"; }

rm -f "$tree/etc/apt/sources.list"
mkdir -p "$tree/etc/apt/sources.list.d" "$tree/etc/apt/apt.conf.d" "$tree/usr/sbin"
cat >"$tree/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie trixie-updates trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# No daemon starts while packages are installed (nginx's postinst would).
printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
chmod +x "$tree/usr/sbin/policy-rc.d"
# A test machine: no recommends, dpkg without fsync.
cat >"$tree/etc/apt/apt.conf.d/90toa-test" <<EOF
APT::Install-Recommends "false";
DPkg::Options { "--force-unsafe-io"; };
Acquire::Retries "3";
EOF
echo toa-arm64 >"$tree/etc/hostname"
echo "nameserver 10.0.2.3" >"$tree/etc/resolv.conf"
# The stub that stands in for an initramfs generator: the kernel boots
# with scripts/arm64-boot.sh's initramfs.
stub=$dir/stub
mkdir -p "$stub/DEBIAN"
cat >"$stub/DEBIAN/control" <<EOF
Package: toa-test-no-initramfs
Version: 1
Architecture: all
Maintainer: toa tests <toa@localhost>
Provides: linux-initramfs-tool
Description: test root only: the kernel boots with the test's own initramfs
EOF
mkdir -p "$tree/tmp/toa-root"
dpkg-deb -b "$stub" "$tree/tmp/toa-root/toa-test-no-initramfs.deb" >/dev/null
rm -rf "$stub"

truncate -s "$SIZE" "$dir/root.img"
mkfs.ext4 -q -F -L toa-arm64 -d "$tree" "$dir/root.img" || die "mkfs.ext4 -d failed"
rm -rf "$tree"
log "first stage done in $((SECONDS - start)) s; second stage and apt in the arm64 guest"

res=$dir/guest
rc=0
TOA_ARM64_DISK=$dir/root.img TOA_ARM64_NET=1 TOA_ARM64_MEM=2G TOA_VM_TIMEOUT=${TOA_ARM64_ROOT_TIMEOUT:-5400} \
    TOA_ARM64_FILES="$TOA_ROOT/scripts/rust-meta.sh $TOA_ROOT/scripts/rust-meta.mk $TOA_ROOT/scripts/kbuild-env.sh" \
    "$TOA_ROOT/scripts/arm64-boot.sh" "$res" "$TOA_ROOT/scripts/arm64-root-guest.sh" \
    "$PIN" "$TOOLCHAIN" "$GUEST" || rc=$?
[ "$rc" = 0 ] || { tail -n 30 "$res/output.txt" >&2; die "the arm64 root's guest stage failed (exit $rc; log: $res/output.txt)"; }
rel=$(sed -n 's/^TOA-ROOT-RELEASE //p' "$res/output.txt" | tail -n1)
[ -n "$rel" ] || die "the guest stage named no kernel"
sed -n 's/^TOA-ROOT-PKG //p' "$res/output.txt" >"$dir/packages.txt"
echo "$rel" >"$dir/release"
log "arm64 root ready in $((SECONDS - start)) s: $rel; $(grep -E '^(rustc|bindgen|gcc-14|dkms) ' "$dir/packages.txt" | tr '\n' ' ')"
touch "$dir/.complete"
printf '%s\n' "DISK=$dir/root.img" "RELEASE=$rel"
