#!/bin/sh
# Inside the new arm64 root, its programs under user-mode emulation
# (scripts/arm64-root.sh through scripts/arm64-user.sh): finish
# `debootstrap --foreign`, install with apt what an arm64 backend running
# toa-dkms has and what the tests run, and make the Rust metadata toa-dkms
# makes for the stock kernel. Prints TOA-ROOT-RELEASE <kernel> and
# TOA-ROOT-PKG <package> <version> lines for the host.
#
#   arm64-root-build.sh PIN "TOOLCHAIN" "GUEST"
set -eu
pin=${1:?usage: arm64-root-build.sh PIN TOOLCHAIN GUEST}
toolchain=${2:?}
guest=${3:?}
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
t0=$(date +%s)
step() { echo "== $(($(date +%s) - t0)) s: $*"; }

step "debootstrap --second-stage"
if ! /debootstrap/debootstrap --second-stage >/tmp/second-stage.log 2>&1; then
    tail -n 30 /tmp/second-stage.log
    [ -e /debootstrap/debootstrap.log ] && tail -n 30 /debootstrap/debootstrap.log
    exit 1
fi
apt_get() {
    if ! apt-get -q -y "$@" >/tmp/apt.log 2>&1; then
        tail -n 40 /tmp/apt.log
        echo "apt-get $* failed"
        exit 1
    fi
}
step "apt-get update"
apt_get update
# The pin, else the newest kernel of its series (backports drop old ones).
rel=$pin
series=$(echo "$pin" | cut -d. -f1,2)
if ! apt-cache show "linux-image-$rel" >/dev/null 2>&1; then
    rel=$(apt-cache search --names-only "^linux-image-$(echo "$series" | sed 's/\./\\./')\.[0-9]+\+deb13-arm64\$" \
        | cut -d' ' -f1 | sed 's/^linux-image-//' | sort -V | tail -n1)
    [ -n "$rel" ] || { echo "no linux-image-$series.*+deb13-arm64 in trixie-backports"; exit 1; }
    echo "linux-image-$pin is no longer in trixie-backports: taking $rel"
fi
step "installing the toolchain and the tests' programs"
# shellcheck disable=SC2086
apt_get install /tmp/toa-root/toa-test-no-initramfs.deb $toolchain $guest
step "installing linux-image-$rel, linux-headers-$rel, linux-source-$series (trixie-backports)"
apt_get install -t trixie-backports "linux-image-$rel" "linux-headers-$rel" "linux-source-$series"
apt_get clean
[ -e "/lib/modules/$rel/build/include/config/auto.conf" ] || { echo "no headers for $rel"; exit 1; }
# The Rust metadata the stock headers lack, made as toa-dkms makes it
# (its rust-meta.sh, into its cache): DKMS finds it there, as on a server
# where toa was built once for this kernel. The long part; the root keeps
# it (its key has these scripts).
# Once more if the emulation failed to start a program (PRoot's exec under
# load: "Bad address", make's "Error 126"; seen once in a cold run, 20
# minutes into it), rather than the whole root again.
step "the Rust metadata for $rel (scripts/rust-meta.sh, as DKMS runs it)"
for attempt in 1 2; do
    if TOA_META_CACHE=/var/cache/toa-dkms sh /tmp/toa-root/rust-meta.sh "/lib/modules/$rel/build" >/tmp/meta.log 2>&1; then
        break
    fi
    tail -n 30 /tmp/meta.log
    if [ "$attempt" = 1 ] && grep -qE 'Bad address|Error 126' /tmp/meta.log; then
        step "rust-meta.sh failed to start a program under emulation: once more"
        continue
    fi
    echo "rust-meta.sh failed"
    exit 1
done
grep '^toa: ' /tmp/meta.log
step "done"
echo "TOA-ROOT-RELEASE $rel"
dpkg-query -W -f='TOA-ROOT-PKG ${Package} ${Version}\n'
