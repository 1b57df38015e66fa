#!/usr/bin/env bash
# Run a command inside an arm64 root filesystem (a directory tree) on this
# amd64 machine, its programs emulated one by one in user mode: no arm64
# kernel, no VM, and no binfmt_misc handler (that is the shared host
# kernel's state, and is left alone). PRoot leaves an empty host-rootfs
# directory in TREE.
#
#   scripts/arm64-user.sh TREE COMMAND...
#
# How: PRoot (Debian's `proot`) runs COMMAND with TREE as its root, by
# ptrace, and hands every arm64 program it starts to QEMU's user-mode
# emulator (Debian's `qemu-user`, from bookworm-backports). Both are Debian
# packages unpacked into $TOA_TOOLS/arm64-user, never installed: qemu-user
# recommends qemu-user-binfmt, whose installation registers handlers with
# the kernel. /proc, /sys and /dev are the host's.
#
# PRoot 5.1 (bookworm's, trixie's) predates statx, faccessat2, openat2,
# renameat2, execveat and fchmodat2: it would not rewrite their paths, so
# they would reach the host's file system. A seccomp filter on this
# process tree only makes them fail with ENOSYS, and glibc, Rust's std and
# QEMU fall back to the older calls PRoot rewrites.
#
# Used by scripts/arm64-root.sh for the Rust metadata toa-dkms makes (the
# root's own rustc, bindgen and gcc-14, the same files and commands as on
# an arm64 server, at user-mode emulation's speed rather than a whole
# emulated machine's).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

tree=${1:?usage: arm64-user.sh TREE COMMAND...}
shift
[ -x "$tree/bin/sh" ] || die "arm64-user.sh: $tree is not a root filesystem"

# Pinned; if bookworm-backports has moved on, its newest qemu-user is taken.
QEMU_USER=1:10.0.2+ds-2+deb13u1~bpo12+1
tools=$TOA_TOOLS/arm64-user
if ! [ -e "$tools/.complete" ]; then
    log "unpacking qemu-user (bookworm-backports) and proot into $tools"
    rm -rf "$tools" && mkdir -p "$tools/debs"
    apt_bookworm_backports -qq update
    cd "$tools/debs"
    apt_bookworm_backports -qq download "qemu-user=$QEMU_USER" proot libtalloc2 2>/dev/null || {
        log "qemu-user $QEMU_USER is no longer in bookworm-backports; taking the newest"
        apt_bookworm_backports -qq -t bookworm-backports download qemu-user proot libtalloc2
    } || die "cannot download qemu-user, proot, libtalloc2"
    for deb in ./*.deb; do dpkg-deb -x "$deb" "$tools/x"; done
    cd - >/dev/null
    rm -rf "$tools/debs"
    touch "$tools/.complete"
fi

# The filter: x86_64 system calls statx 332, faccessat2 439, openat2 437,
# renameat2 316, execveat 322, fchmodat2 452 -> ENOSYS; the rest allowed.
seccomp='
import ctypes, os, struct, sys
NRS = [332, 439, 437, 316, 322, 452]
def ins(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
prog = b"".join(
    [ins(0x20, 0, 0, 4), ins(0x15, 0, len(NRS) + 1, 0xC000003E), ins(0x20, 0, 0, 0)]
    + [ins(0x15, len(NRS) - i, 0, nr) for i, nr in enumerate(NRS)]
    + [ins(0x06, 0, 0, 0x7FFF0000), ins(0x06, 0, 0, 0x00050000 | 38)])
buf = ctypes.create_string_buffer(prog, len(prog))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Prog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
    sys.exit("arm64-user.sh: seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
'
# The emulator where every user may run it: PRoot starts it as the
# program's user (apt's methods run as _apt), and $TOA_CACHE may be private.
run=$(mktemp -d /tmp/toa-arm64-user.XXXXXX)
trap 'rm -rf "$run"' EXIT
chmod 755 "$run"
cp "$tools/x/usr/bin/qemu-aarch64" "$run/"
# In a mount namespace of its own: a mount a program makes (debootstrap's
# of /proc) goes through PRoot to the host's kernel, and must not outlive
# the command nor be seen outside it.
LD_LIBRARY_PATH=$tools/x/usr/lib/x86_64-linux-gnu PROOT_TMP_DIR=$run \
    unshare --mount --propagation private -- /usr/bin/python3 -c "$seccomp" "$tools/x/usr/bin/proot" -q "$run/qemu-aarch64" \
    -r "$tree" -b /proc -b /sys -b /dev -w / \
    /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"
