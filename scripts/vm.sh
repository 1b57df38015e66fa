#!/usr/bin/env bash
# Boot a test kernel under QEMU (TCG: nested KVM hangs on these machines)
# with virtme-ng and run one command in it, as root, on the host's own
# filesystem (read-only, but for the results directory).
#
#   scripts/vm.sh KDIR|IMAGE RESULTS_DIR COMMAND...
#
# TOA_VM_ROOT=DIR boots on that root filesystem instead of the host's (also
# read-only; scripts/stock-boot.sh: a trixie root with a stock kernel); the
# command then runs in / and RESULTS_DIR is /toa-results in the guest.
#
# RESULTS_DIR gets output.txt (the command's output), rc, dmesg.txt (the
# guest's kernel log after the command) and console.log (QEMU's console).
# Exits non-zero if the command did, if the VM timed out or died, or if the
# kernel log shows a splat (see SPLAT below).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kdir=${1:?usage: vm.sh KDIR|IMAGE RESULTS_DIR COMMAND...}
results=${2:?usage: vm.sh KDIR|IMAGE RESULTS_DIR COMMAND...}
shift 2
cmd=$(printf "%q " "$@")
timeout=${TOA_VM_TIMEOUT:-1200}
memory=${TOA_VM_MEMORY:-2G}
# One host thread runs every vCPU (round robin): QEMU's multi-threaded TCG
# lets a vCPU run a stale translation of code another vCPU has just
# patched, which shows up as a spurious int3 oops in the guest while the
# function tracer patches call sites (every toa load and unload); it was
# also slower here, where two host cores serve everything. Benchmarks that
# need CPUs running in parallel ask for TOA_VM_ACCEL=tcg,thread=multi.
accel=${TOA_VM_ACCEL:-tcg,thread=single}

# Kernel log lines that fail a run whatever the command said.
SPLAT='WARNING:|BUG:|Oops|KASAN:|UBSAN:|kernel BUG|general protection fault|Kernel panic|DEBUG_LOCKS_WARN_ON|lockdep is turned off|possible (circular|recursive) locking|suspicious RCU usage|hung_task|rcu_.*stall|Call Trace:'

image=$kdir
[ -f "$image" ] || image=$kdir/arch/x86/boot/bzImage
[ -e "$image" ] || die "no kernel image $image"
rm -rf "$results" && mkdir -p "$results"
export PATH=$TOA_TOOLS/venv/bin:$PATH
root_opts=() gres=$results gcwd=$TOA_ROOT
if [ -n "${TOA_VM_ROOT:-}" ]; then
    root_opts=(--root "$TOA_VM_ROOT") gres=/toa-results gcwd=/
    mkdir -p "$TOA_VM_ROOT$gres"
fi

# Output to a file, not a pipe: daemons a test leaves behind would hold a
# pipe open (and the VM up) after the command is done. A kernel that has
# already splatted before the command starts (so before toa is first
# loaded: the command loads it) is left at once, its log kept: that splat
# belongs to the test kernel or QEMU, and the VM is booted once more.
# The guest's script is a file in the results directory: virtme-ng passes
# the command it runs on the kernel command line, whose length is bounded
# (2048 bytes on x86: a long command there cut the init path short).
cat >"$results/guest.sh" <<EOF
if dmesg | grep -E '$SPLAT' | grep -qv 'virtme-ng-init: '; then dmesg > '$gres/boot-dmesg.txt'; exit 0; fi
echo 'toa-vm: the command starts' > /dev/kmsg
cd '$gcwd' && { $cmd; } > '$gres/output.txt' 2>&1 < /dev/null; echo \$? > '$gres/rc'; dmesg > '$gres/dmesg.txt'
EOF
guest="/bin/sh '$gres/guest.sh'"

# The guest runs without udev (scripts/vm-init.sh says why and how): vng
# prints its QEMU command (--dry-run), and the init= of its kernel command
# line (virtme-ng-init) becomes toa_init=, which scripts/vm-init.sh runs.
# The stock root has no udev and boots as vng makes it; so does a command
# vng prints in a form this does not recognize (TOA_VM_UDEV=1: udev too).
vng_args=(--run "$image" "${root_opts[@]}" --disable-kvm --force-9p --memory "$memory"
    --cpus "${TOA_VM_CPUS:-2}" --qemu-opts="-accel $accel${TOA_QEMU_OPTS:+ $TOA_QEMU_OPTS}"
    --rwdir "$gres=$results" --verbose --exec "$guest")
qemu_cmd=
if [ -z "${TOA_VM_ROOT:-}" ] && [ -z "${TOA_VM_UDEV:-}" ]; then
    dry=$(vng --dry-run "${vng_args[@]}" 2>&1 | grep '^/' | tail -n 1) || dry=
    real_init=$(printf '%s\n' "$dry" | grep -o " init=[^ ']*/virtme-ng-init'" | tail -n 1) || real_init=
    real_init=${real_init# init=} real_init=${real_init%\'}
    if [ -n "$real_init" ]; then
        qemu_cmd=${dry/" init=$real_init'"/" toa_init=$real_init init=$TOA_ROOT/scripts/vm-init.sh'"}
        # vng reads the guest's exit status from this file; vm.sh has its own.
        ret_file=$(printf '%s\n' "$dry" | grep -o 'path=/tmp/virtme_ret[^ ,]*' | head -n 1) || ret_file=
        ret_file=${ret_file#path=}
    fi
fi
for boot in 1 2; do
    rm -f "$results/boot-dmesg.txt" "$results/output.txt" "$results/rc" "$results/dmesg.txt"
    set +e
    # QEMU (or vng, its parent) runs in a session of its own, so that a
    # timeout (or this script being stopped) takes the whole VM down with it.
    if [ -n "$qemu_cmd" ]; then
        setsid sh -c "exec $qemu_cmd" >"$results/console.log" 2>&1 </dev/null &
    else
        setsid vng "${vng_args[@]}" >"$results/console.log" 2>&1 </dev/null &
    fi
    vm=$!
    trap 'kill -KILL -- -$vm 2>/dev/null || true; rm -f "${ret_file:-}"' EXIT INT TERM
    waited=0
    while kill -0 "$vm" 2>/dev/null && [ "$waited" -lt "$timeout" ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$vm" 2>/dev/null; then
        kill -KILL -- -"$vm" 2>/dev/null
        wait "$vm" 2>/dev/null
        vm_rc=124
    else
        wait "$vm"
        vm_rc=$?
    fi
    set -e
    [ -e "$results/boot-dmesg.txt" ] || break
    boot_splat=$(grep -E "$SPLAT" "$results/boot-dmesg.txt" | grep -v 'virtme-ng-init: ' | head -n 5)
    cp "$results/boot-dmesg.txt" "$results/boot-splat-$boot.txt"
    cp "$results/console.log" "$results/boot-splat-$boot-console.log"
    log "the kernel splatted during boot, before the command (and toa) started: not toa's (kept in boot-splat-$boot.txt):"
    echo "$boot_splat" | sed 's/^/    /' >&2
    if [ "$boot" = 2 ]; then
        log "it happened on two boots in a row: failing"
        echo "$boot_splat" >"$results/splats.txt"
        exit 1
    fi
    log "booting once more"
done

# The command's own output, as it printed it.
[ -e "$results/output.txt" ] && cat "$results/output.txt"

fail=0
if [ "$vm_rc" = 124 ]; then
    log "VM timed out after ${timeout}s; console tail:"
    tail -n 40 "$results/console.log" >&2
    fail=1
elif ! [ -s "$results/rc" ]; then
    log "VM ended (status $vm_rc) before the command finished; console tail:"
    tail -n 40 "$results/console.log" >&2
    fail=1
elif [ "$(cat "$results/rc")" != 0 ]; then
    log "command exited $(cat "$results/rc") in the VM"
    fail=1
fi
# (virtme-ng-init's own messages on the console are not the kernel's: with a
# root without systemd it warns that systemd-tmpfiles is missing.)
splats=$(cat "$results/dmesg.txt" "$results/console.log" 2>/dev/null | grep -E "$SPLAT" \
    | grep -v 'virtme-ng-init: ' | sort -u || true)
if [ -n "$splats" ]; then
    log "kernel log shows a splat:"
    echo "$splats" | head -n 40 >&2
    echo "$splats" >"$results/splats.txt"
    fail=1
fi
exit $fail
