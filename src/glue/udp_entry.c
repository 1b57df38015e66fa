// SPDX-License-Identifier: GPL-2.0
/*
 * UDP clients without netfilter (src/udp/mod.rs): the protocol-level hooks
 * that serve the network namespaces which trust a balancer and do not
 * forward (udp_nf.c chooses, toa_udp_net_sync). Only the packets that can
 * matter pass them, and only on their way to or from a local socket:
 *
 *   udp_rcv, udpv6_rcv     a datagram for a local socket: a UOA in IPv4
 *                          options, the client shown as source
 *   icmp_rcv               an ICMP message for the host: an announcement
 *                          (ip_vs_ca's echo request; the kernel answers it
 *                          as ever)
 *   protocol 248's handler DPVS's option protocol, for the host: turned
 *   (IPv4 and IPv6)        back into UDP and handed to UDP (the kernel's
 *                          resubmission, as for UDP encapsulations)
 *   udp_sendmsg,           a datagram a user socket is about to send to
 *   udpv6_sendmsg          a client it names (sendto, sendmsg): the
 *                          balancer (LIP:lport) named instead, before the
 *                          kernel routes and builds it
 *   ip_send_skb,           a datagram a local socket sends to a client
 *   ip6_send_skb           otherwise (a connected socket, a corked or
 *                          ambiguous one, one with control messages): to
 *                          the balancer, and routed again
 *
 * A TCP connection passes none of them (a netfilter hook costs every
 * packet of every protocol some 60 instructions). What they leave to the
 * netfilter hooks of a namespace that forwards: conntrack and the filter
 * table see the balancer here, not the client (they run before the UDP
 * layer), and a datagram for a pod behind the namespace's NAT is not
 * rewritten (the pod's own namespace serves it, if it trusts).
 *
 * The entry hooks are entry.c's (direct calls with hook=direct, ftrace_ops
 * or kprobes otherwise); each finds its namespace's state by net_generic()
 * and leaves at once unless these hooks serve it. The packet work is
 * udp_nf.c's, with the IP header pushed back in front of skb->data for it
 * (the protocols get the packet with skb->data at their own header).
 * Placed for the first namespace that wants them, and kept until unload,
 * so that no namespace's root can make the host patch its functions over
 * and over.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/icmp.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netdevice.h>
#include <linux/percpu.h>
#include <linux/skbuff.h>
#include <linux/udp.h>
#include <net/ip.h>
#include <net/ipv6.h>
#include <net/protocol.h>

#include "glue.h"
#include "internal.h"
#include "udp_net.h"

/*
 * The datagram protocol 248's handler has just handed to UDP (this CPU's
 * softirq goes straight on to udp_rcv or udpv6_rcv with it): UDP's hook
 * leaves it alone, its work done (looked at again, a NAT64 client's
 * datagram, which keeps the balancer as its source, would be counted
 * twice).
 */
static DEFINE_PER_CPU(const struct sk_buff *, toa_udp_resubmitted);

/* skb is handed to UDP: its hook must see it (the trampolines' early test
 * lets datagrams to ports without a bit go: this one gets its bit, which
 * a recorded flow has set already). */
static void toa_udp_resubmit(const struct sk_buff *skb)
{
	toa_udp_port_seen(ntohs(udp_hdr(skb)->dest));
	__this_cpu_write(toa_udp_resubmitted, skb);
}

/* Whether skb is the one just handed over (softirq: this CPU's own). */
static __always_inline bool toa_udp_was_resubmitted(const struct sk_buff *skb)
{
	const struct sk_buff *r = __this_cpu_read(toa_udp_resubmitted);

	if (likely(!r))
		return false;
	__this_cpu_write(toa_udp_resubmitted, NULL);
	return r == skb;
}

/* Whether skb, for a local socket, came in on a loopback device: every
 * packet a local process sends to a local address does. */
static __always_inline bool toa_udp_entry_lo(const struct sk_buff *skb)
{
	return skb->dev->flags & IFF_LOOPBACK;
}

/*
 * The packet work on skb, whose data begins at its transport header: the
 * IP header is pushed back for it and pulled again after (the work may
 * have reallocated the head, or taken an option protocol header off: the
 * transport header is the UDP header then). Returns whether the packet is
 * UDP now.
 */
static bool toa_udp_entry_in(struct toa_udp_net *pn, struct sk_buff *skb, struct net *net, bool v6)
{
	bool udp;

	__skb_push(skb, skb_network_header_len(skb));
	if (v6)
		udp = toa_udp_in6_packet(pn, skb, net, toa_udp_entry_lo(skb));
	else
		udp = toa_udp_in4_packet(pn, skb, net, toa_udp_entry_lo(skb));
	__skb_pull(skb, skb_network_header_len(skb));
	return udp;
}

/* udp_rcv(skb): softirq, RCU held. */
static void toa_udp_rcv4_entry(unsigned long a0, unsigned long a1, unsigned long a2,
			       unsigned long a3)
{
	struct sk_buff *skb = (struct sk_buff *)a0;
	struct net *net = dev_net(skb->dev);
	struct toa_udp_net *pn = toa_udp_net_of(net);
	struct udphdr _uh __uninitialized;

	if (toa_udp_was_resubmitted(skb) || !READ_ONCE(pn->entry))
		return;
	/* With options it may be a UOA; without, only a datagram to a
	 * backend port with flows needs a look (never the host's own). */
	if (ip_hdr(skb)->ihl == 5 &&
	    (toa_udp_entry_lo(skb) || !toa_udp_wanted(pn, skb, 0, true, &_uh)))
		return;
	toa_udp_entry_in(pn, skb, net, false);
}

/* udpv6_rcv(skb): softirq, RCU held. Only UDP right after the fixed
 * header (as the netfilter hook). */
static void toa_udp_rcv6_entry(unsigned long a0, unsigned long a1, unsigned long a2,
			       unsigned long a3)
{
	struct sk_buff *skb = (struct sk_buff *)a0;
	struct net *net = dev_net(skb->dev);
	struct toa_udp_net *pn = toa_udp_net_of(net);
	struct udphdr _uh __uninitialized;

	if (toa_udp_was_resubmitted(skb) || !READ_ONCE(pn->entry) || toa_udp_entry_lo(skb))
		return;
	if (skb_network_header_len(skb) != sizeof(struct ipv6hdr) ||
	    ipv6_hdr(skb)->nexthdr != IPPROTO_UDP || !toa_udp_wanted(pn, skb, 0, true, &_uh))
		return;
	toa_udp_entry_in(pn, skb, net, true);
}

/* icmp_rcv(skb): softirq, RCU held. The work only reads the message. */
static void toa_udp_icmp4_entry(unsigned long a0, unsigned long a1, unsigned long a2,
				unsigned long a3)
{
	struct sk_buff *skb = (struct sk_buff *)a0;
	struct net *net = dev_net(skb->dev);
	struct toa_udp_net *pn = toa_udp_net_of(net);

	if (READ_ONCE(pn->entry))
		toa_udp_entry_in(pn, skb, net, false);
}

/*
 * What udp_sendmsg's hook settled last on this CPU: the task, its socket,
 * the destination it left (the balancer it named, or a client no flow
 * leads back to from the socket) and when (jiffies). ip_send_skb's hook
 * lets that datagram go without a lookup if it comes in the same jiffy;
 * any other (the task migrated meanwhile, or the hook left the datagram to
 * ip_send_skb) is looked up as ever. Written with preemption off, read
 * without: a note that does not match only costs the lookup.
 */
struct toa_udp_named_note {
	const struct task_struct *task;
	const struct sock *sk;
	unsigned long when;
	struct in6_addr addr;	/* IPv4: the first word, the rest zero */
	__be16 port;
	bool v6;
};
static DEFINE_PER_CPU(struct toa_udp_named_note, toa_udp_named);

/* Note that this task's datagram from sk to addr:port (of family v6) is
 * settled (process context). */
static void toa_udp_note(const struct sock *sk, const struct in6_addr *addr, __be16 port, bool v6)
{
	struct toa_udp_named_note *note;

	preempt_disable();
	note = this_cpu_ptr(&toa_udp_named);
	note->task = current;
	note->sk = sk;
	note->when = jiffies;
	note->addr = *addr;
	note->port = port;
	note->v6 = v6;
	preempt_enable();
}

/*
 * What both sendmsg hooks ask first: a user UDP socket's send naming an
 * address, without control messages, not appended to corked data, in a
 * namespace these hooks serve, from a port with flows. Its namespace's
 * state, or NULL. UDP-Lite shares the functions; its datagrams are not a
 * flow's (as at ip_send_skb, whose hook takes UDP only).
 */
static __always_inline struct toa_udp_net *toa_udp_sendmsg_net(const struct sock *sk,
								const struct msghdr *msg)
{
	struct toa_udp_net *pn;

	if (!sk || !msg || !msg->msg_name || sk->sk_kern_sock ||
	    sk->sk_protocol != IPPROTO_UDP || msg->msg_controllen ||
	    READ_ONCE(udp_sk(sk)->pending))
		return NULL;
	pn = toa_udp_net_of(sock_net(sk));
	if (!READ_ONCE(pn->entry) || !toa_udp_port_maybe(pn, inet_sk(sk)->inet_sport))
		return NULL;
	return pn;
}

/*
 * udp_sendmsg(sk, msg, len): process context, before anything is routed
 * or built. Only a user UDP socket's datagram to an IPv4 address it names,
 * without control messages (IP_PKTINFO may choose another source: the
 * datagram's own hook decides then) and not appended to corked data
 * (whose destination is the cork's), from a port with flows. msg_name is
 * the kernel's own copy of the caller's address (sendto, sendmsg,
 * sendmmsg, io_uring; IPv4-mapped sends from udpv6_sendmsg: its stack);
 * kernel sockets are left alone (their callers may keep the address).
 */
static void toa_udp_sendmsg4_entry(unsigned long a0, unsigned long a1, unsigned long a2,
				   unsigned long a3)
{
	struct sock *sk = (struct sock *)a0;
	struct msghdr *msg = (struct msghdr *)a1;
	struct toa_udp_net *pn = toa_udp_sendmsg_net(sk, msg);
	struct sockaddr_in *usin;

	if (!pn)
		return;
	usin = msg->msg_name;
	if (msg->msg_namelen < sizeof(*usin) || usin->sin_family != AF_INET)
		return;
	if (!toa_udp_named4(pn, sk, usin))
		return;
	toa_udp_note(sk, &(struct in6_addr){ .s6_addr32 = { usin->sin_addr.s_addr } },
		     usin->sin_port, false);
}

/* udpv6_sendmsg(sk, msg, len): the same for an IPv6 address (an
 * IPv4-mapped one is udp_sendmsg's: udpv6_sendmsg hands it over). Without
 * IPv6 there is no such function: placing the hooks fails, as for
 * udpv6_rcv's, and netfilter's serve. */
static void toa_udp_sendmsg6_entry(unsigned long a0, unsigned long a1, unsigned long a2,
				   unsigned long a3)
{
#if IS_ENABLED(CONFIG_IPV6)
	struct sock *sk = (struct sock *)a0;
	struct msghdr *msg = (struct msghdr *)a1;
	struct toa_udp_net *pn = toa_udp_sendmsg_net(sk, msg);
	struct sockaddr_in6 *sin6;

	if (!pn)
		return;
	sin6 = msg->msg_name;
	if (msg->msg_namelen < SIN6_LEN_RFC2133 || sin6->sin6_family != AF_INET6 ||
	    ipv6_addr_v4mapped(&sin6->sin6_addr))
		return;
	if (!toa_udp_named6(pn, sk, sin6))
		return;
	toa_udp_note(sk, &sin6->sin6_addr, sin6->sin6_port, true);
#endif
}

/* Whether skb, to addr:port of family v6, is the datagram a sendmsg hook
 * has just settled for its task and socket, in the same jiffy (the note
 * is then spent). */
static __always_inline bool toa_udp_was_named(const struct sk_buff *skb,
					      const struct in6_addr *addr, __be16 port, bool v6)
{
	struct toa_udp_named_note *note = raw_cpu_ptr(&toa_udp_named);

	if (READ_ONCE(note->task) != current || READ_ONCE(note->sk) != skb->sk ||
	    READ_ONCE(note->v6) != v6 || READ_ONCE(note->port) != port ||
	    READ_ONCE(note->when) != jiffies || !ipv6_addr_equal(&note->addr, addr))
		return false;
	WRITE_ONCE(note->task, NULL);
	return true;
}

/* ip_send_skb(net, skb): process context, the IP header built and the
 * route chosen (to the client); skb->data at the IP header. A datagram
 * that cannot be sent through the balancer (no route to it) goes out
 * addressed to the balancer on the client's route, where it is lost: the
 * hook cannot drop it. */
static void toa_udp_send4_entry(unsigned long a0, unsigned long a1, unsigned long a2,
				unsigned long a3)
{
	struct net *net = (struct net *)a0;
	struct sk_buff *skb = (struct sk_buff *)a1;
	struct toa_udp_net *pn;
	const struct udphdr *uh;
	struct udphdr _uh __uninitialized;

	if (ip_hdr(skb)->protocol != IPPROTO_UDP)
		return;
	pn = toa_udp_net_of(net);
	if (!READ_ONCE(pn->entry))
		return;
	uh = toa_udp_wanted(pn, skb, ip_hdrlen(skb), false, &_uh);
	if (!uh || toa_udp_was_named(skb, &(struct in6_addr){ .s6_addr32 = { ip_hdr(skb)->daddr } },
				     uh->dest, false))
		return;
	rcu_read_lock();
	toa_udp_out4_packet(pn, skb, net, skb->sk, uh);
	rcu_read_unlock();
}

/* ip6_send_skb(skb): the same for IPv6 (UDP right after the fixed header;
 * skb->sk is the sending socket, as ip6_send_skb itself assumes). */
static void toa_udp_send6_entry(unsigned long a0, unsigned long a1, unsigned long a2,
				unsigned long a3)
{
	struct sk_buff *skb = (struct sk_buff *)a0;
	struct toa_udp_net *pn;
	const struct udphdr *uh;
	struct udphdr _uh __uninitialized;
	struct net *net;

	if (ipv6_hdr(skb)->nexthdr != IPPROTO_UDP || !skb->sk)
		return;
	net = sock_net(skb->sk);
	pn = toa_udp_net_of(net);
	if (!READ_ONCE(pn->entry))
		return;
	uh = toa_udp_wanted(pn, skb, sizeof(struct ipv6hdr), false, &_uh);
	if (!uh || toa_udp_was_named(skb, &ipv6_hdr(skb)->daddr, uh->dest, true))
		return;
	rcu_read_lock();
	toa_udp_out6_packet(pn, skb, net, skb->sk, uh);
	rcu_read_unlock();
}

/* The direct-call trampolines let a datagram whose backend port never had
 * a flow anywhere go on after a dozen instructions (direct_x86.h), without
 * the handler's call; the handlers make every test again. */
#ifdef TOA_DIRECT_ARCH
static void __used toa_udp_direct_offsets(void)
{
	asm volatile(".set toa_off_skb_head, %c0\n\t"
		     ".set toa_off_skb_data, %c1\n\t"
		     ".set toa_off_skb_len, %c2\n\t"
		     ".set toa_off_skb_data_len, %c3\n\t"
		     ".set toa_off_skb_nh, %c4\n\t"
		     : : "i" (offsetof(struct sk_buff, head)),
		     "i" (offsetof(struct sk_buff, data)),
		     "i" (offsetof(struct sk_buff, len)),
		     "i" (offsetof(struct sk_buff, data_len)),
		     "i" (offsetof(struct sk_buff, network_header)));
	asm volatile(".set toa_off_inet_sport, %c0\n\t"
		     : : "i" (offsetof(struct inet_sock, inet_sport)));
}
#endif
TOA_ENTRY_DIRECT_UNLESS(toa_udp_rcv4_entry, TOA_ASM_SKIP_UNLESS_UDP_RCV4);
TOA_ENTRY_DIRECT_UNLESS(toa_udp_rcv6_entry, TOA_ASM_SKIP_UNLESS_UDP_RCV6);
TOA_ENTRY_DIRECT(toa_udp_icmp4_entry);
TOA_ENTRY_DIRECT_UNLESS(toa_udp_sendmsg4_entry, TOA_ASM_SKIP_UNLESS_UDP_SENDMSG);
TOA_ENTRY_DIRECT_UNLESS(toa_udp_sendmsg6_entry, TOA_ASM_SKIP_UNLESS_UDP_SENDMSG);
TOA_ENTRY_DIRECT_UNLESS(toa_udp_send4_entry, TOA_ASM_SKIP_UNLESS_UDP_SEND4);
TOA_ENTRY_DIRECT_UNLESS(toa_udp_send6_entry, TOA_ASM_SKIP_UNLESS_UDP_SEND6);

enum {
	TOA_UDP_E_RCV4,
	TOA_UDP_E_RCV6,
	TOA_UDP_E_ICMP4,
	TOA_UDP_E_SENDMSG4,
	TOA_UDP_E_SENDMSG6,
	TOA_UDP_E_SEND4,
	TOA_UDP_E_SEND6,
	TOA_UDP_NR_ENTRY,
};

static struct toa_entry_hook toa_udp_entry_hooks[TOA_UDP_NR_ENTRY] = {
	[TOA_UDP_E_RCV4] = {
		.symbol = "udp_rcv",
		.handler = toa_udp_rcv4_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_udp_rcv4_entry),
	},
	[TOA_UDP_E_RCV6] = {
		.symbol = "udpv6_rcv",
		.handler = toa_udp_rcv6_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_udp_rcv6_entry),
	},
	[TOA_UDP_E_ICMP4] = {
		.symbol = "icmp_rcv",
		.handler = toa_udp_icmp4_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_udp_icmp4_entry),
	},
	[TOA_UDP_E_SENDMSG4] = {
		.symbol = "udp_sendmsg",
		.handler = toa_udp_sendmsg4_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_udp_sendmsg4_entry),
	},
	[TOA_UDP_E_SENDMSG6] = {
		.symbol = "udpv6_sendmsg",
		.handler = toa_udp_sendmsg6_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_udp_sendmsg6_entry),
	},
	[TOA_UDP_E_SEND4] = {
		.symbol = "ip_send_skb",
		.handler = toa_udp_send4_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_udp_send4_entry),
	},
	[TOA_UDP_E_SEND6] = {
		.symbol = "ip6_send_skb",
		.handler = toa_udp_send6_entry,
		.direct = TOA_ENTRY_DIRECT_FN(toa_udp_send6_entry),
	},
};

/*
 * Protocol 248 for the host (softirq, RCU held; skb->data at its header):
 * in a namespace these hooks serve, a valid one is turned back into UDP
 * and handed to UDP (a negative return resubmits to that protocol in
 * IPv4, a positive one in IPv6). Any other is dropped, as without a
 * handler (less the ICMP protocol-unreachable error).
 */
static int toa_opp4_rcv(struct sk_buff *skb)
{
	struct net *net = dev_net(skb->dev);
	struct toa_udp_net *pn = toa_udp_net_of(net);

	if (READ_ONCE(pn->entry) && toa_udp_entry_in(pn, skb, net, false)) {
		toa_udp_resubmit(skb);
		return -IPPROTO_UDP;
	}
	kfree_skb(skb);
	return 0;
}

static const struct net_protocol toa_opp4_protocol = {
	.handler = toa_opp4_rcv,
	/* UDP checks the policy of what it is turned into. */
	.no_policy = 1,
};

#if IS_ENABLED(CONFIG_IPV6)
static int toa_opp6_rcv(struct sk_buff *skb)
{
	struct net *net = dev_net(skb->dev);
	struct toa_udp_net *pn = toa_udp_net_of(net);

	/* Right after the fixed header, as DPVS puts it (as the netfilter
	 * hook takes it). */
	if (READ_ONCE(pn->entry) && skb_network_header_len(skb) == sizeof(struct ipv6hdr) &&
	    ipv6_hdr(skb)->nexthdr == TOA_IPPROTO_OPP && toa_udp_entry_in(pn, skb, net, true)) {
		toa_udp_resubmit(skb);
		return IPPROTO_UDP;
	}
	kfree_skb(skb);
	return 0;
}

static const struct inet6_protocol toa_opp6_protocol = {
	.handler = toa_opp6_rcv,
	/* Final: the resubmission goes straight to UDP, as for UDP in an
	 * encapsulation. */
	.flags = INET6_PROTO_NOPOLICY | INET6_PROTO_FINAL,
};
#endif

/* Under toa_udp_table_mutex. */
static bool toa_udp_entry_on, toa_opp4_on, toa_opp6_on;

/*
 * Place the hooks (once; toa_udp_table_mutex held). All seven entry hooks
 * are needed; protocol 248 may be another module's (then DPVS's option
 * protocol is not taken here, and the load says so). On failure nothing
 * stays placed and the caller uses netfilter hooks.
 */
int toa_udp_entry_up(void)
{
	int err = 0, i;

	if (toa_udp_entry_on)
		return 0;
	for (i = 0; i < TOA_UDP_NR_ENTRY; i++) {
		err = toa_entry_hook_register(&toa_udp_entry_hooks[i]);
		if (err) {
			pr_warn("cannot hook %s: %d\n", toa_udp_entry_hooks[i].symbol, err);
			goto unwind;
		}
	}
	err = inet_add_protocol(&toa_opp4_protocol, TOA_IPPROTO_OPP);
	toa_opp4_on = !err;
#if IS_ENABLED(CONFIG_IPV6)
	if (!inet6_add_protocol(&toa_opp6_protocol, TOA_IPPROTO_OPP))
		toa_opp6_on = true;
	else
		err = -EBUSY;
#endif
	if (err)
		pr_warn("IP protocol 248 has another handler: DPVS's option protocol is not taken in namespaces without netfilter hooks\n");
	pr_info("UDP clients served by protocol-level hooks in namespaces that do not forward\n");
	toa_udp_entry_on = true;
	return 0;

unwind:
	while (--i >= 0)
		toa_entry_hook_unregister(&toa_udp_entry_hooks[i]);
	return err;
}

/* Returns once no hook of these runs anywhere (toa_udp_table_mutex held). */
void toa_udp_entry_down(void)
{
	int i;

	if (!toa_udp_entry_on)
		return;
	if (toa_opp4_on)
		inet_del_protocol(&toa_opp4_protocol, TOA_IPPROTO_OPP);
#if IS_ENABLED(CONFIG_IPV6)
	if (toa_opp6_on)
		inet6_del_protocol(&toa_opp6_protocol, TOA_IPPROTO_OPP);
#endif
	toa_opp4_on = toa_opp6_on = false;
	for (i = 0; i < TOA_UDP_NR_ENTRY; i++)
		toa_entry_hook_unregister(&toa_udp_entry_hooks[i]);
	/* The protocol handlers run under RCU. */
	synchronize_net();
	toa_udp_entry_on = false;
}
