// SPDX-License-Identifier: GPL-2.0
/*
 * UDP clients (src/udp/mod.rs): the flow table's memory and locks, each
 * network namespace's UDP state and which hooks serve it, the packet
 * surgery both kinds of hook do, the netfilter hooks, the UOA_SO_GET_LOOKUP
 * getsockopt and /proc/net/toa_udp. What a packet is and what to do with it
 * is decided on the Rust side (udp/packet.rs); this file reads packets,
 * writes them and keeps memory and locks.
 *
 * A namespace that trusts a balancer is served by one of two sets of
 * hooks (toa_udp_net_sync):
 *
 * - one that does not forward (most backends, a container's namespace):
 *   the protocol-level hooks of udp_entry.c, which only UDP, ICMP and
 *   protocol 248 packets pass, and only on their way to or from a local
 *   socket; a TCP connection passes none of them;
 * - one that forwards (a node with pods or containers behind NAT), or every
 *   one with udp_hooks=netfilter: its own copy of the netfilter hooks,
 *   which every packet of the namespace passes:
 *
 *   PRE_ROUTING  IPv4, IPv6   after defragmentation, before the raw table
 *                             and conntrack: announcements (ICMP), UOA
 *                             (IPv4 options, option protocol 248 turned
 *                             back into UDP), the client shown as source
 *                             (so that a pod behind the node's DNAT sees
 *                             it, and conntrack and the rules with it)
 *   POST_ROUTING IPv4, IPv6   after conntrack, NAT and the filter table:
 *                             a datagram to a client goes to the balancer
 *                             (LIP:lport) and is routed again, whether a
 *                             local socket sent it or the namespace
 *                             forwards it (a pod's reply behind the node's
 *                             DNAT, once conntrack has undone the DNAT: only
 *                             a reply of a connection conntrack knows)
 *
 * Nothing that arrives on the loopback device, or carries one of the
 * namespace's own addresses as its source, names a client or is shown as
 * one: the host's own users are not the balancer. An announcement or a
 * UOA addressed to another host (a pod the namespace routes to) is left
 * to the namespace that receives it: flows are kept where the datagrams
 * are addressed, before any DNAT there, so that the replies find them.
 *
 * The hooks find the namespace's state without a lookup (the netfilter
 * hooks' private pointer, net_generic() for the others) and return after
 * a few loads for anything that is not UDP, ICMP or protocol 248, for UDP
 * when the namespace had no flow within the timeout, and for datagrams
 * whose backend port never had a flow (a bitmap per namespace).
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/icmp.h>
#include <linux/inetdevice.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/jiffies.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/proc_fs.h>
#include <linux/rcupdate.h>
#include <linux/seq_file.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/udp.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>
#include <net/checksum.h>
#include <net/ip.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/addrconf.h>
#include <net/route.h>

#include <uapi/linux/toa.h>

#include "glue.h"
#include "internal.h"
#include "udp_net.h"

/* Most option protocol bytes read: the fixed header and 40 of options. */
#define TOA_OPP_MAX 44
/* Most ICMP bytes read: an announcement is at most 24 (and one more says
 * it is longer). */
#define TOA_ICMP_MAX 25

/* ------------------------------------------------------------------------ */
/* The flow table: buckets and their locks, published with RCU. Replaced    */
/* whole (in process context) when udp_max_flows is written.                */

struct toa_udp_table {
	void *buckets;
	spinlock_t *locks;
	unsigned int nbuckets;
};

static struct toa_udp_table __rcu *toa_udp_tab;
/* Whether module init allocated the table (parameters come before it). */
static bool toa_udp_ready;

/* Fast-path copies of udp/config.rs, refreshed on every write. */
unsigned long toa_udp_live_jiffies __read_mostly = 331 * HZ;

/* Serializes table replacements (a sysctl write, unload) and guards
 * toa_udp_hooked. */
static DEFINE_MUTEX(toa_udp_table_mutex);
/* Whether toa_udp_register() registered the namespaces' hooks (and their
 * data): written under toa_udp_table_mutex. */
static bool toa_udp_hooked;
/* The host's udp_rewrite, for namespaces that follow it. */
bool toa_udp_host_rewrite __read_mostly = true;
static void toa_udp_rewrite_changed(const struct net *net);

/* A setting was written (config mutex held): net's, or the host's only. */
void toa_udp_config_changed(const struct net *net)
{
	if (net) {
		mutex_lock(&toa_udp_table_mutex);
		if (toa_udp_hooked)
			toa_udp_rewrite_changed(net);
		mutex_unlock(&toa_udp_table_mutex);
	}
	/* A second more than the timeout: flows are refreshed lazily, at
	 * most once a second. */
	WRITE_ONCE(toa_udp_live_jiffies, ((unsigned long)toa_udp_config_timeout() + 1) * HZ);
}

const void *toa_udp_table(void **buckets, unsigned int *nbuckets)
{
	const struct toa_udp_table *t = rcu_dereference(toa_udp_tab);

	if (!t)
		return NULL;
	*buckets = t->buckets;
	*nbuckets = t->nbuckets;
	return t;
}

void toa_udp_lock(const void *table, unsigned int bucket)
{
	const struct toa_udp_table *t = table;

	spin_lock_bh(&t->locks[bucket]);
}

void toa_udp_unlock(const void *table, unsigned int bucket)
{
	const struct toa_udp_table *t = table;

	spin_unlock_bh(&t->locks[bucket]);
}

static void toa_udp_table_free(struct toa_udp_table *t)
{
	if (!t)
		return;
	kvfree(t->buckets);
	kvfree(t->locks);
	kfree(t);
}

/* A zeroed table for `flows` flows (shape from udp/flows.rs), or NULL. */
static struct toa_udp_table *toa_udp_table_alloc(unsigned long flows)
{
	struct toa_udp_table *t;
	size_t bucket_bytes;
	unsigned int i;

	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t)
		return NULL;
	toa_udp_table_shape(flows, &t->nbuckets, &bucket_bytes);
	t->locks = kvcalloc(t->nbuckets, sizeof(*t->locks), GFP_KERNEL);
	/* Zeroed: an all-zero bucket is an empty one (udp/flow_table.rs). */
	t->buckets = kvzalloc(array_size(t->nbuckets, bucket_bytes), GFP_KERNEL);
	if (!t->locks || !t->buckets || !IS_ALIGNED((unsigned long)t->buckets, 64)) {
		toa_udp_table_free(t);
		return NULL;
	}
	for (i = 0; i < t->nbuckets; i++)
		spin_lock_init(&t->locks[i]);
	return t;
}

/*
 * Make the table hold `flows` flows (0: no table): a new one is allocated
 * and published, and once no hook can be using the old one any more its
 * live flows move over and it is freed. Process context.
 */
int toa_udp_resize(unsigned long flows)
{
	struct toa_udp_table *old, *new = NULL;

	if (!READ_ONCE(toa_udp_ready))
		return 0;	/* a module parameter: init allocates */
	if (flows) {
		new = toa_udp_table_alloc(flows);
		if (!new)
			return -ENOMEM;
	}
	mutex_lock(&toa_udp_table_mutex);
	if (!toa_udp_ready) {
		/* A module parameter before init (init allocates), or a write
		 * racing the unload: nothing to replace. */
		mutex_unlock(&toa_udp_table_mutex);
		toa_udp_table_free(new);
		return 0;
	}
	old = rcu_replace_pointer(toa_udp_tab, new, lockdep_is_held(&toa_udp_table_mutex));
	synchronize_rcu();
	if (old && new) {
		rcu_read_lock();
		toa_udp_migrate(old, old->buckets, old->nbuckets, new, new->buckets,
				new->nbuckets, toa_now_ms());
		rcu_read_unlock();
	} else if (old) {
		toa_udp_dropped_all();
	}
	mutex_unlock(&toa_udp_table_mutex);
	toa_udp_table_free(old);
	return 0;
}

int toa_udp_table_init(void)
{
	unsigned long flows = toa_udp_config_max_flows();
	struct toa_udp_table *t = NULL;

	toa_udp_config_changed(NULL);
	if (flows) {
		t = toa_udp_table_alloc(flows);
		if (!t)
			return -ENOMEM;
	}
	mutex_lock(&toa_udp_table_mutex);
	rcu_assign_pointer(toa_udp_tab, t);
	WRITE_ONCE(toa_udp_ready, true);
	mutex_unlock(&toa_udp_table_mutex);
	return 0;
}

/* Once no hook, getsockopt, probe, procfs reader or sysctl can use it. */
void toa_udp_table_exit(void)
{
	struct toa_udp_table *t;

	mutex_lock(&toa_udp_table_mutex);
	t = rcu_replace_pointer(toa_udp_tab, NULL, lockdep_is_held(&toa_udp_table_mutex));
	WRITE_ONCE(toa_udp_ready, false);
	mutex_unlock(&toa_udp_table_mutex);
	synchronize_rcu();
	toa_udp_table_free(t);
}

/* ------------------------------------------------------------------------ */
/* Per network namespace: its hooks, and whether it had a flow lately.      */

/* Every namespace's toa_udp_net, under toa_udp_table_mutex. */
static LIST_HEAD(toa_udp_nets);

unsigned int toa_udp_net_id __read_mostly;
unsigned long toa_udp_ports_seen[BITS_TO_LONGS(TOA_UDP_PORT_BITS)];

static void toa_udp_mode_check(struct toa_udp_net *pn);

/* A flow was recorded or refreshed: the namespace is live (one store a
 * second at most, as flows are refreshed). */
static void toa_udp_activity(struct toa_udp_net *pn, const struct toa_udp_verdict *v)
{
	unsigned long now = jiffies;

	if (v->recorded) {
		unsigned int bit = get_unaligned_be16(v->rsport) % TOA_UDP_PORT_BITS;

		if (!test_bit(bit, pn->ports))
			set_bit(bit, pn->ports);
		toa_udp_port_seen(get_unaligned_be16(v->rsport));
		toa_udp_mode_check(pn);
	}
	if (!v->active)
		return;
	if (!READ_ONCE(pn->had_flow) || time_after(now, READ_ONCE(pn->last_active) + HZ / 2)) {
		WRITE_ONCE(pn->last_active, now);
		smp_store_release(&pn->had_flow, true);
	}
}

static void toa_udp_packet_init(struct toa_udp_packet *p, const struct toa_udp_net *pn, bool lo)
{
	memset(p, 0, sizeof(*p));
	p->net = pn->cookie;
	p->settings = pn->settings;
	p->now_ms = toa_now_ms();
	p->live = toa_udp_live(pn);
	p->local = lo;
}

/*
 * Whether a packet arrived on the loopback device: every packet a local
 * process sends to a local address does (an unprivileged ping socket's
 * echo request among them), and none from another host or namespace.
 */
static __always_inline bool toa_udp_from_lo(const struct nf_hook_state *state)
{
	return state->in && (state->in->flags & IFF_LOOPBACK);
}

/*
 * Whether the source of a packet that may name a client is one of the
 * namespace's own addresses (which a packet from elsewhere only carries if
 * it is forged: the kernel drops most of them later, as martians). Asked
 * only for such packets, not for every datagram.
 */
static bool toa_udp_source_local4(struct net *net, __be32 saddr)
{
	return inet_addr_type(net, saddr) == RTN_LOCAL;
}

static bool toa_udp_source_local6(struct net *net, const struct in6_addr *saddr)
{
	return ipv6_chk_addr(net, saddr, NULL, 0);
}

/*
 * Whether an announcement or a UOA is addressed to another host: one the
 * namespace routes to (a pod behind a node) keeps its flow there, with the
 * addresses its sockets see, and the namespace leaves it alone.
 */
static bool toa_udp_foreign4(struct net *net, __be32 daddr)
{
	return inet_addr_type(net, daddr) != RTN_LOCAL;
}

static bool toa_udp_foreign6(struct net *net, const struct in6_addr *daddr)
{
	return !ipv6_chk_addr(net, daddr, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Packet surgery. At PRE_ROUTING and POST_ROUTING skb->data is the IP header. */

/*
 * Whether the UDP checksum field holds the pseudo-header sum for the device
 * (or segmentation) to complete, rather than the checksum: CHECKSUM_PARTIAL,
 * and every UDP GSO skb whatever its ip_summed (udp_send_skb leaves a GSO
 * skb's as it was and __udp_gso_segment completes the sum; GRO does the
 * same on receive). Then only the address is in it (the port is in the
 * data the sum will cover).
 */
static bool toa_udp_csum_is_seed(const struct sk_buff *skb)
{
	return skb->ip_summed == CHECKSUM_PARTIAL || skb_is_gso(skb);
}

/* Sum `s` with `words` 32-bit words `from` in it replaced by `to`. */
static __always_inline __wsum toa_csum_words_replace(__wsum s, const __be32 *from,
						      const __be32 *to, unsigned int words)
{
	unsigned int i;

	for (i = 0; i < words; i++)
		s = csum_add(csum_sub(s, (__force __wsum)from[i]), (__force __wsum)to[i]);
	return s;
}

/* Replace `words` 32-bit words `from` by `to` in a pseudo-header sum. */
static void toa_udp_seed_replace(__sum16 *sum, const __be32 *from, const __be32 *to,
				 unsigned int words)
{
	*sum = ~csum_fold(toa_csum_words_replace(csum_unfold(*sum), from, to, words));
}

/* GRO's frag lists keep a header per segment: left alone. */
static bool toa_udp_rewritable(const struct sk_buff *skb)
{
	return !skb_is_gso(skb) || !(skb_shinfo(skb)->gso_type & SKB_GSO_FRAGLIST);
}

/* skb_ensure_writable() without its call when the `len` bytes are in the
 * head already and the head is the skb's own (most datagrams). */
static __always_inline int toa_udp_writable(struct sk_buff *skb, unsigned int len)
{
	if (likely(len <= skb_headlen(skb) && !skb_cloned(skb)))
		return 0;
	return skb_ensure_writable(skb, len);
}

/*
 * A UDP checksum (the datagram's own, not a seed) after the address in its
 * pseudo-header changed by `addr` (what the change adds to a sum:
 * toa_csum_words_replace() from 0) and the
 * port in its header from `pfrom` to `pto`: one incremental update
 * (RFC 1624) for both, as NAT's two inet_proto_csum_replace calls make it
 * (out of line, those cost a flow's datagram some 50 instructions). A sum
 * the device took over the packet (CHECKSUM_COMPLETE) covers the checksum
 * field but not the pseudo-header: it moves by what the field took for
 * the address; the port's change and the field's for it cancel.
 */
static __always_inline void toa_udp_check_update(struct sk_buff *skb, __sum16 *check, __wsum addr,
						 __be16 pfrom, __be16 pto)
{
	__wsum port = csum_sub((__force __wsum)(__force u32)pto, (__force __wsum)(__force u32)pfrom);

	csum_replace_by_diff(check, csum_add(addr, port));
	if (skb->ip_summed == CHECKSUM_COMPLETE)
		skb->csum = csum_sub(skb->csum, addr);
	/* 0 says "no checksum"; its other form says zero. */
	if (!*check)
		*check = CSUM_MANGLED_0;
}

/* Write the source (rx) or destination (tx) address and port of the UDP
 * datagram, fixing the checksums as NAT does. */
static int toa_udp_rewrite4(struct sk_buff *skb, bool src, const u8 *addr, const u8 *port)
{
	unsigned int ihl = ip_hdrlen(skb);
	__be32 *ip, newip;
	__be16 *pt, newport;
	struct udphdr *uh;
	struct iphdr *iph;

	if (!toa_udp_rewritable(skb) || toa_udp_writable(skb, ihl + sizeof(*uh)))
		return -EINVAL;
	iph = ip_hdr(skb);
	uh = (struct udphdr *)((u8 *)iph + ihl);
	ip = src ? &iph->saddr : &iph->daddr;
	pt = src ? &uh->source : &uh->dest;
	memcpy(&newip, addr, sizeof(newip));
	memcpy(&newport, port, sizeof(newport));
	csum_replace4(&iph->check, *ip, newip);
	if (toa_udp_csum_is_seed(skb)) {
		toa_udp_seed_replace(&uh->check, ip, &newip, 1);
	} else if (uh->check) {
		/* An IPv4 datagram may go without a checksum (0). */
		toa_udp_check_update(skb, &uh->check, toa_csum_words_replace(0, ip, &newip, 1),
				     *pt, newport);
	}
	*ip = newip;
	*pt = newport;
	return 0;
}

static int toa_udp_rewrite6(struct sk_buff *skb, bool src, const u8 *addr, const u8 *port)
{
	struct in6_addr *ip, newip;
	__be16 *pt, newport;
	struct ipv6hdr *ip6h;
	struct udphdr *uh;

	if (!toa_udp_rewritable(skb) || toa_udp_writable(skb, sizeof(*ip6h) + sizeof(*uh)))
		return -EINVAL;
	/* On receive, a checksum over the whole packet covers the IPv6
	 * header too, which no field here corrects for: let UDP check in
	 * software. */
	if (src && skb->ip_summed == CHECKSUM_COMPLETE)
		skb->ip_summed = CHECKSUM_NONE;
	ip6h = ipv6_hdr(skb);
	uh = (struct udphdr *)(ip6h + 1);
	ip = src ? &ip6h->saddr : &ip6h->daddr;
	pt = src ? &uh->source : &uh->dest;
	memcpy(&newip, addr, sizeof(newip));
	memcpy(&newport, port, sizeof(newport));
	if (toa_udp_csum_is_seed(skb)) {
		toa_udp_seed_replace(&uh->check, ip->s6_addr32, newip.s6_addr32, 4);
	} else {
		toa_udp_check_update(skb, &uh->check,
				     toa_csum_words_replace(0, ip->s6_addr32, newip.s6_addr32, 4),
				     *pt, newport);
	}
	*ip = newip;
	*pt = newport;
	return 0;
}

/*
 * Remove `len` bytes of option protocol header between the network header
 * (`nhlen` bytes) and the UDP header: the network header moves up over them
 * (and the link-layer header with it), and says UDP. The UDP checksum is
 * unchanged (its pseudo-header has the UDP length, not the IP one); a
 * checksum the device took over the whole packet is not valid any more.
 */
static int toa_udp_strip(struct sk_buff *skb, unsigned int nhlen, unsigned int len)
{
	if (skb_ensure_writable(skb, nhlen + len + sizeof(struct udphdr)))
		return -ENOMEM;
	memmove(skb->data + len, skb->data, nhlen);
	__skb_pull(skb, len);
	skb_reset_network_header(skb);
	skb_set_transport_header(skb, nhlen);
	skb_mac_header_rebuild(skb);
	if (skb->ip_summed == CHECKSUM_COMPLETE)
		skb->ip_summed = CHECKSUM_NONE;
	if (skb->protocol == htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = ipv6_hdr(skb);

		ip6h->nexthdr = IPPROTO_UDP;
		ip6h->payload_len = htons(ntohs(ip6h->payload_len) - len);
	} else {
		struct iphdr *iph = ip_hdr(skb);

		iph->protocol = IPPROTO_UDP;
		iph->tot_len = htons(ntohs(iph->tot_len) - len);
		ip_send_check(iph);
	}
	return 0;
}

/*
 * The bytes of an option protocol header at `off` (and the UDP header
 * after it, whose ports go into `p`), into `buf`; NULL if the packet is
 * too short for what the header says (then `p->hdr` has its fixed part,
 * for the Rust side to refuse).
 */
static const u8 *toa_udp_opp_bytes(const struct sk_buff *skb, unsigned int off,
				   struct toa_udp_packet *p, u8 *buf)
{
	const struct udphdr *uh;
	const u8 *hdr;
	unsigned int len;

	hdr = skb_header_pointer(skb, off, 4, buf);
	if (!hdr)
		return NULL;
	len = get_unaligned_be16(hdr + 2);
	p->hdr = hdr;
	p->hdr_len = 4;
	if (len < 4 || len > TOA_OPP_MAX || off + len + sizeof(*uh) > skb->len)
		return NULL;
	hdr = skb_header_pointer(skb, off, len + sizeof(*uh), buf);
	if (!hdr)
		return NULL;
	uh = (const struct udphdr *)(hdr + len);
	memcpy(p->sport, &uh->source, 2);
	memcpy(p->dport, &uh->dest, 2);
	p->hdr = hdr;
	p->hdr_len = len;
	return hdr;
}

/* ------------------------------------------------------------------------ */
/* The hooks.                                                                */

/* After toa_udp_rx: strip, rewrite the source, note the activity. */
static bool toa_udp_in_finish(struct toa_udp_net *pn, struct sk_buff *skb,
			      const struct toa_udp_verdict *v, unsigned int nhlen, bool v6)
{
	toa_udp_activity(pn, v);
	if (v->strip && toa_udp_strip(skb, nhlen, v->strip))
		return false;	/* left as it came: the kernel drops it */
	if (v->rewrite) {
		if (v6)
			toa_udp_rewrite6(skb, true, v->addr, v->port);
		else
			toa_udp_rewrite4(skb, true, v->addr, v->port);
	}
	return v->strip;
}

noinline bool toa_udp_in4_packet(struct toa_udp_net *pn, struct sk_buff *skb, struct net *net,
				 bool lo)
{
	const struct iphdr *iph = ip_hdr(skb);
	unsigned int ihl = iph->ihl * 4;
	const struct udphdr *uh = NULL;
	struct toa_udp_verdict v __uninitialized;
	struct toa_udp_packet p __uninitialized;
	u8 buf[TOA_OPP_MAX + sizeof(struct udphdr)] __uninitialized;
	struct udphdr _uh __uninitialized;

	BUILD_BUG_ON(sizeof(p) != 80 || sizeof(v) != 28 || sizeof(struct toa_udp_view) != 88);
	if (ip_is_fragment(iph)) {
		if (iph->protocol != IPPROTO_ICMP)
			toa_udp_fragment(pn->settings);
		return false;
	}
	if (iph->protocol == IPPROTO_UDP) {
		uh = skb_header_pointer(skb, ihl, sizeof(_uh), &_uh);
		/* Without options (a UOA), only a backend port with flows
		 * needs a look. */
		if (!uh || (ihl == sizeof(*iph) && !toa_udp_port_maybe(pn, uh->dest)))
			return false;
	}
	toa_udp_packet_init(&p, pn, lo);
	memcpy(p.saddr, &iph->saddr, 4);
	memcpy(p.daddr, &iph->daddr, 4);
	switch (iph->protocol) {
	case IPPROTO_ICMP:
		p.kind = TOA_UDP_ICMP;
		p.msg_len = skb->len - ihl;
		p.hdr_len = min_t(unsigned int, p.msg_len, TOA_ICMP_MAX);
		p.hdr = skb_header_pointer(skb, ihl, p.hdr_len, buf);
		if (!p.hdr)
			return false;
		/* Only an echo request can be an announcement. */
		if (p.hdr[0] == ICMP_ECHO) {
			if (toa_udp_foreign4(net, iph->daddr))
				return false;
			if (!p.local)
				p.local = toa_udp_source_local4(net, iph->saddr);
		}
		toa_udp_rx(&p, &v);
		toa_udp_activity(pn, &v);
		return false;
	case TOA_IPPROTO_OPP:
		p.kind = TOA_UDP_OPP;
		toa_udp_opp_bytes(skb, ihl, &p, buf);
		if (!p.hdr)
			return false;
		break;
	default:
		memcpy(p.sport, &uh->source, 2);
		memcpy(p.dport, &uh->dest, 2);
		if (ihl > sizeof(*iph)) {
			/* ip_rcv pulled the whole IP header. */
			p.kind = TOA_UDP_IPO;
			p.hdr = (const u8 *)(iph + 1);
			p.hdr_len = ihl - sizeof(*iph);
		}
	}
	if (p.kind != TOA_UDP_PLAIN) {
		if (toa_udp_foreign4(net, iph->daddr))
			return false;
		if (!p.local)
			p.local = toa_udp_source_local4(net, iph->saddr);
	}
	toa_udp_rx(&p, &v);
	return toa_udp_in_finish(pn, skb, &v, ihl, false);
}

static unsigned int toa_udp_in4(void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	struct toa_udp_net *pn = priv;
	const struct iphdr *iph = ip_hdr(skb);
	struct udphdr _uh __uninitialized;

	switch (iph->protocol) {
	case IPPROTO_UDP:
		if (iph->ihl != 5)
			break;	/* options: maybe a UOA */
		/* The host's own datagrams are never shown as a client's. */
		if (toa_udp_from_lo(state) || !toa_udp_wanted(pn, skb, sizeof(*iph), true, &_uh))
			return NF_ACCEPT;
		break;
	case IPPROTO_ICMP:
	case TOA_IPPROTO_OPP:
		break;
	default:
		return NF_ACCEPT;
	}
	toa_udp_in4_packet(pn, skb, state->net, toa_udp_from_lo(state));
	return NF_ACCEPT;
}

/* IPv6: UDP or the option protocol right after the fixed header (DPVS puts
 * it there); packets with extension headers are left alone. */
noinline bool toa_udp_in6_packet(struct toa_udp_net *pn, struct sk_buff *skb, struct net *net,
				 bool lo)
{
	const struct ipv6hdr *ip6h = ipv6_hdr(skb);
	const struct udphdr *uh = NULL;
	struct toa_udp_verdict v __uninitialized;
	struct toa_udp_packet p __uninitialized;
	u8 buf[TOA_OPP_MAX + sizeof(struct udphdr)] __uninitialized;
	struct udphdr _uh __uninitialized;

	if (ip6h->nexthdr == IPPROTO_UDP) {
		uh = skb_header_pointer(skb, sizeof(*ip6h), sizeof(_uh), &_uh);
		if (!uh || !toa_udp_port_maybe(pn, uh->dest))
			return false;
	}
	toa_udp_packet_init(&p, pn, lo);
	p.v6 = true;
	memcpy(p.saddr, &ip6h->saddr, 16);
	memcpy(p.daddr, &ip6h->daddr, 16);
	if (uh) {
		memcpy(p.sport, &uh->source, 2);
		memcpy(p.dport, &uh->dest, 2);
	} else {
		p.kind = TOA_UDP_OPP;
		toa_udp_opp_bytes(skb, sizeof(*ip6h), &p, buf);
		if (!p.hdr || toa_udp_foreign6(net, &ip6h->daddr))
			return false;
		if (!p.local)
			p.local = toa_udp_source_local6(net, &ip6h->saddr);
	}
	toa_udp_rx(&p, &v);
	return toa_udp_in_finish(pn, skb, &v, sizeof(*ip6h), true);
}

static unsigned int toa_udp_in6(void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	struct toa_udp_net *pn = priv;
	struct udphdr _uh __uninitialized;

	switch (ipv6_hdr(skb)->nexthdr) {
	case IPPROTO_UDP:
		if (toa_udp_from_lo(state) ||
		    !toa_udp_wanted(pn, skb, sizeof(struct ipv6hdr), true, &_uh))
			return NF_ACCEPT;
		break;
	case TOA_IPPROTO_OPP:
		break;
	default:
		return NF_ACCEPT;
	}
	toa_udp_in6_packet(pn, skb, state->net, toa_udp_from_lo(state));
	return NF_ACCEPT;
}

/*
 * A datagram the namespace forwards is sent to the balancer only as the
 * reply of a connection conntrack knows (a pod's answer, its DNAT undone):
 * never one that merely claims the flow's backend address as its source
 * (read inline from the skb: no dependency on the conntrack module).
 */
static bool toa_udp_forwarded_reply(const struct sk_buff *skb)
{
	unsigned long nfct = skb_get_nfct(skb);

	return (nfct & NFCT_PTRMASK) && (nfct & NFCT_INFOMASK) == IP_CT_ESTABLISHED_REPLY;
}

/* uh: the datagram's UDP header, as the hook read it (a port with flows). */
noinline unsigned int toa_udp_out4_packet(struct toa_udp_net *pn, struct sk_buff *skb,
					  struct net *net, struct sock *sk, const struct udphdr *uh)
{
	const struct iphdr *iph = ip_hdr(skb);
	struct toa_udp_verdict v __uninitialized;
	struct toa_udp_packet p __uninitialized;
	int err;

	if (ip_is_fragment(iph))
		return NF_ACCEPT;
	if ((IPCB(skb)->flags & IPSKB_FORWARDED) && !toa_udp_forwarded_reply(skb))
		return NF_ACCEPT;
	toa_udp_packet_init(&p, pn, false);
	memcpy(p.saddr, &iph->saddr, 4);
	memcpy(p.daddr, &iph->daddr, 4);
	memcpy(p.sport, &uh->source, 2);
	memcpy(p.dport, &uh->dest, 2);
	toa_udp_tx(&p, &v);
	toa_udp_activity(pn, &v);
	if (!v.rewrite || !toa_udp_rewritable(skb))
		return NF_ACCEPT;
	if (toa_udp_rewrite4(skb, false, v.addr, v.port))
		return NF_DROP;
	err = ip_route_me_harder(net, sk, skb, RTN_UNSPEC);
	if (err < 0)
		return NF_DROP_ERR(err);
	return NF_ACCEPT;
}

/*
 * The sendmsg hooks' verdict on p (filled in from the socket and the
 * address named): when the balancer is to be named, it is written to
 * addr (alen bytes) and port. Returns whether the datagram's own hook has
 * nothing left to do (see toa_udp_named4).
 */
static __always_inline bool toa_udp_name(struct toa_udp_net *pn,
					 const struct toa_udp_packet *p, void *addr,
					 size_t alen, __be16 *port)
{
	struct toa_udp_verdict v __uninitialized;

	rcu_read_lock();
	toa_udp_tx_named(p, &v);
	rcu_read_unlock();
	toa_udp_activity(pn, &v);
	if (!v.rewrite)
		return !v.ambiguous;
	memcpy(addr, v.addr, alen);
	memcpy(port, v.port, 2);
	return true;
}

/*
 * A datagram user socket sk is about to send to usin, the kernel's copy of
 * the address its sender named (udp_sendmsg; process context): if a flow's
 * way back fits, name the balancer (LIP:lport) there instead, so that the
 * kernel routes and builds the datagram for the balancer itself. Returns
 * whether the datagram's own hook (ip_send_skb) has nothing left to do:
 * the balancer was named, or no flow leads back to that client from the
 * socket's address (from any address of its port, for a socket bound to
 * none); not when the client is behind several balancer addresses.
 */
noinline bool toa_udp_named4(struct toa_udp_net *pn, const struct sock *sk,
			     struct sockaddr_in *usin)
{
	const struct inet_sock *inet = inet_sk(sk);
	struct toa_udp_packet p __uninitialized;

	toa_udp_packet_init(&p, pn, false);
	memcpy(p.saddr, &inet->inet_saddr, 4);
	memcpy(p.sport, &inet->inet_sport, 2);
	memcpy(p.daddr, &usin->sin_addr.s_addr, 4);
	memcpy(p.dport, &usin->sin_port, 2);
	return toa_udp_name(pn, &p, &usin->sin_addr.s_addr, 4, &usin->sin_port);
}

#if IS_ENABLED(CONFIG_IPV6)
/* The same for an IPv6 socket's datagram to an IPv6 address it names
 * (udpv6_sendmsg). */
noinline bool toa_udp_named6(struct toa_udp_net *pn, const struct sock *sk,
			     struct sockaddr_in6 *sin6)
{
	struct toa_udp_packet p __uninitialized;

	toa_udp_packet_init(&p, pn, false);
	p.v6 = true;
	memcpy(p.saddr, &sk->sk_v6_rcv_saddr, 16);
	memcpy(p.sport, &inet_sk(sk)->inet_sport, 2);
	memcpy(p.daddr, &sin6->sin6_addr, 16);
	memcpy(p.dport, &sin6->sin6_port, 2);
	return toa_udp_name(pn, &p, &sin6->sin6_addr, 16, &sin6->sin6_port);
}
#endif

static unsigned int toa_udp_out4(void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	struct toa_udp_net *pn = priv;
	const struct udphdr *uh;
	struct udphdr _uh __uninitialized;

	if (ip_hdr(skb)->protocol != IPPROTO_UDP)
		return NF_ACCEPT;
	uh = toa_udp_wanted(pn, skb, ip_hdrlen(skb), false, &_uh);
	if (!uh)
		return NF_ACCEPT;
	return toa_udp_out4_packet(pn, skb, state->net, state->sk, uh);
}

/* uh: the datagram's UDP header, as the hook read it (a port with flows). */
noinline unsigned int toa_udp_out6_packet(struct toa_udp_net *pn, struct sk_buff *skb,
					  struct net *net, struct sock *sk, const struct udphdr *uh)
{
	const struct ipv6hdr *ip6h = ipv6_hdr(skb);
	struct toa_udp_verdict v __uninitialized;
	struct toa_udp_packet p __uninitialized;
	int err;

	if ((IP6CB(skb)->flags & IP6SKB_FORWARDED) && !toa_udp_forwarded_reply(skb))
		return NF_ACCEPT;
	toa_udp_packet_init(&p, pn, false);
	p.v6 = true;
	memcpy(p.saddr, &ip6h->saddr, 16);
	memcpy(p.daddr, &ip6h->daddr, 16);
	memcpy(p.sport, &uh->source, 2);
	memcpy(p.dport, &uh->dest, 2);
	toa_udp_tx(&p, &v);
	toa_udp_activity(pn, &v);
	if (!v.rewrite || !toa_udp_rewritable(skb))
		return NF_ACCEPT;
	if (toa_udp_rewrite6(skb, false, v.addr, v.port))
		return NF_DROP;
	err = nf_ip6_route_me_harder(net, sk, skb);
	if (err < 0)
		return NF_DROP_ERR(err);
	return NF_ACCEPT;
}

static unsigned int toa_udp_out6(void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	struct toa_udp_net *pn = priv;
	const struct udphdr *uh;
	struct udphdr _uh __uninitialized;

	if (ipv6_hdr(skb)->nexthdr != IPPROTO_UDP)
		return NF_ACCEPT;
	uh = toa_udp_wanted(pn, skb, sizeof(struct ipv6hdr), false, &_uh);
	if (!uh)
		return NF_ACCEPT;
	return toa_udp_out6_packet(pn, skb, state->net, state->sk, uh);
}

static const struct nf_hook_ops toa_udp_ops_template[TOA_UDP_NR_HOOKS] = {
	/* After defragmentation (-400), before the raw table (-300). */
	[TOA_UDP_IN4] = {
		.hook = toa_udp_in4,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_PRE_ROUTING,
		.priority = NF_IP_PRI_RAW - 10,
	},
	/* After conntrack, NAT (a forwarded reply's DNAT undone) and the
	 * filter table: what they all saw was the client. */
	[TOA_UDP_OUT4] = {
		.hook = toa_udp_out4,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_POST_ROUTING,
		.priority = NF_IP_PRI_LAST - 1,
	},
	[TOA_UDP_IN6] = {
		.hook = toa_udp_in6,
		.pf = NFPROTO_IPV6,
		.hooknum = NF_INET_PRE_ROUTING,
		.priority = NF_IP6_PRI_RAW - 10,
	},
	[TOA_UDP_OUT6] = {
		.hook = toa_udp_out6,
		.pf = NFPROTO_IPV6,
		.hooknum = NF_INET_POST_ROUTING,
		.priority = NF_IP6_PRI_LAST - 1,
	},
};

/* ------------------------------------------------------------------------ */
/* /proc/net/toa_udp: the namespace's live flows, a line each.               */

struct toa_udp_iter {
	struct seq_net_private p;	/* first: proc_create_net's */
	u64 now_ms;
	struct toa_udp_view view;
};

/* The first slot at or after *pos with a flow of the namespace. */
static void *toa_udp_seq_find(struct seq_file *seq, loff_t *pos)
{
	struct toa_udp_iter *it = seq->private;
	u64 cookie = seq_file_net(seq)->net_cookie;
	int r;

	for (;; (*pos)++) {
		r = toa_udp_view(cookie, it->now_ms, *pos - 1, &it->view);
		if (r < 0)
			return NULL;
		if (r > 0)
			return it;
	}
}

static void *toa_udp_seq_start(struct seq_file *seq, loff_t *pos)
	__acquires(RCU)
{
	struct toa_udp_iter *it = seq->private;

	rcu_read_lock();
	if (*pos == 0) {
		it->now_ms = toa_now_ms();
		return SEQ_START_TOKEN;
	}
	return toa_udp_seq_find(seq, pos);
}

static void *toa_udp_seq_next(struct seq_file *seq, void *v, loff_t *pos)
{
	(*pos)++;
	return toa_udp_seq_find(seq, pos);
}

static void toa_udp_seq_stop(struct seq_file *seq, void *v)
	__releases(RCU)
{
	rcu_read_unlock();
}

static void toa_udp_seq_addr(struct seq_file *seq, bool v6, const u8 *addr, const u8 *port)
{
	if (v6)
		seq_printf(seq, " [%pI6c]:%u", addr, get_unaligned_be16(port));
	else
		seq_printf(seq, " %pI4:%u", addr, get_unaligned_be16(port));
}

static int toa_udp_seq_show(struct seq_file *seq, void *v)
{
	struct toa_udp_iter *it = seq->private;
	const struct toa_udp_view *f = &it->view;

	if (v == SEQ_START_TOKEN) {
		seq_puts(seq, "proto balancer client backend via age idle\n");
		return 0;
	}
	seq_puts(seq, f->tcp ? "tcp" : "udp");
	toa_udp_seq_addr(seq, f->v6, f->lip, f->lport);
	toa_udp_seq_addr(seq, f->client_v6, f->client, f->cport);
	toa_udp_seq_addr(seq, f->v6, f->rs, f->rsport);
	seq_printf(seq, " %s %llu %llu\n", f->via, f->age_ms / 1000, f->idle_ms / 1000);
	return 0;
}

static const struct seq_operations toa_udp_seq_ops = {
	.start = toa_udp_seq_start,
	.next = toa_udp_seq_next,
	.stop = toa_udp_seq_stop,
	.show = toa_udp_seq_show,
};

/* ------------------------------------------------------------------------ */
/* Namespaces.                                                               */

/* The namespace's flows go (a namespace that goes, or stops trusting). */
static void toa_udp_net_forget(struct toa_udp_net *pn)
{
	if (READ_ONCE(pn->had_flow)) {
		rcu_read_lock();
		toa_udp_net_exit(pn->cookie);
		rcu_read_unlock();
	}
}

/* Unregister the namespace's netfilter hooks (toa_udp_table_mutex held). */
static void toa_udp_net_unhook(struct toa_udp_net *pn)
{
	if (!pn->hooked)
		return;
	if (pn->v6_hooks)
		nf_unregister_net_hooks(pn->net, &pn->ops[TOA_UDP_IN6], 2);
	nf_unregister_net_hooks(pn->net, &pn->ops[TOA_UDP_IN4], 2);
	pn->v6_hooks = false;
	pn->hooked = false;
}

/* Register them; false if IPv4's cannot be (toa_udp_table_mutex held). */
static bool toa_udp_net_hook(struct toa_udp_net *pn)
{
	int err;

	if (pn->hooked)
		return true;
	err = nf_register_net_hooks(pn->net, &pn->ops[TOA_UDP_IN4], 2);
	if (err) {
		pr_warn_ratelimited("cannot hook UDP in a namespace: %d\n", err);
		return false;
	}
	/* IPv6 may be disabled: then UDP clients are served over IPv4. */
	pn->v6_hooks = !nf_register_net_hooks(pn->net, &pn->ops[TOA_UDP_IN6], 2);
	pn->hooked = true;
	return true;
}

/*
 * udp_hooks=: which hooks serve a namespace that trusts a balancer.
 *   auto       the protocol-level hooks (udp_entry.c) where the namespace
 *              does not forward, its netfilter hooks where it does
 *   netfilter  its netfilter hooks everywhere (every packet of the
 *              namespace passes them; conntrack and the filter table see
 *              the client in every namespace)
 */
static char *toa_udp_hooks_param = "auto";
module_param_named(udp_hooks, toa_udp_hooks_param, charp, 0444);
MODULE_PARM_DESC(udp_hooks, "Hooks for UDP clients: auto (protocol-level where a namespace does not forward, netfilter where it does; default) or netfilter (everywhere)");

/* Under toa_udp_table_mutex: udp_hooks=netfilter, or the protocol-level
 * hooks could not be placed. */
static bool toa_udp_nf_only;
/* Under toa_udp_table_mutex: unloading (no hook is placed any more). */
static bool toa_udp_closing;

/*
 * Whether net forwards IPv4 or IPv6 packets (conf/all/forwarding, which
 * Docker, Kubernetes' CNIs and routers set): then its datagrams may go on
 * to a pod or container behind NAT, which only netfilter's PRE_ROUTING
 * (before the DNAT) lets see the client. A namespace that forwards only
 * on some devices (conf/DEV/forwarding with all at 0) is not seen as one.
 */
static bool toa_udp_net_forwards(struct net *net)
{
	if (IPV4_DEVCONF_ALL_RO(net, FORWARDING))
		return true;
#if IS_ENABLED(CONFIG_IPV6)
	if (net->ipv6.devconf_all && READ_ONCE(net->ipv6.devconf_all->forwarding))
		return true;
#endif
	return false;
}

/*
 * A flow was recorded: if the namespace's forwarding changed since its
 * hooks were chosen (Docker or a CNI switched it on after toa was set up),
 * they are chosen again, in process context (a new flow at most does this
 * test; queueing work that is queued already does nothing).
 */
static void toa_udp_mode_check(struct toa_udp_net *pn)
{
	bool entry = READ_ONCE(pn->entry);

	if (READ_ONCE(toa_udp_nf_only) && !entry)
		return;
	if (entry == toa_udp_net_forwards(pn->net))
		queue_work(system_wq, &pn->resync);
}

/*
 * The hooks of a namespace are there only while it trusts a balancer (its
 * trusted_sources, or the host's it follows, is not empty): a namespace
 * that trusts nobody takes no announcement or UOA and can have no flow,
 * and its packets pay nothing for UDP support (on a host without other
 * netfilter users, a namespace's first netfilter hook turns netfilter's
 * dispatch on for every packet, TCP's included). Out of the box nobody is
 * trusted. A namespace that trusts is served by the protocol-level hooks
 * unless it forwards (or udp_hooks=netfilter, or they cannot be placed):
 * then by its netfilter hooks. Moving from one to the other, the new hooks
 * come before the old ones go (a packet both see is harmless: each looks
 * its datagrams up by the balancer's address, which the first rewrote).
 * When a namespace stops trusting, its hooks and flows go.
 * toa_udp_table_mutex held.
 */
static void toa_udp_net_sync(struct toa_udp_net *pn)
{
	bool trusts = toa_settings_trust_anyone(pn->settings);
	bool entry = trusts && !toa_udp_nf_only && !toa_udp_net_forwards(pn->net);

	if (toa_udp_closing)
		return;
	if (entry && toa_udp_entry_up()) {
		WRITE_ONCE(toa_udp_nf_only, true);
		pr_warn("UDP clients served by netfilter hooks in every namespace: the protocol-level hooks cannot be placed\n");
		entry = false;
	}
	if (entry) {
		WRITE_ONCE(pn->entry, true);
		toa_udp_net_unhook(pn);
		return;
	}
	if (trusts) {
		/* Without netfilter hooks the namespace's flows stay, unused
		 * until a packet or a write tries again. */
		toa_udp_net_hook(pn);
	} else {
		toa_udp_net_unhook(pn);
	}
	if (READ_ONCE(pn->entry)) {
		WRITE_ONCE(pn->entry, false);
		/* No protocol-level hook serves it any more once in-flight
		 * ones are done. */
		synchronize_net();
	}
	if (!trusts)
		toa_udp_net_forget(pn);
}

static void toa_udp_net_resync(struct work_struct *work)
{
	struct toa_udp_net *pn = container_of(work, struct toa_udp_net, resync);

	mutex_lock(&toa_udp_table_mutex);
	/* Unloading, or the namespace is going: its hooks are going anyway. */
	if (toa_udp_hooked && !pn->gone)
		toa_udp_net_sync(pn);
	mutex_unlock(&toa_udp_table_mutex);
}

/* net's trusted_sources was written: only the host's can change what the
 * others trust (those that follow it), so only then are they all looked
 * at; a guest's write touches its own namespace's hooks only. A write also
 * looks at the namespaces' forwarding again. */
void toa_udp_trust_changed(const struct net *net)
{
	struct toa_udp_net *pn;

	mutex_lock(&toa_udp_table_mutex);
	list_for_each_entry(pn, &toa_udp_nets, node)
		if (net_eq(net, &init_net) || net_eq(pn->net, net))
			toa_udp_net_sync(pn);
	mutex_unlock(&toa_udp_table_mutex);
}

/* What serves net's UDP clients: "protocol" (udp_entry.c), "netfilter" or
 * "none" (it trusts nobody; udp=0). Process context. */
const char *toa_udp_hooks_of(const struct net *net)
{
	const char *what = "none";
	const struct toa_udp_net *pn;

	mutex_lock(&toa_udp_table_mutex);
	/* Only while the namespaces' state is registered. */
	if (toa_udp_hooked) {
		rcu_read_lock();
		pn = net_generic(net, toa_udp_net_id);
		if (pn->entry)
			what = "protocol";
		else if (pn->hooked)
			what = "netfilter";
		rcu_read_unlock();
	}
	mutex_unlock(&toa_udp_table_mutex);
	return what;
}

static int __net_init toa_udp_net_init(struct net *net)
{
	struct toa_udp_net *pn = net_generic(net, toa_udp_net_id);
	int i;

	pn->cookie = net->net_cookie;
	pn->settings = toa_net_settings(net);
	pn->net = net;
	INIT_WORK(&pn->resync, toa_udp_net_resync);
	toa_udp_rewrite_changed(net);
	for (i = 0; i < TOA_UDP_NR_HOOKS; i++) {
		pn->ops[i] = toa_udp_ops_template[i];
		pn->ops[i].priv = pn;
	}
	if (!proc_create_net("toa_udp", 0444, net->proc_net, &toa_udp_seq_ops,
			     sizeof(struct toa_udp_iter)))
		return -ENOMEM;
	mutex_lock(&toa_udp_table_mutex);
	list_add(&pn->node, &toa_udp_nets);
	toa_udp_net_sync(pn);
	mutex_unlock(&toa_udp_table_mutex);
	return 0;
}

static void __net_exit toa_udp_net_exit_one(struct net *net)
{
	struct toa_udp_net *pn = net_generic(net, toa_udp_net_id);

	bool entry;

	mutex_lock(&toa_udp_table_mutex);
	pn->gone = true;
	list_del(&pn->node);
	toa_udp_net_unhook(pn);
	entry = pn->entry;
	WRITE_ONCE(pn->entry, false);
	mutex_unlock(&toa_udp_table_mutex);
	/* No hook runs for it any more, so none queues its work again. */
	if (entry)
		synchronize_net();
	cancel_work_sync(&pn->resync);
	remove_proc_entry("toa_udp", net->proc_net);
	/* Its flows go with it (they could never match again: a cookie is
	 * never reused). */
	toa_udp_net_forget(pn);
}

/* net's udp_rewrite was written (config mutex held), or its hooks are set
 * up: the hooks' copy of it, and of the host's that others follow. */
static void toa_udp_rewrite_changed(const struct net *net)
{
	struct toa_udp_net *pn = net_generic(net, toa_udp_net_id);

	WRITE_ONCE(pn->rewrite, toa_udp_config_rewrite_mode(pn->settings));
	if (net_eq(net, &init_net))
		WRITE_ONCE(toa_udp_host_rewrite, toa_udp_config_rewrite(pn->settings));
}

static struct pernet_operations toa_udp_net_ops = {
	.init = toa_udp_net_init,
	.exit = toa_udp_net_exit_one,
	.id = &toa_udp_net_id,
	.size = sizeof(struct toa_udp_net),
};

/* ------------------------------------------------------------------------ */
/* getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP): see include/uapi/linux/toa.h */

static int toa_uoa_sockopt_get(struct sock *sk, int optval, void __user *user, int *len)
{
	struct uoa_param_map map;
	int err;

	BUILD_BUG_ON(sizeof(map) != 58);
	if (optval != UOA_SO_GET_LOOKUP)
		return -ENOPROTOOPT;
	if (*len < (int)sizeof(map))
		return -EINVAL;
	if (copy_from_user(&map, user, sizeof(map)))
		return -EFAULT;
	rcu_read_lock();
	err = toa_uoa_lookup(toa_net_settings(sock_net(sk)), sock_net(sk)->net_cookie, toa_now_ms(),
			     &map);
	rcu_read_unlock();
	if (err)
		return err;
	if (copy_to_user(user, &map, sizeof(map)))
		return -EFAULT;
	*len = sizeof(map);
	return 0;
}

static struct nf_sockopt_ops toa_uoa_sockopt_ops = {
	.pf = PF_INET,
	.get_optmin = UOA_SO_GET_LOOKUP,
	.get_optmax = UOA_SO_GET_LOOKUP + 1,
	.get = toa_uoa_sockopt_get,
	.owner = THIS_MODULE,
};

static bool toa_uoa_sockopt_on;

/* udp=0: TCP only. No UDP hook is placed anywhere (with udp=1, only for
 * namespaces that trust a balancer), so packets pay nothing for UDP
 * support. */
static bool toa_udp_param = true;
module_param_named(udp, toa_udp_param, bool, 0444);
MODULE_PARM_DESC(udp, "Serve UDP clients (hooks for each namespace that trusts a balancer, UOA_SO_GET_LOOKUP); 0: TCP only (default 1)");

int toa_udp_register(void)
{
	int err;

	if (!toa_udp_param) {
		pr_info("UDP clients off (udp=0): no UDP hook\n");
		return 0;
	}
	if (!strcmp(toa_udp_hooks_param, "netfilter")) {
		toa_udp_nf_only = true;
	} else if (strcmp(toa_udp_hooks_param, "auto")) {
		pr_err("unknown udp_hooks=%s (auto or netfilter)\n", toa_udp_hooks_param);
		return -EINVAL;
	}
	err = register_pernet_subsys(&toa_udp_net_ops);
	if (err) {
		pr_err("cannot hook UDP: %d\n", err);
		mutex_lock(&toa_udp_table_mutex);
		toa_udp_entry_down();
		mutex_unlock(&toa_udp_table_mutex);
		return err;
	}
	/* DPVS's uoa.ko answers the same option: one of them may. */
	err = nf_register_sockopt(&toa_uoa_sockopt_ops);
	if (err)
		pr_warn("getsockopt %d (UOA_SO_GET_LOOKUP) is taken (uoa.ko?): %d; UDP clients are still shown\n",
			UOA_SO_GET_LOOKUP, err);
	toa_uoa_sockopt_on = !err;
	mutex_lock(&toa_udp_table_mutex);
	toa_udp_hooked = true;
	mutex_unlock(&toa_udp_table_mutex);
	return 0;
}

/* Returns once no hook runs and no getsockopt is in toa. */
void toa_udp_unregister(void)
{
	struct toa_udp_net *pn;

	if (!toa_udp_hooked)
		return;
	/* The protocol-level hooks first: they find the namespaces' state,
	 * which goes with the namespaces' hooks below. */
	mutex_lock(&toa_udp_table_mutex);
	toa_udp_hooked = false;
	toa_udp_closing = true;
	toa_udp_entry_down();
	/* None of them runs any more: no namespace needs to wait for them. */
	list_for_each_entry(pn, &toa_udp_nets, node)
		WRITE_ONCE(pn->entry, false);
	mutex_unlock(&toa_udp_table_mutex);
	if (toa_uoa_sockopt_on)
		nf_unregister_sockopt(&toa_uoa_sockopt_ops);
	toa_uoa_sockopt_on = false;
	unregister_pernet_subsys(&toa_udp_net_ops);
}
