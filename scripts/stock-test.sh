#!/usr/bin/env bash
# toa on Debian's stock kernels, the way a user gets it (part of make check):
#
#  1. `make deb`; the cached trixie root (scripts/stock-root.sh) with the
#     stock 7.2 kernel and trixie's 6.12 installed, seen through an overlay
#     that lives only as long as this run;
#  2. `apt install ./toa-dkms_<version>_all.deb` first without
#     linux-source-7.2: it ends well, DKMS skipping 7.2 with one line naming
#     it (and 6.12 with one line); then `apt install linux-source-7.2`: the
#     package's dpkg trigger builds toa for 7.2 (rebuilding the Rust
#     metadata its headers lack from it, or reusing the last run's while
#     its stamp matches: lib.sh's meta_seed); the system's headers are left
#     untouched;
#  3. boot the unmodified 7.2 kernel on that root: modprobe toa, modinfo,
#     dmesg, the FULLNAT test;
#  4. upgrade: `apt install linux-image-7.3... linux-headers-7.3...`; DKMS
#     builds toa for it from the kernel's own hook; boot it: the same
#     checks, the in-VM suite's cases (and the TCP ones with every other
#     hook mechanism), the FULLNAT test, the pods, a BPF socket map;
#  5. `apt purge toa-dkms` leaves nothing: no file of the package, no DKMS
#     entry, no module, no cache.
#
# Prints ok/not ok lines, the guests' evidence and `N passed, M failed`.
# Results and logs: $TOA_CACHE/results/stock/.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

# Everything runs in a mount namespace of its own: the overlay (and any
# mount a failure would leave) goes away with it.
if [ -z "${TOA_STOCK_NS:-}" ]; then
    exec env TOA_STOCK_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi

passed=0 failed=0 skipped=0

res=$TOA_CACHE/results/stock
rm -rf "$res" && mkdir -p "$res"

deb=$(scripts/deb.sh)
check "make deb: $(basename "${deb:-none}") built with dpkg-buildpackage + dh_dkms" $?
[ -n "$deb" ] || finish
dir=$(scripts/stock-root.sh)
check "trixie root with Debian's stock kernels (debootstrap, cached)" $?
[ -n "$dir" ] || finish
# shellcheck disable=SC1091
. "$dir/kernels.env"

run=$TOA_CACHE/stock-run
rm -rf "$run" && mkdir -p "$run/upper" "$run/work" "$run/merged"
mount -t overlay overlay -o "lowerdir=$dir/root,upperdir=$run/upper,workdir=$run/work" "$run/merged"
check "per-run overlay over the cached root" $?
root=$run/merged
in_root() { scripts/chroot.sh "$root" "$@"; }
debname=$(basename "$deb")

# --- the package -------------------------------------------------------------
# First as a user who skipped the README's linux-source line: the package
# installs all the same, DKMS skipping $OLD with one line saying what to
# install, and installing that builds toa with no other command (the
# package's dpkg trigger). The source package comes back from the mirror.
series=$(echo "$OLD" | cut -d. -f1,2)
srcver=$(in_root dpkg-query -W -f='${Version}' "linux-source-$series")
in_root apt-get remove -y "linux-source-$series" >"$res/remove-source.log" 2>&1
check "apt remove linux-source-$series (toa-dkms goes in without it)" $? "$(tail -n 5 "$res/remove-source.log")"
log "apt install ./$debname without linux-source-$series (DKMS skips $OLD and $NORUST, one line each)"
cp "$deb" "$root/tmp/"
# The last run's Rust metadata (lib.sh, meta_seed): reused by DKMS only
# while its stamp matches; the wait for linux-source below comes first
# either way.
meta_seed "$dir/meta" "$root"
start=$SECONDS
in_root apt-get install -y "/tmp/$debname" >"$res/install.log" 2>&1
check "apt install ./$debname exits 0 ($((SECONDS - start)) s)" $? "$(tail -n 5 "$res/install.log")"
# (apt runs dpkg on a terminal of its own: its lines end in CR LF.)
tr -d '\r' <"$res/install.log" | sed -n '/^Setting up toa-dkms/,$p' | grep -v '^$' | sed 's/^/    /'
wait_line="toa: kernel $OLD waits for linux-source-$series ($srcver): apt install linux-source-$series=$srcver, and toa builds itself"
waits=$(tr -d '\r' <"$res/install.log" | grep -cxF "$wait_line")
check "one line says what $OLD waits for: $wait_line" "$([ "$waits" = 1 ]; echo $?)" "$waits such lines"
st=$(in_root dpkg-query -W -f='${db:Status-Status}' toa-dkms)
check "dpkg: toa-dkms is installed (not half-configured)" "$([ "$st" = installed ]; echo $?)" "$st"
status=$(in_root dkms status toa)
check "dkms status: toa is not installed for $OLD" "$(! grep -q "$OLD" <<<"$status"; echo $?)" "$status"
log "apt install linux-source-$series=$srcver (the trigger builds toa for $OLD)"
start=$SECONDS
in_root apt-get install -y "linux-source-$series=$srcver" >"$res/source.log" 2>&1
check "apt install linux-source-$series exits 0 ($((SECONDS - start)) s)" $? "$(tail -n 5 "$res/source.log")"
tr -d '\r' <"$res/source.log" | sed -n '/^Processing triggers for toa-dkms/,$p' | grep -v '^$' | sed 's/^/    /'
status=$(in_root dkms status toa)
check "the trigger built and installed toa for $OLD (dkms status, /lib/modules/$OLD/updates/dkms/toa.ko*)" \
    "$(grep -q "^Processing triggers for toa-dkms" "$res/source.log" && grep -q "$OLD.*installed" <<<"$status" \
        && ls "$root/lib/modules/$OLD/updates/dkms/"toa.ko* >/dev/null 2>&1; echo $?)" "$status"
# DKMS's build logs, kept for the record (and for a failure's cause).
keep_logs() { # keep_logs STEP RELEASE: keep DKMS's make.logs, show toa's lines for RELEASE
    local f name
    for f in "$root"/var/lib/dkms/toa/*/build/make.log "$root"/var/lib/dkms/toa/*/"$2"/*/log/make.log; do
        [ -e "$f" ] || continue
        name=${f#"$root"/var/lib/dkms/toa/}
        cp "$f" "$res/make-$1-$(echo "${name%/make.log}" | tr / _).log"
        grep -h '^toa: ' "$f"
    done | awk '!seen[$0]++' | sed 's/^/    /'
}
keep_logs install "$OLD"
rm -f "$root/tmp/$debname"
in_root dpkg-query -L toa-dkms >"$res/files.txt"
status=$(in_root dkms status toa)
echo "$status" >"$res/dkms-status.txt"
check "dkms status: toa installed for $OLD" "$(grep -q "$OLD.*installed" <<<"$status"; echo $?)" "$status"
skips=$(grep -c "^toa: skipping kernel $NORUST" "$res/install.log")
check "DKMS skips $NORUST (no CONFIG_RUST) with one line, no error" \
    "$([ "$skips" = 1 ] && ! grep -q "$NORUST.*installed" <<<"$status"; echo $?)" "$skips skip lines; $status"
grep "^toa: skipping kernel" "$res/install.log" | sed 's/^/    /'
check "Rust metadata from linux-source in /var/cache/toa-dkms/$OLD" \
    "$([ -e "$root/var/cache/toa-dkms/$OLD/debian/rust/libkernel.rmeta" ]; echo $?)"
meta_said "$OLD" "$res"/make-install-*.log
# The overlay's upper layer holds every file this run wrote.
touched=$(cd "$run/upper" && ls -d usr/src/linux-headers-* usr/lib/linux-kbuild-* 2>/dev/null)
check "the system's kernel headers are untouched" "$([ -z "$touched" ]; echo $?)" "$touched"
check "<linux/toa.h> in /usr/include compiles" \
    "$(in_root sh -c 'echo "#include <linux/toa.h>" | gcc -fsyntax-only -x c -' >/dev/null 2>&1; echo $?)"
check "example modprobe.d, modules-load.d, sysctl.d files in /usr/share/doc/toa-dkms/examples" \
    "$(for f in modprobe.d/toa.conf modules-load.d/toa.conf sysctl.d/60-toa.conf; do
        [ -e "$root/usr/share/doc/toa-dkms/examples/$f" ] || exit 1; done; echo 0)"

# --- boot the stock kernel ---------------------------------------------------
boot() { # boot RELEASE NAME [--demo|--hooks]
    local r=$res/$2 rc=0
    scripts/stock-boot.sh "$root" "$1" "$r" ${3:-} >/dev/null || rc=$?
    check "$1: the VM ran the guest to its end in time, exit 0" "$rc" \
        "status $rc, guest status $(cat "$r/rc" 2>/dev/null || echo none)"
    for f in checks suite e2e; do
        [ "${3:-}" = --demo ] && [ "$f" = suite ] && continue
        count "$r/$f.txt" "$1 $f"
    done
    if [ "${3:-}" = --hooks ]; then
        count "$r/suite-hooks.txt" "$1 suite, other hooks"
        count "$r/pods.txt" "$1 pods"
        count "$r/sockmap.txt" "$1 sockmap"
        grep -E '^(sockops insertions|toa_sockmap_parked|cgroup getpeername)' "$r/sockmap.txt" | sed "s/^/    $1: /"
    fi
    # What the BPF fexit case saw (attach results, toa's mechanism, counts).
    cat "$r/suite.txt" "$r/suite-hooks.txt" 2>/dev/null | grep '^# BPF fexit' | sed "s/^# /    $1: /"
    sed -n '/^server /,/^$/p' "$r/e2e.txt" | sed 's/^/    /'
    sed -n '/^topology /,/^NAT64/p' "$r/pods.txt" 2>/dev/null | sed 's/^/    pods: /'
    sed 's/^/    /' "$r/evidence.txt" | grep -E '^    (#|[0-9]|filename|vermagic|signer|sig_key|\[)'
    check "$1: kernel log clean (no WARNING/BUG/Oops)" "$([ -s "$r/rc" ] && ! [ -s "$r/splats.txt" ]; echo $?)" \
        "$(head -n 5 "$r/splats.txt" 2>/dev/null)"
}
# The first kernel: the checks and the FULLNAT test (the suite runs on
# the upgrade's 7.3 with every mechanism, and on sid's 7.2.13).
boot "$OLD" boot-old --demo

# --- a kernel upgrade ----------------------------------------------------------
log "apt install linux-image-$NEW linux-headers-$NEW (DKMS builds from the kernel's hook)"
start=$SECONDS
in_root apt-get install -y -t trixie-backports "linux-image-$NEW" "linux-headers-$NEW" >"$res/upgrade.log" 2>&1
check "apt install linux-image-$NEW + headers exits 0 ($((SECONDS - start)) s)" $? "$(tail -n 5 "$res/upgrade.log")"
keep_logs upgrade "$NEW"
status=$(in_root dkms status toa)
check "DKMS built toa for $NEW on its own (kernel hook, autoinstall)" \
    "$(grep -q "$NEW.*installed" <<<"$status" && grep -q "Autoinstall of module toa" "$res/upgrade.log"; echo $?)" "$status"
meta_said "$NEW" "$res"/make-upgrade-*.log
meta_keep "$dir/meta" "$root"
boot "$NEW" boot-new --hooks

# --- purge -------------------------------------------------------------------
log "apt purge toa-dkms"
in_root apt-get purge -y toa-dkms >"$res/purge.log" 2>&1
check "apt purge toa-dkms exits 0" $? "$(tail -n 5 "$res/purge.log")"
left=$(while read -r f; do [ -f "$root$f" ] || [ -L "$root$f" ] && echo "$f"; done <"$res/files.txt")
check "purge: none of the package's files is left" "$([ -z "$left" ]; echo $?)" "$left"
left=$(cd "$run/upper" && find . -path ./opt/toa-test -prune -o -path ./toa-results -prune -o -path ./tmp -prune \
    -o -regextype posix-extended -regex '.*/toa([-_.][^/]*)?' -print)
check "purge: nothing named toa anywhere this run wrote (DKMS tree, modules, /var/cache/toa-dkms, /etc)" \
    "$([ -z "$left" ]; echo $?)" "$(echo $left)"
check "purge: dkms status knows no toa" "$([ -z "$(in_root dkms status toa)" ]; echo $?)"
check "purge: modules.dep of $OLD and $NEW name no toa" \
    "$(! grep -qs '/toa\.ko' "$root/lib/modules/$OLD/modules.dep" "$root/lib/modules/$NEW/modules.dep"; echo $?)"
st=$(in_root dpkg-query -W -f='${db:Status-Status}' toa-dkms 2>/dev/null)
check "purge: dpkg knows toa-dkms no more (no conffiles left)" "$([ -z "$st" ] || [ "$st" = not-installed ]; echo $?)" "$st"
finish
