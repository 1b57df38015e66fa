#!/usr/bin/env bash
# The preflight (scripts/kbuild-env.sh) and the Rust metadata step
# (scripts/rust-meta.sh) on fabricated kernel trees, on the host: the layouts
# CI has no kernel of (Ubuntu's linux-lib-rust and its dangling rust/ link,
# versioned rustc-1.NN compilers) and every refusal, which must be one line
# naming what to install.
#
#   scripts/preflight-test.sh KDIR MODDIR
#
# KDIR is a built test kernel with Rust (scripts/kernel.sh 7.3): the
# Ubuntu-style headers are made of it, and toa.ko is really built against
# them. MODDIR is a scratch directory for that build. Prints ok/not ok lines
# and `N passed, M failed`.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

kdir=$(cd "${1:?usage: preflight-test.sh KDIR MODDIR}" && pwd -P)
moddir=${2:?usage: preflight-test.sh KDIR MODDIR}
passed=0 failed=0
# refuses NAME PATTERN COMMAND...: COMMAND fails, its last line (the
# refusal, after any progress lines) starts with "toa: " and matches PATTERN.
refuses() {
    local name=$1 pattern=$2 out rc
    shift 2
    out=$("$@" 2>&1 >/dev/null)
    rc=$?
    out=$(tail -n1 <<<"$out")
    check "refuses: $name" "$([ $rc != 0 ] && [[ $out == "toa: "* ]] && grep -qE "$pattern" <<<"$out"; echo $?)" \
        "exit $rc: $out"
    [ $rc = 0 ] || echo "    $out"
}
t=$(mktemp -d /tmp/toa-preflight.XXXXXX)
trap 'rm -rf "$t"' EXIT
rel=$(cat "$kdir/include/config/kernel.release")
cd "$TOA_ROOT"

# --- Ubuntu: the metadata in linux-lib-rust-<release>, the headers' rust/ a
# dangling link. Made of the test kernel's tree: every entry linked but
# rust/, and a Makefile naming the headers as the build directory.
hdr=$t/usr/src/linux-headers-$rel
mkdir -p "$hdr" "$t/usr/src/linux-lib-rust-$rel"
for e in "$kdir"/* "$kdir"/.config; do
    case ${e##*/} in rust | Makefile) ;; *) ln -s "$e" "$hdr/${e##*/}" ;; esac
done
ln -s "../linux-lib-rust-$rel-gone/rust" "$hdr/rust"
sed "s|^export KBUILD_OUTPUT = .*|export KBUILD_OUTPUT = $hdr|" "$kdir/Makefile" >"$hdr/Makefile"
ln -s "$kdir/rust" "$t/usr/src/linux-lib-rust-$rel/rust"
export TOA_PREFIX=$t TOA_META_CACHE=$t/cache

out=$(scripts/rust-meta.sh "$hdr" 2>"$t/err")
check "Ubuntu layout: the dangling rust/ link is detected and linux-lib-rust-$rel used" \
    "$([ "$out" = "$t/cache/$rel/ubuntu" ] && [ "$(readlink "$out/rust")" = "$t/usr/src/linux-lib-rust-$rel/rust" ] \
        && grep -q dangling "$t/err"; echo $?)" "$out $(cat "$t/err")"
rm -rf "$moddir" && mkdir -p "$moddir"
tar cf - Kbuild Makefile dkms.conf src include scripts/kbuild-env.sh scripts/rust-meta.sh scripts/rust-meta.mk | tar xf - -C "$moddir"
make -C "$moddir" KDIR="$hdr" modules >"$t/build.log" 2>&1
check "Ubuntu layout: toa.ko builds against those headers (make KDIR=/usr/src/linux-headers-<release>)" \
    "$([ -e "$moddir/toa.ko" ] && modinfo -F vermagic "$moddir/toa.ko" | grep -q "^$rel "; echo $?)" "$(tail -n 5 "$t/build.log")"
check "Ubuntu layout: the headers (and the tree they link to) are left as they were" \
    "$([ -L "$hdr/rust" ] && ! [ -e "$hdr/rust" ] && [ -z "$(find "$hdr" "$kdir" -newer "$t/err" -print -quit)" ]; echo $?)" \
    "$(find "$hdr" "$kdir" -newer "$t/err" | head -n 3)"
rm "$t/usr/src/linux-lib-rust-$rel/rust"
refuses "Ubuntu layout without linux-lib-rust" "apt install linux-lib-rust-$rel\$" scripts/rust-meta.sh "$hdr"

# --- compilers: versioned ones are found, missing ones are named. A fake
# kernel tree whose config names the compilers, and fake compilers.
fake=$t/fake
mkdir -p "$fake/include/config" "$t/bin" "$t/sysroot/lib/rustlib/src/rust/library/core/src"
touch "$t/sysroot/lib/rustlib/src/rust/library/core/src/lib.rs"
fakeconf() { # fakeconf RUSTC_TEXT BINDGEN_TEXT CC_TEXT [RUST=y]
    {
        echo "CONFIG_RUST=${4:-y}"
        for s in MODULES MODULE_UNLOAD KPROBES KRETPROBES INET SYSCTL PROC_FS X86; do echo "CONFIG_$s=y"; done
        echo "CONFIG_RUSTC_VERSION_TEXT=\"$1\""
        echo "CONFIG_BINDGEN_VERSION_TEXT=\"$2\""
        echo "CONFIG_CC_VERSION_TEXT=\"$3\""
    } >"$fake/include/config/auto.conf"
    cp "$fake/include/config/auto.conf" "$fake/.config"
}
fakebin() { # fakebin PATH VERSION_TEXT: a compiler that prints VERSION_TEXT
    mkdir -p "$(dirname "$1")"
    printf '#!/bin/sh\n[ "$1 $2" = "--print sysroot" ] && { echo %s; exit 0; }\necho "%s"\n' "$t/sysroot" "$2" >"$1"
    chmod +x "$1"
}
echo "$rel-fake" >"$fake/include/config/kernel.release"
r182="rustc 1.82.0 (f6e511eec 2024-10-15) (built from a source tarball)"
fakebin "$t/bin/rustc-1.82" "$r182"
fakeconf "$r182" "bindgen 0.71.1" "gcc (Ubuntu 14.2.0-4ubuntu2) 14.2.0"
out=$(PATH=$t/bin:$PATH scripts/kbuild-env.sh "$fake" 2>&1)
check "rustc-1.82 in PATH is found for a kernel built with rustc 1.82.0" \
    "$(grep -qx "RUSTC=$t/bin/rustc-1.82" <<<"$out"; echo $?)" "$out"
r191="rustc 1.91.1 (ed61e7d7e 2025-11-07) (built from a source tarball)"
fakebin "$t/usr/lib/rust-1.91/bin/rustc" "$r191"
fakeconf "$r191" "bindgen 0.71.1" "gcc (Ubuntu 15.2.0-4ubuntu4) 15.2.0"
out=$(scripts/kbuild-env.sh "$fake" 2>&1)
check "/usr/lib/rust-1.91/bin/rustc is found for a kernel built with rustc 1.91.1" \
    "$(grep -qx "RUSTC=$t/usr/lib/rust-1.91/bin/rustc" <<<"$out"; echo $?)" "$out"

fakeconf "rustc 1.99.0 (0123456789 2027-01-01)" "bindgen 0.71.1" "gcc (Debian 12.2.0-14) 12.2.0"
refuses "a kernel built by a rustc that is not installed" "'rustc 1.99.0 .*install" scripts/kbuild-env.sh "$fake"
fakeconf "$r182" "bindgen 0.71.1" "x86_64-linux-gnu-gcc-99 (Debian 99.1.0-1) 99.1.0"
refuses "a kernel built by a gcc that is not installed" "apt install gcc-99\$" \
    env PATH="$t/bin:$PATH" scripts/kbuild-env.sh "$fake"
fakeconf "$r182" "bindgen 0.71.1" "gcc (Debian 12.2.0-14) 12.2.0"
refuses "no bindgen of the kernel's version (metadata rebuild)" "'bindgen 0.71.1'.*install" \
    env PATH="$t/bin:$PATH" scripts/kbuild-env.sh "$fake" --metadata
rm "$t/sysroot/lib/rustlib/src/rust/library/core/src/lib.rs"
refuses "no Rust standard library sources for the kernel's rustc" "no standard library sources.*apt install" \
    env PATH="$t/bin:$PATH" scripts/kbuild-env.sh "$fake" --metadata
touch "$t/sysroot/lib/rustlib/src/rust/library/core/src/lib.rs"
fakebin "$t/bin/bindgen" "bindgen 0.71.1"
out=$(PATH=$t/bin:$PATH scripts/kbuild-env.sh "$fake" --metadata 2>&1)
check "the metadata rebuild gets the kernel's rustc, bindgen and gcc" \
    "$(grep -qx "BINDGEN=$t/bin/bindgen" <<<"$out" && grep -qx "HOSTRUSTC=$t/bin/rustc-1.82" <<<"$out" \
        && grep -qx "CC=gcc" <<<"$out"; echo $?)" "$out"
fakeconf "$r182" "bindgen 0.71.1" "gcc (Debian 12.2.0-14) 12.2.0" n
refuses "a kernel without CONFIG_RUST" "without CONFIG_RUST" scripts/kbuild-env.sh "$fake"
refuses "a directory that is no kernel tree" "not a configured kernel build tree" scripts/kbuild-env.sh "$t/nowhere"

# --- Debian: no rust/ in the headers; the metadata is rebuilt from
# linux-source-<series>, which must be there and be the kernel's version.
fakeconf "$r182" "bindgen 0.71.1" "gcc (Debian 12.2.0-14) 12.2.0"
echo "7.2.12+deb13-amd64" >"$fake/include/config/kernel.release"
refuses "Debian layout without linux-source-7.2" "apt install linux-source-7.2( |\$)" \
    env PATH="$t/bin:$PATH" scripts/rust-meta.sh "$fake"
src=$t/src/linux-source-7.2
mkdir -p "$src/Kbuild" "$src/arch/x86" "$src/include" "$src/rust" "$src/scripts"
printf 'VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 11\n' >"$src/Makefile"
tar -cJf "$t/usr/src/linux-source-7.2.tar.xz" -C "$t/src" linux-source-7.2
refuses "linux-source-7.2 of another version than the kernel" "is Linux 7.2.11, the kernel is 7.2.12" \
    env PATH="$t/bin:$PATH" scripts/rust-meta.sh "$fake"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
