// SPDX-License-Identifier: GPL-2.0
/*
 * Where toa hooks into the kernel: the handshake, getname and socket
 * destruction, and the TOA_SO_GET_LOOKUP getsockopt. No kernel text or
 * const table is written by toa, no kallsyms lookup is made: probes are
 * placed by the kernel's own probe core, and the default getname hook is
 * an ftrace redirection (tcp_redirect.c).
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/cpumask.h>
#include <linux/fprobe.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/net.h>
#include <linux/netfilter.h>
#include <linux/tcp.h>
#include <linux/uaccess.h>
#include <net/sock.h>

#include <uapi/linux/toa.h>

#include "glue.h"
#include "internal.h"

/*
 * Two hooks with an entry and a return side each, on two functions each:
 *
 *   tcp_v{4,6}_syn_recv_sock(sk, skb, ...) -> child   record the client
 *   inet{,6}_getname(sock, uaddr, peer) -> len        show the client
 *
 * The module parameter hook= chooses how (docs/performance.md has the
 * numbers):
 *
 *   auto       (default) direct where the architecture has it (x86_64,
 *              arm64), else ftrace
 *   direct     getname redirected for TOA sockets only by a direct-call
 *              trampoline (tcp_redirect.c); syn_recv_sock with kretprobes
 *   ftrace     the same redirection through an IPMODIFY ftrace_ops
 *   kretprobe  all four with kretprobes
 *   fprobe     all four with fprobes
 *
 * A redirection that cannot be had (a function already redirected by
 * someone else, such as a live patch of af_inet.c or a BPF trampoline)
 * makes toa fall back to kretprobes for getname, saying so once. The
 * probe wrappers below only fetch arguments and return values; the sides
 * are shared with the redirection.
 */

/* What the entry side keeps for the return side. */
struct toa_syn_recv_args {
	struct sk_buff *skb;
	struct request_sock *req;
};

struct toa_getname_args {
	struct socket *sock;
	struct sockaddr *uaddr;
};

/* Entry of syn_recv_sock: whether the return side is wanted. */
static bool toa_syn_recv_begin(struct toa_syn_recv_args *args, struct sk_buff *skb,
			       struct request_sock *req)
{
	args->skb = skb;
	args->req = req;
	return skb;
}

/* syn_recv_sock returned child (or NULL) for skb and req. The IPv6 hook
 * leaves IPv4 packets (to dual-stack listeners) to the IPv4 hook, which
 * tcp_v6_syn_recv_sock calls for them and which has seen them already. */
void notrace toa_syn_recv_done(struct sock *child, struct sk_buff *skb,
			       struct request_sock *req, bool v6_hook, bool checked)
{
	if (!child || (v6_hook && skb->protocol != htons(ETH_P_IPV6)))
		return;
	toa_syn_recv_child(child, skb, req, checked);
}

static void toa_syn_recv_end(const struct toa_syn_recv_args *args, struct sock *child, bool v6_probe)
{
	toa_syn_recv_done(child, args->skb, args->req, v6_probe, false);
}

/* Entry of getname: only peer addresses of sockets carrying a client need
 * the return side. */
static bool toa_getname_begin(struct toa_getname_args *args, struct socket *sock,
			      struct sockaddr *uaddr, int peer)
{
	if (!toa_getname_wanted(sock, peer))
		return false;
	args->sock = sock;
	args->uaddr = uaddr;
	return true;
}

/* After getname returned ret: rewrite the peer address it has just
 * written. */
void toa_getname_rewrite(struct socket *sock, struct sockaddr *uaddr, int ret, bool v6)
{
	if (v6)
		toa_getname_rewrite_v6(sock, uaddr, ret);
	else
		toa_getname_rewrite_v4(sock, uaddr, ret);
}

static void toa_getname_end(const struct toa_getname_args *args, int ret, bool v6_probe)
{
	toa_getname_rewrite(args->sock, args->uaddr, ret, v6_probe);
}

/* ---- kretprobes: a non-zero entry return skips the return handler. ---- */

static int toa_kr_syn_recv_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	return !toa_syn_recv_begin((void *)ri->data,
				   (struct sk_buff *)regs_get_kernel_argument(regs, 1),
				   (struct request_sock *)regs_get_kernel_argument(regs, 2));
}

static int toa_kr_syn_recv_v4_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	toa_syn_recv_end((void *)ri->data, (struct sock *)regs_return_value(regs), false);
	return 0;
}

static int toa_kr_syn_recv_v6_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	toa_syn_recv_end((void *)ri->data, (struct sock *)regs_return_value(regs), true);
	return 0;
}

static int toa_kr_getname_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	return !toa_getname_begin((void *)ri->data,
				  (struct socket *)regs_get_kernel_argument(regs, 0),
				  (struct sockaddr *)regs_get_kernel_argument(regs, 1),
				  (int)regs_get_kernel_argument(regs, 2));
}

static int toa_kr_getname_v4_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	toa_getname_end((void *)ri->data, (int)regs_return_value(regs), false);
	return 0;
}

static int toa_kr_getname_v6_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	toa_getname_end((void *)ri->data, (int)regs_return_value(regs), true);
	return 0;
}

#define TOA_KRETPROBE(sym, entry, ret, args) {			\
	.kp.symbol_name = sym,					\
	.entry_handler = entry,					\
	.handler = ret,						\
	.data_size = sizeof(struct args),			\
}

/* The probed functions, in registration order: getname before syn_recv, so
 * that every client recorded is shown. The IPv6 ones are optional (IPv6 may
 * be a module that is not loaded: then toa serves IPv4 only). */
enum toa_probe {
	TOA_GETNAME_V4,
	TOA_GETNAME_V6,
	TOA_SYN_RECV_V4,
	TOA_SYN_RECV_V6,
	TOA_NR_PROBES,
};

static struct kretprobe toa_kretprobes[TOA_NR_PROBES] = {
	[TOA_GETNAME_V4] = TOA_KRETPROBE("inet_getname", toa_kr_getname_entry,
					 toa_kr_getname_v4_return, toa_getname_args),
	[TOA_GETNAME_V6] = TOA_KRETPROBE("inet6_getname", toa_kr_getname_entry,
					 toa_kr_getname_v6_return, toa_getname_args),
	[TOA_SYN_RECV_V4] = TOA_KRETPROBE("tcp_v4_syn_recv_sock", toa_kr_syn_recv_entry,
					  toa_kr_syn_recv_v4_return, toa_syn_recv_args),
	[TOA_SYN_RECV_V6] = TOA_KRETPROBE("tcp_v6_syn_recv_sock", toa_kr_syn_recv_entry,
					  toa_kr_syn_recv_v6_return, toa_syn_recv_args),
};

/* ---- fprobes: the same, on the function tracer's entry and exit. ---- */

#ifdef TOA_FPROBE_FTRACE_REGS
/* 6.14+: fprobe handlers get ftrace_regs. */
typedef struct ftrace_regs toa_fregs;
#define toa_fp_arg(r, n) ftrace_regs_get_argument(r, n)
#define toa_fp_ret(r) ftrace_regs_get_return_value(r)
#else
typedef struct pt_regs toa_fregs;
#define toa_fp_arg(r, n) regs_get_kernel_argument(r, n)
#define toa_fp_ret(r) regs_return_value(r)
#endif

static int toa_fp_syn_recv_entry(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
				 toa_fregs *regs, void *data)
{
	return !toa_syn_recv_begin(data, (struct sk_buff *)toa_fp_arg(regs, 1),
				   (struct request_sock *)toa_fp_arg(regs, 2));
}

static void toa_fp_syn_recv_v4_exit(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
				    toa_fregs *regs, void *data)
{
	toa_syn_recv_end(data, (struct sock *)toa_fp_ret(regs), false);
}

static void toa_fp_syn_recv_v6_exit(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
				    toa_fregs *regs, void *data)
{
	toa_syn_recv_end(data, (struct sock *)toa_fp_ret(regs), true);
}

static int toa_fp_getname_entry(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
				toa_fregs *regs, void *data)
{
	return !toa_getname_begin(data, (struct socket *)toa_fp_arg(regs, 0),
				  (struct sockaddr *)toa_fp_arg(regs, 1), (int)toa_fp_arg(regs, 2));
}

static void toa_fp_getname_v4_exit(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
				   toa_fregs *regs, void *data)
{
	toa_getname_end(data, (int)toa_fp_ret(regs), false);
}

static void toa_fp_getname_v6_exit(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
				   toa_fregs *regs, void *data)
{
	toa_getname_end(data, (int)toa_fp_ret(regs), true);
}

#define TOA_FPROBE(entry, exit, args) {				\
	.entry_handler = entry,					\
	.exit_handler = exit,					\
	.entry_data_size = sizeof(struct args),			\
}

/* The same functions (symbols from toa_kretprobes). */
static struct fprobe toa_fprobes[TOA_NR_PROBES] = {
	[TOA_GETNAME_V4] = TOA_FPROBE(toa_fp_getname_entry, toa_fp_getname_v4_exit, toa_getname_args),
	[TOA_GETNAME_V6] = TOA_FPROBE(toa_fp_getname_entry, toa_fp_getname_v6_exit, toa_getname_args),
	[TOA_SYN_RECV_V4] = TOA_FPROBE(toa_fp_syn_recv_entry, toa_fp_syn_recv_v4_exit,
				       toa_syn_recv_args),
	[TOA_SYN_RECV_V6] = TOA_FPROBE(toa_fp_syn_recv_entry, toa_fp_syn_recv_v6_exit,
				       toa_syn_recv_args),
};

static bool toa_probe_on[TOA_NR_PROBES];
static bool toa_use_fprobe;

static bool toa_probe_optional(size_t i)
{
	return i == TOA_GETNAME_V6 || i == TOA_SYN_RECV_V6;
}

static bool toa_probe_is_getname(size_t i)
{
	return i == TOA_GETNAME_V4 || i == TOA_GETNAME_V6;
}

/* Every TCP socket (v4, v6, mapped) is destroyed through inet_sock_destruct
 * (directly, or from inet6_sock_destruct / tcp{4,6}_destruct_sock). */
static void notrace toa_destruct_entry(unsigned long a0, unsigned long a1, unsigned long a2,
			       unsigned long a3)
{
	struct sock *sk = (struct sock *)a0;

	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return;
	/* A socket a socket map held: its word was parked (tcp_park.c). */
	if (unlikely(atomic_read(&toa_parked_count)))
		toa_unpark(sk);
	if (rcu_access_pointer(sk->sk_user_data))
		toa_on_destruct(sk);
}

/* The trampoline lets a socket without sk_user_data, or with toa's word of
 * an IPv4 client (nothing to free), go at once while no word is parked
 * (what the handler would find, in a few instructions): most sockets. */
TOA_DIRECT_OFFSETS()
TOA_ENTRY_DIRECT_UNLESS(toa_destruct_entry, TOA_ASM_SKIP_UNLESS_USER_DATA);

static struct toa_entry_hook toa_destruct_hook = {
	.symbol = "inet_sock_destruct",
	.handler = toa_destruct_entry,
	.direct = TOA_ENTRY_DIRECT_FN(toa_destruct_entry),
};

unsigned long toa_probes_missed(void)
{
	unsigned long missed = toa_entry_hook_missed(&toa_destruct_hook);
	size_t i;

	for (i = 0; i < TOA_NR_PROBES; i++) {
		if (!toa_probe_on[i])
			continue;
		if (toa_use_fprobe)
			missed += toa_fprobes[i].nmissed;
		else
			missed += toa_kretprobes[i].nmissed + toa_kretprobes[i].kp.nmissed;
	}
	return missed;
}

/* ------------------------------------------------------------------------ */
/* getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP): see include/uapi/linux/toa.h */

static int toa_sockopt_get(struct sock *sk, int optval, void __user *user, int *len)
{
	struct toa_nat64_peer peer;
	int err;

	BUILD_BUG_ON(sizeof(peer) != 20);
	if (optval != TOA_SO_GET_LOOKUP)
		return -ENOPROTOOPT;
	if (*len < (int)sizeof(peer))
		return -EINVAL;
	if (sk->sk_type != SOCK_STREAM || sk->sk_protocol != IPPROTO_TCP)
		return -EOPNOTSUPP;
	err = toa_lookup(sk, &peer);
	if (err)
		return err;
	if (copy_to_user(user, &peer, sizeof(peer)))
		return -EFAULT;
	*len = sizeof(peer);
	return 0;
}

static struct nf_sockopt_ops toa_sockopt_ops = {
	.pf = PF_INET,
	.get_optmin = TOA_SO_GET_LOOKUP,
	.get_optmax = TOA_SO_GET_LOOKUP + 1,
	.get = toa_sockopt_get,
	.owner = THIS_MODULE,
};

/* ------------------------------------------------------------------------ */
/* Registration.                                                             */

static char *hook = "auto";
module_param(hook, charp, 0444);
MODULE_PARM_DESC(hook, "Hook mechanism: auto (default: direct on x86_64 and arm64, else ftrace), direct, ftrace, kretprobe or fprobe");

/* Whether getname and syn_recv_sock are redirected (hook=auto, direct,
 * ftrace) rather than probed. */
static bool toa_getname_redirected;
static bool toa_syn_recv_redirected;

static const char *toa_probe_symbol(size_t i)
{
	return toa_kretprobes[i].kp.symbol_name;
}

static int toa_register_probe(size_t i)
{
	const char *sym = toa_probe_symbol(i);

	if (toa_use_fprobe)
		return register_fprobe_syms(&toa_fprobes[i], &sym, 1);
	return register_kretprobe(&toa_kretprobes[i]);
}

/* Unregister the probes of one side (getname's, or syn_recv_sock's). */
static void toa_unregister_probe_side(bool getname)
{
	size_t i = TOA_NR_PROBES;

	while (i--) {
		if (!toa_probe_on[i] || toa_probe_is_getname(i) != getname)
			continue;
		if (toa_use_fprobe)
			unregister_fprobe(&toa_fprobes[i]);
		else
			unregister_kretprobe(&toa_kretprobes[i]);
		toa_probe_on[i] = false;
	}
}

/* Every probe: syn_recv_sock's, then getname's (the reverse of their
 * registration). */
static void toa_unregister_probes(void)
{
	toa_unregister_probe_side(false);
	toa_unregister_probe_side(true);
}

/* Probe one side's functions (getname's at load, syn_recv_sock's when new
 * connections are hooked), unless that side is redirected. */
static int toa_register_probes(bool getname)
{
	int getname_max = max_t(int, 256, 16 * num_possible_cpus());
	int syn_recv_max = max_t(int, 64, 4 * num_possible_cpus());
	size_t i;
	int err;

	if (getname ? toa_getname_redirected : toa_syn_recv_redirected)
		return 0;
	/* Return hooks hold an instance while the function runs, and
	 * inet_getname may sleep in lock_sock(): size the pools for many
	 * concurrent callers (a miss leaves the kernel's answer and shows in
	 * toa_stats as probe_missed). 6.14+ fprobes need no pool. */
	for (i = 0; i < TOA_NR_PROBES; i++)
		toa_kretprobes[i].maxactive = toa_probe_is_getname(i) ? getname_max : syn_recv_max;
#ifndef TOA_FPROBE_FTRACE_REGS
	for (i = 0; i < TOA_NR_PROBES; i++)
		toa_fprobes[i].nr_maxactive = toa_probe_is_getname(i) ? getname_max : syn_recv_max;
#endif

	if (toa_use_fprobe && getname)
		pr_info("hooks placed with fprobes\n");
	for (i = 0; i < TOA_NR_PROBES; i++) {
		if (toa_probe_is_getname(i) != getname)
			continue;
		err = toa_register_probe(i);
		if (!err) {
			toa_probe_on[i] = true;
		} else if (toa_probe_optional(i)) {
			pr_warn("cannot probe %s (%d): IPv6 sockets are not served\n",
				toa_probe_symbol(i), err);
		} else {
			pr_err("cannot probe %s with %s: %d\n", toa_probe_symbol(i), hook, err);
			toa_unregister_probe_side(getname);
			return err;
		}
	}
	return 0;
}

/* getname: redirected, or, if hook= says so or the redirection cannot be
 * had, probed like the rest. */
/* What hook= asks for. */
static struct {
	bool direct, ftrace;	/* getname redirections to try, in order */
} toa_hook_plan;

static int toa_parse_hook(void)
{
	toa_hook_plan.direct = false;
	toa_hook_plan.ftrace = false;
	if (!strcmp(hook, "fprobe")) {
		toa_use_fprobe = true;
	} else if (!strcmp(hook, "kretprobe")) {
		toa_use_fprobe = false;
	} else if (!strcmp(hook, "auto")) {
		/* The cheapest that can be had: direct, else ftrace (which
		 * can share a function with a BPF trampoline), else probes. */
		toa_hook_plan.direct = toa_redirect_direct_available();
		toa_hook_plan.ftrace = true;
	} else if (!strcmp(hook, "direct")) {
		toa_hook_plan.direct = true;
	} else if (!strcmp(hook, "ftrace")) {
		toa_hook_plan.ftrace = true;
	} else {
		pr_err("unknown hook=%s (auto, direct, ftrace, kretprobe or fprobe)\n", hook);
		return -EINVAL;
	}
	/* With probes asked for, every hook is a probe; else the entry
	 * hooks are direct calls where getname's are, else ftrace_ops. */
	toa_entry_hooks_use(toa_hook_plan.ftrace, toa_hook_plan.direct);
	return 0;
}

static void toa_choose_redirects(void)
{
	int err_direct = -EOPNOTSUPP, err_ftrace = -EOPNOTSUPP;

	if (!toa_hook_plan.direct && !toa_hook_plan.ftrace)
		return;
	if (toa_hook_plan.direct) {
		err_direct = toa_redirect_register(TOA_REDIRECT_DIRECT);
		if (!err_direct)
			goto getname_redirected;
	}
	if (toa_hook_plan.ftrace) {
		err_ftrace = toa_redirect_register(TOA_REDIRECT_FTRACE);
		if (!err_ftrace)
			goto getname_redirected;
	}
	/* One line says why: another user owns the function's entry (-EBUSY:
	 * a live patch, a BPF trampoline, another module). */
	pr_warn("getpeername()/accept() hooked with kretprobes instead (direct call: %d, ftrace: %d)\n",
		err_direct, err_ftrace);
	return;

getname_redirected:
	toa_getname_redirected = true;
}

/* Mirrors kapi::hook_name. */
int toa_hook_kind(void)
{
	if (toa_getname_redirected)
		return toa_redirect_direct_active() ? 0 : 1;
	return toa_use_fprobe ? 3 : 2;
}

static void toa_unregister_redirects(void)
{
	if (toa_getname_redirected || toa_syn_recv_redirected)
		toa_redirect_unregister();
	toa_getname_redirected = false;
	toa_syn_recv_redirected = false;
	toa_use_fprobe = false;
}

static DEFINE_MUTEX(toa_intake_mutex);
/* Under toa_intake_mutex: hooked; the other hooks are up (a write during
 * the bring-up waits for it: the bring-up looks at the lists after);
 * unloading (no more hooks). */
static bool toa_intake_on, toa_intake_ready, toa_intake_closed;

int toa_hooks_register(void)
{
	int err;

	err = toa_parse_hook();
	if (err)
		return err;
	/* The destructor first: every record made afterwards gets freed. */
	err = toa_entry_hook_register(&toa_destruct_hook);
	if (err) {
		pr_err("cannot hook %s: %d\n", toa_destruct_hook.symbol, err);
		return err;
	}
	/* Where BPF socket maps exist: TOA sockets may join them. Without it
	 * such a map refuses them (EBUSY), as it would without toa's help. */
#ifdef CONFIG_NET_SOCK_MSG
	err = toa_entry_hook_register(&toa_park_hook);
	if (err)
		pr_info("%s not hooked (%d): BPF socket maps refuse TOA sockets\n",
			toa_park_hook.symbol, err);
#endif
	toa_choose_redirects();
	err = toa_register_probes(true);
	if (err)
		goto unregister_redirects;
	err = nf_register_sockopt(&toa_sockopt_ops);
	if (err) {
		pr_err("cannot register getsockopt %d: %d\n", TOA_SO_GET_LOOKUP, err);
		goto unregister_probes;
	}
	mutex_lock(&toa_intake_mutex);
	toa_intake_ready = true;
	mutex_unlock(&toa_intake_mutex);
	return 0;

unregister_probes:
	toa_unregister_probes();
unregister_redirects:
	toa_unregister_redirects();
	toa_entry_hook_unregister(&toa_park_hook);
	toa_entry_hook_unregister(&toa_destruct_hook);
	return err;
}

/* ------------------------------------------------------------------------ */
/* New connections: hooked once a balancer is trusted.                      */

/*
 * The hooks every new connection passes (syn_recv_sock here, the SYN and
 * deferred-ACK hooks of tcp_syn.c) are placed the first time any namespace
 * trusts a balancer (at load with trusted_sources=, or by a write of a
 * trusted_sources), and stay until unload: while nobody is trusted no
 * option can name a client, so connections pay nothing for toa but the
 * destructor's test (the load's log line says nobody is trusted yet).
 * They are never removed earlier, so that no writer of a namespace's list
 * can make the host patch its functions again and again.
 */
int toa_intake_want(void)
{
	int err = 0;

	mutex_lock(&toa_intake_mutex);
	if (toa_intake_on || !toa_intake_ready || toa_intake_closed)
		goto out;
	/* After getname, so that every client recorded is shown. */
	if (toa_hook_plan.direct || toa_hook_plan.ftrace) {
		err = toa_redirect_syn_recv_register();
		if (!err)
			toa_syn_recv_redirected = true;
		else
			pr_warn("new connections hooked with kretprobes instead (ftrace: %d)\n", err);
	}
	err = toa_register_probes(false);
	if (err)
		goto out;
	/* Feeding the handshake table last: whatever it gets has a consumer. */
	toa_syn_hooks_register();
	toa_intake_on = true;
	pr_info("new connections hooked: a balancer is trusted\n");
out:
	mutex_unlock(&toa_intake_mutex);
	return err;
}

/* Unloading (or a load failing after toa_hooks_register): the SYN hooks go
 * first, and no write places them again (syn_recv_sock's hook goes with
 * the others, toa_hooks_unregister). Idempotent. */
void toa_intake_close(void)
{
	mutex_lock(&toa_intake_mutex);
	toa_intake_closed = true;
	toa_syn_hooks_unregister();
	mutex_unlock(&toa_intake_mutex);
}

/* Each unregistration returns once no handler of its runs anywhere. */
void toa_hooks_unregister(void)
{
	/* No write may hook new connections from here on. */
	toa_intake_close();
	nf_unregister_sockopt(&toa_sockopt_ops);
	toa_unregister_probes();
	toa_unregister_redirects();
	toa_entry_hook_unregister(&toa_park_hook);
	toa_entry_hook_unregister(&toa_destruct_hook);
}
