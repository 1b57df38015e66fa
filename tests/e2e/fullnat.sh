#!/usr/bin/env bash
# The real path, end to end, inside a test VM (run by scripts/vm.sh):
#
#   client ns --veth-- balancer ns --veth-- backend ns
#   10.1.0.2           10.1.0.1 | 10.2.0.1   10.2.0.2
#   fd01::2            fd01::1  | fd02::1    fd02::2
#
# The balancer does FULLNAT with nftables (DNAT to the backend, SNAT to its
# own address, real conntrack) and toa-balancer puts the client into a TCP
# option (NFQUEUE); for IPv6 clients of the IPv4 backend it runs a small
# NAT64 (64:ff9b::/96 -> pool 100.64.0.1, then SNAT like the rest). The
# backend runs unmodified
# servers: Debian's nginx (access log: $remote_addr), Python's http.server,
# and examples/toa_server.c (NAT64 lookup). The clients are curl and Python.
#
# UDP (with C_UDP_SERVER): toa-balancer relays UDP as FULLNAT does (from
# the balancer's 10.2.0.1 / fd02::1 and a port per client) and names each
# client the way LVS does (an ICMP announcement) or DPVS does (a UOA as an
# IPv4 option, or in an option protocol header over IPv4 and IPv6, and
# NAT64); the backend runs Debian's dnsmasq (logging the querier) and
# examples/toa_udp_server.c (an echo server printing the source and the
# UOA lookup); Python clients query and wait for the answers.
#
# Everything runs twice, without and with toa.ko, and the script prints
# what each server saw side by side, one ok/not ok line per expectation and
# a last line `N passed, M failed`.
#
#   fullnat.sh LOAD_CMD UNLOAD_CMD BALANCER C_SERVER [C_UDP_SERVER]
# e.g. fullnat.sh "insmod /path/toa.ko" "rmmod toa" ./toa-balancer ./toa_server_c ./toa_udp_server
set -uo pipefail

load=${1:?usage: fullnat.sh LOAD_CMD UNLOAD_CMD BALANCER C_SERVER}
unload=${2:?}
balancer=${3:?}
c_server=${4:?}
c_udp_server=${5:-}
work=$(mktemp -d /tmp/toa-e2e.XXXXXX)
# The balancer's addresses on the backend's side: the only trusted sources.
TRUSTED="10.2.0.1/32 fd02::1/128"
passed=0 failed=0

check() { # check NAME GOT WANT
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1)); echo "ok - $1"
    else
        failed=$((failed + 1)); echo "not ok - $1: got '$2', want '$3'"
    fi
}

c() { ip netns exec client "$@"; }
lb() { ip netns exec balancer "$@"; }
be() { ip netns exec backend "$@"; }

setup() {
    for ns in client balancer backend; do ip netns add $ns; done
    ip link add c0 netns client type veth peer name b0 netns balancer
    ip link add b1 netns balancer type veth peer name s0 netns backend
    c ip addr add 10.1.0.2/24 dev c0; c ip addr add fd01::2/64 dev c0 nodad
    lb ip addr add 10.1.0.1/24 dev b0; lb ip addr add fd01::1/64 dev b0 nodad
    lb ip addr add 10.2.0.1/24 dev b1; lb ip addr add fd02::1/64 dev b1 nodad
    be ip addr add 10.2.0.2/24 dev s0; be ip addr add fd02::2/64 dev s0 nodad
    for ns in client balancer backend; do ip netns exec $ns ip link set lo up; done
    c ip link set c0 up; lb ip link set b0 up; lb ip link set b1 up; be ip link set s0 up
    c ip route add default via 10.1.0.1; c ip -6 route add default via fd01::1
    be ip route add default via 10.2.0.1; be ip -6 route add default via fd02::1
    lb sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

    # FULLNAT: the client's packets to the virtual services are queued to
    # toa-balancer after conntrack (-200) and before DNAT (-100), then
    # DNATed to the backend and SNATed to the balancer's own address.
    lb nft -f - <<'EOF' || return 1
table inet fullnat {
    chain toa {
        type filter hook prerouting priority -150; policy accept;
        iifname "b0" ip daddr 10.1.0.1 tcp dport { 80, 8000 } queue num 0 bypass
        iifname "b0" ip6 daddr fd01::1 tcp dport 80 queue num 0 bypass
    }
    chain to_backend {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr 10.1.0.1 tcp dport 80 dnat ip to 10.2.0.2:80
        ip daddr 10.1.0.1 tcp dport 8000 dnat ip to 10.2.0.2:8000
        ip6 daddr fd01::1 tcp dport 80 dnat ip6 to [fd02::2]:80
    }
    chain from_balancer {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "b1" ip daddr 10.2.0.2 snat ip to 10.2.0.1
        oifname "b1" ip6 daddr fd02::2 snat ip6 to fd02::1
    }
}
EOF
    lb "$balancer" nfqueue 0 254 >"$work/balancer.log" 2>&1 &
    lb "$balancer" nat64 nat64 64:ff9b:: 100.64.0.1 254 >"$work/nat64.log" 2>&1 &
    for _ in $(seq 50); do lb ip link show nat64 >/dev/null 2>&1 && break; sleep 0.1; done
    lb ip link set nat64 up
    lb ip -6 route add 64:ff9b::/96 dev nat64
    lb ip route add 100.64.0.1/32 dev nat64

    # The backend's unmodified servers.
    mkdir -p "$work/nginx"
    cat >"$work/nginx.conf" <<EOF
user root;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events {}
http {
    log_format toa '\$remote_addr';
    access_log $work/access.log toa;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    server {
        listen 10.2.0.2:80;
        listen [fd02::2]:80;
        location / { return 200 "hello\n"; }
    }
}
EOF
    be nginx -c "$work/nginx.conf" -p "$work/nginx" </dev/null >/dev/null 2>&1 || return 1
    be python3 -u -m http.server 8000 --bind 10.2.0.2 2>>"$work/python.log" >/dev/null &
    for _ in $(seq 100); do
        be ss -ltn | grep -q ':8000 ' && be ss -ltn | grep -q ':80 ' && break
        sleep 0.1
    done
    [ -z "$c_udp_server" ] || udp_setup
}

# UDP: the relays on the balancer (VIP port -> backend, how the client is
# named), and Debian's dnsmasq on the backend answering toa.test.
udp_setup() {
    lb "$balancer" udp icmp 10.1.0.1:53 10.2.0.2:53 10.2.0.1 >"$work/udp-dns.log" 2>&1 &
    lb "$balancer" udp ipo 10.1.0.1:7001 10.2.0.2:7001 10.2.0.1 >"$work/udp-ipo.log" 2>&1 &
    lb "$balancer" udp opp 10.1.0.1:7002 10.2.0.2:7002 10.2.0.1 >"$work/udp-opp.log" 2>&1 &
    lb "$balancer" udp opp '[fd01::1]:7003' '[fd02::2]:7003' fd02::1 >"$work/udp-opp6.log" 2>&1 &
    lb "$balancer" udp opp '[fd01::1]:7004' 10.2.0.2:7004 10.2.0.1 >"$work/udp-nat64.log" 2>&1 &
    be dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
        --listen-address=10.2.0.2 --bind-interfaces --port=53 --user=root \
        --pid-file="$work/dnsmasq.pid" --log-queries --log-facility="$work/dnsmasq.log" \
        --address=/toa.test/192.0.2.53 >/dev/null 2>&1 &
    for _ in $(seq 100); do
        be ss -lun | grep -q '10.2.0.2:53 ' && lb ss -lun | grep -q ':7004 ' && break
        sleep 0.1
    done
}

# The answer to an A query for toa.test from the client to SERVER, or "-".
dns_query() {
    c python3 - "$1" <<'EOF2'
import socket, struct, sys
q = struct.pack("!HHHHHH", 0x70a, 0x0100, 1, 0, 0, 0) + b"\x03toa\x04test\x00" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
try:
    s.sendto(q, (sys.argv[1], 53))
    r, _ = s.recvfrom(512)
    print(".".join(str(b) for b in r[-4:]))
except OSError:
    print("-")
EOF2
}

# A datagram from the client to HOST PORT, sent up to three times as a UDP
# client would (a loaded test machine may be slow to start a server):
# "echo" if one came back, or "-".
udp_echo() {
    c python3 - "$1" "$2" <<'EOF2'
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
answer = "-"
for _ in range(3):
    try:
        s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
        answer = "echo" if s.recvfrom(512)[0] == b"hello" else "wrong"
        break
    except OSError:
        pass
print(answer)
EOF2
}

# The C echo server on the backend for one datagram: what it printed.
udp_server_line() { # udp_server_line TAG ADDR PORT CLIENT_HOST
    local log="$work/udp-$1.log" pid
    be timeout 20 "$c_udp_server" "$2" "$3" 1 recvfrom >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q ready "$log" 2>/dev/null && break; sleep 0.1; done
    echo "$1-echo $(udp_echo "$4" "$3")"
    # $! is the shell running `ip netns exec`, not the server: stop the
    # server itself (one that received nothing is still waiting), so that
    # the next round's server can bind the port and writes its own log.
    pkill -f -- "$c_udp_server $2 $3 1 recvfrom" 2>/dev/null
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    local line
    line=$(grep '^from=' "$log" | head -n1)
    echo "$1-from $(sed -E 's/.*from=([^ ]*).*/\1/' <<<"$line" | sed -E 's/:[0-9]+$//; s/^$/-/')"
    echo "$1-uoa $(sed -E 's/.*uoa=([^ ]*).*/\1/' <<<"$line" | sed -E 's/:[0-9]+$//; s/^$/-/')"
}

udp_round() {
    : >"$work/dnsmasq.log"
    echo "dns-answer $(dns_query 10.1.0.1)"
    sleep 0.2
    echo "dns-querier $(awk '/query\[A\] toa.test from/ {print $NF}' "$work/dnsmasq.log" | tail -n1 | sed 's/^$/-/')"
    udp_server_line udp-ipo 10.2.0.2 7001 10.1.0.1
    udp_server_line udp-opp 10.2.0.2 7002 10.1.0.1
    udp_server_line udp-opp6 fd02::2 7003 fd01::1
    udp_server_line udp-nat64 10.2.0.2 7004 fd01::1
}

# One round of clients; prints "service seen" lines.
round() {
    local tag=$1
    : >"$work/access.log"; : >"$work/python.log"
    c curl -s -o /dev/null --max-time 5 http://10.1.0.1/ || echo "curl v4 failed" >&2
    echo "nginx-v4 $(tail -n1 "$work/access.log")"
    : >"$work/access.log"
    c curl -s -o /dev/null --max-time 5 -g 'http://[fd01::1]/' || echo "curl v6 failed" >&2
    echo "nginx-v6 $(tail -n1 "$work/access.log")"
    c python3 -c 'import urllib.request; urllib.request.urlopen("http://10.1.0.1:8000/", timeout=5).read()' \
        || echo "python client failed" >&2
    sleep 0.2
    echo "python $(awk '/GET/ {print $1}' "$work/python.log" | tail -n1)"
    # NAT64: an IPv6 client, through the translator, to the IPv4 backend.
    be timeout 10 "$c_server" 10.2.0.2 8080 1 >"$work/c-$tag.log" &
    local pid=$!
    for _ in $(seq 50); do grep -q ready "$work/c-$tag.log" 2>/dev/null && break; sleep 0.1; done
    c python3 -c 'import socket; s = socket.create_connection(("64:ff9b::a02:2", 8080), timeout=5); s.close()' \
        || echo "NAT64 client failed" >&2
    wait $pid
    local line
    line=$(grep '^accept=' "$work/c-$tag.log")
    echo "nat64-getpeername $(sed -E 's/.*getpeername=([^ ]*).*/\1/' <<<"$line" | sed -E 's/:[0-9]+$//')"
    echo "nat64-lookup $(sed -E 's/.*lookup=([^ ]*).*/\1/' <<<"$line" | sed -E 's/:[0-9]+$//')"
    [ -z "$c_udp_server" ] || udp_round
}

if ! setup; then
    echo "not ok - the topology could not be set up"
    echo "$passed passed, $((failed + 1)) failed"
    exit 1
fi
$unload 2>/dev/null
without=$(round without)
$load || { echo "not ok - load toa: $load"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
# Name the balancer, as the README's install steps do: its addresses as
# the backend sees them (after its SNAT; NAT64 clients come from 10.2.0.1
# too). Until then toa takes no client from anyone.
sysctl -qw net.toa.trusted_sources="$TRUSTED" \
    || { echo "not ok - set net.toa.trusted_sources"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
with=$(round with)
$unload

echo
printf '%-20s %-22s %-22s\n' "server" "without toa.ko" "with toa.ko"
paste -d' ' <(echo "$without") <(echo "$with" | cut -d' ' -f2-) | while read -r s a b; do
    printf '%-20s %-22s %-22s\n' "$s" "${a:--}" "${b:--}"
done
echo

get() { awk -v k="$2" '$1 == k {print $2}' <<<"$1"; }
check "nginx, IPv4 client, without toa: the balancer" "$(get "$without" nginx-v4)" 10.2.0.1
check "nginx, IPv4 client, with toa: the client" "$(get "$with" nginx-v4)" 10.1.0.2
check "nginx, IPv6 client, without toa: the balancer" "$(get "$without" nginx-v6)" fd02::1
check "nginx, IPv6 client, with toa: the client" "$(get "$with" nginx-v6)" fd01::2
check "python http.server, without toa: the balancer" "$(get "$without" python)" 10.2.0.1
check "python http.server, with toa: the client" "$(get "$with" python)" 10.1.0.2
check "NAT64, C server getpeername, without toa: the balancer" "$(get "$without" nat64-getpeername)" 10.2.0.1
check "NAT64, C server getpeername, with toa: still the balancer (an IPv4 socket)" "$(get "$with" nat64-getpeername)" 10.2.0.1
check "NAT64, C server TOA_SO_GET_LOOKUP, without toa: ENOPROTOOPT" "$(get "$without" nat64-lookup)" ENOPROTOOPT
check "NAT64, C server TOA_SO_GET_LOOKUP, with toa: the IPv6 client" "$(get "$with" nat64-lookup)" "[fd01::2]"
if [ -n "$c_udp_server" ]; then
    check "UDP, dnsmasq behind an LVS announcement, without toa: answered" "$(get "$without" dns-answer)" 192.0.2.53
    check "UDP, dnsmasq, without toa: logs the balancer" "$(get "$without" dns-querier)" 10.2.0.1
    check "UDP, dnsmasq, with toa: answered through the balancer" "$(get "$with" dns-answer)" 192.0.2.53
    check "UDP, dnsmasq, with toa: logs the client" "$(get "$with" dns-querier)" 10.1.0.2
    check "UDP, DPVS ipo, without toa: the balancer" "$(get "$without" udp-ipo-from)" 10.2.0.1
    check "UDP, DPVS ipo, with toa: recvfrom sees the client" "$(get "$with" udp-ipo-from)" 10.1.0.2
    check "UDP, DPVS ipo, with toa: the UOA lookup agrees" "$(get "$with" udp-ipo-uoa)" 10.1.0.2
    check "UDP, DPVS ipo, with toa: the echo reaches the client" "$(get "$with" udp-ipo-echo)" echo
    check "UDP, DPVS opp, without toa: lost (no protocol 248)" "$(get "$without" udp-opp-echo)" -
    check "UDP, DPVS opp, with toa: recvfrom sees the client" "$(get "$with" udp-opp-from)" 10.1.0.2
    check "UDP, DPVS opp, with toa: the echo reaches the client" "$(get "$with" udp-opp-echo)" echo
    check "UDP, DPVS opp over IPv6, with toa: the client" "$(get "$with" udp-opp6-from)" "[fd01::2]"
    check "UDP, DPVS opp over IPv6, with toa: the echo reaches the client" "$(get "$with" udp-opp6-echo)" echo
    check "UDP, DPVS NAT64, with toa: recvfrom sees the balancer (an IPv4 socket)" "$(get "$with" udp-nat64-from)" 10.2.0.1
    check "UDP, DPVS NAT64, with toa: the UOA lookup gives the IPv6 client" "$(get "$with" udp-nat64-uoa)" "[fd01::2]"
    check "UDP, DPVS NAT64, with toa: the echo reaches the client" "$(get "$with" udp-nat64-echo)" echo
fi

# Stop everything the topology runs, and the topology itself.
for ns in client balancer backend; do
    ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null
done
sleep 0.2
for ns in client balancer backend; do ip netns del $ns 2>/dev/null; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
