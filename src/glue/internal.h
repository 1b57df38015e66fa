/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What toa's C files share among themselves (the Rust boundary is glue.h).
 */
#ifndef TOA_GLUE_INTERNAL_H
#define TOA_GLUE_INTERNAL_H

#include <linux/ftrace.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/jiffies.h>
#include <linux/kprobes.h>
#include <linux/net.h>
#include <linux/rcupdate.h>
#include <linux/tcp.h>
#include <net/inet_connection_sock.h>
#include <net/netns/generic.h>
#include <net/sock.h>

#include "glue.h"

struct request_sock;
struct sk_buff;

/* admin.c: counters, procfs, sysctls, parameters */
int toa_admin_register(void);
void toa_admin_unregister(void);

/*
 * Each network namespace's toa data (admin.c): its /proc/sys/net/toa
 * and Rust's settings of the namespace (settings.rs), which packet paths
 * hand to Rust with the packet.
 */
#define TOA_SETTINGS_MAX 3968	/* settings.rs: SETTINGS_MAX */
struct toa_net {
	struct ctl_table_header *sysctl;
	/* The namespace's counters: RCU, NULL once it goes (counted as the
	 * host's then); dying keeps them until a grace period has passed. */
	struct toa_counters __percpu __rcu *counters;
	struct toa_counters __percpu *dying;
	struct list_head list;	/* toa_nets, under toa_nets_mutex */
	/* toa_settings_size() bytes, at most TOA_SETTINGS_MAX (checked on
	 * both sides; Rust asserts it needs no more than 8-byte alignment) */
	u64 settings[];
};
extern unsigned int toa_net_id;

/* The settings of net, which the caller keeps alive (a socket or packet of
 * it, RCU). Registered before any hook, unregistered after them all. */
static __always_inline const struct toa_settings *toa_net_settings(const struct net *net)
{
	const struct toa_net *tn;

	/* net_generic() without its rcu_read_lock() (two calls on preemptible
	 * kernels, on every SYN and new socket): a preempt-disabled section
	 * holds off the grace period after which a replaced generic array is
	 * freed. */
	preempt_disable_notrace();
	tn = rcu_dereference_sched(net->gen)->ptr[toa_net_id];
	preempt_enable_notrace();
	return (const struct toa_settings *)tn->settings;
}

/* The per-CPU counters of a namespace (names and order: stats.rs). */
#define TOA_MAX_COUNTERS 64
struct toa_counters {
	u64 v[TOA_MAX_COUNTERS];
};
extern unsigned int toa_nr_counters;
void toa_host_stat_add(unsigned int counter, u64 n);

/*
 * Count n events of tn's namespace on this CPU (the host's once the
 * namespace is going). Any context. The reader is a preempt-disabled
 * section, not rcu_read_lock() (two calls on preemptible kernels): the
 * counters are freed after synchronize_rcu(), which waits for such
 * sections too.
 */
/* Count n events in c (a namespace's counters, read under RCU by the
 * caller), or the host's if the namespace is going (c NULL). */
static __always_inline void toa_counters_add(struct toa_counters __percpu *c,
					     unsigned int counter, u64 n)
{
	if (likely(c))
		this_cpu_add(c->v[counter], n);	/* irq-safe: softirqs count too */
	else
		toa_host_stat_add(counter, n);
}

static __always_inline void toa_net_stat_add_sched(const struct toa_net *tn,
						   unsigned int counter, u64 n)
{
	toa_counters_add(rcu_dereference_sched(tn->counters), counter, n);
}

static __always_inline void toa_net_stat_add(const struct toa_net *tn, unsigned int counter, u64 n)
{
	if (unlikely(counter >= TOA_MAX_COUNTERS))
		return;
	preempt_disable_notrace();
	toa_net_stat_add_sched(tn, counter, n);
	preempt_enable_notrace();
}

/* Counters the glue bumps itself (stats.rs asserts their numbers). */
#define TOA_COUNTER_CHILD_TOA 0		/* Counter::SynRecvSockToa */
#define TOA_COUNTER_CHILD_NO_TOA 1	/* Counter::SynRecvSockNoToa */
#define TOA_COUNTER_USER_DATA_BUSY 6	/* Counter::ToaUserDataBusy */
#define TOA_COUNTER_SYNCOOKIE_NO_TOA 21	/* Counter::ToaSyncookieNoToa */

/*
 * Count one event in sk's namespace, on this CPU, inline (every
 * getpeername() of a TOA socket, and every child whose client the glue
 * stores, pays it). The paths run only
 * while the hooks are registered, inside the namespaces' registration.
 * net_generic() open-coded in the same preempt-disabled section: the
 * namespace's generic array is replaced under RCU and freed after a grace
 * period, which that section holds off.
 */
static __always_inline void toa_sk_stat_inc(const struct sock *sk, unsigned int counter)
{
	const struct toa_net *tn;

	if (unlikely(counter >= TOA_MAX_COUNTERS))
		return;
	preempt_disable_notrace();
	tn = rcu_dereference_sched(sock_net(sk)->gen)->ptr[toa_net_id];
	toa_net_stat_add_sched(tn, counter, 1);
	preempt_enable_notrace();
}

/*
 * toa_net_settings() and toa_sk_stat_inc() where softirqs are off and the
 * caller has checked it (softirq_count(): the handshake's hooks on the
 * kernel's receive path). Such a section holds off a grace period itself
 * (with PREEMPT_RT, local_bh_disable() takes an RCU read lock) and keeps
 * its task on its CPU, so neither needs preempt toggles of its own (an
 * increment, a decrement and a test a pair on preemptible kernels).
 */
static __always_inline const struct toa_net *toa_net_bh(const struct net *net)
{
	return rcu_dereference_bh(net->gen)->ptr[toa_net_id];
}

static __always_inline const struct toa_settings *toa_net_settings_bh(const struct net *net)
{
	return (const struct toa_settings *)toa_net_bh(net)->settings;
}

static __always_inline void toa_sk_stat_inc_bh(const struct sock *sk, unsigned int counter)
{
	if (unlikely(counter >= TOA_MAX_COUNTERS))
		return;
	toa_counters_add(rcu_dereference_bh(toa_net_bh(sock_net(sk))->counters), counter, 1);
}

/* tcp_records.c: the IPv6 record cache and registry */
int toa_records_init(void);
void toa_records_exit(void);
unsigned int toa_v6_drain(void);

/* tcp_park.c: the words of TOA sockets a BPF socket map took (park.rs) */
extern atomic_t toa_parked_count;
extern struct toa_entry_hook toa_park_hook;
int toa_park_init(void);
void toa_park_exit(void);
unsigned long toa_parked_word(const struct sock *sk, unsigned long word);
void toa_unpark(struct sock *sk);

/*
 * toa's word of sk: its sk_user_data, or, while a socket map holds that
 * field (SK_USER_DATA_PSOCK), the word parked for it (toa_sk_user_data()).
 */
static __always_inline unsigned long toa_sk_word(const struct sock *sk)
{
	unsigned long word = (unsigned long)rcu_access_pointer(sk->sk_user_data);

	if (unlikely(word & SK_USER_DATA_PSOCK))
		return toa_sk_user_data(sk);
	return word;
}

/* Store word in sk's sk_user_data if nobody holds it (Rust's
 * toa_sk_claim_user_data(), inline where the glue stores a word itself). */
static __always_inline bool toa_sk_claim_word(struct sock *sk, unsigned long word)
{
	unsigned long *slot = (unsigned long *)&sk->sk_user_data;

	return cmpxchg(slot, 0UL, word) == 0UL;
}

/* The clock toa's tables keep time by (ms since boot; jiffies64_to_msecs()
 * inline where HZ divides 1000, as on Debian's kernels: every handshake
 * and datagram hook reads it). */
static __always_inline u64 toa_now_ms(void)
{
#if !(MSEC_PER_SEC % HZ)
	return (MSEC_PER_SEC / HZ) * get_jiffies_64();
#else
	return jiffies64_to_msecs(get_jiffies_64());
#endif
}

/* tcp_syn.c: the handshake table, the SYN-side probes, the child's facts */
int toa_syn_table_init(void);
void toa_syn_table_exit(void);
int toa_syn_hooks_register(void);
void toa_syn_hooks_unregister(void);
unsigned long toa_syn_probes_missed(void);
void toa_syn_recv_child(struct sock *child, const struct sk_buff *skb,
			const struct request_sock *req, bool checked);

/* The facts of a handshake packet and its listener, inline where the
 * hooks read them (tcp_syn.c, tcp_redirect.c). */
/* Whether the owner of listener's sk_user_data takes its children's field
 * back after the kernel made them: SMC marks its listener's word NOCOPY (so
 * children do not inherit it) and clears each child's field once the
 * kernel's syn_recv_sock has returned. The other NOCOPY users, BPF's
 * reuseport arrays and sockmap's psocks, carry a flag of their own and
 * leave children alone. */
static __always_inline bool toa_listener_owner_clears(const struct sock *listener)
{
	unsigned long word;

	if (!listener)
		return false;
	word = (unsigned long)rcu_access_pointer(listener->sk_user_data);
	return (word & SK_USER_DATA_NOCOPY) &&
	       !(word & (SK_USER_DATA_BPF | SK_USER_DATA_PSOCK));
}

/* The TCP options of skb. tcp_v{4,6}_rcv() pulled the whole TCP header,
 * options included, into the linear area and checked doff >= 5 before any
 * of the functions toa hooks on the handshake runs. */
static __always_inline const u8 *toa_skb_options(const struct sk_buff *skb, size_t *len)
{
	const struct tcphdr *th = tcp_hdr(skb);

	*len = th->doff * 4 - sizeof(*th);
	return (const u8 *)(th + 1);
}

/* Sent by the host itself: every packet a local process sends to a local
 * address arrives on the namespace's loopback device (whose index is the
 * same in every namespace). A packet from another host or another
 * namespace (a veth, a tunnel) does not. */
static __always_inline bool toa_skb_local(const struct sk_buff *skb)
{
	return skb->skb_iif == LOOPBACK_IFINDEX;
}

/* Whether toa_syn_recv_word() may find a word for a child made for skb:
 * an IPv4 packet from another host that is no SYN (no Fast Open child). */
static __always_inline bool toa_syn_recv_may_word(const struct sk_buff *skb)
{
	return skb->protocol == htons(ETH_P_IP) && !toa_skb_local(skb) && !tcp_hdr(skb)->syn;
}

/*
 * At the entry of syn_recv_sock for listener, for a packet
 * toa_syn_recv_may_word() lets through: the word to store on the child
 * about to be made for skb when the packet alone decides its client (an
 * IPv4 ACK naming one trusted client, as balancers send it:
 * toa_child_word_v4), else 0 (then toa_syn_recv_quick(), and
 * toa_syn_recv_child() once the child exists, decide). Only with softirqs
 * off (the caller leaves the word for __inet_inherit_port's hook, which
 * needs them off).
 */
static __always_inline unsigned long toa_syn_recv_word(const struct sock *listener,
						       const struct sk_buff *skb)
{
	const u8 *options;
	size_t len;

	options = toa_skb_options(skb, &len);
	return toa_child_word_v4(toa_net_settings_bh(sock_net(listener)), options, len,
				 ip_hdr(skb)->saddr, toa_now_ms());
}

/* A syncookie's request socket is made from the completing ACK
 * (cookie_v{4,6}_check): no SYN-ACK was ever sent for it, so snt_synack is
 * 0, unlike any other request socket an ACK completes (a Fast Open child is
 * made from its SYN). The syncookie bit is set only for cookies a BPF
 * program checked. */
static __always_inline bool toa_req_syncookie(const struct sk_buff *skb,
					      const struct request_sock *req)
{
	return req && (req->syncookie || (!tcp_hdr(skb)->syn && !tcp_rsk(req)->snt_synack));
}

/* toa_child_quick()'s answers (handshake.rs, which asserts them). */
#define TOA_QUICK_NO_CLIENT 1
#define TOA_QUICK_SYNCOOKIE 2

/* Whether the child made (or about to be made) for skb can have no client
 * (toa_child_quick); then it is counted here, inline, in the namespace of
 * sk (the child, or its listener), as toa_on_child() would count it. */
static __always_inline bool toa_child_quick_counted(const struct sock *sk,
						    const struct sk_buff *skb, bool syncookie)
{
	const u8 *options;
	size_t len;
	unsigned int quick;

	options = toa_skb_options(skb, &len);
	quick = toa_child_quick(options, len, toa_skb_local(skb),
				skb->protocol == htons(ETH_P_IPV6), syncookie, toa_now_ms());
	if (!quick)
		return false;
	if (quick & TOA_QUICK_SYNCOOKIE)
		toa_sk_stat_inc(sk, TOA_COUNTER_SYNCOOKIE_NO_TOA);
	toa_sk_stat_inc(sk, TOA_COUNTER_CHILD_NO_TOA);
	return true;
}

/*
 * At the entry of syn_recv_sock (hook=direct, hook=ftrace): whether the
 * child about to be made for skb can have no client (toa_child_quick:
 * nothing in the packet or in toa's tables): then it is counted now, as
 * the child would be, and nothing more is done for it. A listener whose
 * accept queue is full makes no child: its calls take the whole path,
 * which counts only children made. Inline: every new connection's entry
 * check asks it.
 */
static __always_inline bool toa_syn_recv_quick(const struct sock *listener,
					       const struct sk_buff *skb,
					       const struct request_sock *req)
{
	if (sk_acceptq_is_full(listener))
		return false;
	return toa_child_quick_counted(listener, skb, toa_req_syncookie(skb, req));
}

/* entry.c: handlers at a function's entry (ftrace_ops or kprobes) */
struct toa_entry_hook {
	/* Set by the user of the hook. */
	const char *symbol;
	void (*handler)(unsigned long a0, unsigned long a1, unsigned long a2, unsigned long a3);
	/* For hook=direct (x86_64, arm64): the trampoline
	 * TOA_ENTRY_DIRECT(handler) (or _UNLESS) made for the handler. */
	void (*direct)(void);
	/* Kept by entry.c. */
	struct kprobe kp;
	struct ftrace_ops ops;
	bool on;
	bool ftrace;
	bool is_direct;
};
void toa_entry_hooks_use(bool ftrace, bool direct);

/* What toa_getname_answer_v4/v6 (tcp_redirect.c) return for a call they
 * leave to the kernel's function, wrapped: no answer of getname is 1. */
#define TOA_GETNAME_WRAP 1
/* The counter toa_getname_v4/v6 return for a client shown (stats.rs,
 * Counter::GetnameToaOk; a const assertion there keeps the two equal). */
#define TOA_GETNAME_ANSWERED 2
int toa_getname_answer_v4(struct socket *sock, struct sockaddr *uaddr, int peer);
int toa_getname_answer_v6(struct socket *sock, struct sockaddr *uaddr, int peer);

/*
 * TOA_ENTRY_DIRECT(handler) (at file scope, handler a static function of
 * the file taking four unsigned longs) makes handler##_direct: a
 * direct-call trampoline for the function's tracer call site (register_
 * ftrace_direct, as BPF trampolines are attached) that calls handler with
 * the function's first four arguments and returns into the function,
 * every argument register kept. TOA_ENTRY_DIRECT_FN(handler) names it
 * for struct toa_entry_hook (NULL where there is none).
 *
 * TOA_ENTRY_DIRECT_UNLESS(handler, TOA_ASM_SKIP_...) is the same, with a
 * test in the trampoline itself that lets the calls with nothing for toa
 * go on into the function after a few instructions, without the
 * handler's call (the handler makes the same test again: ftrace_ops and
 * kprobes call it for every call). The tests (direct_*.h):
 *
 *   TOA_ASM_SKIP_UNLESS_USER_DATA   the first argument, a socket, has no
 *                                   sk_user_data, or toa's word of an
 *                                   IPv4 client, and no word is parked
 *                                   (tcp_park.c): nothing to free
 *   TOA_ASM_SKIP_UNLESS_CHILD_STASHED  nothing is left on this CPU for a
 *                                   child (tcp_redirect.c)
 *   TOA_ASM_SKIP_UNLESS_DEFERRING   the first argument, a listener, does
 *                                   not defer accepting, or the fourth
 *                                   (tcp_check_req's fastopen) is true
 *   TOA_ASM_SKIP_UNLESS_UDP_*       a datagram received (RCV4, RCV6),
 *                                   sent (SEND4, SEND6) or about to be
 *                                   (SENDMSG: the socket's port) whose
 *                                   backend port never had a flow
 *                                   (udp_entry.c)
 *
 * They read offsets as assembler symbols, which TOA_DIRECT_OFFSETS() (or
 * udp_entry.c's own, for the skb's) defines in the file that uses them
 * (basic asm takes no operands).
 */
#if defined(CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS) && defined(CONFIG_X86_64)
#include "direct_x86.h"
#elif defined(CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS) && defined(CONFIG_ARM64)
#include "direct_arm64.h"
#endif
#ifdef TOA_DIRECT_ARCH
#define TOA_ENTRY_DIRECT(handler) TOA_ENTRY_DIRECT_UNLESS(handler, "")
#define TOA_DIRECT_OFFSETS()							\
	static void __used toa_direct_offsets(void)				\
	{									\
		asm volatile(".set toa_off_socket_sk, %c0\n\t"			\
			     ".set toa_off_sk_user_data, %c1\n\t"		\
			     ".set toa_off_defer_accept, %c2\n\t"		\
			     : : "i" (offsetof(struct socket, sk)),		\
			     "i" (offsetof(struct sock, sk_user_data)),		\
			     "i" (offsetof(struct inet_connection_sock,		\
					   icsk_accept_queue.rskq_defer_accept))); \
	}
#else
#define TOA_ENTRY_DIRECT(handler)
#define TOA_ENTRY_DIRECT_UNLESS(handler, skip)
#define TOA_ENTRY_DIRECT_FN(handler) NULL
#define TOA_DIRECT_OFFSETS()
#endif
bool toa_bench_omits(const char *symbol);
int toa_entry_hook_register(struct toa_entry_hook *h);
void toa_entry_hook_unregister(struct toa_entry_hook *h);
unsigned long toa_entry_hook_missed(const struct toa_entry_hook *h);

/* udp_nf.c: the flow table, which hooks serve a namespace, the netfilter
 * hooks, UOA_SO_GET_LOOKUP, /proc/net/toa_udp (udp_entry.c: the
 * protocol-level hooks; udp_net.h: what the two share) */
int toa_udp_table_init(void);
void toa_udp_table_exit(void);
int toa_udp_register(void);
void toa_udp_unregister(void);
int toa_udp_resize(unsigned long flows);
void toa_udp_config_changed(const struct net *net);	/* NULL: the host's settings only */
void toa_udp_trust_changed(const struct net *net);
const char *toa_udp_hooks_of(const struct net *net);	/* protocol, netfilter or none */

/* tcp_hooks.c: probes and the getsockopt */
int toa_hooks_register(void);
void toa_hooks_unregister(void);
int toa_intake_want(void);	/* a balancer is trusted: hook new connections */
void toa_intake_close(void);
unsigned long toa_probes_missed(void);
void toa_getname_rewrite(struct socket *sock, struct sockaddr *uaddr, int ret, bool v6);
void toa_syn_recv_done(struct sock *child, struct sk_buff *skb, struct request_sock *req,
		       bool v6_hook, bool checked);

/* tcp_redirect.c: getname redirected for TOA sockets (hook=direct, ftrace) */
enum toa_redirect_kind {
	TOA_REDIRECT_NONE,
	TOA_REDIRECT_FTRACE,
	TOA_REDIRECT_DIRECT,
};
bool toa_redirect_direct_available(void);
bool toa_redirect_direct_active(void);
int toa_redirect_register(enum toa_redirect_kind kind);
int toa_redirect_syn_recv_register(void);
void toa_redirect_unregister(void);
/* x86_64: preserves every register (the direct trampoline calls it
 * between loading FN's arguments and calling FN); arm64's trampoline keeps
 * the arguments itself. */
#ifdef CONFIG_X86_64
__attribute__((no_caller_saved_registers))
#endif
void toa_redirect_enter(void);
int toa_redirect_exit_v4(struct socket *sock, struct sockaddr *uaddr, int ret);
int toa_redirect_exit_v6(struct socket *sock, struct sockaddr *uaddr, int ret);

/*
 * Whether getname(sock, uaddr, peer) is to be rewritten: the peer of a TCP
 * socket whose sk_user_data is toa's. Runs on every getpeername() and
 * accept() of the host: a socket without sk_user_data (nearly all of them)
 * is let go after two loads; toa's Rust decides about the others.
 */
static __always_inline bool toa_getname_wanted(struct socket *sock, int peer)
{
	struct sock *sk;

	if (!peer || !sock)
		return false;
	sk = READ_ONCE(sock->sk);
	if (!sk || !rcu_access_pointer(sk->sk_user_data))
		return false;
	if (sk->sk_protocol != IPPROTO_TCP)
		return false;
	return toa_getname_peek(sk);
}

/*
 * After inet_getname / inet6_getname returned ret (an int: only the low 32
 * bits of the return register are its value): rewrite the peer address it
 * has just written. A negative return (-ENOTCONN) left no address.
 */
static __always_inline void toa_getname_rewrite_v4(struct socket *sock, struct sockaddr *uaddr,
						   int ret)
{
	struct sock *sk = sock->sk;

	if (ret >= (int)sizeof(struct sockaddr_in) && uaddr->sa_family == AF_INET)
		toa_sk_stat_inc(sk, toa_getname_v4(sk, toa_sk_word(sk),
							(struct sockaddr_in *)uaddr));
}

static __always_inline void toa_getname_rewrite_v6(struct socket *sock, struct sockaddr *uaddr,
						   int ret)
{
	struct sock *sk = sock->sk;

	if (ret >= (int)sizeof(struct sockaddr_in6) && uaddr->sa_family == AF_INET6)
		toa_sk_stat_inc(sk, toa_getname_v6(sk, toa_sk_word(sk),
							(struct sockaddr_in6 *)uaddr));
}

#endif /* TOA_GLUE_INTERNAL_H */
