#!/bin/sh
# PID 1 of the test VMs booted on the host's root (scripts/vm.sh): the guest
# runs without udev, then virtme-ng-init (named by toa_init=) as usual.
#
# devtmpfs makes every device node the tests use; udev's coldplug took 7
# minutes to settle on the debug kernel before any test ran. virtme-ng-init
# starts udevd whenever it finds /usr/lib/systemd/systemd-udevd, so an empty
# tmpfs is mounted there first. virtme-ng-init would then mount its writable
# overlays (/usr, /lib...) over that mount: they are made here instead, as it
# makes them (lower = the directory, upper and work on a tmpfs), and left out
# of its environment.
mount -n -t tmpfs -o mode=0755 toa-vm-overlays /run || exec "$toa_init"
# (Shell builtins where they serve: every exec costs a second or two on the
# debug kernel.)
for n in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
    var=virtme_rw_overlay$n
    eval "dir=\${$var:-}"
    [ -n "$dir" ] || continue
    mkdir -p "/run/$var/upper" "/run/$var/work" &&
        mount -n -t overlay -o "lowerdir=$dir,upperdir=/run/$var/upper,workdir=/run/$var/work" \
            "$var" "$dir" &&
        unset "$var"
done
mount -n -t tmpfs -o mode=0755,size=64k toa-no-udev /usr/lib/systemd
exec "$toa_init"
