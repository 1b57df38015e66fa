#!/bin/sh
# Print the make variables that build toa.ko for the kernel tree $1 with the
# very compilers that built that kernel, or say exactly what is missing.
#
# A Rust module must be compiled by the rustc that compiled its kernel (its
# CONFIG_RUSTC_VERSION_TEXT), and a clang-built kernel's modules by clang.
# Used by the Makefile and by dkms.conf. Respects RUSTC if set.
set -eu

kdir=${1:?usage: kbuild-env.sh KDIR}
fail() { echo "toa: $*" >&2; exit 1; }

conf=$kdir/include/config/auto.conf
[ -r "$conf" ] || fail "$kdir is not a configured kernel build tree (no include/config/auto.conf): install this kernel's headers or pass KDIR=<kernel build dir>"
get() { sed -n "s/^$1=//p" "$conf" | sed 's/^"//; s/"$//'; }

[ "$(get CONFIG_RUST)" = y ] || fail "kernel $kdir is built without CONFIG_RUST=y: toa is a Rust module and needs a Rust-enabled kernel"
for sym in CONFIG_MODULES CONFIG_KPROBES CONFIG_KRETPROBES CONFIG_INET CONFIG_SYSCTL CONFIG_PROC_FS; do
    [ "$(get "$sym")" = y ] || fail "kernel $kdir lacks $sym=y, which toa needs"
done
[ -e "$kdir/rust/libkernel.rmeta" ] \
    || fail "kernel tree $kdir has no Rust metadata (rust/libkernel.rmeta): its headers were packaged without Rust support (Debian's are; Ubuntu ships them in linux-lib-rust-\$(uname -r)), or the tree was never built"

want=$(get CONFIG_RUSTC_VERSION_TEXT)
rustc=
for candidate in ${RUSTC:-} /usr/bin/rustc "$(command -v rustc 2>/dev/null || true)" /usr/bin/rustc-*; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if [ "$("$candidate" --version 2>/dev/null)" = "$want" ]; then rustc=$candidate; break; fi
done
[ -n "$rustc" ] || fail "kernel $kdir was built with '$want' but no such rustc is installed (found: $(/usr/bin/rustc --version 2>/dev/null || echo none)). Install that exact version (Debian 12: apt-get install rustc-web rust-web-src; Ubuntu: the rustc-X.Y package named by 'apt-cache search rustc-1') and retry, or pass RUSTC=/path/to/that/rustc"
echo "RUSTC=$rustc"

if [ "$(get CONFIG_CC_IS_CLANG)" = y ]; then
    major=$(( $(get CONFIG_CLANG_VERSION) / 10000 ))
    # CC and LD spelled out too: DKMS appends CC=clang LD=ld.lld for clang
    # kernels, which names no compiler where only clang-N is installed.
    if command -v "clang-$major" >/dev/null 2>&1; then
        echo "LLVM=-$major CC=clang-$major LD=ld.lld-$major"
    elif command -v clang >/dev/null 2>&1 && clang --version | grep -q "version $major\."; then
        echo "LLVM=1 CC=clang LD=ld.lld"
    else
        fail "kernel $kdir was built with clang $major, which is not installed (apt-get install clang-$major lld-$major llvm-$major)"
    fi
fi
for tool in rustfmt clippy-driver; do
    [ -x "/usr/bin/$tool" ] && echo "$(echo "$tool" | tr a-z- A-Z_)=/usr/bin/$tool"
done
exit 0
