#!/usr/bin/env bash
# Backends in containers, end to end, inside a test VM (run by scripts/vm.sh;
# issue 21): toa is loaded once, on the node's kernel, and the application
# runs in a pod (a network namespace behind a veth), reached the ways
# Kubernetes and Docker reach pods:
#
#   client ns --veth-- balancer ns --veth-- node ns --veth-- pod ns
#   10.1.0.2           10.1.0.1 | 10.2.0.1   10.2.0.2 | 10.244.0.1  10.244.0.2
#   fd01::2            fd01::1  | fd02::1    fd02::2  | fd44::1     fd44::2
#
# The balancer does FULLNAT as in fullnat.sh (nftables DNAT and SNAT to
# 10.2.0.1 / fd02::1, toa-balancer tagging TCP with the client, relays
# naming UDP clients the LVS and DPVS ways, NAT64 for IPv6 clients of IPv4
# services). Its virtual services, one per topology:
#
#   local    node port, kube-proxy's rules with externalTrafficPolicy:
#            Local: DNAT to the pod, no masquerade (the pod sees the
#            balancer)
#   cluster  node port, externalTrafficPolicy: Cluster: DNAT and masquerade
#            (the pod sees the node's address on the pod network)
#   direct   the balancer sends to the pod IP, routed through the node (VPC-
#            native CNIs: Tencent VPC-CNI, Huawei Yangtse, Alibaba Terway)
#   docker   a Docker `-p 8080:80` mapping: DNAT in the node, no userland
#            proxy, the containers' own traffic masqueraded
#   host     a host-network pod: the server in the node's namespace
#   ipvs     node port, kube-proxy's IPVS mode (IPVS NAT to the pod; on
#            kernels with ip_vs and where ipvsadm is installed, else
#            skipped)
#
# kube-proxy's rules are written in nftables (its nftables mode; its
# iptables mode installs the same DNAT and MARK/MASQUERADE through
# iptables-nft). In the pod: Debian's nginx (TCP, IPv4 and IPv6, access log
# $remote_addr), examples/toa_server.c (NAT64 lookup), dnsmasq (UDP behind
# an LVS announcement, logging the querier) and examples/toa_udp_server.c
# (UDP with a DPVS UOA in an IPv4 option; over IPv6 in an option protocol
# header, for `local` and `direct`). For each topology and each kind
# of client the script prints what the application saw and, for UDP, where
# the answer came from (the client only takes it from the virtual service),
# then one ok/not ok/skip line per expectation and `N passed, M failed, K
# skipped`.
#
# The node names its balancer as the README says (net.toa.trusted_sources =
# 10.2.0.1 fd02::1); the pod follows the node's settings. A masquerading
# node port hides the source from the pod: toa there must not take a
# client from the node's address (nobody trusted it), so the pod sees the
# node, and says so in its own counters.
#
#   pods.sh LOAD_CMD UNLOAD_CMD BALANCER C_SERVER C_UDP_SERVER
set -uo pipefail

load=${1:?usage: pods.sh LOAD_CMD UNLOAD_CMD BALANCER C_SERVER C_UDP_SERVER}
unload=${2:?}
balancer=${3:?}
c_server=${4:?}
c_udp_server=${5:?}
work=$(mktemp -d /tmp/toa-pods.XXXXXX)
TRUSTED="10.2.0.1/32 fd02::1/128"
CLIENT4=10.1.0.2 CLIENT6=fd01::2
passed=0 failed=0 skipped=0

check() { # check NAME GOT WANT
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1)); echo "ok - $1"
    else
        failed=$((failed + 1)); echo "not ok - $1: got '$2', want '$3'"
    fi
}
skip() { skipped=$((skipped + 1)); echo "skip - $1"; }

c() { ip netns exec client "$@"; }
lb() { ip netns exec balancer "$@"; }
node() { ip netns exec node "$@"; }
pod() { ip netns exec pod "$@"; }

# The balancer's virtual services: VIP port -> (backend address, port), per
# topology. TCP: nginx (80 in the pod, 80 on the node for `host`), UDP:
# dnsmasq (53) and the C echo server (7001).
declare -A TCP_TO=([local]=30081 [cluster]=30082 [direct]=80 [docker]=8080 [host]=80 [ipvs]=30091)
declare -A TCP_VIP=([local]=81 [cluster]=82 [direct]=83 [docker]=84 [host]=85 [ipvs]=86)
declare -A DNS_TO=([local]=30053 [cluster]=30054 [direct]=53 [docker]=8053 [host]=53 [ipvs]=30093)
declare -A DNS_VIP=([local]=53 [cluster]=54 [direct]=55 [docker]=56 [host]=57 [ipvs]=58)
declare -A UOA_TO=([local]=30071 [cluster]=30072 [direct]=7001 [docker]=8071 [host]=7001 [ipvs]=30095)
declare -A UOA_VIP=([local]=7001 [cluster]=7002 [direct]=7003 [docker]=7004 [host]=7005 [ipvs]=7006)
# IPv6 UDP (DPVS's option protocol): the balancer's VIP port -> backend.
declare -A UOA6_TO=([local]="[fd02::2]:30073" [direct]="[fd44::2]:7001")
declare -A UOA6_VIP=([local]=7013 [direct]=7023)
TOPOLOGIES="local cluster direct docker host"
# kube-proxy's IPVS mode, where the kernel has IPVS and ipvsadm is there.
ipvs=no
if command -v ipvsadm >/dev/null && modprobe ip_vs 2>/dev/null && ipvsadm -L -n >/dev/null 2>&1; then
    ipvs=yes TOPOLOGIES="$TOPOLOGIES ipvs"
fi
# Where the balancer sends each topology: the node, or the pod itself.
target4() { case $1 in direct) echo 10.244.0.2 ;; *) echo 10.2.0.2 ;; esac; }
target6() { case $1 in direct) echo fd44::2 ;; *) echo fd02::2 ;; esac; }

# veth NS DEV IPV4 IPV6 PEER_NS PEER_DEV PEER_IPV4 PEER_IPV6: a veth pair
# between two namespaces, each end addressed (/24, /64) and up.
veth() {
    ip link add "$2" netns "$1" type veth peer name "$6" netns "$5"
    while [ $# -ge 4 ]; do
        ip -n "$1" addr add "$3/24" dev "$2"
        ip -n "$1" addr add "$4/64" dev "$2" nodad
        ip -n "$1" link set "$2" up
        shift 4
    done
}

setup() {
    for ns in client balancer node pod; do ip netns add $ns; ip -n $ns link set lo up; done
    veth client c0 10.1.0.2 fd01::2 balancer b0 10.1.0.1 fd01::1
    veth balancer b1 10.2.0.1 fd02::1 node n0 10.2.0.2 fd02::2
    veth node p0 10.244.0.1 fd44::1 pod e0 10.244.0.2 fd44::2
    c ip route add default via 10.1.0.1; c ip -6 route add default via fd01::1
    lb ip route add 10.244.0.0/24 via 10.2.0.2; lb ip -6 route add fd44::/64 via fd02::2
    node ip route add default via 10.2.0.1; node ip -6 route add default via fd02::1
    pod ip route add default via 10.244.0.1; pod ip -6 route add default via fd44::1
    lb sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    node sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

    # The balancer: FULLNAT, as fullnat.sh's (TCP tagged by toa-balancer
    # through queue 0, after conntrack and before DNAT; no bypass).
    local t dnat4="" dnat6="" ports=""
    for t in $TOPOLOGIES; do
        ports="$ports${ports:+, }${TCP_VIP[$t]}"
        dnat4="$dnat4        ip daddr 10.1.0.1 tcp dport ${TCP_VIP[$t]} dnat ip to $(target4 "$t"):${TCP_TO[$t]}
"
        dnat6="$dnat6        ip6 daddr fd01::1 tcp dport ${TCP_VIP[$t]} dnat ip6 to [$(target6 "$t")]:${TCP_TO[$t]}
"
    done
    lb nft -f - <<EOF || return 1
table inet fullnat {
    chain toa {
        type filter hook prerouting priority -150; policy accept;
        iifname "b0" ip daddr 10.1.0.1 tcp dport { $ports } queue num 0
        iifname "b0" ip6 daddr fd01::1 tcp dport { $ports } queue num 0
    }
    chain to_backend {
        type nat hook prerouting priority dstnat; policy accept;
$dnat4$dnat6    }
    chain from_balancer {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "b1" ct status dnat meta nfproto ipv4 snat ip to 10.2.0.1
        oifname "b1" ct status dnat meta nfproto ipv6 snat ip6 to fd02::1
        oifname "b1" ip saddr 100.64.0.1 snat ip to 10.2.0.1
    }
}
EOF
    lb "$balancer" nfqueue 0 254 >"$work/balancer.log" 2>&1 &
    for _ in $(seq 150); do grep -q ready "$work/balancer.log" 2>/dev/null && break; sleep 0.1; done
    grep -q ready "$work/balancer.log" 2>/dev/null || return 1
    lb "$balancer" nat64 nat64 64:ff9b:: 100.64.0.1 254 >"$work/nat64.log" 2>&1 &
    for _ in $(seq 50); do lb ip link show nat64 >/dev/null 2>&1 && break; sleep 0.1; done
    lb ip link set nat64 up
    lb ip -6 route add 64:ff9b::/96 dev nat64
    lb ip route add 100.64.0.1/32 dev nat64
    for t in $TOPOLOGIES; do
        lb "$balancer" udp icmp "10.1.0.1:${DNS_VIP[$t]}" "$(target4 "$t"):${DNS_TO[$t]}" 10.2.0.1 \
            >"$work/udp-dns-$t.log" 2>&1 &
        lb "$balancer" udp ipo "10.1.0.1:${UOA_VIP[$t]}" "$(target4 "$t"):${UOA_TO[$t]}" 10.2.0.1 \
            >"$work/udp-uoa-$t.log" 2>&1 &
    done
    for t in "${!UOA6_VIP[@]}"; do
        lb "$balancer" udp opp "[fd01::1]:${UOA6_VIP[$t]}" "${UOA6_TO[$t]}" fd02::1 >"$work/udp-uoa6-$t.log" 2>&1 &
    done

    # An attacker among the clients: its own connections straight to the
    # node (the balancer routes them, without FULLNAT) carry a TOA option
    # naming 192.0.2.66.
    c nft -f - <<'EOF' || return 1
table inet attacker {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr 10.2.0.2 tcp dport { 80, 30081, 30082 } queue num 1
    }
}
EOF
    c "$balancer" forge 1 254 192.0.2.66 >"$work/attacker.log" 2>&1 &
    for _ in $(seq 150); do grep -q ready "$work/attacker.log" 2>/dev/null && break; sleep 0.1; done

    # The node: kube-proxy's node ports (Local: DNAT only; Cluster: marked
    # for masquerade, then DNAT) and Docker's mapping (DNAT for what does
    # not come from the containers' bridge, containers' own traffic
    # masqueraded on its way out). NAT64 clients reach the pod's C server
    # through node port 30088 (Local).
    node nft -f - <<'EOF' || return 1
table inet kube {
    chain services {
        type nat hook prerouting priority dstnat; policy accept;
        meta nfproto ipv4 tcp dport 30081 dnat ip to 10.244.0.2:80
        meta nfproto ipv6 tcp dport 30081 dnat ip6 to [fd44::2]:80
        meta nfproto ipv4 tcp dport 30082 meta mark set 0x4000 dnat ip to 10.244.0.2:80
        meta nfproto ipv6 tcp dport 30082 meta mark set 0x4000 dnat ip6 to [fd44::2]:80
        meta nfproto ipv4 tcp dport 30088 dnat ip to 10.244.0.2:8080
        meta nfproto ipv4 udp dport 30053 dnat ip to 10.244.0.2:53
        meta nfproto ipv4 udp dport 30054 meta mark set 0x4000 dnat ip to 10.244.0.2:53
        meta nfproto ipv4 udp dport 30071 dnat ip to 10.244.0.2:7001
        meta nfproto ipv4 udp dport 30072 meta mark set 0x4000 dnat ip to 10.244.0.2:7001
        meta nfproto ipv6 udp dport 30073 dnat ip6 to [fd44::2]:7001
    }
    chain masq {
        type nat hook postrouting priority srcnat; policy accept;
        meta mark 0x4000 masquerade
    }
}
table inet docker {
    chain docker {
        type nat hook prerouting priority dstnat; policy accept;
        iifname != "p0" meta nfproto ipv4 tcp dport 8080 dnat ip to 10.244.0.2:80
        iifname != "p0" meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd44::2]:80
        iifname != "p0" meta nfproto ipv4 udp dport 8053 dnat ip to 10.244.0.2:53
        iifname != "p0" meta nfproto ipv4 udp dport 8071 dnat ip to 10.244.0.2:7001
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.244.0.0/24 oifname != "p0" masquerade
    }
}
EOF

    # kube-proxy's IPVS mode: a virtual server per node port, NAT to the
    # pod (externalTrafficPolicy: Local, no masquerade).
    if [ $ipvs = yes ]; then
        local proto vs rs
        # kube-proxy's setting: IPVS keeps conntrack's entries right.
        node sysctl -qw net.ipv4.vs.conntrack=1 || return 1
        for vs in "-t 10.2.0.2:30091 10.244.0.2:80" "-t [fd02::2]:30091 [fd44::2]:80" \
            "-u 10.2.0.2:30093 10.244.0.2:53" "-u 10.2.0.2:30095 10.244.0.2:7001"; do
            read -r proto vs rs <<<"$vs"
            node ipvsadm -A "$proto" "$vs" -s rr || return 1
            node ipvsadm -a "$proto" "$vs" -r "$rs" -m || return 1
        done
    fi

    # The servers: nginx in the pod and on the node (host network), the C
    # servers and dnsmasq in both.
    nginx_in pod "10.244.0.2:80" "[fd44::2]:80" || return 1
    nginx_in node "10.2.0.2:80" "[fd02::2]:80" || return 1
    pod "$c_server" 10.244.0.2 8080 100 >"$work/c-pod.log" 2>&1 &
    local ns addr
    for ns in pod node; do
        addr=$([ $ns = pod ] && echo 10.244.0.2 || echo 10.2.0.2)
        ip netns exec $ns dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
            --listen-address=$addr --bind-interfaces --port=53 --user=root \
            --pid-file="$work/dnsmasq-$ns.pid" --log-queries --log-facility="$work/dnsmasq-$ns.log" \
            --address=/toa.test/192.0.2.53 >/dev/null 2>&1 &
        ip netns exec $ns "$c_udp_server" $addr 7001 1000 recvfrom >"$work/uoa-$ns.log" 2>&1 &
    done
    pod "$c_udp_server" fd44::2 7001 1000 recvfrom >"$work/uoa6-pod.log" 2>&1 &
    for _ in $(seq 100); do
        pod ss -lun | grep -q '10.244.0.2:53 ' && node ss -lun | grep -q '10.2.0.2:7001 ' \
            && pod ss -ltn | grep -q ':8080 ' && lb ss -lun | grep -q ":${UOA_VIP[host]} " && break
        sleep 0.1
    done
}

# nginx_in NS LISTEN4 LISTEN6: Debian's nginx in NS, logging $remote_addr
# to $work/access-NS.log.
nginx_in() {
    mkdir -p "$work/nginx-$1"
    cat >"$work/nginx-$1.conf" <<EOF
user root;
pid $work/nginx-$1.pid;
error_log $work/nginx-$1-error.log;
events {}
http {
    log_format toa '\$remote_addr';
    access_log $work/access-$1.log toa;
    client_body_temp_path $work/nginx-$1;
    proxy_temp_path $work/nginx-$1;
    server {
        listen $2;
        listen $3;
        location / { return 200 "hello\n"; }
    }
}
EOF
    ip netns exec "$1" nginx -c "$work/nginx-$1.conf" -p "$work/nginx-$1" </dev/null >/dev/null 2>&1
}

# udp_ask KIND HOST PORT: from the client, a DNS query for toa.test (KIND
# dns) or a datagram "hello" (KIND echo), sent up to three times; prints
# "ANSWER FROM" (the answer: the A record or "echo"; the address it came
# from), or "- -".
udp_ask() {
    c python3 - "$@" <<'EOF2'
import socket, struct, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "dns":
    q = struct.pack("!HHHHHH", 0x70a, 0x0100, 1, 0, 0, 0) + b"\x03toa\x04test\x00" + struct.pack("!HH", 1, 1)
else:
    q = b"hello"
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
answer = "- -"
for _ in range(3):
    try:
        s.sendto(q, (host, port))
        r, src = s.recvfrom(512)
        a = ".".join(str(b) for b in r[-4:]) if kind == "dns" else ("echo" if r == q else "wrong")
        answer = "%s %s" % (a, src[0])
        break
    except OSError:
        pass
print(answer)
EOF2
}

# The last line of FILE that is new since it had LINES lines, or "-".
new_line() { tail -n +$(($2 + 1)) "$1" 2>/dev/null | grep -v '^ready' | tail -n1 | sed 's/^$/-/'; }
lines() { wc -l <"$1" 2>/dev/null || echo 0; }
# The server's namespace for topology $1.
server_ns() { [ "$1" = host ] && echo node || echo pod; }

# One topology: "KEY VALUE" lines.
topology() {
    local t=$1 ns log n got
    ns=$(server_ns "$t")
    log=$work/access-$ns.log
    n=$(lines "$log")
    c curl -s -o /dev/null --max-time 5 "http://10.1.0.1:${TCP_VIP[$t]}/" || echo "curl v4 $t failed" >&2
    echo "$t-tcp4 $(new_line "$log" "$n")"
    n=$(lines "$log")
    c curl -s -o /dev/null --max-time 5 -g "http://[fd01::1]:${TCP_VIP[$t]}/" || echo "curl v6 $t failed" >&2
    echo "$t-tcp6 $(new_line "$log" "$n")"
    log=$work/dnsmasq-$ns.log
    n=$(lines "$log")
    got=$(udp_ask dns 10.1.0.1 "${DNS_VIP[$t]}")
    sleep 0.2
    echo "$t-dns-answer ${got% *}"
    echo "$t-dns-from ${got#* }"
    echo "$t-dns-seen $(tail -n +$((n + 1)) "$log" | awk '/query\[A\] toa.test from/ {x = $NF} END {print x ? x : "-"}')"
    uoa_probe "$t-uoa" "$work/uoa-$ns.log" 10.1.0.1 "${UOA_VIP[$t]}"
    [ -z "${UOA6_VIP[$t]:-}" ] || uoa_probe "$t-uoa6" "$work/uoa6-pod.log" fd01::1 "${UOA6_VIP[$t]}"
}

# uoa_probe KEY LOG VIP PORT: a datagram from the client to the virtual
# service VIP:PORT; what came back and from where, and what the C echo
# server logging to LOG saw (its recvfrom, its UOA lookup).
uoa_probe() {
    local n got line
    n=$(lines "$2")
    got=$(udp_ask echo "$3" "$4")
    sleep 0.2
    echo "$1-answer ${got% *}"
    echo "$1-from ${got#* }"
    line=$(tail -n +$((n + 1)) "$2" | grep -m1 '^from=')
    echo "$1-seen $(sed -E 's/.*from=([^ ]*).*/\1/; s/:[0-9]+$//' <<<"${line:-from=-}")"
    echo "$1-lookup $(sed -E 's/.*uoa=([^ ]*).*/\1/; s/:[0-9]+$//' <<<"${line:-uoa=-}")"
}

# The attacker's connections straight to the node's ports: what the
# servers saw.
attacks() {
    local port ns log n
    for port in 30081 30082 80; do
        ns=$([ $port = 80 ] && echo node || echo pod)
        log=$work/access-$ns.log
        n=$(lines "$log")
        c curl -s -o /dev/null --max-time 5 "http://10.2.0.2:$port/" || echo "attacker curl $port failed" >&2
        echo "attack-$port $(new_line "$log" "$n")"
    done
}

# NAT64 from inside the pod: an IPv6 client through the balancer's
# translator to the pod's IPv4 C server behind node port 30088.
nat64() {
    local n line
    n=$(lines "$work/c-pod.log")
    c python3 -c 'import socket; s = socket.create_connection(("64:ff9b::a02:2", 30088), timeout=5); s.close()' \
        || echo "NAT64 client failed" >&2
    sleep 0.3
    line=$(tail -n +$((n + 1)) "$work/c-pod.log" | grep -m1 '^accept=')
    echo "nat64-getpeername $(sed -E 's/.*getpeername=([^ ]*).*/\1/; s/:[0-9]+$//' <<<"${line:-getpeername=-}")"
    echo "nat64-lookup $(sed -E 's/.*lookup=([^ ]*).*/\1/; s/:[0-9]+$//' <<<"${line:-lookup=-}")"
}

if ! setup; then
    echo "not ok - the topology could not be set up"
    sed 's/^/  /' "$work"/*.log 2>/dev/null | head -n 20
    echo "$passed passed, $((failed + 1)) failed"
    exit 1
fi
$unload 2>/dev/null
without=$(for t in $TOPOLOGIES; do topology "$t"; done; nat64; attacks)
$load || { echo "not ok - load toa: $load"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
sysctl -qw net.toa.trusted_sources="$TRUSTED" \
    || { echo "not ok - set net.toa.trusted_sources"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
with=$(for t in $TOPOLOGIES; do topology "$t"; done; nat64; attacks)
pod_stats=$(pod cat /proc/net/toa_stats 2>/dev/null)
node_stats=$(node cat /proc/net/toa_stats 2>/dev/null)
host_stats=$(cat /proc/net/toa_stats 2>/dev/null)
pod_udp=$(pod cat /proc/net/toa_udp 2>/dev/null)
node_udp=$(node cat /proc/net/toa_udp 2>/dev/null)
$unload

get() { awk -v k="$2" '$1 == k {print $2}' <<<"$1"; }
echo
printf '%-10s %-34s %-34s\n' "" "without toa.ko" "with toa.ko"
printf '%-10s %-8s %-8s %-17s %-8s %-8s %-17s\n' topology tcp4 tcp6 "udp lvs/dpvs" tcp4 tcp6 "udp lvs/dpvs"
for t in $TOPOLOGIES; do
    printf '%-10s' "$t"
    for r in "$without" "$with"; do
        printf ' %-8s %-8s %-17s' "$(get "$r" "$t-tcp4")" "$(get "$r" "$t-tcp6")" \
            "$(get "$r" "$t-dns-seen")/$(get "$r" "$t-uoa-seen")"
    done
    echo
done
echo "UDP answers came from (lvs/dpvs), with toa.ko:$(for t in $TOPOLOGIES; do
    printf ' %s %s/%s' "$t" "$(get "$with" "$t-dns-from")" "$(get "$with" "$t-uoa-from")"; done)"
echo "UDP over IPv6 (DPVS opp), with toa.ko, seen / answer from:$(for t in "${!UOA6_VIP[@]}"; do
    printf ' %s %s/%s' "$t" "$(get "$with" "$t-uoa6-seen")" "$(get "$with" "$t-uoa6-from")"; done)"
echo "NAT64 from the pod: getpeername $(get "$with" nat64-getpeername), lookup $(get "$with" nat64-lookup)"
echo
echo "The pod's /proc/net/toa_stats (total column, non-zero):"
awk 'NR > 1 && $NF != 0 {print "  " $1, $NF}' <<<"$pod_stats"
echo "The pod's /proc/net/toa_udp:"; sed 's/^/  /' <<<"$pod_udp"
echo "The node's /proc/net/toa_udp:"; sed 's/^/  /' <<<"$node_udp"
echo

[ $ipvs = yes ] || skip "ipvs: kube-proxy's IPVS mode: this kernel has no ip_vs (or no ipvsadm here)"
for t in $TOPOLOGIES; do
    [ "$t" != cluster ] || continue
    check "$t, TCP IPv4, without toa: the balancer" "$(get "$without" "$t-tcp4")" 10.2.0.1
    check "$t, TCP IPv4, with toa: the client" "$(get "$with" "$t-tcp4")" "$CLIENT4"
    check "$t, TCP IPv6, with toa: the client" "$(get "$with" "$t-tcp6")" "$CLIENT6"
done
check "cluster (masquerade), TCP IPv4, without toa: the node" "$(get "$without" cluster-tcp4)" 10.244.0.1
check "cluster (masquerade), TCP IPv4, with toa: still the node (its address is nobody's balancer)" \
    "$(get "$with" cluster-tcp4)" 10.244.0.1
check "cluster (masquerade), TCP IPv6, with toa: still the node" "$(get "$with" cluster-tcp6)" fd44::1
check "an attacker straight to a Local node port, naming 192.0.2.66: the pod sees the attacker" \
    "$(get "$with" attack-30081)" "$CLIENT4"
check "an attacker straight to a Cluster node port: the pod sees the node" "$(get "$with" attack-30082)" 10.244.0.1
check "an attacker straight to a host-network server: it sees the attacker" "$(get "$with" attack-80)" "$CLIENT4"
check "NAT64 to a pod, getpeername: the balancer (an IPv4 socket)" "$(get "$with" nat64-getpeername)" 10.2.0.1
check "NAT64 to a pod, TOA_SO_GET_LOOKUP in the pod: the IPv6 client" "$(get "$with" nat64-lookup)" "[$CLIENT6]"
for t in $TOPOLOGIES; do
    seen=$CLIENT4 why="the client"
    [ "$t" = cluster ] && seen=10.244.0.1 why="the node (masquerade)"
    check "$t, UDP (LVS announcement), without toa: dnsmasq logs the balancer" \
        "$(get "$without" "$t-dns-seen")" "$([ "$t" = cluster ] && echo 10.244.0.1 || echo 10.2.0.1)"
    check "$t, UDP (LVS announcement), with toa: dnsmasq logs $why" "$(get "$with" "$t-dns-seen")" "$seen"
    check "$t, UDP (LVS announcement), with toa: answered, through the balancer" \
        "$(get "$with" "$t-dns-answer") $(get "$with" "$t-dns-from")" "192.0.2.53 10.1.0.1"
    check "$t, UDP (DPVS UOA), with toa: recvfrom sees $why" "$(get "$with" "$t-uoa-seen")" "$seen"
    check "$t, UDP (DPVS UOA), with toa: the echo comes back through the balancer" \
        "$(get "$with" "$t-uoa-answer") $(get "$with" "$t-uoa-from")" "echo 10.1.0.1"
done
for t in "${!UOA6_VIP[@]}"; do
    check "$t, UDP over IPv6 (DPVS opp), with toa: recvfrom sees the client" "$(get "$with" "$t-uoa6-seen")" "[$CLIENT6]"
    check "$t, UDP over IPv6 (DPVS opp), with toa: the echo comes back through the balancer" \
        "$(get "$with" "$t-uoa6-answer") $(get "$with" "$t-uoa6-from")" "echo fd01::1"
done
check "UDP (DPVS UOA) to the pod IP: the pod's UOA lookup agrees" "$(get "$with" direct-uoa-lookup)" "$CLIENT4"
check "UDP (DPVS UOA) behind the node's DNAT: the flow is the node's, the pod's lookup ENOENT" \
    "$(get "$with" local-uoa-lookup)" ENOENT
# The pod's own view: its counters count its connections, not the node's.
named=7
[ $ipvs = no ] || named=9
check "the pod's toa_stats: its named connections (local, direct, docker, ipvs; v4 and v6; NAT64)" \
    "$(awk '$1 == "syn_recv_sock_toa" {print $NF}' <<<"$pod_stats")" $named
check "the pod's toa_stats: the masqueraded handshakes' options, untrusted" \
    "$(awk '$1 == "toa_untrusted" {print ($NF > 0) ? "counted" : $NF}' <<<"$pod_stats")" counted
# Each namespace's /proc/net/toa_udp lists its own flows: the pod's, those
# to its own IP (direct); the node's, those to its node ports and mappings.
check "the pod's toa_udp: only flows to the pod's own address" \
    "$(awk 'NR > 1 {print ($4 ~ /^(10\.244\.0\.2|\[fd44::2\]):/) ? "pod" : "other: " $4}' <<<"$pod_udp" | sort -u | tr '\n' ' ')" "pod "
check "the node's toa_udp: only flows to the node's addresses" \
    "$(awk 'NR > 1 {print ($4 ~ /^(10\.2\.0\.2|\[fd02::2\]):/) ? "node" : "other: " $4}' <<<"$node_udp" | sort -u | tr '\n' ' ')" "node "
check "the node's toa_stats: the attacker's option counted untrusted" \
    "$(awk '$1 == "toa_untrusted" {print ($NF > 0) ? "counted" : $NF}' <<<"$node_stats")" counted
check "the node's toa_stats: the host-network pod's connections (v4 and v6)" \
    "$(awk '$1 == "syn_recv_sock_toa" {print $NF}' <<<"$node_stats")" 2
check "the host's toa_stats: every namespace's in all_netns" \
    "$(awk '$1 == "syn_recv_sock_toa" {print $NF}' <<<"$host_stats")" $((named + 2))

# Stop everything the topology runs, and the topology itself.
for ns in client balancer node pod; do
    ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null
done
sleep 0.2
for ns in client balancer node pod; do ip netns del $ns 2>/dev/null; done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
