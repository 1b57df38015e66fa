#!/usr/bin/env bash
# The newcomer's path, proven (part of `make check`): `make run` from a clean
# clone on a fresh machine of this project's kind, with nothing cached.
#
# The fresh machine is a Debian 12 (bookworm) root made by debootstrap with
# only packages such a machine comes with (a subset of them: a step that
# relies on anything else fails here, not on a newcomer's machine), its apt
# sources as this machine's, and the machine's own Rust toolchain (rustup's,
# under /root/.rustup and /root/.cargo/bin) bound in read-only, as a new
# machine has it. In a throwaway overlay of that root, the work tree is
# committed to a new git repository (a clean clone of what is being tested)
# and `make run` runs there as root with an empty cache: it must install
# and build everything it needs by itself, and end green; then once more,
# warm, on what the first run cached (make check runs no other `make run`:
# this test runs it whenever anything of how it sets itself up changed,
# except on a cold run of make check, which sets everything up from nothing
# itself and leaves this one to the next run: scripts/check.sh).
#
#   scripts/fresh-test.sh [--force]
#
# Skipped when nothing of that changed since its last pass (the key hashes
# the files that decide how `make run` installs, builds and packages, this
# script and the root's package list; see `files` below); --force (or TOA_FRESH=force) runs it anyway. Prints ok/not ok/skip
# lines and `N passed, M failed, K skipped`; the run's transcript is kept
# in $TOA_CACHE/results/fresh/make-run.log.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

if [ -z "${TOA_FRESH_NS:-}" ]; then
    exec env TOA_FRESH_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi

force=${TOA_FRESH:-}
[ "${1:-}" = --force ] && force=force

# What a fresh machine of this kind has, as far as `make run` could care
# (the full list: .library's env/packages/installed-rust.txt). Not kmod,
# busybox-static, debootstrap, dkms or QEMU: the scripts must install them.
FRESH_PACKAGES="git gcc make build-essential python3 python3-venv curl wget ca-certificates
xz-utils iproute2 dpkg-dev procps file gnupg less"

passed=0 failed=0 skipped=0

# The files that decide whether `make run` can set itself up on a fresh
# machine: its scripts, the Makefile, the packaging (debian/, dkms.conf,
# Kbuild), the crates' manifests and lock file (what cargo fetches), the
# uapi header. Not the code those steps build and run, which every `make
# check` proves anyway on the same kernels and toolchains: the module's
# sources (src/: the stock kernels' stage installs the same package, DKMS
# builds it for Debian's stock kernels and the same FULLNAT test runs on
# it), the host crates' sources and the example servers (the host checks
# build them with the same Rust toolchain and gcc), the tests (tests/,
# the suites' and the stock stage's). Nor the docs and the CI entry point.
# So a change of code alone does not rerun this quarter-hour of work; a
# change of how anything is installed, built or packaged does.
files=$(git ls-files -co --exclude-standard -- . ':!docs' ':!*.md' ':!.ci' \
    ':!src' ':(exclude,glob)crates/*/src/**' ':(exclude,glob)crates/*/tests/**' \
    ':(exclude,glob)crates/*/examples/**' ':!crates/toa-core/fuzz' ':!examples' ':!tests' | sort)
key=$( {
    echo "$FRESH_PACKAGES"
    # shellcheck disable=SC2086
    for f in $files; do [ -f "$f" ] && { echo "== $f"; cat "$f"; }; done
} | sha256sum | cut -c1-16)
state=$TOA_CACHE/fresh
res=$TOA_CACHE/results/fresh
mkdir -p "$state" "$res"
if [ "$force" != force ] && [ -e "$state/pass-$key" ]; then
    skipped=1
    echo "skip - fresh machine: make run from a clean clone: nothing it exercises changed since its pass of $(cat "$state/pass-$key") (key $key; TOA_FRESH=force runs it)"
    finish
fi

mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
base_key=$(echo "bookworm $mirror $FRESH_PACKAGES $(sed -n '/^# --- base ---/,/^# --- end base ---/p' "$0")" \
    | sha256sum | cut -c1-12)
base=$state/bookworm-$base_key

# --- base ---
# The fresh machine's root filesystem, made once per package list.
exec 9>"$state/.lock"
flock 9
find "$state" -mindepth 1 -maxdepth 1 -name 'bookworm-*' ! -path "$base" -exec rm -rf {} +
if ! [ -e "$base/.complete" ]; then
    log "building a fresh Debian 12 root in $base"
    rm -rf "$base" && mkdir -p "$base"
    # shellcheck disable=SC2086
    debootstrap --variant=minbase --include="$(echo $FRESH_PACKAGES | tr ' ' ,)" bookworm \
        "$base/root" "$mirror" >"$base/debootstrap.log" 2>&1
    check "a fresh Debian 12 root (debootstrap bookworm + the machine's own packages)" $? \
        "$(tail -n 5 "$base/debootstrap.log")"
    [ -x "$base/root/usr/bin/git" ] || finish
    # apt's sources as on this machine (Debian's, deb822).
    rm -f "$base/root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$base/root/etc/apt/sources.list.d/"
    touch "$base/.complete"
fi
# --- end base ---

# A throwaway overlay of the base: the run's changes go with it.
run=$state/run
rm -rf "$run" && mkdir -p "$run/upper" "$run/work" "$run/merged"
mount -t overlay overlay -o "lowerdir=$base/root,upperdir=$run/upper,workdir=$run/work" "$run/merged"
check "per-run overlay over the fresh root" $?
root=$run/merged
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The machine's way out to the registries, as a fresh machine of this kind
# has it: its certificate authorities and pip's configuration (and, below,
# the environment variables that name them). Copied at every run: they are
# the machine's, not the root's.
if [ -d /usr/local/share/ca-certificates ]; then
    cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -e /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
[ -d /opt/wheels ] && mkdir -p "$root/opt/wheels"

# The clean clone: the tree under test, committed in a new repository.
clone=$root/root/toa
mkdir -p "$clone"
git ls-files -z -co --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
    | tar --null -T - -cf - | tar -xf - -C "$clone"
# The machine's Rust toolchain, read-only (a fresh machine has it).
for d in .rustup .cargo/bin; do
    mkdir -p "$root/root/$d"
    mount --bind -o ro "$HOME/$d" "$root/root/$d"
done
# An empty cache (~/.cache: toa's, pip's...) on a real filesystem: the run
# mounts overlays of its own there, which cannot have an overlay as upper.
rm -rf "$state/cache" && mkdir -p "$state/cache" "$root/root/.cache"
mount --bind "$state/cache" "$root/root/.cache"

# The machine environment's variables about certificates, proxies and pip.
machine_env=()
while IFS= read -r -d '' kv; do
    case ${kv%%=*} in
        *CERT* | *SSL* | *_CA_* | *CA_BUNDLE* | PIP_* | *[Pp][Rr][Oo][Xx][Yy]*) machine_env+=("$kv") ;;
    esac
done < <(env -0)
# in_fresh LOG COMMAND: COMMAND as root in the fresh root, in the clone.
in_fresh() {
    unshare --mount --propagation private -- /bin/bash -c '
        set -e
        root=$1
        mount -t proc proc "$root/proc"
        mount -t sysfs sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs tmpfs "$root/tmp"
        exec env -i "${@:3}" HOME=/root LC_ALL=C.UTF-8 TERM=dumb \
            PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo \
            chroot "$root" /bin/bash -c "cd /root/toa && $2"
    ' fresh "$root" "$2" "${machine_env[@]}" >"$1" 2>&1
}
# run_make WHEN LOG COMMAND: `make run` (COMMAND), its table and checks.
run_make() {
    local when=$1 log=$2 rc secs summary start=$SECONDS
    in_fresh "$log" "$3"
    rc=$?
    secs=$((SECONDS - start))
    sed -n '/^server /,/^$/p' "$log" | sed 's/^/    /'
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
    echo "    make run in the fresh root ($when): exit $rc after $secs s; e2e: ${summary:-no summary}"
    check "fresh machine: make run from a clean clone exits 0 ($secs s, $when)" "$rc" "$(tail -n 15 "$log")"
    check "fresh machine: make run's end-to-end test passed ($when)" \
        "$([[ $summary =~ ^[1-9][0-9]*\ passed,\ 0\ failed ]]; echo $?)" "${summary:-no summary}"
}
log "make run from a clean clone in the fresh root (cold: nothing cached)"
run_make cold "$res/make-run.log" "git init -q && git add -A && \
    git -c user.name=ci -c user.email=ci@localhost commit -qm snapshot && make run"
# Then as the newcomer's second try: what the first left in the cache
# (the root, the package installed over it) reused, a changed package
# reinstalled over it.
log "make run again in the fresh root (warm)"
run_make warm "$res/make-run-warm.log" "make run"
umount "$root/root/.cache" && rm -rf "$state/cache"
if [ "$failed" = 0 ]; then
    date -u '+%Y-%m-%d %H:%M UTC' >"$state/pass-$key"
    find "$state" -maxdepth 1 -name 'pass-*' ! -name "pass-$key" -delete
fi
finish
