// SPDX-License-Identifier: GPL-2.0
/*
 * Clients named before the socket exists (see syn.rs): the handshake
 * table's memory and locks, the two probes that feed it, and the facts of
 * the packet that creates a child, for handshake.rs.
 *
 *   tcp_conn_request(rsk_ops, af_ops, sk, skb)       every SYN reaching a
 *                                                    listener (IPv4, IPv6)
 *   tcp_check_req(sk, skb, req, fastopen, ...)       a handshake ACK that a
 *                                                    TCP_DEFER_ACCEPT
 *                                                    listener holds back
 *
 * Both are entry hooks (entry.c) that read the packet and call Rust;
 * nothing is allocated per packet. The table (its shape comes from syn_table.rs) is
 * allocated once at load, zeroed; one spinlock per bucket.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/jiffies.h>
#include <linux/kprobes.h>
#include <linux/overflow.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/tcp.h>
#include <linux/unaligned.h>
#include <net/inet_connection_sock.h>
#include <net/request_sock.h>
#include <net/tcp.h>

#include "glue.h"
#include "internal.h"

/* ------------------------------------------------------------------------ */
/* The table.                                                                */

static spinlock_t *toa_syn_locks;
static u8 *toa_syn_slots;
static unsigned int toa_syn_buckets;
static size_t toa_syn_bucket_bytes;

u64 toa_random_u64(void)
{
	return get_random_u64();
}

u64 toa_host_net(void)
{
	return init_net.net_cookie;
}

void *toa_syn_lock(unsigned int bucket, unsigned long *flags)
{
	unsigned long f;

	if (!toa_syn_slots || bucket >= toa_syn_buckets)
		return NULL;
	spin_lock_irqsave(&toa_syn_locks[bucket], f);
	*flags = f;
	return toa_syn_slots + (size_t)bucket * toa_syn_bucket_bytes;
}

void toa_syn_unlock(unsigned int bucket, unsigned long flags)
{
	spin_unlock_irqrestore(&toa_syn_locks[bucket], flags);
}

int toa_syn_table_init(void)
{
	unsigned int i;

	toa_syn_table_shape(&toa_syn_buckets, &toa_syn_bucket_bytes);
	toa_syn_locks = kvcalloc(toa_syn_buckets, sizeof(*toa_syn_locks), GFP_KERNEL);
	/* Zeroed: an all-zero slot is a free one (syn_table.rs). */
	toa_syn_slots = kvzalloc(array_size(toa_syn_buckets, toa_syn_bucket_bytes), GFP_KERNEL);
	if (!toa_syn_locks || !toa_syn_slots) {
		toa_syn_table_exit();
		return -ENOMEM;
	}
	for (i = 0; i < toa_syn_buckets; i++)
		spin_lock_init(&toa_syn_locks[i]);
	return 0;
}

/* Once nothing can use the table any more (hooks and procfs gone). */
void toa_syn_table_exit(void)
{
	kvfree(toa_syn_slots);
	kvfree(toa_syn_locks);
	toa_syn_slots = NULL;
	toa_syn_locks = NULL;
}

/* ------------------------------------------------------------------------ */
/* The facts of a handshake packet (its options, its origin and its         */
/* listener's owner are read by internal.h's inline helpers).               */

/* An IPv4 address in 16 bytes, zero past its 4 (three stores: a memset of
 * the 12 is a rep stos here). */
static __always_inline void toa_ipv4_in16(u8 *dst, __be32 addr)
{
	put_unaligned(addr, (__be32 *)dst);
	put_unaligned(0, (u32 *)(dst + 4));
	put_unaligned(0, (u64 *)(dst + 8));
}

/*
 * Every field of hs from skb and settings (the caller's hs is left
 * uninitialized, so that neither this nor the kernel's zeroing of locals
 * costs a rep stos of its 88 bytes; Rust reads no padding). An IPv4
 * packet's addresses are zero past their 4 bytes (the tables' keys hash
 * all 16).
 */
static __always_inline void toa_handshake_fill(struct toa_handshake *hs, const struct sk_buff *skb,
					       const struct net *net,
					       const struct toa_settings *settings)
{
	const struct tcphdr *th = tcp_hdr(skb);
	size_t len;

	hs->local = toa_skb_local(skb);
	hs->options = toa_skb_options(skb, &len);
	hs->options_len = len;
	hs->syn = th->syn;
	hs->v6 = skb->protocol == htons(ETH_P_IPV6);
	hs->syncookie = false;
	hs->owner_clears = false;
	/* The source as the backend sees it: the balancer (trusted_sources). */
	if (hs->v6) {
		memcpy(hs->saddr, &ipv6_hdr(skb)->saddr, 16);
		memcpy(hs->daddr, &ipv6_hdr(skb)->daddr, 16);
	} else {
		toa_ipv4_in16(hs->saddr, ip_hdr(skb)->saddr);
		toa_ipv4_in16(hs->daddr, ip_hdr(skb)->daddr);
	}
	memcpy(hs->sport, &th->source, 2);
	memcpy(hs->dport, &th->dest, 2);
	hs->isn = ntohl(th->seq);
	hs->now_ms = toa_now_ms();
	hs->net = net->net_cookie;
	hs->settings = settings;
}

/*
 * The packets' facts for Rust, on the paths that may record a client. Each
 * is out of line: the kernel zeroes a function's locals at its entry
 * (CONFIG_INIT_STACK_ALL_ZERO, Debian's default), and the 88 bytes of a
 * toa_handshake would cost every SYN and ACK that leaves early about 25
 * instructions.
 */
static noinline notrace void toa_syn_recv_record(struct sock *child, const struct sk_buff *skb,
						 const struct request_sock *req,
						 const struct toa_settings *settings,
						 bool syncookie)
{
	struct toa_handshake hs __uninitialized;

	BUILD_BUG_ON(sizeof(hs) != 88);
	toa_handshake_fill(&hs, skb, sock_net(child), settings);
	hs.syncookie = syncookie;
	if (req) {
		hs.isn = tcp_rsk(req)->rcv_isn;
		hs.owner_clears = toa_listener_owner_clears(req->rsk_listener);
	}
	toa_on_child(child, &hs);
}

/* The packet skb made syn_recv_sock create child for request req (the
 * request socket of the normal path, of a syncookie, or of a Fast Open SYN);
 * checked: toa_syn_recv_quick() said no at the call's entry. */
void notrace toa_syn_recv_child(struct sock *child, const struct sk_buff *skb,
				const struct request_sock *req, bool checked)
{
	bool syncookie = toa_req_syncookie(skb, req);

	/* Most children: nothing names a client, counted and done (at the
	 * entry of syn_recv_sock already, if checked). */
	if (!checked && toa_child_quick_counted(child, skb, syncookie))
		return;
	toa_syn_recv_record(child, skb, req, toa_net_settings(sock_net(child)), syncookie);
}

/* ------------------------------------------------------------------------ */
/* The entry hooks.                                                          */

/* A SYN (req NULL) or an ACK held back for request req, to listener sk,
 * that may name a client: kept in the handshake table for the child (out
 * of line: see toa_syn_recv_record). */
static noinline notrace void toa_request_record(const struct sock *sk, const struct sk_buff *skb,
						const struct request_sock *req)
{
	struct toa_handshake hs __uninitialized;

	toa_handshake_fill(&hs, skb, sock_net(sk), toa_net_settings(sock_net(sk)));
	/* A SYN's sequence is the client's ISN; the request knows it. */
	if (req)
		hs.isn = tcp_rsk(req)->rcv_isn;
	toa_on_request(&hs);
}

static void notrace toa_conn_request_entry(unsigned long rsk_ops, unsigned long af_ops,
					   unsigned long sk, unsigned long skb_arg)
{
	const struct sk_buff *skb = (const struct sk_buff *)skb_arg;
	const u8 *options;
	size_t len;

	if (!skb || !sk)
		return;
	/* Most SYNs: no option toa could take, nothing to keep.
	 * tcp_rcv_state_process() calls conn_request for SYNs only. */
	options = toa_skb_options(skb, &len);
	if (!toa_options_may_name(options, len) || !tcp_hdr(skb)->syn)
		return;
	toa_request_record((const struct sock *)sk, skb, NULL);
}

/* The ACK tcp_check_req() is about to drop because the listener defers
 * accepting until data arrives: the same test as the kernel's, plus the
 * proof that the peer saw our SYN-ACK (it acknowledges our ISN). */
static void notrace toa_check_req_entry(unsigned long sk_arg, unsigned long skb_arg,
				unsigned long req_arg, unsigned long fastopen_arg)
{
	const struct sock *sk = (const struct sock *)sk_arg;
	const struct sk_buff *skb = (const struct sk_buff *)skb_arg;
	const struct request_sock *req = (const struct request_sock *)req_arg;
	bool fastopen = (u8)fastopen_arg;
	const struct tcp_request_sock *treq;
	const struct tcphdr *th;
	const u8 *options;
	size_t len;
	u8 defer;

	/* With fastopen set, sk is the Fast Open child, not a listener. */
	if (fastopen || !sk || !skb || !req)
		return;
	defer = READ_ONCE(inet_csk(sk)->icsk_accept_queue.rskq_defer_accept);
	if (!defer || req->num_timeout >= defer)
		return;
	th = tcp_hdr(skb);
	treq = tcp_rsk(req);
	if (!th->ack || th->syn || th->rst || th->fin ||
	    TCP_SKB_CB(skb)->seq != treq->rcv_isn + 1 ||
	    TCP_SKB_CB(skb)->end_seq != treq->rcv_isn + 1 ||
	    TCP_SKB_CB(skb)->ack_seq != treq->snt_isn + 1)
		return;
	options = toa_skb_options(skb, &len);
	if (!toa_options_may_name(options, len))
		return;
	toa_request_record(sk, skb, req);
}

enum toa_syn_hook {
	TOA_CONN_REQUEST,
	TOA_CHECK_REQ,
	TOA_NR_SYN_HOOKS,
};

/* Entry hooks (entry.c): ftrace_ops with the default hooks, kprobes
 * with hook=kretprobe/fprobe. */
TOA_ENTRY_DIRECT(toa_conn_request_entry);
/* Its trampoline lets the ACKs of listeners that do not defer (nearly all)
 * and Fast Open children go at once: toa_check_req_entry's first tests. */
TOA_DIRECT_OFFSETS()
TOA_ENTRY_DIRECT_UNLESS(toa_check_req_entry, TOA_ASM_SKIP_UNLESS_DEFERRING);

static struct toa_entry_hook toa_syn_hooks[TOA_NR_SYN_HOOKS] = {
	[TOA_CONN_REQUEST] = {
		.symbol = "tcp_conn_request",
		.handler = toa_conn_request_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_conn_request_entry),
	},
	[TOA_CHECK_REQ] = {
		.symbol = "tcp_check_req",
		.handler = toa_check_req_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_check_req_entry),
	},
};

unsigned long toa_syn_probes_missed(void)
{
	unsigned long missed = 0;
	size_t i;

	for (i = 0; i < TOA_NR_SYN_HOOKS; i++)
		missed += toa_entry_hook_missed(&toa_syn_hooks[i]);
	return missed;
}

/* Neither hook is essential: without one, clients named only in a SYN (or
 * only in a deferred ACK) are not seen, and the load says so. */
int toa_syn_hooks_register(void)
{
	size_t i;
	int err;

	for (i = 0; i < TOA_NR_SYN_HOOKS; i++) {
		err = toa_entry_hook_register(&toa_syn_hooks[i]);
		if (err)
			pr_warn("cannot hook %s (%d): clients named only %s are not seen\n",
				toa_syn_hooks[i].symbol, err,
				i == TOA_CONN_REQUEST ? "in a SYN" : "in a deferred ACK");
	}
	return 0;
}

/* Returns once no handler of these hooks runs anywhere. */
void toa_syn_hooks_unregister(void)
{
	size_t i;

	for (i = 0; i < TOA_NR_SYN_HOOKS; i++)
		toa_entry_hook_unregister(&toa_syn_hooks[i]);
}
