#!/usr/bin/env bash
# Inside a VM booted on one of Debian's stock kernels, with the trixie root
# where toa-dkms was installed by apt (scripts/stock-test.sh, scripts/demo.sh):
# what a user of the package sees.
#
#   stock-guest.sh RELEASE RESULTS PAYLOAD [--demo|--hooks]
#
# Checks that this is the stock kernel RELEASE, that `modprobe toa` loads
# the module DKMS installed (its path, its vermagic, the kernel log), then
# runs the in-VM suite's IPv4, IPv6, producer, handshake, UDP and hook cases
# (among them a BPF fexit on inet_getname, with the root's bpftrace) on that
# module and the FULLNAT end-to-end test (TCP and UDP) with
# modprobe/modprobe -r. PAYLOAD holds the test
# programs (toa-vmtest, toa-balancer, the example servers, fullnat.sh,
# pods.sh, sockmap.sh and its sockops program).
# Writes to RESULTS: checks.txt (ok/not ok lines, `N passed, M failed`),
# evidence.txt (uname -r, modinfo toa, dmesg | grep TOA), suite.txt and
# e2e.txt (their own lines and summaries). With --demo, the checks and the
# e2e test only; with --hooks, also a pass of the TCP cases and the BPF one
# with every other hook mechanism (suite-hooks.txt), the pods' topologies
# (pods.sh: pods.txt) and a BPF socket map holding the servers' sockets
# (sockmap.sh: sockmap.txt).
set -uo pipefail

rel=${1:?usage: stock-guest.sh RELEASE RESULTS PAYLOAD [--demo]}
res=${2:?}
payload=${3:?}
demo=${4:-}
passed=0 failed=0
check() { # check NAME STATUS [detail]
    if [ "$2" = 0 ]; then
        passed=$((passed + 1)); echo "ok - $1"
    else
        failed=$((failed + 1)); echo "not ok - $1${3:+: $3}"
    fi
}

# The tests' network pieces are modules in Debian's kernels.
for m in tun veth nf_tables; do modprobe "$m"; done

{
    check "uname -r is the stock release $rel" "$([ "$(uname -r)" = "$rel" ]; echo $?)" "$(uname -r)"
    out=$(modprobe toa 2>&1)
    check "modprobe toa" $? "$out"
    path=$(modinfo -n toa 2>&1)
    check "modinfo toa: the module DKMS installed (/lib/modules/$rel/updates/dkms/)" \
        "$(case $path in /lib/modules/"$rel"/updates/dkms/toa.ko* | /usr/lib/modules/"$rel"/updates/dkms/toa.ko*)
            echo 0 ;; *) echo 1 ;; esac)" "$path"
    vermagic=$(modinfo -F vermagic toa 2>&1)
    check "modinfo toa: vermagic is $rel's" "$([[ $vermagic == "$rel "* ]]; echo $?)" "$vermagic"
    check "dmesg: TOA: toa loaded" "$(dmesg | grep -q 'TOA: toa loaded'; echo $?)"
    check "toa's sysctls and counters are there" \
        "$([ -e /proc/sys/net/toa/tcpopt_addr ] && [ -e /proc/net/toa_stats ]; echo $?)"
    out=$(modprobe -r toa 2>&1)
    check "modprobe -r toa" $? "$out"
} >"$res/checks.txt" 2>&1
{
    echo "# uname -r"; uname -r
    echo "# modinfo toa"; modinfo toa
    echo "# dmesg | grep TOA"; dmesg | grep TOA
} >"$res/evidence.txt" 2>&1

echo "$passed passed, $failed failed" >>"$res/checks.txt"
cat "$res/checks.txt"

rc=$failed
if ! [ -e "$path" ]; then
    # No module to test: one failure each, not one per case.
    echo "not ok - no toa module to run the suite on" >"$res/suite.txt"
    echo "not ok - no toa module to run the end-to-end test with" >"$res/e2e.txt"
    echo "0 passed, 1 failed" | tee -a "$res/suite.txt" >>"$res/e2e.txt"
    exit 1
fi
if [ "$demo" != --demo ]; then
    # The suites that need no test module built for this kernel (the
    # hooks' fall-back case does: it runs on the test kernels).
    "$payload/toa-vmtest" --module "$path" --only 'ipv4:' --only 'ipv6:' \
        --only 'producers:' --only 'handshakes:' --only 'udp:' --only 'stress: random' \
        --only 'trust:' --only 'local:' --only 'namespaces:' \
        --only 'hooks: the load line' --only 'hooks: TOA sockets' --only 'hooks: kernel.ftrace' \
        --only 'hooks: shared: a BPF' \
        --c-server "$payload/toa_server_c" --rust-server "$payload/toa_server" \
        --c-udp-server "$payload/toa_udp_server_c" >"$res/suite.txt" 2>&1 || rc=1
    tail -n1 "$res/suite.txt"
fi
if [ "$demo" = --hooks ]; then
    # Every other hook mechanism on this kernel (the test kernels' 6.12
    # runs them all on the whole suite): the TCP paths each one serves,
    # and a BPF fexit on getname beside each.
    "$payload/toa-vmtest" --module "$path" --hooks ftrace,kretprobe,fprobe --only 'ipv4:' \
        --only 'ipv6:' --only 'handshakes:' --only 'hooks: TOA sockets' --only 'hooks: the load line' \
        --only 'hooks: shared: a BPF' --c-server "$payload/toa_server_c" --rust-server "$payload/toa_server" \
        --c-udp-server "$payload/toa_udp_server_c" >"$res/suite-hooks.txt" 2>&1 || rc=1
    tail -n1 "$res/suite-hooks.txt"
fi
# What every end-to-end script is given: how to load and unload toa, the
# balancer's half, the example servers.
e2e=("modprobe toa" "modprobe -r toa" "$payload/toa-balancer" "$payload/toa_server_c"
    "$payload/toa_udp_server_c")
TOA_E2E_STRESS=${TOA_E2E_STRESS:-2000} "$payload/fullnat.sh" "${e2e[@]}" >"$res/e2e.txt" 2>&1 || rc=1
tail -n1 "$res/e2e.txt"
if [ "$demo" = --hooks ]; then
    # Backends in pods behind the node (kube-proxy node ports, Docker's
    # mapping, pod IPs, host network), the same balancer in front.
    "$payload/pods.sh" "${e2e[@]}" >"$res/pods.txt" 2>&1 || rc=1
    tail -n1 "$res/pods.txt"
    # TOA sockets in a BPF socket map (a sockops program inserting every
    # accepted socket into a SOCKHASH) through the FULLNAT rounds.
    "$payload/sockmap.sh" "$payload" "${e2e[@]}" >"$res/sockmap.txt" 2>&1 || rc=1
    tail -n1 "$res/sockmap.txt"
fi
[ "$rc" = 0 ]
