#!/usr/bin/env bash
# TOA sockets in a BPF socket map, inside a VM on one of Debian's stock
# kernels (the test kernels have no bpf()): a sockops program that puts
# every passively established TCP socket into a BPF_MAP_TYPE_SOCKHASH, as
# socket-acceleration users run one (tests/bpf/sockmap.bpf.c), and cgroup
# getpeername programs as socket load balancers attach them
# (tests/bpf/getpeername.bpf.c), loaded and attached to the root cgroup
# with bpftool, while tests/e2e/fullnat.sh runs its FULLNAT rounds (nginx,
# Python's http.server, NAT64, UDP, a stress round). Every check of
# fullnat.sh must hold with its servers' sockets in the map and their
# getpeername() calls passing the programs (the client shown), and the
# programs must have run: the sockets put in the map, no insertion refused
# (EBUSY is what a socket whose sk_user_data toa holds got before toa
# parked its word), toa's counter of parked words moved, the getpeername
# programs called for both families.
#
#   sockmap.sh PAYLOAD LOAD_CMD UNLOAD_CMD BALANCER C_SERVER C_UDP_SERVER
set -uo pipefail

payload=${1:?usage: sockmap.sh PAYLOAD LOAD_CMD UNLOAD_CMD BALANCER C_SERVER C_UDP_SERVER}
shift
passed=0 failed=0 skipped=0
# check NAME STATUS [detail]: one ok/not ok line.
check() {
    [ "$2" = 0 ] && { passed=$((passed + 1)); echo "ok - $1"; return; }
    failed=$((failed + 1)); echo "not ok - $1${3:+: $3}"
}
pin=/sys/fs/bpf/toa_sockops maps=/sys/fs/bpf/toa_sockmap cg=/sys/fs/cgroup
# array_values PINNED N: the values of a pinned BPF array's keys 0..N-1
# (-1 for a key it lacks), space-separated. bpftool prints the array with
# its BTF (key and value as numbers), or without it as byte lists.
array_values() {
    bpftool -j map dump pinned "$1" 2>/dev/null | python3 -c '
import json, sys
v = {}
for e in json.load(sys.stdin):
    k, x = e.get("key"), e.get("value")
    if isinstance(k, list): k = int.from_bytes(bytes(int(b, 16) for b in k), "little")
    if isinstance(x, list): x = int.from_bytes(bytes(int(b, 16) for b in x), "little")
    v[k] = x
print(*(v.get(i, -1) for i in range(int(sys.argv[1]))))' "$2"
}
gpin=/sys/fs/bpf/toa_getpeername gmaps=/sys/fs/bpf/toa_getpeername_maps

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
grep -q "^cgroup2 $cg " /proc/mounts || mount -t cgroup2 none $cg
rm -rf "$pin" "$maps"
out=$(bpftool prog load "$payload/sockmap.bpf.o" "$pin" type sockops pinmaps "$maps" 2>&1)
check "bpftool loads the sockops program (SOCKHASH insertion)" $? "$out"
out=$(bpftool cgroup attach $cg sock_ops pinned "$pin" 2>&1)
check "bpftool attaches it to the root cgroup" $? "$out"
# Beside it, cgroup getpeername programs (tests/bpf/getpeername.bpf.c):
# with them attached, toa lets the kernel's getname answer and rewrites
# after it (hook=direct answers in its place only without them).
rm -rf "$gpin" "$gmaps"
out=$(bpftool prog loadall "$payload/getpeername.bpf.o" "$gpin" pinmaps "$gmaps" 2>&1)
check "bpftool loads the cgroup getpeername programs" $? "$out"
for f in 4 6; do
    out=$(bpftool cgroup attach $cg getpeername$f pinned "$gpin/toa_getpeername$f" 2>&1)
    check "bpftool attaches the getpeername$f program to the root cgroup" $? "$out"
done

TOA_E2E_STRESS=${TOA_SOCKMAP_STRESS:-500} "$payload/fullnat.sh" "$@" >/tmp/toa-sockmap-e2e.txt 2>&1
rc=$?
grep -E '^(not ok|skip) ' /tmp/toa-sockmap-e2e.txt | sed 's/^/  fullnat: /'
read -r p f <<<"$(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p' /tmp/toa-sockmap-e2e.txt | tail -n1)"
check "fullnat.sh with every accepted socket in the SOCKHASH: all its checks hold (${p:-?} passed)" \
    "$([ "$rc" = 0 ] && [ "${f:-1}" = 0 ] && [ "${p:-0}" -gt 0 ]; echo $?)" "$(tail -n1 /tmp/toa-sockmap-e2e.txt)"

# [0] inserted, [1] EBUSY, [2] other errors.
read -r inserted busy other <<<"$(array_values "$maps/toa_results" 3)"
echo "sockops insertions: ${inserted:-?} inserted, ${busy:-?} refused with EBUSY, ${other:-?} refused otherwise"
check "the program inserted the servers' sockets" "$([ "${inserted:-0}" -gt 500 ]; echo $?)" "${inserted:-none}"
check "no socket refused with EBUSY (toa's word parked, not in the way)" "$([ "${busy:-1}" = 0 ]; echo $?)" "${busy:-none}"
check "no insertion refused otherwise" "$([ "${other:-1}" = 0 ]; echo $?)" "${other:-none}"
parked=$(sed -nE 's/.*toa_stats:.* toa_sockmap_parked=([0-9]+).*/\1/p' /tmp/toa-sockmap-e2e.txt | sort -n | tail -n1)
echo "toa_sockmap_parked (the largest change in a round): ${parked:-none}"
check "toa parked the TOA sockets' words for the map (toa_sockmap_parked)" "$([ "${parked:-0}" -gt 0 ]; echo $?)" "${parked:-none}"

# The getpeername programs ran for the servers' calls of both families
# (IPv4 sockets, and the dual-stack and IPv6 ones).
read -r gp4 gp6 <<<"$(array_values "$gmaps/toa_getpeername_calls" 2)"
echo "cgroup getpeername programs' calls: ${gp4:-?} IPv4, ${gp6:-?} IPv6"
check "the getpeername4 program ran for the IPv4 servers' calls" "$([ "${gp4:-0}" -gt 0 ]; echo $?)" "${gp4:-none}"
check "the getpeername6 program ran for the IPv6 servers' calls" "$([ "${gp6:-0}" -gt 0 ]; echo $?)" "${gp6:-none}"

bpftool cgroup detach $cg sock_ops pinned "$pin" 2>/dev/null
for f in 4 6; do bpftool cgroup detach $cg getpeername$f pinned "$gpin/toa_getpeername$f" 2>/dev/null; done
rm -rf "$pin" "$maps" "$gpin" "$gmaps"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
