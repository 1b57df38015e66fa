#!/usr/bin/env bash
# toa's test command (`make check`): everything, from a fresh machine.
#
#  1. bootstrap the toolchain (idempotent; prints the exact versions);
#  2. host: rustfmt of the module, cargo tests of the workspace (the module's
#     pure Rust: unit and property tests; a test binary that dies counts),
#     fuzzing, the example programs;
#  3. for each test kernel (6.12 built with gcc, 7.3-debug built with clang
#     and KASAN, KFENCE, lockdep, kmemleak...; the plain 7.3 with clang when
#     TOA_KERNELS asks for it): build it (cached), build toa.ko with clippy
#     and with rustc (no warnings), boot it under QEMU and run the in-VM
#     suite (on 6.12 and 7.3 once more with every other hook mechanism);
#     the kernel log must stay clean;
#  4. on 6.12 (and 7.3): install toa.ko with `make install` and with DKMS
#     into private trees, then boot again and run the end-to-end FULLNAT
#     topology (nginx, Python, NAT64) and the pods' topologies behind a
#     node (tests/e2e/pods.sh) with the installed module loaded by
#     modprobe; the preflight and the Rust metadata step on fabricated
#     trees (Ubuntu's layout, every refusal);
#  5. "stock", in the background from the end of 6.12's second VM:
#     Debian's own kernels, as users run them (scripts/stock-test.sh):
#     the .deb installed with apt in a trixie root, DKMS building for the
#     stock 7.2 kernel and skipping 6.12, both booted unmodified under QEMU
#     with the suites, a kernel upgrade to 7.3 built by DKMS's hook (and the
#     TCP cases with every other hook mechanism on it), purge;
#  6. "arm64": Debian's stock arm64 kernel under qemu-system-aarch64: the
#     package installed by apt in an arm64 root, DKMS building toa in the
#     guest, the suite's cases and the FULLNAT test there
#     (scripts/arm64-stock-test.sh); then toa.ko cross-built for it and the
#     VM suite's cases a busybox guest serves, under each hook mechanism
#     (scripts/arm64-suite.sh). TOA_ARM64=0 leaves both out.
#  7. "sid": Debian sid's kernel with sid's toolchain, the package, DKMS,
#     a boot with the suite's cases and the FULLNAT test
#     (scripts/debian-kernel-test.sh);
#  8. "fresh": `make run` (the README's first command) from a clean clone
#     in a fresh Debian 12 root with nothing cached, then once more warm
#     (scripts/fresh-test.sh; skipped, and said so, when nothing of how
#     `make run` sets itself up changed since it last passed: a change of
#     code alone is proven by the other stages; left to the next run, and
#     said so, on a cold run: one that finds no test kernel cached).
#
# Ends with one line `N passed, M failed, K skipped`; exits non-zero if
# M > 0. Every suite's own summary, every VM's and every test binary's exit
# status counts; a suite that prints no summary is a failure.
# TOA_KERNELS="7.3 6.12 stock" selects kernels ("none": host checks only);
# TOA_ONLY=substr selects VM cases (of the self-built kernels);
# TOA_FRESH=0 leaves out the fresh machine (force: run it even
# if unchanged); TOA_SELFTEST_ABORT=1 adds a test binary that aborts, to
# see the run turn red.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

# The plain 7.3 test kernel is left out by default (the budget: `make
# check` within 65 minutes from an empty cache): 7.3 is the debug kernel's
# source and Debian's stock kernels' series, 6.12 runs every hook mechanism
# on the whole suite, the stock 7.3.4 the TCP cases with each of them.
# The debug kernel comes first: its suite is the longest (one VM on one host
# thread), and runs in the background while the other kernels take the
# other core; its results are counted after them.
kernels=${TOA_KERNELS:-7.3-debug 6.12 stock}
# Debian sid's kernel, tested with the stock ones (a pin: when sid has moved
# on, the newest of its series, said so).
SID_PIN=7.2.13+deb14-amd64
# Host build products are cached with the kernels, outside the clone.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TOA_CACHE/target}
# The limit of each test kernel's VM (a guard against a hung guest): up to
# five VMs share the two cores at times, which makes each 2-3 times slower
# than alone.
vm_timeout=${TOA_VM_TIMEOUT:-2400}
passed=0 failed=0 skipped=0
start=$SECONDS

# vm_counted NAME RESULTS STATUS [shown]: count a test VM (scripts/vm.sh)
# whose results are in the directory RESULTS and whose exit status was
# STATUS: its suite's summary, a kernel log without splats, the VM's own
# exit (shown: as count's).
vm_counted() {
    count "$2/output.txt" "$1" ${4:-}
    ! [ -s "$2/splats.txt" ]; check "$1: kernel log clean (no WARNING/BUG/Oops/KASAN/lockdep)" $?
    check "$1: VM ran to its end in time, exit 0" "$3"
}

# The time of each stage, for the table at the end. A stage ends where the
# next begins; stages run beside others say so in their name.
stage_names=() stage_secs=() stage_name= stage_t0=$SECONDS
stage() {
    if [ -n "$stage_name" ]; then
        stage_names+=("$stage_name"); stage_secs+=($((SECONDS - stage_t0)))
    fi
    stage_name=${1:-} stage_t0=$SECONDS
    [ -z "$stage_name" ] || log "$stage_name"
}
stage_add() { # stage_add NAME SECONDS: a stage that ran in the background
    stage_names+=("$1"); stage_secs+=("$2")
}

stage "bootstrap"
scripts/bootstrap.sh || { echo "0 passed, 1 failed"; exit 1; }
# The stock kernels' root is fetched from Debian's archive (network-bound):
# build it (when not cached) while the test kernels compile.
case " $kernels " in
    *" stock "*) scripts/stock-root.sh >"$TOA_CACHE/stock-root.log" 2>&1 & ;;
esac
# So is the arm64 stages' cross root (with the arm64 kernel's packages),
# then its Rust metadata and toa.ko: prepared from the start, beside the
# host checks and the kernels; once cached, only the module's incremental
# build. The arm64 stages wait for it (and make it themselves if it failed).
# Beside it from the start too, the arm64 root (made the first time with
# its arm64 programs under user-mode emulation, mostly dpkg and rustc: the
# longest job of a cold run, half an hour alone; cached after), which only
# the arm64 package stage needs, the last of the foreground.
arm64_cross= arm64_root=
if [ "${TOA_ARM64:-1}" != 0 ]; then
    scripts/arm64-kernel.sh >"$TOA_CACHE/arm64-prep.txt" 2>"$TOA_CACHE/arm64-prep.err" &
    arm64_cross=$!
    scripts/arm64-root.sh >"$TOA_CACHE/arm64-root.txt" 2>"$TOA_CACHE/arm64-root.err" &
    arm64_root=$!
fi
# A cold run: no test kernel in toa's cache (a new machine, or a cache
# removed). Such a run sets everything up from nothing itself, so the fresh
# machine's own setup from nothing (a quarter of an hour of both cores) is
# left to the next run, and said so: it has no pass recorded, so the next
# run takes it (TOA_FRESH=force runs it now).
cold=1
for d in "$TOA_CACHE"/kernels/*/; do [ -e "$d.complete" ] && cold= && break; done
# The fresh machine: network-bound too, and independent of everything
# else; it says at once when it is skipped.
fresh_job=
# timed JOB_FILE CMD...: run CMD, writing how many seconds it took to
# JOB_FILE (a background job's own time, not the time until it is waited
# for); CMD's status is the status.
timed() {
    local f=$1 t0=$SECONDS rc=0
    shift
    "$@" || rc=$?
    echo $((SECONDS - t0)) >"$f"
    return "$rc"
}
if [ -n "$cold" ] && [ "${TOA_FRESH:-1}" = 1 ]; then
    echo "skip - fresh machine: make run from a clean clone: left to the next run (this one found no test kernel cached and sets everything up from nothing itself; TOA_FRESH=force runs it now)"
    skipped=$((skipped + 1))
elif [ "${TOA_FRESH:-1}" != 0 ]; then
    rm -f "$TOA_CACHE/fresh.secs"
    timed "$TOA_CACHE/fresh.secs" scripts/fresh-test.sh >"$TOA_CACHE/fresh.txt" 2>"$TOA_CACHE/fresh.err" &
    fresh_job=$!
fi

stage "host checks"
/usr/bin/rustfmt --check src/toa_main.rs >/dev/null; check "rustfmt: module sources" $?
cargo fmt --all --check >/dev/null; check "rustfmt: host workspace" $?
host_log=$TOA_CACHE/host-tests.log
# --no-fail-fast: a test binary that dies (a signal, a stack overflow)
# prints no summary; the others still run, and its death is counted.
abort_feature=()
[ -z "${TOA_SELFTEST_ABORT:-}" ] || abort_feature=(--features toa-core/selftest-abort)
cargo test --workspace --release --no-fail-fast "${abort_feature[@]}" >"$host_log" 2>&1
cargo_rc=$?
grep -E '^test result|FAILED|panicked|didn.t exit successfully' "$host_log"
while read -r p f; do
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" = 0 ] || failures+=("host: $f cargo test(s)")
done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$host_log")
grep -q '^test result' "$host_log" || check "host: cargo test ran" 1
while read -r line; do
    check "host: a test binary died without a summary: $line" 1
done < <(grep -oE "process didn.t exit successfully: .*\((signal|exit status)[^)]*\)" "$host_log" \
    | grep -v 'exit status: 101' | sed -E 's/.*`([^` ]*)[^`]*` /\1 /')
check "host: cargo test exits 0 (every test binary ran to its summary)" $cargo_rc
fuzz_seconds=${TOA_FUZZ_SECONDS:-20}
for target in wire config udp; do
    scripts/fuzz.sh "$target" "$fuzz_seconds" >"$TOA_CACHE/fuzz-$target.log" 2>&1
    rc=$?
    grep -E '^Done [0-9]+ runs' "$TOA_CACHE/fuzz-$target.log" | sed "s/^/    fuzz $target: /"
    [ $rc = 0 ] || tail -n 30 "$TOA_CACHE/fuzz-$target.log"
    check "host: fuzz $target for ${fuzz_seconds}s (cargo fuzz, ASan), no crash" $rc
done
cargo build --release -p toa-test -q; check "host: in-VM suite builds" $?
cargo build --release -p toa-client --examples -q; check "host: Rust example server builds" $?
cargo build --release -p toa-balancer -q; check "host: toa-balancer (NFQUEUE + NAT64) builds" $?
mkdir -p "$TOA_CACHE/bin"
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -I include/uapi examples/toa_server.c -o "$TOA_CACHE/bin/toa_server_c"
check "host: C example server builds (gcc -Werror)" $?
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -I include/uapi examples/toa_udp_server.c -o "$TOA_CACHE/bin/toa_udp_server_c"
check "host: C UDP example server builds (gcc -Werror)" $?
printf '#include <linux/toa.h>\nstatic_assert(sizeof(struct toa_nat64_peer) == 20, "ABI");\nstatic_assert(sizeof(struct uoa_param_map) == 58, "ABI");\nint main() { return TOA_SO_GET_LOOKUP != 4096 || UOA_SO_GET_LOOKUP != 2048; }\n' \
    | g++ -std=c++17 -Wall -Wextra -Werror -I include/uapi -x c++ - -o "$TOA_CACHE/bin/toa_h_cxx" && "$TOA_CACHE/bin/toa_h_cxx"
check "host: <linux/toa.h> compiles as C++ with the C ABI" $?

# Debian's stock kernels: the package, DKMS, two boots (scripts/stock-test.sh),
# in the background beside the other stages (it is mostly one VM or apt at
# a time): started once the 6.12 kernel's second VM (the other hook
# mechanisms) has ended, so that at most three VMs share the two cores;
# counted by stock_finish.
stock_job=
stock_start() { # stock_start [FILE]: run the stock stage once FILE exists
    [ -z "$stock_job" ] || return 0
    local after=${1:-}
    rm -f "$TOA_CACHE/stock.secs"
    (
        if [ -n "$after" ]; then
            while ! [ -e "$after" ]; do sleep 5; done
        fi
        timed "$TOA_CACHE/stock.secs" scripts/stock-test.sh >"$TOA_CACHE/stock.txt" 2>"$TOA_CACHE/stock.err"
    ) &
    stock_job=$!
    log "Debian's stock kernels with the toa-dkms package: in the background"
}
stock_finish() {
    local rc=0
    stage "stock kernels (waiting for them)"
    wait "$stock_job" || rc=$?
    cat "$TOA_CACHE/stock.err" >&2
    grep -vE '^[0-9]+ passed, [0-9]+ failed' "$TOA_CACHE/stock.txt"
    count "$TOA_CACHE/stock.txt" "stock" shown
    check "stock: scripts/stock-test.sh exits 0" $rc
    stage_add "stock kernels (beside the others)" "$(cat "$TOA_CACHE/stock.secs" 2>/dev/null || echo 0)"
}
# Debian sid's kernel: the newest toolchain on every axis (rustc 1.97.1,
# bindgen 0.72.1, gcc-16), the package, DKMS, a boot with the suite's cases
# and the FULLNAT test (scripts/debian-kernel-test.sh).
sid_run() {
    local rc=0
    stage "Debian sid's kernel ($SID_PIN)"
    scripts/debian-kernel-test.sh sid "$SID_PIN" >"$TOA_CACHE/sid.txt" 2>"$TOA_CACHE/sid.err" || rc=$?
    [ "$rc" = 0 ] || tail -n 20 "$TOA_CACHE/sid.err" >&2
    grep -vE '^[0-9]+ passed, [0-9]+ failed' "$TOA_CACHE/sid.txt"
    count "$TOA_CACHE/sid.txt" "sid" shown
    check "sid: scripts/debian-kernel-test.sh exits 0" $rc
}

# The debug kernel's suite, started in the background by the loop below.
debug_vm=
debug_finish() {
    local vm_rc=0 k=7.3-debug
    stage "kernel 7.3-debug (waiting for its suite)"
    wait "$debug_vm" || vm_rc=$?
    vm_counted "$k" "$debug_res" "$vm_rc"
    stage_add "kernel 7.3-debug suite (beside the others)" "$(cat "$TOA_CACHE/debug.secs" 2>/dev/null || echo 0)"
}

# e2e_vm NAME RESULTS SCRIPT TABLE: an end-to-end SCRIPT (tests/e2e/) in a
# VM of kernel $kdir with the module installed in $inst (by modprobe), its
# table (the sed range TABLE) and its lines shown, its summary counted.
e2e_vm() {
    local name=$1 res=$TOA_CACHE/results/$2 rc=0
    TOA_VM_TIMEOUT=$vm_timeout scripts/vm.sh "$kdir" "$res" "$3" \
        "modprobe -d $inst/$root_dir toa" "modprobe -d $inst/$root_dir -r toa" \
        "$CARGO_TARGET_DIR/release/toa-balancer" "$TOA_CACHE/bin/toa_server_c" \
        "$TOA_CACHE/bin/toa_udp_server_c" >/dev/null || rc=$?
    sed -n "$4" "$res/output.txt"
    sed "s/^/$name: /" "$res/output.txt" | grep -E ': (ok|not ok|skip) |: stress'
    vm_counted "$name" "$res" "$rc" shown
}

# hooks_finish: count the second VM of kernel $k (every other hook
# mechanism), once it has ended.
hooks_finish() {
    [ -n "$hooks_vm" ] || return 0
    local res=$TOA_CACHE/results/$k-hooks rc=0
    wait "$hooks_vm" || rc=$?
    hooks_vm=
    vm_counted "$k other hooks" "$res" "$rc"
}

[ "$kernels" = none ] && kernels=
# Debian's stock kernels (and sid's) asked for.
want_stock=
case " $kernels " in *" stock "*) want_stock=1 ;; esac
for k in $kernels; do
    if [ "$k" = stock ]; then
        stock_start
        continue
    fi
    stage "kernel $k: build, module, suites"
    kdir=$(scripts/kernel.sh "$k")
    check "$k: test kernel available" $?
    [ -n "$kdir" ] || continue
    ko=$(scripts/build-module.sh "$kdir" "$TOA_CACHE/module/$k")
    check "$k: toa.ko builds clippy-clean and warning-free" $?
    [ -n "$ko" ] || continue
    kmods=$(scripts/build-test-kmod.sh "$kdir" "$TOA_CACHE/module/$k-testkmod")
    check "$k: test modules (tests/kmod) build warning-free" $?
    res=$TOA_CACHE/results/$k
    only=()
    for o in ${TOA_ONLY:-}; do only+=(--only "$o"); done
    # Unload/load cycles under churn: an unload waits for RCU-tasks grace
    # periods (seconds under TCG), more so under KASAN/lockdep.
    # 10 on the others (each mechanism's own pass takes 5 more, arm64's 10
    # each).
    # The debug kernel also takes fewer random option lists (1000) and
    # UDP flood announcements (4096, four times the flood case's table):
    # each handshake costs it ~90 ms, each announcement ~6 ms.
    if [ "$k" = 7.3-debug ]; then only+=(--cycles 3 --flood 4096 --lists 1000); else only+=(--cycles 10); fi
    vmtest=("$CARGO_TARGET_DIR/release/toa-vmtest" --module "$ko"
        --claim-module "$kmods/toa_claim.ko"
        --c-server "$TOA_CACHE/bin/toa_server_c"
        --c-udp-server "$TOA_CACHE/bin/toa_udp_server_c"
        --rust-server "$CARGO_TARGET_DIR/release/examples/toa_server")
    # Every other hook mechanism, the whole suite again (fewer unload
    # cycles under churn: the mechanism, not the count, is what differs),
    # in a second VM beside the first: each VM runs on one host thread.
    # The cases where the mechanism matters: loading, the hooks, IPv4 and
    # IPv6 clients, handshakes, stress, other owners of sk_user_data, UDP
    # (its protocol-level hooks are entry hooks of each mechanism: ftrace,
    # or kprobes under both kretprobe and fprobe, so UDP runs under
    # kretprobe only of the two); then the UDP cases once more with
    # udp_hooks=netfilter (what a namespace that forwards gets; the
    # suite's namespace does not forward). Not
    # the policy groups (producers, trust, local users, namespaces:
    # decided in Rust on the facts the same glue gathers): they run with
    # the default mechanism here and on the other kernels. The stock
    # kernels' stage starts when this VM ends.
    hooks_vm=
    if [ "$k" != 7.3-debug ]; then
        # Its end marked by a file: the stock stage's start signal.
        done_file=$TOA_CACHE/results/$k-hooks.done
        mkdir -p "$TOA_CACHE/results"
        rm -f "$done_file"
        (
            rc=0
            TOA_VM_TIMEOUT=$vm_timeout scripts/vm.sh "$kdir" "$TOA_CACHE/results/$k-hooks" "${vmtest[@]}" \
                --hooks 'ftrace,kretprobe,fprobe/!udp:,auto+udp_hooks=netfilter/udp:' "${only[@]}" --cycles 5 \
                --skip 'producers:' --skip 'trust:' --skip 'local:' \
                --skip 'namespaces:' >/dev/null 2>&1 || rc=$?
            touch "$done_file"
            exit "$rc"
        ) &
        hooks_vm=$!
        if [ "$k" = 6.12 ] && [ -n "$want_stock" ]; then stock_start "$done_file"; fi
    fi
    # The default hooks (hook=auto), everything. The debug kernel's run
    # (about 30 minutes of one host thread; more when the machine is shared
    # with other heavy work, hence the hour it is given) goes on in the
    # background: counted by debug_finish. Not its two floods from a user
    # namespace (5000 SYNs, 20 000 announcements: 4 minutes there): the
    # handshake and UDP floods of the host's namespace take the same paths
    # under KASAN, and every other kernel runs them. Nor the cases whose
    # point is an application (Python, the example servers: the same
    # socket calls the suite makes itself; 62 s there) or parameters
    # parsed at load (the kinds', tcpopt_packet's: pure Rust, tested on the
    # host, and loads the other cases make; 45 s); the failing loads
    # (invalid parameters: init's unwinding) and the parameters that
    # allocate (trusted_sources, the UDP table's size) stay. (Splitting the
    # suite into two debug VMs made the run longer: five VMs on two cores.)
    if [ "$k" = 7.3-debug ]; then
        debug_res=$res
        rm -f "$TOA_CACHE/debug.secs"
        TOA_VM_TIMEOUT=3600 timed "$TOA_CACHE/debug.secs" \
            scripts/vm.sh "$kdir" "$res" "${vmtest[@]}" "${only[@]}" \
            --skip 'namespaces: 5000 SYNs' --skip 'namespaces: 20 000 announcements' \
            --skip 'Python' --skip 'lifecycle: module parameters set' \
            --skip 'producers: tcpopt_packet and tcpopt_position' >/dev/null 2>&1 &
        debug_vm=$!
        log "the debug kernel's suite runs in the background"
        continue
    fi
    vm_rc=0
    TOA_VM_TIMEOUT=$vm_timeout scripts/vm.sh "$kdir" "$res" "${vmtest[@]}" "${only[@]}" || vm_rc=$?
    vm_counted "$k" "$res" "$vm_rc"
    # Installed like a real module, then the real path end to end.
    case $k in
        6.12 | 7.3) dkms=--dkms root_dir=dkms/root ;;
        *) hooks_finish; continue ;;
    esac
    inst=$TOA_CACHE/install/$k
    scripts/install-test.sh "$kdir" "$TOA_CACHE/module/$k" "$inst" $dkms >"$TOA_CACHE/install-$k.txt"
    sed "s/^/$k install: /" "$TOA_CACHE/install-$k.txt" | grep -v 'passed, '
    count "$TOA_CACHE/install-$k.txt" "$k install" shown
    if [ "$k" = 6.12 ] || [ "$k" = 7.3 ]; then
        scripts/preflight-test.sh "$kdir" "$TOA_CACHE/module/preflight" >"$TOA_CACHE/preflight.txt"
        sed "s/^/preflight: /" "$TOA_CACHE/preflight.txt" | grep -v 'passed, '
        count "$TOA_CACHE/preflight.txt" "preflight" shown
    fi
    # The FULLNAT topology, then backends in pods (the node's kube-proxy
    # and Docker rules, pod IPs, host network).
    e2e_vm "$k e2e" "$k-e2e" tests/e2e/fullnat.sh '/^server /,/^$/p'
    e2e_vm "$k pods" "$k-pods" tests/e2e/pods.sh '/^topology /,/^NAT64/p'
    hooks_finish
done

# Debian's stock arm64 kernel under qemu-system-aarch64 (TOA_ARM64=0 leaves
# it out): first the cross-built module in a busybox guest, then sid's
# kernel, then the package in the arm64 root, so that a cold run's
# foreground has work while the root is being made.
if [ "${TOA_ARM64:-1}" != 0 ]; then
    # hook=auto (direct) and ftrace (what auto takes where direct calls
    # cannot be had: a BTI kernel), with 5 unload cycles under churn each
    # (make arm64-suite: 10), on the cross-built module in the busybox
    # guest; the UDP cases under ftrace only (the package test below runs
    # them under auto); kretprobe (what auto takes where another module
    # owns getname) and fprobe (only ever asked for) run in `make
    # arm64-suite` (and on amd64 in the 6.12 kernel's second VM).
    stage "arm64: cross-built module, the suite under each hook mechanism"
    [ -z "$arm64_cross" ] || wait "$arm64_cross" \
        || { tail -n 5 "$TOA_CACHE/arm64-prep.err" >&2; log "arm64: preparing beside the others failed (above); again now"; }
    arm64_rc=0 res=$TOA_CACHE/results/arm64-suite
    TOA_ARM64_HOOKS='auto/!udp:,ftrace' TOA_ARM64_CYCLES=5 scripts/arm64-suite.sh "$res" >"$TOA_CACHE/arm64.txt" 2>"$TOA_CACHE/arm64.err" || arm64_rc=$?
    [ "$arm64_rc" = 0 ] || tail -n 20 "$TOA_CACHE/arm64.err" >&2
    grep -E '^(uname|toa.ko|dmesg:) ' "$res/output.txt" 2>/dev/null | cut -c1-200
    count "$res/output.txt" "arm64"
    check "arm64: the guest ran the suite to its end, exit 0" "$arm64_rc"
fi

[ -z "$want_stock" ] || sid_run

if [ "${TOA_ARM64:-1}" != 0 ]; then
    stage "arm64: the package on Debian's stock arm64 kernel (apt, DKMS in the guest)"
    [ -z "$arm64_root" ] || wait "$arm64_root" \
        || { tail -n 5 "$TOA_CACHE/arm64-root.err" >&2; log "arm64: making the root beside the others failed (above); again now"; }
    arm64_rc=0
    scripts/arm64-stock-test.sh >"$TOA_CACHE/arm64-stock.txt" 2>"$TOA_CACHE/arm64-stock.err" || arm64_rc=$?
    [ "$arm64_rc" = 0 ] || tail -n 20 "$TOA_CACHE/arm64-stock.err" >&2
    grep -vE '^[0-9]+ passed, [0-9]+ failed' "$TOA_CACHE/arm64-stock.txt" | cut -c1-220
    count "$TOA_CACHE/arm64-stock.txt" "arm64 package" shown
    check "arm64 package: scripts/arm64-stock-test.sh exits 0" "$arm64_rc"
fi
[ -z "$stock_job" ] || stock_finish
[ -z "$debug_vm" ] || debug_finish

if [ -n "$fresh_job" ]; then
    stage "fresh machine (waiting for it)"
    fresh_rc=0
    wait "$fresh_job" || fresh_rc=$?
    tail -n 30 "$TOA_CACHE/fresh.err" | grep -vE '^\[' >&2 || true
    grep -vE '^[0-9]+ passed, [0-9]+ failed' "$TOA_CACHE/fresh.txt"
    count "$TOA_CACHE/fresh.txt" "fresh machine" shown
    check "fresh machine: scripts/fresh-test.sh exits 0" "$fresh_rc"
    stage_add "fresh machine (beside everything else)" "$(cat "$TOA_CACHE/fresh.secs" 2>/dev/null || echo 0)"
fi
stage ""

log "toolchain used:"
toolchain_versions | sed 's/^/    /' >&2
log "time by stage:"
for i in "${!stage_names[@]}"; do
    printf '    %-58s %5d s\n' "${stage_names[$i]}" "${stage_secs[$i]}" >&2
done
log "wall time: $((SECONDS - start)) s ($(((SECONDS - start) / 60)) min)"
if [ ${#failures[@]} -gt 0 ]; then
    log "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
