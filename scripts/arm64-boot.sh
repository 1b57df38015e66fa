#!/usr/bin/env bash
# Boot Debian's stock arm64 kernel, unmodified, under qemu-system-aarch64
# (TCG: this machine is amd64) with a minimal initramfs (a static arm64
# busybox, toa.ko cross-built by scripts/arm64-kernel.sh, one guest script),
# run the script, and power off.
#
#   scripts/arm64-boot.sh RESULTS [GUEST_SCRIPT [ARGS...]]
#
# GUEST_SCRIPT (default tests/e2e/arm64-smoke.sh) runs under busybox sh as
# `sh /toa/GUEST_SCRIPT RELEASE ARGS...`, with /toa/toa.ko beside it and
# /proc, /sys, /dev mounted; TOA_ARM64_FILES (space-separated paths) are
# copied beside it too; TOA_ARM64_CPUS (default 2), TOA_ARM64_MEM (1G) and
# TOA_ARM64_QEMU_OPTS shape the VM.
#
# TOA_ARM64_DISK=IMAGE: the guest's root is that disk image (an arm64 root
# made by scripts/arm64-root.sh; give a per-run qcow2 overlay over it to
# keep it as it is): the initramfs loads the stock kernel's virtio_blk and
# ext4, mounts it, moves /proc, /sys, /dev and /toa into
# it, and switches to it (switch_root) to run the script with the root's
# /bin/sh; nothing is cross-built (the root builds its own toa.ko: DKMS).
#
# The CPU is QEMU's `max` with pointer authentication's implementation-
# defined algorithm (pauth-impdef): the kernel and Debian's arm64 programs
# sign and check return addresses all the same, and TCG computes the
# signatures several times faster than with the architected QARMA5.
#
# RESULTS gets console.log (the whole serial console), output.txt (the
# script's output) and initramfs.cpio.gz. Exits with the script's status (1
# if the guest never told it, e.g. a panic). TOA_VM_TIMEOUT (default 600 s)
# bounds the boot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

results=${1:?usage: arm64-boot.sh RESULTS [GUEST_SCRIPT [ARGS...]]}
script=${2:-$TOA_ROOT/tests/e2e/arm64-smoke.sh}
shift $(($# < 2 ? $# : 2))
command -v qemu-system-aarch64 >/dev/null || die "qemu-system-aarch64 missing: run scripts/bootstrap.sh"
[ -r "$script" ] || die "no guest script $script"
disk=${TOA_ARM64_DISK:-}

RELEASE='' IMAGE='' BUSYBOX='' KO='' MODULES=''
while IFS='=' read -r k v; do
    case $k in RELEASE | IMAGE | BUSYBOX | KO | MODULES) printf -v "$k" '%s' "$v" ;; esac
done < <("$TOA_ROOT/scripts/arm64-kernel.sh" ${disk:+--kernel})
[ -n "$disk" ] || [ -n "$KO" ] || die "scripts/arm64-kernel.sh printed no toa.ko"

rm -rf "$results" && mkdir -p "$results"
ird=$results/initramfs
mkdir -p "$ird"/{bin,dev,proc,sys,tmp,toa,mods,newroot}
cp "$BUSYBOX" "$ird/bin/busybox"
[ -n "$disk" ] || cp "$KO" "$ird/toa/toa.ko"
cp "$script" "$ird/toa/"
for f in ${TOA_ARM64_FILES:-}; do cp -r "$f" "$ird/toa/"; done
name=$(basename "$script")
args=$(printf ' %q' "$RELEASE" "$@")
# /toa/run: the script between the markers that delimit its output on the
# console, run by the guest root's /bin/sh (busybox's, or the disk root's).
cat >"$ird/toa/run" <<EOF
read -r up _ </proc/uptime
echo "TOA-ARM64-START uptime \$up"
cd /toa
/bin/sh /toa/$name$args
rc=\$?
read -r up _ </proc/uptime
echo "TOA-ARM64-EXIT \$rc uptime \$up"
EOF
qemu_extra=()
start_run="sh /toa/run"
if [ -n "$disk" ]; then
    # The modules a disk root needs, with what they depend on, in load
    # order (depmod on a symlink copy of the stock modules tree), unpacked:
    # busybox's insmod does not ask the kernel to decompress.
    tree=$results/modtree
    mkdir -p "$tree/lib/modules"
    cp -rs "$MODULES" "$tree/lib/modules/$RELEASE"
    depmod -b "$tree" "$RELEASE"
    i=0
    for m in virtio_blk ext4; do
        while read -r _ ko _; do
            i=$((i + 1))
            case $ko in
            *.xz) xz -dc "$ko" ;;
            *.zst) zstd -qdc "$ko" ;;
            *) cat "$ko" ;;
            esac >"$ird/mods/$(printf %02d "$i")-$(basename "${ko%.ko*}").ko"
        done < <(modprobe -d "$tree" -S "$RELEASE" --show-depends "$m" | grep '^insmod ')
    done
    rm -rf "$tree"
    # The disk root becomes the root (switch_root, not chroot: the kernel
    # runs /sbin/modprobe for its module requests in the real root, and
    # refuses unprivileged user namespaces to a chrooted process). /toa
    # goes with it on a tmpfs, busybox inside to power off at the end.
    # (debootstrap --foreign leaves /proc a symlink to the host's /proc.)
    cp "$BUSYBOX" "$ird/toa/busybox"
    cat >"$ird/toa/disk-init" <<'EOF'
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# What udev would make: bash's process substitution needs /dev/fd.
[ -e /dev/fd ] || /toa/busybox ln -s /proc/self/fd /dev/fd
/toa/busybox sh /toa/run
/toa/busybox sync
/toa/busybox mount -o remount,ro /
/toa/busybox poweroff -f
EOF
    start_run="mount -t ext4 /dev/vda /newroot || { echo 'TOA-ARM64-EXIT 1 (no root disk)'; poweroff -f; }
for d in proc sys dev toa; do [ -L /newroot/\$d ] && rm /newroot/\$d; mkdir -p /newroot/\$d; done
mount -t tmpfs toa /newroot/toa && cp -a /toa/. /newroot/toa/
for d in proc sys dev; do mount --move /\$d /newroot/\$d; done
exec switch_root /newroot /toa/busybox sh /toa/disk-init"
    case $disk in *.qcow2) fmt=qcow2 ;; *) fmt=raw ;; esac
    qemu_extra+=(-drive "file=$disk,format=$fmt,if=virtio,cache=unsafe")
fi
# The guest's /init.
cat >"$ird/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /mods/*.ko; do [ -e "\$m" ] && insmod "\$m"; done
ip link set lo up
$start_run
poweroff -f
EOF
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$results/initramfs.cpio.gz"
rm -rf "$ird"

log "booting Debian's $RELEASE (unmodified) under qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on (TCG)${disk:+ with the root $disk}"
start=$SECONDS
rc=0
# shellcheck disable=SC2086 # TOA_ARM64_QEMU_OPTS: more options, word-split
timeout "${TOA_VM_TIMEOUT:-600}" qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -accel tcg \
    -smp "${TOA_ARM64_CPUS:-2}" -m "${TOA_ARM64_MEM:-1G}" ${TOA_ARM64_QEMU_OPTS:-} \
    -display none -monitor none -serial "file:$results/console.log" -no-reboot \
    "${qemu_extra[@]}" \
    -kernel "$IMAGE" -initrd "$results/initramfs.cpio.gz" \
    -append "console=ttyAMA0 panic=-1 quiet" </dev/null || rc=$?
secs=$((SECONDS - start))
tr -d '\r' <"$results/console.log" | sed -n '/^TOA-ARM64-START/,/^TOA-ARM64-EXIT/p' >"$results/output.txt"
exit_line=$(grep '^TOA-ARM64-EXIT' "$results/output.txt" || true)
if [ -z "$exit_line" ]; then
    tail -n 20 "$results/console.log" >&2
    die "the arm64 guest did not finish its script (qemu: $rc, ${secs} s; console: $results/console.log)"
fi
status=$(echo "$exit_line" | cut -d' ' -f2)
log "arm64 guest: script exited $status; shell after $(sed -n 's/^TOA-ARM64-START uptime //p' "$results/output.txt") s of guest time, ${secs} s in all"
exit "$status"
