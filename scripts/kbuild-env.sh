#!/bin/sh
# The preflight: print the make variables that build Rust code for the
# kernel tree $1 with the very compilers that built that kernel, or refuse
# with one line saying exactly what to install.
#
#   kbuild-env.sh KDIR              RUSTC= (+ LLVM=/CC=/LD= for a clang kernel)
#   kbuild-env.sh KDIR --metadata   also BINDGEN=, HOSTRUSTC= and CC=: what
#                                   rebuilding the kernel's own Rust metadata
#                                   needs (scripts/rust-meta.sh)
#   kbuild-env.sh KDIR [--metadata] --check
#                                   print nothing but what is missing, one
#                                   `WHAT|APT` line each (APT: the apt install
#                                   arguments, empty if apt has none), and exit
#                                   1 if anything is: every missing package at
#                                   once (rust-meta.sh --check words the line)
#
# A Rust module must be compiled by the rustc that compiled its kernel: its
# `rustc --version` must equal CONFIG_RUSTC_VERSION_TEXT, and bindgen's
# CONFIG_BINDGEN_VERSION_TEXT. Candidates, in order: $RUSTC ($BINDGEN), then
# rustc-M.N and rustc in PATH, /usr/lib/rust-M.N/bin/rustc, /usr/bin/rustc,
# /usr/bin/rustc-* (Ubuntu ships versioned compilers as rustc-1.NN).
# Used by the Makefile (so by DKMS). TOA_PREFIX (tests only) names a
# fabricated / whose usr/lib/rust-M.N/bin/rustc is tried too.
set -eu

kdir=${1:?usage: kbuild-env.sh KDIR [--metadata] [--check]}
shift
prefix=${TOA_PREFIX:-}
fail() { echo "toa: $*" >&2; exit 1; }
metadata= check=
for a in "$@"; do
    case $a in
        --metadata) metadata=1 ;;
        --check) check=1 ;;
        *) fail "kbuild-env.sh: unknown option $a" ;;
    esac
done
# need WHAT APT MESSAGE: a package the build needs is missing. --check: note
# it on the saved stdout and go on, to name everything missing in one go
# (the make variables are not printed); otherwise refuse with MESSAGE.
missing=
if [ -n "$check" ]; then exec 3>&1 >/dev/null; fi
need() {
    [ -n "$check" ] || fail "$3"
    echo "$1|$2" >&3
    missing=1
}

conf=$kdir/include/config/auto.conf
[ -r "$conf" ] || fail "$kdir is not a configured kernel build tree (no include/config/auto.conf): install this kernel's headers (Debian/Ubuntu: linux-headers-<release>) or pass KDIR=<kernel build dir>"
get() { sed -n "s/^$1=//p" "$conf" | sed 's/^"//; s/"$//'; }
rel=$(cat "$kdir/include/config/kernel.release" 2>/dev/null || echo "$kdir")

[ "$(get CONFIG_RUST)" = y ] || fail "kernel $rel is built without CONFIG_RUST=y: toa is a Rust module and needs a Rust-enabled kernel"
for sym in CONFIG_MODULES CONFIG_MODULE_UNLOAD CONFIG_KPROBES CONFIG_KRETPROBES CONFIG_INET CONFIG_SYSCTL CONFIG_PROC_FS; do
    [ "$(get "$sym")" = y ] || fail "kernel $rel lacks $sym=y, which toa needs"
done

# apt_hint VERSION PKG...: the first PKG whose candidate version starts
# with VERSION, if apt knows one.
apt_hint() {
    want=$1; shift
    command -v apt-cache >/dev/null 2>&1 || return 0
    for p in "$@"; do
        v=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
        case $v in "$want"*) echo "$p"; return 0 ;; esac
    done
}

# The rustc.
want=$(get CONFIG_RUSTC_VERSION_TEXT)
mn=$(echo "$want" | sed -n 's/^rustc \([0-9]*\.[0-9]*\)\..*/\1/p')    # 1.85
mnp=$(echo "$want" | sed -n 's/^rustc \([0-9.]*\).*/\1/p')            # 1.85.1
rustc=
for c in ${RUSTC:-} "$(command -v "rustc-$mn" 2>/dev/null || true)" "$prefix/usr/lib/rust-$mn/bin/rustc" \
    /usr/lib/rust-"$mn"/bin/rustc "$(command -v rustc 2>/dev/null || true)" /usr/bin/rustc /usr/bin/rustc-*; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if [ "$("$c" --version 2>/dev/null)" = "$want" ]; then rustc=$c; break; fi
done
if [ -z "$rustc" ]; then
    hint=$(apt_hint "$mnp" "rustc-$mn" rustc rustc-web)
    todo=${hint:+apt install $hint}
    need "rustc $mnp" "$hint" "kernel $rel was built with '$want', which is not installed (rustc here: $(rustc --version 2>/dev/null || echo none)): ${todo:-install that exact rustc (Ubuntu: rustc-$mn; Debian: the rustc of the kernel's release)}, or pass RUSTC=/path/to/it"
    # (--check only: need refused above otherwise.) Debian's rustc comes
    # without its library sources: name them in the same line.
    if [ -n "$metadata" ] && [ "$hint" = rustc ] && ! [ -e /usr/lib/rustlib/src/rust/library/core/src/lib.rs ]; then
        need rust-src rust-src ""
    fi
fi
echo "RUSTC=$rustc"

if [ -n "$metadata" ]; then
    echo "HOSTRUSTC=$rustc"
    # Its standard library sources (the kernel compiles its own core).
    sysroot=$([ -z "$rustc" ] || "$rustc" --print sysroot)
    if [ -n "$rustc" ] && ! [ -e "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ]; then
        pkg=$(dpkg-query -S "$(readlink -f "$rustc")" 2>/dev/null | cut -d: -f1 | head -n1)
        case $pkg in
            rustc) src=rust-src ;;
            rustc-web) src=rust-web-src ;;
            rustc-1.*) src=rust-${pkg#rustc-}-src ;;
            *) src=rust-src ;;
        esac
        need "$src" "$src" "$rustc has no standard library sources ($sysroot/lib/rustlib/src/rust): apt install $src"
    fi
    # The bindgen.
    bwant=$(get CONFIG_BINDGEN_VERSION_TEXT)
    bver=$(echo "$bwant" | sed -n 's/^bindgen[^ ]* \([0-9.]*\).*/\1/p')
    bindgen=
    for c in ${BINDGEN:-} "$(command -v bindgen 2>/dev/null || true)" /usr/bin/bindgen /usr/bin/bindgen-*; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        if [ "$("$c" --version 2>/dev/null | head -n1)" = "$bwant" ]; then bindgen=$c; break; fi
    done
    if [ -z "$bindgen" ]; then
        hint=$(apt_hint "$bver" bindgen)
        todo=${hint:+apt install $hint}
        need "bindgen $bver" "$hint" "kernel $rel was built with '$bwant', which is not installed (bindgen here: $( (bindgen --version 2>/dev/null || echo none) | head -n1)): ${todo:-install bindgen $bver (apt install bindgen, or cargo install bindgen-cli --version $bver)}, or pass BINDGEN=/path/to/it"
    fi
    echo "BINDGEN=$bindgen"
fi

# The C compiler: clang for a clang kernel (DKMS appends CC=clang LD=ld.lld
# or LLVM=1, which name no compiler where only clang-N is installed); for a
# gcc kernel, the gcc its CONFIG_CC_VERSION_TEXT names.
if [ "$(get CONFIG_CC_IS_CLANG)" = y ]; then
    major=$(( $(get CONFIG_CLANG_VERSION) / 10000 ))
    if command -v "clang-$major" >/dev/null 2>&1; then
        echo "LLVM=-$major CC=clang-$major LD=ld.lld-$major"
    elif command -v clang >/dev/null 2>&1 && clang --version | grep -q "version $major\."; then
        echo "LLVM=1 CC=clang LD=ld.lld"
    else
        need "clang $major" "clang-$major lld-$major llvm-$major" "kernel $rel was built with clang $major, which is not installed: apt install clang-$major lld-$major llvm-$major"
    fi
else
    cc=$(get CONFIG_CC_VERSION_TEXT | cut -d' ' -f1)
    if command -v "$cc" >/dev/null 2>&1; then
        [ -z "$metadata" ] || echo "CC=$cc"
    else
        # x86_64-linux-gnu-gcc-14 comes with gcc-14.
        gcc=$(echo "$cc" | sed 's/^.*-linux-gnu-//')
        need "$cc" "$gcc" "kernel $rel was built with $(get CONFIG_CC_VERSION_TEXT), and $cc is not installed: apt install $gcc"
    fi
fi
for tool in rustfmt clippy-driver; do
    [ -x "/usr/bin/$tool" ] && echo "$(echo "$tool" | tr a-z- A-Z_)=/usr/bin/$tool"
done
[ -z "$missing" ]
