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
# scripts/rust-meta.sh, once per root).
#
# How: `debootstrap --foreign --arch=arm64` on this machine downloads and
# unpacks the base system; then the root's own arm64 programs, run one by
# one under QEMU's user-mode emulator (scripts/arm64-user.sh: PRoot and
# qemu-user, no VM, no binfmt_misc handler, which would be the shared host
# kernel's state), finish debootstrap's second stage, install the rest with
# apt from the mirror and make the Rust metadata
# (scripts/arm64-root-build.sh); the tree becomes an ext4 image
# (mkfs.ext4 -d) that scripts/arm64-boot.sh boots with the stock kernel.
# 33 minutes on an idle machine of this kind (the metadata 19 of them),
# 45 core-minutes; in an emulated arm64 machine the same steps took 49 to
# 80 minutes, by the load beside it.
#
# Cached in $TOA_CACHE/roots/arm64-<key> (key: the pin, the package lists,
# the mirror, this recipe, the emulation's, the build's and the metadata
# scripts); roots of other keys are removed.
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
    cat "$TOA_ROOT"/scripts/{arm64-root-build.sh,arm64-user.sh,rust-meta.sh,rust-meta.mk,kbuild-env.sh}
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
log "building an arm64 trixie root in $dir (its arm64 programs under user-mode emulation)"
rm -rf "$dir" && mkdir -p "$dir"
# The tree where every user may reach it: the emulated programs' system
# calls are checked against their own user (apt, dpkg and maintainer
# scripts may drop root), and $TOA_CACHE may be private.
tree=$(mktemp -d /var/tmp/toa-arm64-root.XXXXXX)
trap 'rm -rf "$tree"' EXIT
chmod 755 "$tree"
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
# A test machine: no recommends, dpkg without fsync; apt's methods as root
# (dropping to _apt, they fail to run sqv under PRoot: exit 123).
cat >"$tree/etc/apt/apt.conf.d/90toa-test" <<EOF
APT::Install-Recommends "false";
APT::Sandbox::User "root";
DPkg::Options { "--force-unsafe-io"; };
Acquire::Retries "3";
EOF
echo toa-arm64 >"$tree/etc/hostname"
# The host's resolver while apt runs here (QEMU's user network's after).
cp /etc/resolv.conf "$tree/etc/resolv.conf"
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
chmod 1777 "$tree/tmp"
dpkg-deb -b "$stub" "$tree/tmp/toa-root/toa-test-no-initramfs.deb" >/dev/null
rm -rf "$stub"

cp "$TOA_ROOT"/scripts/{arm64-root-build.sh,rust-meta.sh,rust-meta.mk,kbuild-env.sh} "$tree/tmp/toa-root/"
log "first stage done in $((SECONDS - start)) s; second stage, apt and the Rust metadata under user-mode emulation"

rc=0
timeout --kill-after=60 "${TOA_ARM64_ROOT_TIMEOUT:-5400}" "$TOA_ROOT/scripts/arm64-user.sh" "$tree" \
    sh /tmp/toa-root/arm64-root-build.sh "$PIN" "$TOOLCHAIN" "$GUEST" >"$dir/build.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { tail -n 30 "$dir/build.log" >&2; die "the arm64 root's build failed (exit $rc; log: $dir/build.log)"; }
grep -E '^(== |toa: )' "$dir/build.log" >&2 || true
rel=$(sed -n 's/^TOA-ROOT-RELEASE //p' "$dir/build.log" | tail -n1)
[ -n "$rel" ] || die "the root's build named no kernel"
sed -n 's/^TOA-ROOT-PKG //p' "$dir/build.log" >"$dir/packages.txt"
rm -rf "$tree/tmp/toa-root" "$tree/host-rootfs"
echo "nameserver 10.0.2.3" >"$tree/etc/resolv.conf"
truncate -s "$SIZE" "$dir/root.img"
mkfs.ext4 -q -F -L toa-arm64 -d "$tree" "$dir/root.img" || die "mkfs.ext4 -d failed"
rm -rf "$tree"
echo "$rel" >"$dir/release"
log "arm64 root ready in $((SECONDS - start)) s: $rel; $(grep -E '^(rustc|bindgen|gcc-14|dkms) ' "$dir/packages.txt" | tr '\n' ' ')"
touch "$dir/.complete"
printf '%s\n' "DISK=$dir/root.img" "RELEASE=$rel"
