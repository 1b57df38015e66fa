#!/usr/bin/env bash
# Install toa.ko for a test kernel the ways users do, into private trees
# (the machine's /lib/modules and /usr/src are left alone), and check DKMS's
# skip of a kernel without Rust. Prints ok/not ok lines and `N passed, M failed`; the
# installed trees are then loaded with modprobe in a VM by scripts/check.sh.
#
#   scripts/install-test.sh KDIR MODDIR ROOT [--dkms]
#
# MODDIR is the module's build directory (scripts/build-module.sh).
# ROOT/stage gets `make install INSTALL_MOD_PATH=...`; with --dkms,
# ROOT/dkms gets `dkms add/build/install` (modules under
# ROOT/dkms/root/lib/modules). Load them with `modprobe -d ROOT/... toa`.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

usage="usage: install-test.sh KDIR MODDIR ROOT [--dkms]"
kdir=${1:?$usage}
moddir=${2:?$usage}
root=${3:?$usage}
passed=0 failed=0
krel=$(sed -n 's/^#define UTS_RELEASE "\(.*\)"/\1/p' "$kdir/include/generated/utsrelease.h")
rm -rf "$root" && mkdir -p "$root"
log=$root/log
cd "$TOA_ROOT"

# make install, staged.
stage=$root/stage
mkdir -p "$stage/lib/modules/$krel"
touch "$stage/lib/modules/$krel/"{modules.order,modules.builtin,modules.builtin.modinfo}
make -s -C "$moddir" install KDIR="$kdir" INSTALL_MOD_PATH="$stage" >"$log" 2>&1
check "make install puts toa.ko in updates/ and runs depmod" \
    "$([ -e "$stage/lib/modules/$krel/updates/toa.ko" ] && grep -q 'updates/toa.ko' "$stage/lib/modules/$krel/modules.dep"; echo $?)" \
    "$(tail -n 5 "$log")"

if [ "${4:-}" = --dkms ]; then
    d=$root/dkms
    mkdir -p "$d/tree" "$d/root/lib/modules/$krel"
    touch "$d/root/lib/modules/$krel/"{modules.order,modules.builtin,modules.builtin.modinfo}
    flags=(--dkmstree "$d/tree" --installtree "$d/root/lib/modules" --sourcetree "$d/src")
    make -s dkms-src DKMS_SRC="$d/src" >"$log" 2>&1
    dkms add "${flags[@]}" toa/0.1.0 >>"$log" 2>&1
    check "dkms add" $? "$(tail -n 5 "$log")"
    dkms build "${flags[@]}" toa/0.1.0 -k "$krel" --kernelsourcedir "$kdir" >>"$log" 2>&1
    check "dkms build against the test kernel tree (a clang kernel: DKMS's CC=clang overridden)" $? \
        "$(tail -n 20 "$d/tree/toa/0.1.0/build/make.log" 2>/dev/null)"
    # DKMS runs depmod on the real /lib/modules; the private tree gets its own.
    dkms install --no-depmod "${flags[@]}" toa/0.1.0 -k "$krel" --kernelsourcedir "$kdir" >>"$log" 2>&1 \
        && depmod -b "$d/root" -a "$krel" 2>>"$log"
    check "dkms install + depmod" "$(grep -q 'toa.ko' "$d/root/lib/modules/$krel/modules.dep" 2>/dev/null; echo $?)" \
        "$(tail -n 5 "$log")"

    # A kernel without Rust (or kprobes) is skipped, not failed, with one
    # line saying why (dkms.conf).
    fake=$root/no-rust-kernel
    mkdir -p "$fake"
    grep -v '^CONFIG_RUST=' "$kdir/.config" >"$fake/.config"
    dkms build "${flags[@]}" toa/0.1.0 -k 0.0.0-norust --kernelsourcedir "$fake" >"$log" 2>&1
    rc=$?
    check "dkms skips a kernel without CONFIG_RUST (BUILD_EXCLUSIVE_CONFIG, exit 77) with one line" \
        "$([ $rc = 77 ] && [ "$(grep -c '^toa: skipping kernel 0.0.0-norust: it is built without CONFIG_RUST' "$log")" = 1 ]; echo $?)" \
        "exit $rc: $(tail -n 6 "$log")"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
