#!/usr/bin/env bash
# `make deb`: build dist/toa-dkms_<version>_all.deb with Debian's own tooling
# (dpkg-buildpackage, debhelper, dh_dkms) from debian/, in a scratch copy of
# the work tree's files (tracked and new, not ignored), so that the build
# leaves nothing behind. Prints the .deb's path on stdout.
#
# The version is dkms.conf's PACKAGE_VERSION; debian/changelog must agree.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOA_ROOT"

version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
changelog=$(dpkg-parsechangelog -S Version 2>/dev/null) \
    || die "dpkg-parsechangelog failed: apt-get install dpkg-dev (or run scripts/bootstrap.sh)"
[ "$changelog" = "$version" ] \
    || die "debian/changelog is at $changelog but dkms.conf's PACKAGE_VERSION is $version: add a changelog entry (dch -v $version)"
for tool in dpkg-buildpackage dh dh_dkms; do
    command -v "$tool" >/dev/null || die "$tool missing: apt-get install dpkg-dev debhelper dh-dkms (or run scripts/bootstrap.sh)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/toa-$version
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
        | tar --null -T - -cf - | tar -xf - -C "$src"
else
    tar -cf - --exclude=./target --exclude=./dist . | tar -xf - -C "$src"
fi
(cd "$src" && dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1) || {
    tail -n 40 "$work/build.log" >&2
    die "dpkg-buildpackage failed"
}
mkdir -p dist
deb=dist/toa-dkms_${version}_all.deb
mv "$work/toa-dkms_${version}_all.deb" "$deb"
log "built $deb"
echo "$TOA_ROOT/$deb"
