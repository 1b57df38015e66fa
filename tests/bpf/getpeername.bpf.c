// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup getpeername programs, of the kind socket load balancers attach
 * (they translate a service's address back in getpeername()).
 * tests/e2e/sockmap.sh attaches both to the root cgroup beside its sockops
 * program, so every getpeername() and accept() of the FULLNAT rounds runs
 * them inside the kernel's inet_getname / inet6_getname: toa must then let
 * the kernel's function answer and rewrite after it (hook=direct answers
 * in its place only while no such program is attached). They change
 * nothing and count their calls in toa_getpeername_calls: [0] IPv4,
 * [1] IPv6.
 *
 *   clang -target bpf -O2 -g -c tests/bpf/getpeername.bpf.c
 */
#include "toa_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} toa_getpeername_calls SEC(".maps");


static __attribute__((always_inline)) int toa_count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&toa_getpeername_calls, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 1;
}

SEC("cgroup/getpeername4")
int toa_getpeername4(struct bpf_sock_addr *ctx)
{
	return toa_count(0);
}

SEC("cgroup/getpeername6")
int toa_getpeername6(struct bpf_sock_addr *ctx)
{
	return toa_count(1);
}

char _license[] SEC("license") = "GPL";
