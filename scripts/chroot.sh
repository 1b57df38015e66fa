#!/usr/bin/env bash
# Run a command inside a root filesystem the way apt, dpkg and DKMS need it:
# /proc (objtool reads it), /sys, /dev and /dev/pts mounted, services kept
# from starting, in a mount namespace of its own, so that nothing stays
# mounted afterwards whatever happens.
#
#   scripts/chroot.sh ROOT COMMAND...
set -euo pipefail

root=${1:?usage: chroot.sh ROOT COMMAND...}
shift
[ -x "$root/bin/sh" ] || { echo "chroot.sh: $root is not a root filesystem" >&2; exit 1; }
exec unshare --mount --propagation private -- /bin/bash -c '
    set -e
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount -t sysfs sys "$root/sys"
    mount --rbind /dev "$root/dev"
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
' chroot.sh "$root" "$@"
