// SPDX-License-Identifier: GPL-2.0
/*
 * getpeername()/accept() at the cost of a function-entry check: for sockets
 * carrying a client, and for them only, inet_getname / inet6_getname are
 * redirected to a wrapper of toa's that calls the original and rewrites the
 * peer it wrote (or, with hook=direct, answers in the original's place:
 * toa_getname_answer_v4/v6 below); every other call goes on into the
 * original at once.
 *
 * Two ways to redirect, both through the function tracer's call site at the
 * start of each function (docs/performance.md has their cost):
 *
 * hook=direct (x86_64, arm64): a direct-call trampoline (register_ftrace_direct,
 *   as BPF trampolines are attached): the call site calls toa's trampoline
 *   itself, which checks the socket in a few instructions and returns into
 *   the function, or, for a TOA socket, returns into the wrapper instead.
 *
 * hook=ftrace (any architecture): an ftrace_ops with IPMODIFY, as livepatch
 *   redirects a patched function: the tracer saves the argument registers
 *   and calls toa's callback, which sets the instruction pointer the tracer
 *   returns to.
 *
 * Either way nothing is written into kernel text or tables by toa (the
 * function tracer patches its own call sites, as for any tracer), no
 * kallsyms lookup is made (both functions are exported), and the wrapper
 * calls the original itself: with hook=ftrace at its start, like any
 * caller (the check on that nested entry lets the wrapper's own call
 * through); with hook=direct just past the tracer's call site, as a BPF
 * trampoline calls the function it is attached to, so that the other
 * users of that call site (kretprobes, the function graph tracer, which
 * replace the return address toa's check would recognise the wrapper by)
 * see each call once and never send the wrapper's call back into the
 * trampoline. The wrapper is reached by a return, not an indirect branch, so
 * IBT and kCFI have nothing to check, and every call is matched by a
 * return (the return-stack predictor and call-depth accounting stay
 * balanced). Both registrations are PERMANENT: turning the function tracer
 * off (kernel.ftrace_enabled=0) would make toa silently show balancers, so
 * the tracer refuses that while toa is loaded.
 *
 * Unloading: once the registration is gone no new call is redirected, but
 * calls already redirected may still be in the wrapper (the original sleeps
 * in lock_sock()). Each redirected call counts itself in before it calls
 * the original and out after its last use of toa's data; unregistering
 * waits for an RCU-tasks grace period (after which every redirected call
 * has counted itself in, or been answered by hook=direct's own answer,
 * which does not sleep, and left), then unload waits for the count to reach zero,
 * and for another grace period, after which no task can be on the
 * wrapper's last instructions.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/bpf-cgroup.h>
#include <linux/delay.h>
#include <linux/ftrace.h>
#include <linux/hash.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/tcp.h>
#include <linux/uaccess.h>
#include <net/inet_common.h>
#include <net/inet_connection_sock.h>
#include <net/net_namespace.h>
#include <net/ipv6.h>
#include <net/sock.h>

#include "glue.h"
#include "internal.h"

/* ------------------------------------------------------------------------ */
/* What both ways share: counting redirected calls, and the rewrite.        */

/* Redirected calls not yet finished: counted in on one CPU, out on the same
 * or another (the original may sleep and migrate); only the sum means
 * anything. */
static DEFINE_PER_CPU(long, toa_redirects_in_flight);

static long toa_redirects_pending(void)
{
	long sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu(toa_redirects_in_flight, cpu);
	return sum;
}

/* A redirected call begins (before it calls the original). On x86_64 it
 * keeps every register (internal.h): the wrapper calls it with the
 * arguments live; arm64's wrapper keeps them itself. */
void notrace toa_redirect_enter(void)
{
	this_cpu_inc(toa_redirects_in_flight);
}

/* A redirected call's original returned ret: rewrite the peer it wrote,
 * count the call out, and give ret back (the trampoline returns it). */
int notrace toa_redirect_exit_v4(struct socket *sock, struct sockaddr *uaddr, int ret)
{
	toa_getname_rewrite_v4(sock, uaddr, ret);
	this_cpu_dec(toa_redirects_in_flight);
	return ret;
}

int notrace toa_redirect_exit_v6(struct socket *sock, struct sockaddr *uaddr, int ret)
{
	toa_getname_rewrite_v6(sock, uaddr, ret);
	this_cpu_dec(toa_redirects_in_flight);
	return ret;
}

/*
 * hook=direct answers most redirected calls itself (toa_redirected_FN,
 * direct_ARCH.h, calls these first): a peer query of a connected TOA
 * socket gets what FN would have written, the client in the kernel's
 * place (family, the client's port and address, sin_zero zeroed, or
 * IPv6's flow information and no scope; the length), without FN's call.
 * FN's own work there is mostly its socket lock, taken around the cgroup
 * BPF programs that may see getpeername(): with none attached, the lock
 * guards nothing toa reads (the socket's state and port, read once each,
 * as FN reads them, and toa's own record). Nothing here sleeps, so such a
 * call needs no count (toa_redirects_drain()'s grace periods cover it).
 * Every other call gets TOA_GETNAME_WRAP and is wrapped: counted in, FN
 * called, its answer rewritten, counted out. Those are the calls with a
 * cgroup BPF program on getpeername (it sees the kernel's address, and
 * toa's rewrite comes after it, as with the other mechanisms), sockets FN
 * answers -ENOTCONN, a client the socket cannot show (an IPv6 client on
 * an IPv4 socket) and words that are not toa's (the rewrite counts them).
 */
static __always_inline bool toa_getname_connected(const struct sock *sk, int peer)
{
	return READ_ONCE(inet_sk(sk)->inet_dport) &&
	       !(((1 << READ_ONCE(sk->sk_state)) & (TCPF_CLOSE | TCPF_SYN_SENT)) && peer == 1);
}

int notrace toa_getname_answer_v4(struct socket *sock, struct sockaddr *uaddr, int peer)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)uaddr;
	struct sock *sk = sock->sk;
	unsigned int counter;

	if (cgroup_bpf_enabled(CGROUP_INET4_GETPEERNAME) || !toa_getname_connected(sk, peer))
		return TOA_GETNAME_WRAP;
	counter = toa_getname_v4(sk, toa_sk_word(sk), sin);
	if (counter != TOA_GETNAME_ANSWERED)
		return TOA_GETNAME_WRAP;
	sin->sin_family = AF_INET;
	memset(sin->sin_zero, 0, sizeof(sin->sin_zero));
	toa_sk_stat_inc(sk, counter);
	return sizeof(*sin);
}

#if IS_ENABLED(CONFIG_IPV6)
int notrace toa_getname_answer_v6(struct socket *sock, struct sockaddr *uaddr, int peer)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)uaddr;
	struct sock *sk = sock->sk;
	unsigned int counter;

	if (cgroup_bpf_enabled(CGROUP_INET6_GETPEERNAME) || !toa_getname_connected(sk, peer))
		return TOA_GETNAME_WRAP;
	/* Port, address, and no scope: the client is on none of our links. */
	counter = toa_getname_v6(sk, toa_sk_word(sk), sin6);
	if (counter != TOA_GETNAME_ANSWERED)
		return TOA_GETNAME_WRAP;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_flowinfo = inet6_test_bit(SNDFLOW, sk) ? inet6_sk(sk)->flow_label : 0;
	toa_sk_stat_inc(sk, counter);
	return sizeof(*sin6);
}
#endif

/* After the registrations are gone: wait until no redirected call runs
 * toa's code any more. Sleeps. */
static void toa_redirects_drain(void)
{
	unsigned int waited = 0;

	/* Unregistering a dynamic ftrace_ops (a module's) returns only after
	 * an RCU-tasks grace period (ftrace_shutdown(): its callers must be
	 * done before the ops can be freed), so every call redirected before
	 * has left the trampoline and counted itself in by now. */
	while (toa_redirects_pending() > 0) {
		if (++waited == 1000)
			pr_info("waiting for getpeername() calls in progress to finish\n");
		msleep(10);
	}
	/* A task past its count-out may still be on the wrapper's last
	 * instructions; after this, none is. */
	synchronize_rcu_tasks();
}

/* The functions redirected, and toa's wrapper of each. */
enum toa_redirect_fn {
	TOA_REDIRECT_V4,
#if IS_ENABLED(CONFIG_IPV6)
	TOA_REDIRECT_V6,
#endif
	TOA_REDIRECT_NR,
};

static unsigned long toa_redirect_func(enum toa_redirect_fn fn)
{
#if IS_ENABLED(CONFIG_IPV6)
	if (fn == TOA_REDIRECT_V6)
		return (unsigned long)inet6_getname;
#endif
	return (unsigned long)inet_getname;
}

/* ------------------------------------------------------------------------ */
/* hook=ftrace: one IPMODIFY ftrace_ops on both functions.                   */

/*
 * The wrapper's own call of the original enters the function through its
 * start again, and the callback must let exactly that call through. The
 * return address names the wrapper where the tracer reads it before any
 * other user of the call site runs (x86: kprobes there are ftrace_ops too).
 * On arm64 a kprobe sits on the function's first instruction, ahead of the
 * tracer's call: a kretprobe on the function has replaced the return
 * address with its trampoline by the time toa's callback sees it, and each
 * nested call would be redirected again, as deep as the kretprobe has
 * instances (2 x CPUs: deeper than the stack on a large machine). So the
 * wrapper also marks its task in a small table, just before its call; the
 * nested entry takes the mark, and the wrapper clears a mark not taken.
 */
#define TOA_NEST_BITS 9
#define TOA_NEST_PROBES 4
static struct task_struct *toa_nest[1 << TOA_NEST_BITS];

static unsigned int toa_nest_slot(unsigned int i)
{
	return (hash_ptr(current, TOA_NEST_BITS) + i) & ((1 << TOA_NEST_BITS) - 1);
}

/* Mark the current task as about to call the original. When the task's
 * slots are all taken by other tasks, nothing is marked, and only the
 * return address tells. */
static void notrace toa_nest_mark(void)
{
	unsigned int i;

	for (i = 0; i < TOA_NEST_PROBES; i++)
		if (!cmpxchg(&toa_nest[toa_nest_slot(i)], NULL, current))
			return;
}

/* Take the current task's mark, if it has one. */
static bool notrace toa_nest_take(void)
{
	unsigned int i;

	for (i = 0; i < TOA_NEST_PROBES; i++) {
		struct task_struct **slot = &toa_nest[toa_nest_slot(i)];

		if (READ_ONCE(*slot) == current) {
			WRITE_ONCE(*slot, NULL);
			return true;
		}
	}
	return false;
}

static int toa_ftrace_v4_wrapper(struct socket *sock, struct sockaddr *uaddr, int peer)
{
	int ret;

	toa_nest_mark();
	ret = inet_getname(sock, uaddr, peer);
	toa_nest_take();
	return toa_redirect_exit_v4(sock, uaddr, ret);
}

#if IS_ENABLED(CONFIG_IPV6)
static int toa_ftrace_v6_wrapper(struct socket *sock, struct sockaddr *uaddr, int peer)
{
	int ret;

	toa_nest_mark();
	ret = inet6_getname(sock, uaddr, peer);
	toa_nest_take();
	return toa_redirect_exit_v6(sock, uaddr, ret);
}
#endif

static void notrace toa_ftrace_getname(unsigned long ip, unsigned long parent_ip,
				       struct ftrace_ops *ops, struct ftrace_regs *fregs);

/* One ops for both functions: unregistering it costs one set of grace
 * periods. */
static struct ftrace_ops toa_ftrace_ops = {
	.func = toa_ftrace_getname,
	.flags = FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_PERMANENT
#ifndef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
		 | FTRACE_OPS_FL_SAVE_REGS
#endif
};

static void notrace toa_ftrace_getname(unsigned long ip, unsigned long parent_ip,
				       struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct socket *sock = (struct socket *)ftrace_regs_get_argument(fregs, 0);
	int peer = (int)ftrace_regs_get_argument(fregs, 2);
	unsigned long wrapper = (unsigned long)toa_ftrace_v4_wrapper;

	if (!toa_getname_wanted(sock, peer))
		return;
	/* The wrapper's own call of the original goes through. */
	if (toa_nest_take() || within_module_mem_type(parent_ip, THIS_MODULE, MOD_TEXT))
		return;
#if IS_ENABLED(CONFIG_IPV6)
	/* ip is the tracer's call site, a few bytes into the function it is
	 * in: the nearer start below it names the function. */
	if (ip - (unsigned long)inet6_getname < ip - (unsigned long)inet_getname)
		wrapper = (unsigned long)toa_ftrace_v6_wrapper;
#endif
	toa_redirect_enter();
	ftrace_regs_set_instruction_pointer(fregs, wrapper);
}

static bool toa_ftrace_on;

static void toa_ftrace_unregister(void)
{
	if (!toa_ftrace_on)
		return;
	WARN_ON(unregister_ftrace_function(&toa_ftrace_ops));
	ftrace_free_filter(&toa_ftrace_ops);
	toa_ftrace_on = false;
}

static int toa_ftrace_register(void)
{
	unsigned long ips[TOA_REDIRECT_NR];
	size_t i;
	int err;

	for (i = 0; i < TOA_REDIRECT_NR; i++)
		ips[i] = toa_redirect_func(i);
	err = ftrace_set_filter_ips(&toa_ftrace_ops, ips, TOA_REDIRECT_NR, 0, 0);
	if (!err) {
		err = register_ftrace_function(&toa_ftrace_ops);
		if (err)
			ftrace_free_filter(&toa_ftrace_ops);
	}
	if (err)
		return err;
	toa_ftrace_on = true;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The child side: tcp_v{4,6}_syn_recv_sock's entry decides what the child  */
/* needs; __inet_inherit_port's hook records it once the child exists (with */
/* softirqs off), else the call is redirected to a wrapper that calls the   */
/* function and records the new child's client. Direct calls with          */
/* hook=direct, else one IPMODIFY ftrace_ops for both functions (some 100   */
/* instructions per connection where a kretprobe costs some 500).          */

#ifdef TOA_SYN_RECV_OPT_CHILD_INIT
#define TOA_SYN_RECV_PARAMS							\
	const struct sock *sk, struct sk_buff *skb, struct request_sock *req,	\
	struct dst_entry *dst, struct request_sock *req_unhash, bool *own_req,	\
	void (*opt_child_init)(struct sock *newsk, const struct sock *sk)
#define TOA_SYN_RECV_ARGS sk, skb, req, dst, req_unhash, own_req, opt_child_init
#else
#define TOA_SYN_RECV_PARAMS							\
	const struct sock *sk, struct sk_buff *skb, struct request_sock *req,	\
	struct dst_entry *dst, struct request_sock *req_unhash, bool *own_req
#define TOA_SYN_RECV_ARGS sk, skb, req, dst, req_unhash, own_req
#endif

typedef struct sock *(*toa_syn_recv_fn)(TOA_SYN_RECV_PARAMS);

/* The kernel's two functions, as a TCP socket of each family names them
 * (tcp_v6_syn_recv_sock is static, neither is exported everywhere). */
static toa_syn_recv_fn toa_syn_recv_orig[2];

/*
 * Set (to the calling task) by a wrapper just before it calls the
 * original, taken by the direct-call check (toa_syn_recv_check) at that
 * call's entry, so that the wrapper's own call goes through, whatever else
 * uses the call site (a kretprobe replaces the return address the check
 * could otherwise go by). Softirqs are off around the call, so no other
 * wrapper runs on the CPU in between (with PREEMPT_RT, whose softirq-off
 * sections can be preempted, the per-CPU softirq lock keeps them out and
 * the task pointer keeps any other caller from taking the mark); cleared
 * after it, should the entry not have come (the direct call being removed
 * meanwhile).
 */
static DEFINE_PER_CPU(struct task_struct *, toa_syn_recv_nested);

#define TOA_SYN_RECV_CALL(orig, child)						\
	do {									\
		local_bh_disable();						\
		this_cpu_write(toa_syn_recv_nested, current);			\
		child = (orig)(TOA_SYN_RECV_ARGS);				\
		this_cpu_write(toa_syn_recv_nested, NULL);			\
		local_bh_enable();						\
	} while (0)

static struct sock *__used toa_syn_recv_v4_wrapper(TOA_SYN_RECV_PARAMS)
{
	struct sock *child;

	TOA_SYN_RECV_CALL(toa_syn_recv_orig[0], child);
	toa_syn_recv_done(child, skb, req, false, true);
	this_cpu_dec(toa_redirects_in_flight);
	return child;
}

static struct sock *__used toa_syn_recv_v6_wrapper(TOA_SYN_RECV_PARAMS)
{
	struct sock *child;

	TOA_SYN_RECV_CALL(toa_syn_recv_orig[1], child);
	toa_syn_recv_done(child, skb, req, true, true);
	this_cpu_dec(toa_redirects_in_flight);
	return child;
}

static void notrace toa_syn_recv_ftrace(unsigned long ip, unsigned long parent_ip,
					struct ftrace_ops *ops, struct ftrace_regs *fregs);

static struct ftrace_ops toa_syn_recv_ops = {
	.func = toa_syn_recv_ftrace,
	.flags = FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_PERMANENT
#ifndef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
		 | FTRACE_OPS_FL_SAVE_REGS
#endif
};

/*
 * The child's client recorded without the wrapper, where it can be: the
 * kernel's syn_recv_sock, once it has made the child (locked, not yet
 * hashed: nobody else can see it), calls __inet_inherit_port(listener,
 * child), whose entry hook (toa_child_inherit_entry) records the client
 * from what syn_recv_sock's own entry left on this CPU (toa_child_stash):
 * the word to store, when the packet alone decides the client (an IPv4
 * ACK naming one trusted client, as balancers send it:
 * toa_syn_recv_word()), else the packet and request the call was made
 * for, for toa_syn_recv_child(). No wrapper, no return trampoline, no
 * second pass through the trampoline.
 *
 * Only where softirqs are off (softirq_count(): the kernel's receive path,
 * and the wrapper's own call): nothing else on this CPU can then run
 * syn_recv_sock between the two entries (with PREEMPT_RT, the per-CPU
 * softirq lock keeps every other such section off the CPU, and migration
 * is off). Every syn_recv_sock entry in such a section first clears the
 * stash, so what __inet_inherit_port finds was left by the call it is
 * in; it also checks the listener, the child's protocol, its peer port
 * and the sequence number it expects (the request's rcv_isn + 1) against
 * what was left, and takes the stash only if all agree. Called with
 * softirqs on (a listener's backlog, processed in its owner's task: a
 * syncookie's or a Fast Open SYN's child), syn_recv_sock is redirected to
 * the wrapper as before, which turns softirqs off around its call.
 *
 * The hook on __inet_inherit_port is placed after syn_recv_sock's and
 * removed before it (toa_child_stash_on says whether it is there), so
 * while it is there every syn_recv_sock entry passes toa's check first.
 */
struct toa_child_stash {
	const struct sock *listener;	/* NULL: nothing left (first: the
					 * x86 trampoline tests it) */
	unsigned long word;		/* to store; 0: skb and req are left */
	const struct sk_buff *skb;
	const struct request_sock *req;
	u32 rcv_nxt;			/* the child's: the request's rcv_isn + 1 */
	__be16 dport;			/* the child's: the packet's source port */
};
/* Not static: the trampolines read it (TOA_ASM_SKIP_UNLESS_CHILD_STASHED). */
DEFINE_PER_CPU(struct toa_child_stash, toa_child_stash);
static bool toa_child_stash_on;

/* At a syn_recv_sock entry: whether softirqs are off; then nothing is left
 * from before. */
static __always_inline bool toa_child_stash_clear(void)
{
	if (!softirq_count())
		return false;
	/* Softirqs off: no migration (nor preemption but with PREEMPT_RT). */
	__this_cpu_write(toa_child_stash.listener, NULL);
	return true;
}

/* Leave word (or, if 0, skb and req) for the child syn_recv_sock is about
 * to make for sk (with softirqs off). */
static __always_inline void toa_child_stash_put(const struct sock *sk, const struct sk_buff *skb,
						const struct request_sock *req, unsigned long word)
{
	struct toa_child_stash *st = this_cpu_ptr(&toa_child_stash);

	st->word = word;
	st->skb = skb;
	st->req = req;
	st->rcv_nxt = tcp_rsk(req)->rcv_isn + 1;
	st->dport = tcp_hdr(skb)->source;
	st->listener = sk;
}

/* Store word on child, of listener sk, and count it, as toa_on_child()
 * does for the same client: a busy field keeps its owner's word
 * (record.rs), and a listener's owner that takes its children's field
 * back (SMC) keeps it too. Softirqs are off (toa_child_inherit_entry()
 * checked). */
static __always_inline void toa_child_store(const struct sock *sk, struct sock *child,
					    unsigned long word)
{
	if (!toa_listener_owner_clears(sk) && toa_sk_claim_word(child, word)) {
		toa_sk_stat_inc_bh(child, TOA_COUNTER_CHILD_TOA);
	} else {
		toa_sk_stat_inc_bh(child, TOA_COUNTER_USER_DATA_BUSY);
		toa_sk_stat_inc_bh(child, TOA_COUNTER_CHILD_NO_TOA);
	}
}

/* Something is left on this CPU, with softirqs off: take it if it was
 * left for child (of listener sk). Inline: the trampolines (x86_64,
 * arm64) call the handler only when something is left. */
static __always_inline void toa_child_inherit(const struct sock *sk, struct sock *child)
{
	struct toa_child_stash *st = this_cpu_ptr(&toa_child_stash);

	if (st->listener != sk || !child || child->sk_protocol != IPPROTO_TCP ||
	    READ_ONCE(tcp_sk(child)->rcv_nxt) != st->rcv_nxt ||
	    inet_sk(child)->inet_dport != st->dport)
		return;
	st->listener = NULL;
	if (st->word)
		toa_child_store(sk, child, st->word);
	else
		toa_syn_recv_child(child, st->skb, st->req, true);
}

/* __inet_inherit_port(sk, child): child is the socket syn_recv_sock has
 * just made for sk. Most calls leave at the first test (on x86_64 in the
 * trampoline already). */
static void notrace toa_child_inherit_entry(unsigned long sk_arg, unsigned long child_arg,
					    unsigned long a2, unsigned long a3)
{
	/* Softirqs off (as syn_recv_sock's entry has them when it leaves
	 * something): no migration; the per-CPU read needs no more. */
	if (!softirq_count() || likely(!__this_cpu_read(toa_child_stash.listener)))
		return;
	toa_child_inherit((const struct sock *)sk_arg, (struct sock *)child_arg);
}

TOA_ENTRY_DIRECT_UNLESS(toa_child_inherit_entry, TOA_ASM_SKIP_UNLESS_CHILD_STASHED);

static struct toa_entry_hook toa_child_inherit_hook = {
	.symbol = "__inet_inherit_port",
	.handler = toa_child_inherit_entry,
	.direct = TOA_ENTRY_DIRECT_FN(toa_child_inherit_entry),
};

/*
 * Whether a call of syn_recv_sock (sk, skb, req; v6: of
 * tcp_v6_syn_recv_sock) is redirected to the wrapper (then counted in).
 * Not for IPv4 packets to dual-stack listeners (tcp_v6_syn_recv_sock
 * hands them to tcp_v4_syn_recv_sock, whose call decides), nor for a child
 * that can have no client (counted now, as the wrapper would count it),
 * nor for one __inet_inherit_port's hook records.
 */
static __always_inline bool toa_syn_recv_redirects(const struct sock *sk,
						   const struct sk_buff *skb,
						   const struct request_sock *req, bool v6,
						   bool bh_off)
{
	/* What the call needs can be left for __inet_inherit_port's hook. */
	bool stash = bh_off && req && READ_ONCE(toa_child_stash_on);
	unsigned long word;

	if (!skb || !sk || (v6 && skb->protocol != htons(ETH_P_IPV6)))
		return false;
	/* First what balancers send: a word settles the child. */
	if (stash && toa_syn_recv_may_word(skb)) {
		word = toa_syn_recv_word(sk, skb);
		if (word) {
			toa_child_stash_put(sk, skb, req, word);
			return false;
		}
	}
	if (toa_syn_recv_quick(sk, skb, req))
		return false;
	if (stash) {
		toa_child_stash_put(sk, skb, req, 0);
		return false;
	}
	toa_redirect_enter();
	return true;
}

static void notrace toa_syn_recv_ftrace(unsigned long ip, unsigned long parent_ip,
					struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	unsigned long wrapper = (unsigned long)toa_syn_recv_v4_wrapper;
	bool bh_off = toa_child_stash_clear();
	bool v6 = false;

	/* The wrappers' own calls of the originals go through. */
	if (within_module_mem_type(parent_ip, THIS_MODULE, MOD_TEXT))
		return;
	/* ip is the tracer's call site, a few bytes into its function: the
	 * nearer start below it names the function. */
	if (toa_syn_recv_orig[1] &&
	    ip - (unsigned long)toa_syn_recv_orig[1] < ip - (unsigned long)toa_syn_recv_orig[0]) {
		wrapper = (unsigned long)toa_syn_recv_v6_wrapper;
		v6 = true;
	}
	if (toa_syn_recv_redirects((const struct sock *)ftrace_regs_get_argument(fregs, 0),
				   (const struct sk_buff *)ftrace_regs_get_argument(fregs, 1),
				   (const struct request_sock *)ftrace_regs_get_argument(fregs, 2), v6,
				   bh_off))
		ftrace_regs_set_instruction_pointer(fregs, wrapper);
}

/* The syn_recv_sock of a TCP socket of family, or NULL. */
static toa_syn_recv_fn toa_syn_recv_of(int family)
{
	toa_syn_recv_fn fn = NULL;
	struct socket *sock;

	if (sock_create_kern(&init_net, family, SOCK_STREAM, IPPROTO_TCP, &sock))
		return NULL;
	fn = inet_csk(sock->sk)->icsk_af_ops->syn_recv_sock;
	sock_release(sock);
	return fn;
}

static bool toa_syn_recv_on;
static int toa_syn_recv_direct_register(void);
static void toa_syn_recv_direct_unregister(void);
static enum toa_redirect_kind toa_redirect_active = TOA_REDIRECT_NONE;

/* syn_recv_sock's redirection: direct calls, else the IPMODIFY ops. */
static int toa_syn_recv_redirect_register(void)
{
	unsigned long ips[2];
	unsigned int n = 0;
	int err;

	/* With getname's direct calls, direct calls here too; else (or if
	 * they cannot be had) the IPMODIFY ops. */
	if (toa_redirect_active == TOA_REDIRECT_DIRECT) {
		err = toa_syn_recv_direct_register();
		if (!err)
			return 0;
		pr_info("syn_recv_sock: no direct call (%d), an IPMODIFY ftrace_ops instead\n", err);
	}
	ips[n++] = (unsigned long)toa_syn_recv_orig[0];
	if (toa_syn_recv_orig[1])
		ips[n++] = (unsigned long)toa_syn_recv_orig[1];
	err = ftrace_set_filter_ips(&toa_syn_recv_ops, ips, n, 0, 0);
	if (!err) {
		err = register_ftrace_function(&toa_syn_recv_ops);
		if (err)
			ftrace_free_filter(&toa_syn_recv_ops);
	}
	toa_syn_recv_on = !err;
	return err;
}

int toa_redirect_syn_recv_register(void)
{
	int err;

	if (toa_bench_omits("syn_recv_sock"))
		return 0;
	toa_syn_recv_orig[0] = toa_syn_recv_of(AF_INET);
	toa_syn_recv_orig[1] = IS_ENABLED(CONFIG_IPV6) ? toa_syn_recv_of(AF_INET6) : NULL;
	if (!toa_syn_recv_orig[0])
		return -ENOENT;
	err = toa_syn_recv_redirect_register();
	if (err)
		return err;
	/* After syn_recv_sock's hook (see toa_child_stash): without it every
	 * child is recorded by the wrapper. */
	err = toa_entry_hook_register(&toa_child_inherit_hook);
	if (!err && toa_child_inherit_hook.on)
		WRITE_ONCE(toa_child_stash_on, true);
	else if (err)
		pr_info("%s not hooked (%d): every new connection's child is recorded by a wrapper\n",
			toa_child_inherit_hook.symbol, err);
	return 0;
}

static void toa_syn_recv_unregister(void)
{
	/* Before syn_recv_sock's hook; once it returns, nothing is taken
	 * from the stash any more. */
	WRITE_ONCE(toa_child_stash_on, false);
	toa_entry_hook_unregister(&toa_child_inherit_hook);
	toa_syn_recv_direct_unregister();
	if (!toa_syn_recv_on)
		return;
	WARN_ON(unregister_ftrace_function(&toa_syn_recv_ops));
	ftrace_free_filter(&toa_syn_recv_ops);
	toa_syn_recv_on = false;
}

/* ------------------------------------------------------------------------ */
/* hook=direct: a direct-call trampoline per function (x86_64, arm64; the   */
/* assembly is in direct_x86.h and direct_arm64.h).                          */

#ifdef TOA_DIRECT_ARCH
#define TOA_HAVE_DIRECT 1

void toa_direct_inet_getname(void);
void toa_direct_inet6_getname(void);

/* The offsets the trampolines read (internal.h). The socket map's flag
 * they test is bit 2 (x86 tests it rotated to bit 10). */
static_assert(SK_USER_DATA_PSOCK == 4);
TOA_DIRECT_OFFSETS()

asm(TOA_DIRECT_GETNAME_ASM(inet_getname, v4));
#if IS_ENABLED(CONFIG_IPV6)
asm(TOA_DIRECT_GETNAME_ASM(inet6_getname, v6));
#endif

static struct ftrace_ops toa_direct_ops[TOA_REDIRECT_NR] = {
	[0 ... TOA_REDIRECT_NR - 1] = {
		.flags = FTRACE_OPS_FL_PERMANENT,
	},
};

static unsigned long toa_direct_tramp(enum toa_redirect_fn fn)
{
#if IS_ENABLED(CONFIG_IPV6)
	if (fn == TOA_REDIRECT_V6)
		return (unsigned long)toa_direct_inet6_getname;
#endif
	return (unsigned long)toa_direct_inet_getname;
}

static bool toa_direct_on[TOA_REDIRECT_NR];

/* FN's tracer call site (direct_ARCH.h), whose instructions
 * toa_direct_site_ok() checked. */
static unsigned long toa_direct_site(enum toa_redirect_fn fn)
{
	return toa_direct_site_of(toa_redirect_func(fn));
}

/*
 * Before 7.x, register_ftrace_direct() replaces the ops' flags, dropping
 * PERMANENT. Then a PERMANENT ops of toa's own, on a function of toa's
 * that is never called (so it costs nothing), keeps the tracer from being
 * turned off while the direct calls depend on it.
 */
static void notrace toa_pin_func(unsigned long ip, unsigned long parent_ip,
				 struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
}

static noinline void __used toa_pin_target(void)
{
	barrier();
}

static struct ftrace_ops toa_pin_ops = {
	.func = toa_pin_func,
	.flags = FTRACE_OPS_FL_PERMANENT,
};

static bool toa_pin_on;

static void toa_pin_tracer(void)
{
	int err;

	if (toa_direct_ops[0].flags & FTRACE_OPS_FL_PERMANENT)
		return;
	err = ftrace_set_filter_ip(&toa_pin_ops, (unsigned long)toa_pin_target, 0, 0);
	if (!err) {
		err = register_ftrace_function(&toa_pin_ops);
		if (err)
			ftrace_free_filter(&toa_pin_ops);
	}
	if (err)
		pr_warn("cannot keep the function tracer on (%d): kernel.ftrace_enabled=0 would hide clients\n",
			err);
	toa_pin_on = !err;
}

static void toa_direct_unregister(void)
{
	size_t i;

	if (toa_pin_on) {
		WARN_ON(unregister_ftrace_function(&toa_pin_ops));
		ftrace_free_filter(&toa_pin_ops);
		toa_pin_on = false;
	}
	for (i = 0; i < TOA_REDIRECT_NR; i++) {
		if (!toa_direct_on[i])
			continue;
		WARN_ON(unregister_ftrace_direct(&toa_direct_ops[i], toa_direct_tramp(i), true));
		toa_direct_on[i] = false;
	}
}

/* Make the tracer call site at ip call tramp, through ops. */
static int toa_direct_attach(struct ftrace_ops *ops, unsigned long ip, unsigned long tramp)
{
	int err = ftrace_set_filter_ip(ops, ip, 0, 0);

	if (err)
		return err;
	err = register_ftrace_direct(ops, tramp);
	if (err)
		ftrace_free_filter(ops);
	return err;
}

static int toa_direct_register(void)
{
	size_t i;
	int err;

	for (i = 0; i < TOA_REDIRECT_NR; i++) {
		if (!toa_direct_site_ok(toa_redirect_func(i))) {
			pr_info("%ps has no tracer call site where hook=direct expects it\n",
				(void *)toa_redirect_func(i));
			toa_direct_unregister();
			return -EOPNOTSUPP;
		}
		err = toa_direct_attach(&toa_direct_ops[i], toa_direct_site(i), toa_direct_tramp(i));
		if (err) {
			toa_direct_unregister();
			return err;
		}
		toa_direct_on[i] = true;
	}
	toa_pin_tracer();
	return 0;
}

/*
 * syn_recv_sock (tcp_v4_syn_recv_sock, tcp_v6_syn_recv_sock), which every
 * new connection passes: toa_direct_syn_recv_vN, called by its tracer
 * call site, saves the argument registers and asks toa_syn_recv_check()
 * (sk, skb, req) whether to redirect (it leaves a note for
 * __inet_inherit_port's hook instead wherever it can:
 * toa_syn_recv_redirects()); if so it returns into the wrapper
 * instead of the function, with the stack as at the function's entry
 * (the seventh argument, if any, included). The wrapper calls the
 * function at its start (tcp_v6_syn_recv_sock is static, and calling past
 * the call site through a pointer would need an ENDBR there): its
 * toa_syn_recv_nested mark lets that call through.
 */
bool toa_syn_recv_check(const struct sock *sk, const struct sk_buff *skb,
			const struct request_sock *req, bool v6);
bool notrace toa_syn_recv_check(const struct sock *sk, const struct sk_buff *skb,
				const struct request_sock *req, bool v6)
{
	bool bh_off = toa_child_stash_clear();

	if (this_cpu_read(toa_syn_recv_nested) == current) {
		this_cpu_write(toa_syn_recv_nested, NULL);
		return false;
	}
	return toa_syn_recv_redirects(sk, skb, req, v6, bh_off);
}

void toa_direct_syn_recv_v4(void);
void toa_direct_syn_recv_v6(void);
asm(TOA_SYN_RECV_DIRECT_ASM(v4, 0));
asm(TOA_SYN_RECV_DIRECT_ASM(v6, 1));

static struct ftrace_ops toa_syn_recv_direct_ops[2];
static bool toa_syn_recv_direct_on[2];

static unsigned long toa_syn_recv_tramp(size_t i)
{
	return i ? (unsigned long)toa_direct_syn_recv_v6 : (unsigned long)toa_direct_syn_recv_v4;
}

static void toa_syn_recv_direct_unregister(void)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(toa_syn_recv_direct_ops); i++) {
		if (!toa_syn_recv_direct_on[i])
			continue;
		WARN_ON(unregister_ftrace_direct(&toa_syn_recv_direct_ops[i],
						 toa_syn_recv_tramp(i), true));
		toa_syn_recv_direct_on[i] = false;
	}
}

static int toa_syn_recv_direct_register(void)
{
	size_t i;
	int err;

	for (i = 0; i < ARRAY_SIZE(toa_syn_recv_direct_ops); i++) {
		if (!toa_syn_recv_orig[i])
			continue;
		memset(&toa_syn_recv_direct_ops[i], 0, sizeof(toa_syn_recv_direct_ops[i]));
		err = toa_direct_attach(&toa_syn_recv_direct_ops[i],
					(unsigned long)toa_syn_recv_orig[i], toa_syn_recv_tramp(i));
		if (err) {
			toa_syn_recv_direct_unregister();
			return err;
		}
		toa_syn_recv_direct_on[i] = true;
	}
	return 0;
}
#else
#define TOA_HAVE_DIRECT 0

static int toa_syn_recv_direct_register(void)
{
	return -EOPNOTSUPP;
}

static void toa_syn_recv_direct_unregister(void)
{
}

static int toa_direct_register(void)
{
	return -EOPNOTSUPP;
}

static void toa_direct_unregister(void)
{
}
#endif

/* ------------------------------------------------------------------------ */

bool toa_redirect_direct_available(void)
{
	return TOA_HAVE_DIRECT;
}

bool toa_redirect_direct_active(void)
{
	return toa_redirect_active == TOA_REDIRECT_DIRECT;
}

int toa_redirect_register(enum toa_redirect_kind kind)
{
	int err;

	if (kind == TOA_REDIRECT_DIRECT)
		err = toa_direct_register();
	else
		err = toa_ftrace_register();
	if (!err)
		toa_redirect_active = kind;
	return err;
}

void toa_redirect_unregister(void)
{
	bool any = toa_syn_recv_on || toa_redirect_active != TOA_REDIRECT_NONE;

	toa_syn_recv_unregister();
	if (toa_redirect_active == TOA_REDIRECT_DIRECT)
		toa_direct_unregister();
	else if (toa_redirect_active == TOA_REDIRECT_FTRACE)
		toa_ftrace_unregister();
	toa_redirect_active = TOA_REDIRECT_NONE;
	if (any)
		toa_redirects_drain();
}
