// SPDX-License-Identifier: GPL-2.0
/*
 * A sockops program as socket-acceleration users run one (Cilium,
 * Merbridge): every passively established TCP socket goes into a
 * BPF_MAP_TYPE_SOCKHASH. tests/e2e/sockmap.sh loads it with bpftool and
 * reads toa_results: [0] sockets inserted, [1] refused with EBUSY (their
 * sk_user_data was taken), [2] refused otherwise.
 *
 *   clang -target bpf -O2 -g -c tests/bpf/sockmap.bpf.c
 */
#include "toa_bpf.h"

#define EBUSY 16

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} toa_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} toa_results SEC(".maps");

static long (*bpf_sock_hash_update)(struct bpf_sock_ops *skops, void *map, void *key,
				    __u64 flags) = (void *)BPF_FUNC_sock_hash_update;

SEC("sockops")
int toa_sockops(struct bpf_sock_ops *skops)
{
	__u64 key, *n;
	__u32 slot;
	long rc;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	/* The connection's ends (a collision only replaces an entry). */
	key = ((__u64)skops->remote_ip4 << 32) ^ ((__u64)skops->remote_ip6[3] << 16) ^
	      skops->remote_port ^ ((__u64)skops->local_port << 48);
	rc = bpf_sock_hash_update(skops, &toa_socks, &key, BPF_ANY);
	slot = rc == 0 ? 0 : rc == -EBUSY ? 1 : 2;
	n = bpf_map_lookup_elem(&toa_results, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
