#!/usr/bin/env bash
# Build (or find in the cache) a Debian 13 (trixie) root filesystem that is
# a user's machine with Debian's stock kernels, and print its directory.
#
#   scripts/stock-root.sh        -> $TOA_CACHE/roots/trixie-<key>
#
# The directory holds root/ (the filesystem) and kernels.env, which names
#   OLD=    the Rust-enabled kernel installed with its headers (7.2.12 from
#           trixie-backports), the one toa-dkms is first installed against;
#   NEW=    the upgrade (7.3.4 from trixie-backports): its packages are
#           downloaded into the root's apt cache, not installed;
#   NORUST= trixie's own kernel (6.12, no CONFIG_RUST), installed with its
#           headers: DKMS must skip it.
# Built with debootstrap and apt from Debian's archive (the mirror this
# machine uses): trixie's rustc, rust-src, bindgen, gcc, dkms and openssl (what
# building toa for these kernels takes), linux-source for both Rust series,
# and what the in-VM tests run (iproute2, kmod, nginx, nftables, ipvsadm, bpftool, bpftrace
# for a BPF fexit on inet_getname...; no udev nor systemd: the guest boots
# faster without, devtmpfs and the kernel's modprobe calls do what the
# tests need).
# No initramfs is made: virtme-ng boots the kernel from the root over 9p
# (with a tiny initramfs of its own holding the virtio and 9p modules), so a
# stub package stands in for initramfs-tools.
#
# Pinned kernels; backports keep only recent versions, so when a pin is
# gone the newest kernel of the same series is taken, and said.
# Cache key: this script's recipe, the package lists, the pins, the mirror.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PIN_OLD=7.2.12+deb13-amd64
PIN_NEW=7.3.4+deb13-amd64
NORUST_META="linux-image-amd64 linux-headers-amd64"
TOOLCHAIN="dkms rustc rust-src bindgen gcc make xz-utils openssl"
GUEST="kmod procps iproute2 python3 curl nginx-light nftables libnetfilter-queue1 dnsmasq-base bpftrace ipvsadm bpftool"

mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/bootstrap.sh"

key=$( {
    echo "$PIN_OLD $PIN_NEW $NORUST_META $TOOLCHAIN $GUEST $mirror"
    sed -n '/^# --- recipe ---/,$p' "$0"
} | sha256sum | cut -c1-12)
dir=$TOA_CACHE/roots/trixie-$key
mkdir -p "$TOA_CACHE/roots"
exec 9>"$TOA_CACHE/roots/.lock"
flock 9
# Roots of other keys are stale (about 3 GB each).
find "$TOA_CACHE/roots" -mindepth 1 -maxdepth 1 -name 'trixie-*' ! -path "$dir" -exec rm -rf {} +
if [ -e "$dir/.complete" ]; then
    log "trixie root cached: $dir ($(. "$dir/kernels.env"; echo "$OLD, $NEW, $NORUST"))"
    echo "$dir"
    exit 0
fi

# --- recipe ---
start=$SECONDS
log "building a trixie root with Debian's stock kernels in $dir"
rm -rf "$dir" && mkdir -p "$dir"
root=$dir/root
in_root() { "$TOA_ROOT/scripts/chroot.sh" "$root" "$@"; }
debootstrap --variant=minbase trixie "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap failed"; }

# A machine tracking trixie with backports, as the README tells users.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie trixie-updates trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# No daemon starts in the chroot (nginx's postinst would try).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
# A test machine: no recommends, and dpkg without fsync (much faster here;
# nothing that is tested depends on it).
cat >"$root/etc/apt/apt.conf.d/90toa-test" <<EOF
APT::Install-Recommends "false";
DPkg::Options { "--force-unsafe-io"; };
EOF

# The stub that stands in for an initramfs generator (see above).
stub=$dir/stub
mkdir -p "$stub/DEBIAN"
cat >"$stub/DEBIAN/control" <<EOF
Package: toa-test-no-initramfs
Version: 1
Architecture: all
Maintainer: toa tests <toa@localhost>
Provides: linux-initramfs-tool
Description: test root only: the kernel boots without an initramfs (virtme-ng)
EOF
dpkg-deb -b "$stub" "$root/tmp/toa-test-no-initramfs.deb" >/dev/null

apt_root() { in_root apt-get -q -y "$@" >>"$dir/apt.log" 2>&1 || { tail -n 30 "$dir/apt.log" >&2; die "apt-get $* failed in the root"; }; }
apt_root update
# pick PIN SERIES: PIN if the archive has it, else the newest of SERIES.
pick() {
    if in_root apt-cache show "linux-image-$1" >/dev/null 2>&1; then echo "$1"; return; fi
    local newest
    newest=$(in_root apt-cache search --names-only "^linux-image-$2\.[0-9]+\+deb13-amd64\$" \
        | cut -d' ' -f1 | sed 's/^linux-image-//' | sort -V | tail -n1)
    [ -n "$newest" ] || die "no linux-image-$2.*+deb13-amd64 in trixie-backports"
    log "linux-image-$1 is no longer in trixie-backports: taking linux-image-$newest"
    echo "$newest"
}
old=$(pick "$PIN_OLD" 7.2)
new=$(pick "$PIN_NEW" 7.3)
series() { echo "$1" | cut -d. -f1,2; }

log "installing trixie's toolchain and the guest's tools"
# shellcheck disable=SC2086
apt_root install /tmp/toa-test-no-initramfs.deb $TOOLCHAIN $GUEST
log "installing linux-image-$old + headers, linux-source-$(series "$old"), linux-source-$(series "$new") (trixie-backports) and trixie's own kernel"
apt_root install -t trixie-backports "linux-image-$old" "linux-headers-$old" \
    "linux-source-$(series "$old")" "linux-source-$(series "$new")"
# shellcheck disable=SC2086
apt_root install $NORUST_META
norust=$(in_root dpkg-query -W -f='${Depends}' linux-image-amd64 | sed -n 's/^linux-image-\([^ ,]*\).*/\1/p')
[ -e "$root/lib/modules/$norust/build/include/config/auto.conf" ] || die "trixie's kernel $norust has no headers in the root"
apt_root clean
log "downloading linux-image-$new + headers for the upgrade"
apt_root install --download-only -t trixie-backports "linux-image-$new" "linux-headers-$new"
rm -f "$root/tmp/toa-test-no-initramfs.deb"

# What was installed, for the record.
in_root dpkg-query -W -f='${Package} ${Version}\n' >"$dir/packages.txt"
{
    echo "OLD=$old"
    echo "NEW=$new"
    echo "NORUST=$norust"
} >"$dir/kernels.env"
log "trixie root ready in $((SECONDS - start)) s: $old, $new (to install), $norust; $(in_root rustc --version)"
touch "$dir/.complete"
echo "$dir"
