#!/bin/sh
# Find, or make, a kernel tree that carries the Rust metadata an out-of-tree
# Rust module is compiled against (rust/libkernel.rmeta and friends,
# rust/libmacros.so, scripts/target.json where the architecture uses it),
# and print its path: the tree to build toa.ko against.
#
#   rust-meta.sh KDIR
#   rust-meta.sh --check KDIR   only say whether everything the build needs
#                               is installed, writing nothing: exit 0 if so,
#                               else 1 and one line on stderr naming all that
#                               is missing ("toa: kernel <release> waits for
#                               linux-source-7.2 (<version>) and rustc 1.85.1:
#                               apt install ..."). dkms.conf makes DKMS skip
#                               such a kernel with that line.
#
# - KDIR has it (a kernel build tree, Arch's headers...): KDIR itself.
# - Ubuntu: the headers' rust/ is missing or a dangling link, the metadata
#   is in linux-lib-rust-<release>: a private tree of links to the headers
#   whose rust/ is /usr/src/linux-lib-rust-<release>/rust.
# - Debian (headers without Rust metadata): the metadata rebuilt, once per
#   kernel release, from the kernel's own source (linux-source-<series>,
#   same version as the headers) with the exact rustc and bindgen that built
#   the kernel (scripts/kbuild-env.sh --metadata), in a private copy of the
#   headers. About a minute on 2 cores; reused while the headers, the
#   source and the compilers stay the same.
#
# The system's headers tree is never written to. Private trees go to
# $TOA_META_CACHE/<release> (default ~/.cache/toa-kbuild; DKMS, through
# dkms.conf: /var/cache/toa-dkms). Anything missing is refused with one line
# naming the package to install. TOA_PREFIX (tests only) is prepended to
# /usr/src when looking for linux-lib-rust and linux-source.
set -eu

check=
if [ "${1:-}" = --check ]; then check=1; shift; fi
kdir=${1:?usage: rust-meta.sh [--check] KDIR}
here=$(cd "$(dirname "$0")" && pwd)
prefix=${TOA_PREFIX:-}
cache=${TOA_META_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toa-kbuild}
say() { echo "toa: $*" >&2; }
fail() { echo "toa: $*" >&2; exit 1; }
# need WHAT APT MESSAGE: a package is missing. --check notes it as
# kbuild-env.sh --check does (WHAT|APT) and goes on; else refuse with MESSAGE.
needs=
need() {
    [ -n "$check" ] || fail "$3"
    needs="$needs$1|$2
"
}
# checked [--metadata]: the end of --check, once the tree to build against
# is known: add what kbuild-env.sh finds missing for it, and say it all in
# one line. A refusal that is no missing package (kbuild-env.sh's own line
# is out) is a failure too.
checked() {
    rc=0
    more=$("$here/kbuild-env.sh" "$kdir" "$@" --check) || rc=$?
    [ "$rc" = 0 ] || [ -n "$more" ] || exit 1
    all=$(printf '%s%s' "$needs" "$more")
    [ -n "$all" ] || exit 0
    what=$(printf '%s\n' "$all" | awk -F'|' '{ w[NR] = $1 } END { for (i = 1; i <= NR; i++) printf "%s%s", (i == 1 ? "" : i == NR ? " and " : ", "), w[i] }')
    # The apt command when apt has every one of them.
    apt=$(printf '%s\n' "$all" | awk -F'|' '$2 == "" { none = 1 } { s = s " " $2 } END { if (!none) print substr(s, 2) }')
    [ "$(printf '%s\n' "$all" | wc -l)" = 1 ] && them=it || them=them
    echo "toa: kernel $rel waits for $what: ${apt:+apt install }${apt:-install $them}" >&2
    exit 1
}

[ -r "$kdir/include/config/auto.conf" ] \
    || fail "$kdir is not a configured kernel build tree (no include/config/auto.conf): install this kernel's headers (Debian/Ubuntu: linux-headers-<release>) or pass KDIR=<kernel build dir>"
kdir=$(cd "$kdir" && pwd -P)
rel=$(cat "$kdir/include/config/kernel.release" 2>/dev/null \
    || sed -n 's/^#define UTS_RELEASE "\(.*\)"/\1/p' "$kdir/include/generated/utsrelease.h")
[ -n "$rel" ] || fail "$kdir: cannot tell its kernel release (no include/config/kernel.release)"
grep -q '^CONFIG_RUST=y' "$kdir/include/config/auto.conf" \
    || fail "kernel $rel is built without CONFIG_RUST=y: toa is a Rust module and needs a Rust-enabled kernel"

# srctree_of DIR: the kernel source tree DIR's Makefile builds from (DIR
# itself, or what a generated or Debian-style Makefile includes).
srctree_of() {
    inc=$(sed -n 's/^include \(\/.*\)\/Makefile$/\1/p' "$1/Makefile" 2>/dev/null | tail -n1)
    echo "${inc:-$1}"
}

# The kernel's source architecture (arch/<it>).
arch=$(sed -n 's/^override ARCH = //p' "$kdir/.kernelvariables" 2>/dev/null || true)
for a in X86:x86 ARM64:arm64 RISCV:riscv LOONGARCH:loongarch; do
    [ -n "$arch" ] && break
    grep -q "^CONFIG_${a%%:*}=y" "$kdir/include/config/auto.conf" && arch=${a#*:}
done
[ -n "$arch" ] || fail "kernel $rel: unknown architecture (toa knows x86, arm64, riscv, loongarch)"

# retarget MAKEFILE DIR: a Makefile that names its build directory (Debian's
# headers: KBUILD_OUTPUT=/usr/src/linux-headers-<release>) must name DIR,
# where the tree will be, instead.
retarget() {
    sed -i -E "s|^(export )?KBUILD_OUTPUT( *:?= *).*|\1KBUILD_OUTPUT\2$2|" "$1"
}

# complete DIR: DIR carries the whole Rust metadata.
complete() {
    [ -e "$1/rust/libkernel.rmeta" ] && [ -e "$1/rust/libmacros.so" ] || return 1
    # x86 compiles Rust for scripts/target.json (the arch Makefile names it).
    if grep -qs 'scripts/target.json' "$(srctree_of "$1")/arch/$arch/Makefile"; then
        [ -e "$1/scripts/target.json" ] || return 1
    fi
    return 0
}

if complete "$kdir"; then
    [ -z "$check" ] || checked
    echo "$kdir"
    exit 0
fi

if [ -z "$check" ]; then
    mkdir -p "$cache"
    # One preparation per release at a time (DKMS may build kernels in parallel).
    exec 9>"$cache/.$rel.lock"
    flock 9
fi

# --- Ubuntu: linux-lib-rust-<release> -------------------------------------
librust=$prefix/usr/src/linux-lib-rust-$rel/rust
ubuntu=
if [ -L "$kdir/rust" ] || grep -qsE '^ID(_LIKE)?=.*ubuntu' "$prefix/etc/os-release"; then ubuntu=1; fi
if [ -e "$librust/libkernel.rmeta" ]; then
    [ -z "$check" ] || checked
    out=$cache/$rel/ubuntu
    tmp=$out.tmp
    rm -rf "$tmp" && mkdir -p "$tmp"
    for e in "$kdir"/* "$kdir"/.[!.]*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        name=${e##*/}
        [ "$name" = rust ] && continue
        # Absolute targets: relative links would not resolve from here.
        ln -s "$(readlink -f "$e")" "$tmp/$name"
    done
    ln -s "$librust" "$tmp/rust"
    if grep -qE '^(export )?KBUILD_OUTPUT *:?=' "$tmp/Makefile"; then
        rm "$tmp/Makefile" && cp "$kdir/Makefile" "$tmp/Makefile" && retarget "$tmp/Makefile" "$out"
    fi
    complete "$tmp" || fail "kernel $rel: $librust is incomplete (no libmacros.so, or scripts/target.json missing from the headers): reinstall linux-lib-rust-$rel and linux-headers-$rel"
    rm -rf "$out" && mv "$tmp" "$out"
    [ -L "$kdir/rust" ] && say "kernel $rel: its headers' rust/ link is dangling; using $librust"
    echo "$out"
    exit 0
fi
if [ -n "$ubuntu" ]; then
    need "linux-lib-rust-$rel" "linux-lib-rust-$rel" "kernel $rel has no Rust metadata: apt install linux-lib-rust-$rel"
    checked
fi

# --- Debian: rebuild it from linux-source-<series> ------------------------
upstream=$(echo "$rel" | sed -n 's/^\([0-9]*\.[0-9]*\(\.[0-9]*\)\?\).*/\1/p')
series=$(echo "$upstream" | cut -d. -f1,2)
tarball=$prefix/usr/src/linux-source-$series.tar.xz
hdr_pkg=$(dpkg-query -S "$kdir" 2>/dev/null | cut -d: -f1 | head -n1 || true)
hdr_ver=$([ -n "$hdr_pkg" ] && dpkg-query -W -f='${Version}' "$hdr_pkg" 2>/dev/null || true)
pin=${hdr_ver:+=$hdr_ver}
src_ver=
if ! [ -e "$tarball" ]; then
    need "linux-source-$series${hdr_ver:+ ($hdr_ver)}" "linux-source-$series$pin" \
        "kernel $rel: its headers carry no Rust metadata and its source is not installed: apt install linux-source-$series$pin (toa rebuilds the metadata from it)"
else
    src_ver=$(dpkg-query -S "$tarball" >/dev/null 2>&1 && dpkg-query -W -f='${Version}' "linux-source-$series" 2>/dev/null || true)
    if [ -n "$hdr_ver" ] && [ -n "$src_ver" ] && [ "$hdr_ver" != "$src_ver" ]; then
        need "linux-source-$series ($hdr_ver, not $src_ver)" "linux-source-$series=$hdr_ver" \
            "kernel $rel: linux-source-$series is $src_ver but the kernel's headers are $hdr_ver: apt install linux-source-$series=$hdr_ver (or upgrade the kernel to $src_ver)"
    fi
fi
[ -z "$check" ] || checked --metadata
env=$("$here/kbuild-env.sh" "$kdir" --metadata) || exit 1

# What the metadata depends on; the cached tree is reused while it is equal.
stamp=$( {
    echo "$rel"
    cat "$kdir/.config" "$kdir/Module.symvers" 2>/dev/null | cksum
    ls -lL "$tarball"
    echo "$src_ver"
    echo "$env"
    for v in $env; do
        case $v in RUSTC=* | BINDGEN=* | CC=*) "${v#*=}" --version 2>/dev/null | head -n1 ;; esac
    done
    cat "$0" "$here/rust-meta.mk"
} | cksum)
out=$cache/$rel/debian
if [ -e "$out/.toa-meta" ] && [ "$(cat "$out/.toa-meta")" = "$stamp" ] && complete "$out"; then
    echo "$out"
    exit 0
fi

say "kernel $rel: its headers carry no Rust metadata; building it from linux-source-$series ${src_ver:-} with $(echo "$env" | tr '\n' ' ')into $out (once per kernel release, a minute or two)"
start=$(date +%s)
work=$cache/$rel/work
rm -rf "$work" "$out"
mkdir -p "$work/src"
trap 'rm -rf "$work"' EXIT
# The parts of the source the Rust build reads, then the directories of the
# C headers its bindings name by relative path (../../drivers/base/base.h):
# a tenth of the tree, unpacked in two passes, removed afterwards.
top=linux-source-$series
tar -xJf "$tarball" -C "$work/src" --strip-components=1 \
    "$top/Makefile" "$top/Kbuild" "$top/arch/$arch" "$top/include" "$top/rust" "$top/scripts" \
    || fail "kernel $rel: cannot unpack $tarball (reinstall linux-source-$series)"
extra=$(grep -rhoE '#include *[<"](\.\./)+[^">]+' "$work/src/rust" | sed -E 's/.*[<"](\.\.\/)+//; s|/[^/]*$||' | sort -u)
if [ -n "$extra" ]; then
    # shellcheck disable=SC2046
    tar -xJf "$tarball" -C "$work/src" --strip-components=1 $(for d in $extra; do echo "$top/$d"; done) \
        || fail "kernel $rel: cannot unpack $extra from $tarball"
fi
have=$(sed -n 's/^VERSION = //p; s/^PATCHLEVEL = //p; s/^SUBLEVEL = //p' "$work/src/Makefile" | paste -sd.)
[ "$have" = "$upstream" ] || [ "$have.0" = "$upstream" ] || [ "$have" = "$upstream.0" ] \
    || fail "kernel $rel: $tarball is Linux $have, the kernel is $upstream: install the linux-source-$series of the kernel's version${pin:+ (apt install linux-source-$series$pin)}"

# A private copy of the headers (links followed, so that nothing written
# below reaches the system's tree); its Makefile must point at the copy.
cp -aL "$kdir" "$work/tree"
retarget "$work/tree/Makefile" "$out"
# Headers ship no auto.conf.cmd: without one Kbuild would rerun Kconfig.
[ -e "$work/tree/include/config/auto.conf.cmd" ] || touch -r "$work/tree/.config" "$work/tree/include/config/auto.conf.cmd"
jobs=
case " ${MAKEFLAGS:-} " in *" -j"* | *jobserver*) ;; *) jobs=-j$(nproc) ;; esac
# The kernel's top Makefile from the source, the output in the copy, and
# rust-meta.mk's goal: scripts/target.json and the rust/ directory only.
# CONFIG_OBJTOOL= : objtool is neither rebuilt nor run on the rust/ objects,
# which are never linked into anything (the kernel is built): only their
# metadata is used.
# shellcheck disable=SC2086
make -C "$work/tree" --no-print-directory $jobs -f "$work/src/Makefile" -f "$here/rust-meta.mk" \
    O="$work/tree" $env CONFIG_OBJTOOL= toa-rust-meta >&2 \
    || fail "kernel $rel: building its Rust metadata failed (see the lines above)"
complete "$work/tree" || fail "kernel $rel: the Rust metadata build left no rust/libkernel.rmeta or scripts/target.json"
echo "$stamp" >"$work/tree/.toa-meta"
mv "$work/tree" "$out"
say "kernel $rel: Rust metadata ready in $(( $(date +%s) - start )) s"
echo "$out"
