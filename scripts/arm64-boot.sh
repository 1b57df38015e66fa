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
# TOA_ARM64_QEMU_OPTS shape the VM. RESULTS gets console.log (the whole serial
# console), output.txt (the script's output) and initramfs.cpio.gz. Exits
# with the script's status (1 if the guest never told it, e.g. a panic).
# TOA_VM_TIMEOUT (default 600 s) bounds the boot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

results=${1:?usage: arm64-boot.sh RESULTS [GUEST_SCRIPT [ARGS...]]}
script=${2:-$TOA_ROOT/tests/e2e/arm64-smoke.sh}
shift $(($# < 2 ? $# : 2))
command -v qemu-system-aarch64 >/dev/null || die "qemu-system-aarch64 missing: run scripts/bootstrap.sh"
[ -r "$script" ] || die "no guest script $script"

RELEASE='' IMAGE='' BUSYBOX='' KO=''
while IFS='=' read -r k v; do
    case $k in RELEASE | IMAGE | BUSYBOX | KO) printf -v "$k" '%s' "$v" ;; esac
done < <("$TOA_ROOT/scripts/arm64-kernel.sh")
[ -n "$KO" ] || die "scripts/arm64-kernel.sh printed no toa.ko"

rm -rf "$results" && mkdir -p "$results"
ird=$results/initramfs
mkdir -p "$ird"/{bin,dev,proc,sys,tmp,toa}
cp "$BUSYBOX" "$ird/bin/busybox"
cp "$KO" "$ird/toa/toa.ko"
cp "$script" "$ird/toa/"
for f in ${TOA_ARM64_FILES:-}; do cp "$f" "$ird/toa/"; done
name=$(basename "$script")
args=$(printf ' %q' "$RELEASE" "$@")
# The guest's /init. The markers delimit the script's output on the console.
cat >"$ird/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
ip link set lo up
echo "TOA-ARM64-START uptime \$(cut -d' ' -f1 /proc/uptime)"
cd /toa
sh /toa/$name$args
echo "TOA-ARM64-EXIT \$? uptime \$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
EOF
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$results/initramfs.cpio.gz"
rm -rf "$ird"

log "booting Debian's $RELEASE (unmodified) under qemu-system-aarch64 -M virt -cpu max (TCG)"
start=$SECONDS
rc=0
# shellcheck disable=SC2086 # TOA_ARM64_QEMU_OPTS: more options, word-split
timeout "${TOA_VM_TIMEOUT:-600}" qemu-system-aarch64 -M virt -cpu max -accel tcg \
    -smp "${TOA_ARM64_CPUS:-2}" -m "${TOA_ARM64_MEM:-1G}" ${TOA_ARM64_QEMU_OPTS:-} \
    -display none -monitor none -serial "file:$results/console.log" -no-reboot \
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
