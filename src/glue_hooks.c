// SPDX-License-Identifier: GPL-2.0
/*
 * Where toa hooks into the kernel: probes on the handshake, getname and
 * socket destruction, and the TOA_SO_GET_LOOKUP getsockopt. No kernel text
 * or const table is written, no kallsyms lookup is made: the probes are
 * placed by the kernel's own probe core.
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
#include "glue_internal.h"

/*
 * Two hooks with an entry and a return side each, on two functions each:
 *
 *   tcp_v{4,6}_syn_recv_sock(sk, skb, ...) -> child   record the client
 *   inet{,6}_getname(sock, uaddr, peer) -> len        show the client
 *
 * They can be placed with kretprobes (default) or fprobes (module parameter
 * hook=fprobe; see docs/performance.md for the numbers). The mechanism
 * wrappers below only fetch arguments and return values; the sides are
 * shared.
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

/* Return of syn_recv_sock with the new child (or NULL). The IPv6 probe
 * leaves IPv4 packets (to dual-stack listeners) to the IPv4 probe, which
 * tcp_v6_syn_recv_sock calls for them and which has seen them already. */
static void toa_syn_recv_end(const struct toa_syn_recv_args *args, struct sock *child, bool v6_probe)
{
	if (!child || (v6_probe && args->skb->protocol != htons(ETH_P_IPV6)))
		return;
	toa_syn_recv_child(child, args->skb, args->req);
}

/* Entry of getname: only peer addresses of TCP sockets carrying a client
 * need the return side. */
static bool toa_getname_begin(struct toa_getname_args *args, struct socket *sock,
			      struct sockaddr *uaddr, int peer)
{
	if (!peer || !sock || !sock->sk || sock->sk->sk_protocol != IPPROTO_TCP)
		return false;
	if (!toa_getname_peek(sock->sk))
		return false;
	args->sock = sock;
	args->uaddr = uaddr;
	return true;
}

/* Return of getname (an int: only the low 32 bits of the return register
 * are its value): rewrite the peer address it has just written. A
 * negative return (-ENOTCONN) left no address to rewrite. */
static void toa_getname_end(const struct toa_getname_args *args, int ret, bool v6_probe)
{
	if (v6_probe) {
		if (ret >= (int)sizeof(struct sockaddr_in6) && args->uaddr->sa_family == AF_INET6)
			toa_getname_v6(args->sock->sk, (struct sockaddr_in6 *)args->uaddr);
	} else {
		if (ret >= (int)sizeof(struct sockaddr_in) && args->uaddr->sa_family == AF_INET)
			toa_getname_v4(args->sock->sk, (struct sockaddr_in *)args->uaddr);
	}
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
static int toa_destruct_pre(struct kprobe *kp, struct pt_regs *regs)
{
	struct sock *sk = (struct sock *)regs_get_kernel_argument(regs, 0);

	if (sk && sk->sk_protocol == IPPROTO_TCP && rcu_access_pointer(sk->sk_user_data))
		toa_on_destruct(sk);
	return 0;
}

static struct kprobe toa_destruct_probe = {
	.symbol_name = "inet_sock_destruct",
	.pre_handler = toa_destruct_pre,
};

unsigned long toa_probes_missed(void)
{
	unsigned long missed = toa_destruct_probe.nmissed;
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

static char *hook = "kretprobe";
module_param(hook, charp, 0444);
MODULE_PARM_DESC(hook, "Hook mechanism: kretprobe (default) or fprobe");

static const char *toa_probe_symbol(size_t i)
{
	return toa_kretprobes[i].kp.symbol_name;
}

static void toa_unregister_probes(void)
{
	size_t i = TOA_NR_PROBES;

	while (i--) {
		if (toa_probe_on[i]) {
			if (toa_use_fprobe)
				unregister_fprobe(&toa_fprobes[i]);
			else
				unregister_kretprobe(&toa_kretprobes[i]);
		}
		toa_probe_on[i] = false;
	}
}

static int toa_register_probe(size_t i)
{
	const char *sym = toa_probe_symbol(i);

	if (toa_use_fprobe)
		return register_fprobe_syms(&toa_fprobes[i], &sym, 1);
	return register_kretprobe(&toa_kretprobes[i]);
}

static int toa_register_probes(void)
{
	int getname_max = max_t(int, 256, 16 * num_possible_cpus());
	int syn_recv_max = max_t(int, 64, 4 * num_possible_cpus());
	size_t i;
	int err;

	if (!strcmp(hook, "fprobe")) {
		toa_use_fprobe = true;
	} else if (strcmp(hook, "kretprobe")) {
		pr_err("unknown hook=%s (kretprobe or fprobe)\n", hook);
		return -EINVAL;
	}
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

	if (toa_use_fprobe)
		pr_info("hooks placed with fprobes\n");
	for (i = 0; i < TOA_NR_PROBES; i++) {
		err = toa_register_probe(i);
		if (!err) {
			toa_probe_on[i] = true;
		} else if (toa_probe_optional(i)) {
			pr_warn("cannot probe %s (%d): IPv6 sockets are not served\n",
				toa_probe_symbol(i), err);
		} else {
			pr_err("cannot probe %s with %s: %d\n", toa_probe_symbol(i), hook, err);
			toa_unregister_probes();
			return err;
		}
	}
	return 0;
}

int toa_hooks_register(void)
{
	int err;

	/* The destructor first: every record made afterwards gets freed. */
	err = register_kprobe(&toa_destruct_probe);
	if (err) {
		pr_err("cannot probe %s: %d\n", toa_destruct_probe.symbol_name, err);
		return err;
	}
	err = toa_register_probes();
	if (err)
		goto unregister_destruct;
	err = nf_register_sockopt(&toa_sockopt_ops);
	if (err) {
		pr_err("cannot register getsockopt %d: %d\n", TOA_SO_GET_LOOKUP, err);
		goto unregister_probes;
	}
	return 0;

unregister_probes:
	toa_unregister_probes();
unregister_destruct:
	unregister_kprobe(&toa_destruct_probe);
	return err;
}

/* Each unregistration returns once no handler of its runs anywhere. */
void toa_hooks_unregister(void)
{
	nf_unregister_sockopt(&toa_sockopt_ops);
	toa_unregister_probes();
	unregister_kprobe(&toa_destruct_probe);
}
