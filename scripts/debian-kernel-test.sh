#!/usr/bin/env bash
# toa-dkms on one of Debian's newest kernels, with that distribution's own
# toolchain, the way its users get it:
#
#   scripts/debian-kernel-test.sh DIST [RELEASE]
#
# DIST is sid or trixie-backports; RELEASE a kernel release of it
# (7.2.13+deb14-amd64: make check's pin for sid), or none: the newest
# amd64 kernel DIST offers today (`make check-latest`), read from the
# mirror's package index, unpinned.
#
#  1. a root of DIST (debootstrap: sid itself; trixie with backports) with
#     linux-image-RELEASE, its headers and linux-source-SERIES, and the
#     rustc, rust-src and bindgen whose versions the kernel's config names
#     (CONFIG_RUSTC_VERSION_TEXT, CONFIG_BINDGEN_VERSION_TEXT), found among
#     DIST's packages (the C compiler is the headers' own dependency: gcc-16
#     on sid today); cached in $TOA_CACHE/roots/DIST-<key> (key: the
#     release, the package lists, the mirror, this recipe);
#  2. `make deb`, then `apt install ./toa-dkms_<version>_all.deb` in a
#     per-run overlay of it: DKMS builds toa for RELEASE (the Rust metadata
#     rebuilt from linux-source, or the last run's reused while rust-meta.sh's
#     stamp matches: lib.sh's meta_seed);
#  3. the unmodified kernel booted under QEMU on that root
#     (scripts/stock-boot.sh): modprobe, modinfo, dmesg, the in-VM suite's
#     cases, the FULLNAT end-to-end test.
#
# Prints ok/not ok lines and `N passed, M failed, K skipped`. Results:
# $TOA_CACHE/results/DIST/.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

dist=${1:?usage: debian-kernel-test.sh sid|trixie-backports [RELEASE]}
want=${2:-}
case $dist in
sid) base=sid suites="sid" abi=deb14 ;;
trixie-backports) base=trixie suites="trixie trixie-updates trixie-backports" abi=deb13 ;;
*) die "unknown distribution $dist (sid or trixie-backports)" ;;
esac
if [ -z "${TOA_DEBIAN_NS:-}" ]; then
    exec env TOA_DEBIAN_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi

GUEST="kmod procps iproute2 python3 curl nginx-light nftables libnetfilter-queue1 dnsmasq-base bpftrace util-linux"
OTHER="dkms gcc make xz-utils openssl"

passed=0 failed=0 skipped=0

res=$TOA_CACHE/results/$dist
rm -rf "$res" && mkdir -p "$res"
mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/bootstrap.sh"

rootkey() { # rootkey RELEASE: the cache key of a root for RELEASE
    { echo "$dist $1 $GUEST $OTHER $mirror"; sed -n '/^# --- recipe ---/,/^# --- end of recipe ---/p' "$0"; } \
        | sha256sum | cut -c1-12
}
# The release: the pin (while cached, or while DIST has it), else the
# newest linux-image-X.Y.Z+debNN-amd64 of DIST's own suite (not the base's:
# trixie's 6.12 has no Rust), of the pin's series if there is one; said.
rel=$want
if [ -z "$rel" ] || ! [ -e "$TOA_CACHE/roots/$dist-$(rootkey "$rel")/.complete" ]; then
    have=$(curl -fsSL "$mirror/dists/$dist/main/binary-amd64/Packages.xz" | xz -dc \
        | sed -n "s/^Package: linux-image-\([0-9][0-9.]*+$abi-amd64\)\$/\1/p" | sort -uV)
    if [ -z "$want" ] || ! grep -qxF "$want" <<<"$have"; then
        rel=$(grep -F "${want:+$(echo "$want" | cut -d. -f1,2).}" <<<"$have" | tail -n1)
        check "the newest amd64 kernel in $dist today${want:+ of ${want%.*}} (${want:+$want is gone: }${rel:-none})" \
            "$([ -n "$rel" ]; echo $?)"
        [ -n "$rel" ] || finish
    fi
fi
series=$(echo "$rel" | cut -d. -f1,2)

dir=$TOA_CACHE/roots/$dist-$(rootkey "$rel")
root=$dir/root
in_root() { scripts/chroot.sh "$1" "${@:2}"; }
mkdir -p "$TOA_CACHE/roots"
exec 9>"$TOA_CACHE/roots/.lock-$dist"
flock 9

# --- recipe ---
if ! [ -e "$dir/.complete" ]; then
    # Roots of other keys are stale (a newer kernel, a changed recipe).
    find "$TOA_CACHE/roots" -mindepth 1 -maxdepth 1 -name "$dist-*" ! -path "$dir" -exec rm -rf {} +
    start=$SECONDS
    log "building a $dist root with linux-image-$rel in $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    debootstrap --variant=minbase "$base" "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 \
        || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap $base failed"; }
    rm -f "$root/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" "$suites" >"$root/etc/apt/sources.list.d/debian.sources"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    # (A mirror that is a snapshot serves sid's Release after its
    # Valid-Until: the date is not what is tested here.)
    printf 'APT::Install-Recommends "false";\nDPkg::Options { "--force-unsafe-io"; };\nAcquire::Retries "3";\nAcquire::Check-Valid-Until "false";\n' \
        >"$root/etc/apt/apt.conf.d/90toa-test"
    # No initramfs: virtme-ng boots the kernel over 9p (see stock-root.sh).
    mkdir -p "$dir/stub/DEBIAN"
    printf 'Package: toa-test-no-initramfs\nVersion: 1\nArchitecture: all\nMaintainer: toa tests <toa@localhost>\nProvides: linux-initramfs-tool\nDescription: test root only: no initramfs\n' \
        >"$dir/stub/DEBIAN/control"
    dpkg-deb -b "$dir/stub" "$root/tmp/toa-test-no-initramfs.deb" >/dev/null
    apt_root() { in_root "$root" apt-get -q -y "$@" >>"$dir/apt.log" 2>&1 || { tail -n 30 "$dir/apt.log" >&2; die "apt-get $* failed in the $dist root"; }; }
    apt_root update
    t=()
    [ "$dist" = trixie-backports ] && t=(-t trixie-backports)
    log "installing linux-image-$rel, its headers, linux-source-$series and the tests' programs"
    # shellcheck disable=SC2086
    apt_root install "${t[@]}" /tmp/toa-test-no-initramfs.deb "linux-image-$rel" "linux-headers-$rel" \
        "linux-source-$series" $OTHER $GUEST
    # The Rust toolchain the kernel names, among DIST's versions.
    config=$root/usr/lib/modules/$rel/config
    [ -e "$config" ] || config=$root/boot/config-$rel
    grep -qx 'CONFIG_RUST=y' "$config" || die "linux-image-$rel is not built with CONFIG_RUST"
    rustc_v=$(sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="rustc \([0-9.]*\).*/\1/p' "$config")
    bindgen_v=$(sed -n 's/^CONFIG_BINDGEN_VERSION_TEXT="bindgen \([0-9.]*\).*/\1/p' "$config")
    pick() { # pick PACKAGE UPSTREAM: DIST's version of PACKAGE whose upstream version is UPSTREAM
        in_root "$root" apt-cache madison "$1" | awk -F'|' '{gsub(/ /, "", $2); print $2}' \
            | grep -E "^([0-9]+:)?$(echo "$2" | sed 's/\./\\./g')[+~-]" | head -n1
    }
    rv=$(pick rustc "$rustc_v") bv=$(pick bindgen "$bindgen_v")
    [ -n "$rv" ] || die "$dist has no rustc $rustc_v (the one linux-image-$rel names)"
    [ -n "$bv" ] || die "$dist has no bindgen $bindgen_v (the one linux-image-$rel names)"
    log "installing rustc=$rv rust-src=$rv bindgen=$bv (what $rel names)"
    # (Not with -t: the version asked for decides, and its exact-version
    # dependencies follow it, from trixie or from backports.)
    apt_root install "rustc=$rv" "rust-src=$rv" "bindgen=$bv"
    apt_root clean
    rm -rf "$dir/stub" "$root/tmp/toa-test-no-initramfs.deb"
    in_root "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$dir/packages.txt"
    log "$dist root ready in $((SECONDS - start)) s: $rel; $(in_root "$root" rustc --version), $(in_root "$root" bindgen --version 2>&1 | head -n1), $(grep -E '^gcc-[0-9]+ ' "$dir/packages.txt" | tr '\n' ' ')"
    touch "$dir/.complete"
fi
# --- end of recipe ---
check "$dist root with linux-image-$rel and the toolchain it names (cached)" "$([ -e "$dir/.complete" ]; echo $?)"
grep -E '^(linux-image-|rustc |bindgen |gcc-[0-9]+ |dkms )' "$dir/packages.txt" | sed 's/^/    /'

deb=$(scripts/deb.sh)
check "make deb: $(basename "${deb:-none}")" $?
[ -n "$deb" ] || finish
run=$TOA_CACHE/$dist-run
rm -rf "$run" && mkdir -p "$run/upper" "$run/work" "$run/merged"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$run/upper,workdir=$run/work" "$run/merged"
check "per-run overlay over the cached root" $?
cp "$deb" "$run/merged/tmp/"
meta_seed "$dir/meta" "$run/merged"
start=$SECONDS
in_root "$run/merged" apt-get install -y "/tmp/$(basename "$deb")" >"$res/install.log" 2>&1
check "apt install ./$(basename "$deb") exits 0 ($((SECONDS - start)) s)" $? "$(tail -n 5 "$res/install.log")"
tr -d '\r' <"$res/install.log" | sed -n '/^Setting up toa-dkms/,$p' | grep -v '^$' | sed 's/^/    /'
for f in "$run/merged"/var/lib/dkms/toa/*/build/make.log "$run/merged"/var/lib/dkms/toa/*/"$rel"/*/log/make.log; do
    [ -e "$f" ] && cp "$f" "$res/make.log"
done
grep -h '^toa: ' "$res/make.log" 2>/dev/null | sed 's/^/    /'
meta_said "$rel" "$res/make.log"
meta_keep "$dir/meta" "$run/merged"
warnings=$(grep -E '(^|[^a-z])warning(\[|:)' "$res/make.log" 2>/dev/null)
check "DKMS's build of toa for $rel: no compiler warning" "$([ -z "$warnings" ]; echo $?)" "$(head -n 3 <<<"$warnings")"
status=$(in_root "$run/merged" dkms status toa)
check "dkms status: toa installed for $rel" "$(grep -q "$rel.*installed" <<<"$status"; echo $?)" "$status"

r=$res/boot
rc=0
scripts/stock-boot.sh "$run/merged" "$rel" "$r" >/dev/null || rc=$?
check "$rel: the VM ran the guest to its end in time, exit 0" "$rc" \
    "status $rc, guest status $(cat "$r/rc" 2>/dev/null || echo none)"
for f in checks suite e2e; do count "$r/$f.txt" "$rel $f"; done
sed 's/^/    /' "$r/evidence.txt" 2>/dev/null | grep -E '^    (#|[0-9]|filename|vermagic|\[)'
check "$rel: kernel log clean (no WARNING/BUG/Oops)" "$([ -s "$r/rc" ] && ! [ -s "$r/splats.txt" ]; echo $?)" \
    "$(head -n 5 "$r/splats.txt" 2>/dev/null)"
finish
