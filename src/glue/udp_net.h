/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the two ways of serving UDP clients share (src/udp/mod.rs): each
 * network namespace's UDP state, and the packet work both do.
 *
 *   udp_nf.c     the flow table's memory and locks, the namespaces, the
 *                packet surgery, the netfilter hooks of the namespaces
 *                that forward, /proc/net/toa_udp, UOA_SO_GET_LOOKUP
 *   udp_entry.c  the protocol-level hooks of the namespaces that do not
 *                forward: udp_rcv, udpv6_rcv, icmp_rcv, ip_send_skb,
 *                ip6_send_skb and protocol 248's handler
 *
 * Included by those two files only.
 */
#ifndef TOA_GLUE_UDP_NET_H
#define TOA_GLUE_UDP_NET_H

#include <linux/bitmap.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/netfilter.h>
#include <linux/skbuff.h>
#include <linux/udp.h>
#include <linux/workqueue.h>
#include <net/net_namespace.h>

#include "internal.h"

enum {
	TOA_UDP_IN4,
	TOA_UDP_OUT4,
	TOA_UDP_IN6,
	TOA_UDP_OUT6,
	TOA_UDP_NR_HOOKS,
};

/* The option protocol's IP protocol number (udp/uoa.rs). */
#define TOA_IPPROTO_OPP 248

/* Backend ports with flows, as a filter: a datagram whose backend-side
 * port (its destination on receive, its source on send) has no bit is not
 * looked up. Bits are set by every flow recorded and never cleared (a
 * stale bit only costs a lookup). */
#define TOA_UDP_PORT_BITS 2048

struct toa_udp_net {
	/* Read by every hook first: whether the protocol-level hooks
	 * (udp_entry.c) serve the namespace (it trusts a balancer and does
	 * not forward). Cleared before the namespace's flows go, with a
	 * grace period between. */
	bool entry;
	s8 rewrite;				/* its udp_rewrite; -1: the host's */
	bool had_flow;
	/* jiffies of the last flow recorded or refreshed in the namespace */
	unsigned long last_active;
	const struct toa_settings *settings;	/* the namespace's (admin.c) */
	u64 cookie;
	DECLARE_BITMAP(ports, TOA_UDP_PORT_BITS);
	struct nf_hook_ops ops[TOA_UDP_NR_HOOKS];
	/* Under toa_udp_table_mutex: whether the netfilter hooks are
	 * registered (the namespace trusts a balancer and forwards, or
	 * udp_hooks=netfilter), and the namespaces with hooks that may be
	 * (toa_udp_nets). */
	bool hooked;
	bool v6_hooks;
	bool gone;	/* the namespace is going */
	/* A packet saw the namespace's forwarding differ from its hooks:
	 * toa_udp_net_sync() again, in process context. */
	struct work_struct resync;
	struct net *net;
	struct list_head node;
};

extern unsigned int toa_udp_net_id;
/* Every backend port any namespace had a flow on (bits as in ports above,
 * never cleared): the direct-call trampolines' early test (udp_entry.c). */
extern unsigned long toa_udp_ports_seen[BITS_TO_LONGS(TOA_UDP_PORT_BITS)];

/* A flow on port (host order), or a datagram handed to UDP for it: its
 * bit, here. */
static __always_inline void toa_udp_port_seen(u16 port)
{
	unsigned int bit = port % TOA_UDP_PORT_BITS;

	if (!test_bit(bit, toa_udp_ports_seen))
		set_bit(bit, toa_udp_ports_seen);
}
extern unsigned long toa_udp_live_jiffies;
extern bool toa_udp_host_rewrite;

/* The UDP state of net, which the caller keeps alive (a packet or socket
 * of it): net_generic() in a preempt-disabled section, as
 * toa_net_settings() (the state itself lives as long as the namespace). */
static __always_inline struct toa_udp_net *toa_udp_net_of(const struct net *net)
{
	struct toa_udp_net *pn;

	preempt_disable_notrace();
	pn = rcu_dereference_sched(net->gen)->ptr[toa_udp_net_id];
	preempt_enable_notrace();
	return pn;
}

/* Whether the namespace may have a live flow. */
static __always_inline bool toa_udp_live(const struct toa_udp_net *pn)
{
	/* Acquire: a namespace seen with a flow is seen with its stamp. */
	return smp_load_acquire(&pn->had_flow) &&
	       time_before(jiffies, READ_ONCE(pn->last_active) + READ_ONCE(toa_udp_live_jiffies));
}

/* Whether datagrams are to be looked up (rewriting on, a flow lately). */
static __always_inline bool toa_udp_looking(const struct toa_udp_net *pn)
{
	s8 rewrite = READ_ONCE(pn->rewrite);

	if (rewrite < 0)
		rewrite = READ_ONCE(toa_udp_host_rewrite);
	return rewrite && toa_udp_live(pn);
}

static __always_inline bool toa_udp_port_maybe(const struct toa_udp_net *pn, __be16 port)
{
	return test_bit(ntohs(port) % TOA_UDP_PORT_BITS, pn->ports);
}

/* The UDP header at `off` from skb->data, read cheaply; NULL if the packet
 * is shorter. */
static __always_inline const struct udphdr *toa_udp_header(const struct sk_buff *skb,
							   unsigned int off, struct udphdr *buf)
{
	return skb_header_pointer(skb, off, sizeof(*buf), buf);
}

/*
 * Whether a datagram of pn's namespace needs a look, its UDP header `off`
 * bytes from skb->data (read into buf): rewriting is on, the namespace had
 * a flow lately, and the backend-side port (the destination on receive,
 * `rx`; the source on send) had a flow. Returns the header, or NULL.
 */
static __always_inline const struct udphdr *toa_udp_wanted(const struct toa_udp_net *pn,
							   const struct sk_buff *skb,
							   unsigned int off, bool rx,
							   struct udphdr *buf)
{
	const struct udphdr *uh;

	if (!toa_udp_looking(pn))
		return NULL;
	uh = toa_udp_header(skb, off, buf);
	if (!uh || !toa_udp_port_maybe(pn, rx ? uh->dest : uh->source))
		return NULL;
	return uh;
}

/*
 * (The hooks' locals are __uninitialized: each is written before it is
 * read, toa_udp_packet_init() and Rust's verdict included, and the
 * kernel's zeroing of every local, CONFIG_INIT_STACK_ALL_ZERO, would cost
 * every datagram that gets this far some 170 bytes of stores.)
 *
 * The packet work, with skb->data at the IP header (as at PRE_ROUTING and
 * POST_ROUTING; the protocol-level hooks push the header back first). `lo`:
 * the packet came in on a loopback device. Receive: true when an option
 * protocol header was taken off (the packet is UDP now). Send: an nf
 * verdict (NF_DROP when a datagram to a client could not be sent through
 * its balancer).
 */
bool toa_udp_in4_packet(struct toa_udp_net *pn, struct sk_buff *skb, struct net *net, bool lo);
bool toa_udp_in6_packet(struct toa_udp_net *pn, struct sk_buff *skb, struct net *net, bool lo);
unsigned int toa_udp_out4_packet(struct toa_udp_net *pn, struct sk_buff *skb, struct net *net,
				 struct sock *sk, const struct udphdr *uh);
unsigned int toa_udp_out6_packet(struct toa_udp_net *pn, struct sk_buff *skb, struct net *net,
				 struct sock *sk, const struct udphdr *uh);
/* Before a datagram is built (udp_sendmsg, udpv6_sendmsg): the balancer
 * named in place of a flow's client, in the sender's address; whether the
 * datagram's own hook has nothing left to do. */
bool toa_udp_named4(struct toa_udp_net *pn, const struct sock *sk, struct sockaddr_in *usin);
bool toa_udp_named6(struct toa_udp_net *pn, const struct sock *sk, struct sockaddr_in6 *sin6);

/* udp_entry.c: the protocol-level hooks, placed for the first namespace
 * that wants them and kept until unload (toa_udp_table_mutex held). */
int toa_udp_entry_up(void);
void toa_udp_entry_down(void);

#endif /* TOA_GLUE_UDP_NET_H */
