// SPDX-License-Identifier: GPL-2.0
/*
 * toa's C glue: the kernel registrations the Rust crate cannot make with the
 * kernel crate of 6.12..7.x (kprobes, netfilter sockopt, sysctl, procfs,
 * module parameters, per-CPU counters, a slab cache) and the few struct sock
 * accesses it needs. Every decision is taken on the Rust side (see glue.h);
 * this file gathers facts, calls, and keeps memory and locks.
 *
 * No kernel text or const table is written, no kallsyms lookup is made: the
 * hooks are kprobes placed by the kernel's own probe core.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/cpumask.h>
#include <linux/fprobe.h>
#include <linux/hashtable.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/netfilter.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/sysctl.h>
#include <linux/tcp.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include <uapi/linux/toa.h>

#include "glue.h"

/* ------------------------------------------------------------------------ */
/* Per-CPU counters: names and order belong to stats.rs.                    */

#define TOA_MAX_COUNTERS 32

struct toa_counters {
	u64 v[TOA_MAX_COUNTERS];
};

static struct toa_counters __percpu *toa_counters;
static unsigned int toa_nr_counters;

void toa_stat_inc(unsigned int counter)
{
	if (likely(counter < toa_nr_counters))
		this_cpu_inc(toa_counters->v[counter]);
}

void toa_synchronize_rcu(void)
{
	synchronize_rcu();
}

/* ------------------------------------------------------------------------ */
/* sk_user_data: see stash.rs for what toa stores there and why it is safe.  */

unsigned long toa_sk_user_data(const struct sock *sk)
{
	return (unsigned long)rcu_access_pointer(sk->sk_user_data);
}

bool toa_sk_claim_user_data(struct sock *sk, unsigned long word)
{
	unsigned long *slot = (unsigned long *)&sk->sk_user_data;

	return cmpxchg(slot, 0UL, word) == 0UL;
}

/* ------------------------------------------------------------------------ */
/* IPv6 client records (see record.rs): a slab cache, and a registry of the  */
/* live ones. A record is read or freed only after it was found in the       */
/* registry under toa_v6_lock, so a stale word is never dereferenced.        */

struct toa_v6_record {
	struct toa_v6_client client;	/* first: read by Rust */
	struct hlist_node node;
	/* The socket the record was attached to; compared, never followed.
	 * A word left by an unloaded instance may name an address the slab
	 * has since given to another socket's record: that record is not
	 * this socket's, and the socket is alive, so the pointers differ. */
	const struct sock *sk;
};

static struct kmem_cache *toa_v6_cache;
static DEFINE_HASHTABLE(toa_v6_table, 10);
static DEFINE_SPINLOCK(toa_v6_lock);

void *toa_v6_new(const struct toa_v6_client *client)
{
	struct toa_v6_record *rec = kmem_cache_alloc(toa_v6_cache, GFP_ATOMIC);

	if (!rec)
		return NULL;
	rec->client = *client;
	INIT_HLIST_NODE(&rec->node);
	rec->sk = NULL;
	return rec;
}

void toa_v6_free(void *rec)
{
	kmem_cache_free(toa_v6_cache, rec);
}

bool toa_v6_attach(struct sock *sk, void *ptr, unsigned long word)
{
	struct toa_v6_record *rec = ptr;
	unsigned long flags;
	bool ok;

	spin_lock_irqsave(&toa_v6_lock, flags);
	ok = toa_sk_claim_user_data(sk, word);
	if (ok) {
		rec->sk = sk;
		hash_add(toa_v6_table, &rec->node, (unsigned long)rec);
	}
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	return ok;
}

/* The record at key, if registered and attached to sk. Caller holds
 * toa_v6_lock. */
static struct toa_v6_record *toa_v6_find(const struct sock *sk, unsigned long key)
{
	struct toa_v6_record *rec;

	hash_for_each_possible(toa_v6_table, rec, node, key)
		if ((unsigned long)rec == key)
			return rec->sk == sk ? rec : NULL;
	return NULL;
}

bool toa_v6_lookup(const struct sock *sk, unsigned long key, struct toa_v6_client *out)
{
	struct toa_v6_record *rec;
	unsigned long flags;

	spin_lock_irqsave(&toa_v6_lock, flags);
	rec = toa_v6_find(sk, key);
	if (rec)
		*out = rec->client;
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	return rec;
}

bool toa_v6_release(struct sock *sk, unsigned long word, unsigned long key)
{
	unsigned long *slot = (unsigned long *)&sk->sk_user_data;
	struct toa_v6_record *rec;
	unsigned long flags;

	spin_lock_irqsave(&toa_v6_lock, flags);
	rec = toa_v6_find(sk, key);
	if (rec) {
		hash_del(&rec->node);
		cmpxchg(slot, word, 0UL);
	}
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	if (rec)
		toa_v6_free(rec);
	return rec;
}

/* At unload, once no probe can run: free every record still registered.
 * Their sockets are not touched (some may be mid-destruction); the words
 * left in them name no registered record and are never dereferenced. */
static unsigned int toa_v6_drain(void)
{
	struct toa_v6_record *rec;
	struct hlist_node *tmp;
	unsigned long flags;
	unsigned int bkt, n = 0;

	spin_lock_irqsave(&toa_v6_lock, flags);
	hash_for_each_safe(toa_v6_table, bkt, tmp, rec, node) {
		hash_del(&rec->node);
		kmem_cache_free(toa_v6_cache, rec);
		n++;
	}
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	return n;
}

/* ------------------------------------------------------------------------ */
/* Probes.                                                                   */

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
};

struct toa_getname_args {
	struct socket *sock;
	struct sockaddr *uaddr;
};

/* Entry of syn_recv_sock: whether the return side is wanted. */
static bool toa_syn_recv_begin(struct toa_syn_recv_args *args, struct sk_buff *skb)
{
	args->skb = skb;
	return skb;
}

/* Return of syn_recv_sock with the new child (or NULL). The IPv6 probe
 * leaves IPv4 packets (to dual-stack listeners) to the IPv4 probe, which
 * tcp_v6_syn_recv_sock calls for them and which has seen them already. */
static void toa_syn_recv_end(const struct toa_syn_recv_args *args, struct sock *child, bool v6_probe)
{
	const struct sk_buff *skb = args->skb;
	const struct tcphdr *th;
	struct toa_handshake hs;

	if (!child || (v6_probe && skb->protocol != htons(ETH_P_IPV6)))
		return;
	/* tcp_v{4,6}_rcv() pulled the whole header, options included, into
	 * the linear area and checked doff >= 5 before any child is created. */
	th = tcp_hdr(skb);
	hs.options = (const u8 *)(th + 1);
	hs.options_len = th->doff * 4 - sizeof(*th);
	hs.syn = th->syn;
	hs.v6 = skb->protocol == htons(ETH_P_IPV6);
	memset(hs.saddr, 0, sizeof(hs.saddr));
	/* The source as the backend sees it: the balancer (trusted_sources). */
	if (hs.v6)
		memcpy(hs.saddr, &ipv6_hdr(skb)->saddr, 16);
	else
		memcpy(hs.saddr, &ip_hdr(skb)->saddr, 4);
	toa_on_child(child, &hs);
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

/* Return of getname: rewrite the peer address it has just written. A
 * negative return (-ENOTCONN) left no address to rewrite. */
static void toa_getname_end(const struct toa_getname_args *args, long ret, bool v6_probe)
{
	if (v6_probe) {
		if (ret >= (long)sizeof(struct sockaddr_in6) && args->uaddr->sa_family == AF_INET6)
			toa_getname_v6(args->sock->sk, (struct sockaddr_in6 *)args->uaddr);
	} else {
		if (ret >= (long)sizeof(struct sockaddr_in) && args->uaddr->sa_family == AF_INET)
			toa_getname_v4(args->sock->sk, (struct sockaddr_in *)args->uaddr);
	}
}

/* ---- kretprobes: a non-zero entry return skips the return handler. ---- */

static int toa_kr_syn_recv_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	return !toa_syn_recv_begin((void *)ri->data,
				   (struct sk_buff *)regs_get_kernel_argument(regs, 1));
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
	toa_getname_end((void *)ri->data, (long)regs_return_value(regs), false);
	return 0;
}

static int toa_kr_getname_v6_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	toa_getname_end((void *)ri->data, (long)regs_return_value(regs), true);
	return 0;
}

#define TOA_KRETPROBE(sym, entry, ret, args) {			\
	.kp.symbol_name = sym,					\
	.entry_handler = entry,					\
	.handler = ret,						\
	.data_size = sizeof(struct args),			\
}

/* In registration order: getname before syn_recv, so that every client
 * recorded is shown. The IPv6 ones are optional (IPv6 may be a module that
 * is not loaded: then toa serves IPv4 only). */
static struct kretprobe toa_kretprobes[] = {
	TOA_KRETPROBE("inet_getname", toa_kr_getname_entry, toa_kr_getname_v4_return, toa_getname_args),
	TOA_KRETPROBE("inet6_getname", toa_kr_getname_entry, toa_kr_getname_v6_return, toa_getname_args),
	TOA_KRETPROBE("tcp_v4_syn_recv_sock", toa_kr_syn_recv_entry, toa_kr_syn_recv_v4_return, toa_syn_recv_args),
	TOA_KRETPROBE("tcp_v6_syn_recv_sock", toa_kr_syn_recv_entry, toa_kr_syn_recv_v6_return, toa_syn_recv_args),
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
	return !toa_syn_recv_begin(data, (struct sk_buff *)toa_fp_arg(regs, 1));
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
	toa_getname_end(data, (long)toa_fp_ret(regs), false);
}

static void toa_fp_getname_v6_exit(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
				   toa_fregs *regs, void *data)
{
	toa_getname_end(data, (long)toa_fp_ret(regs), true);
}

#define TOA_FPROBE(entry, exit, args) {				\
	.entry_handler = entry,					\
	.exit_handler = exit,					\
	.entry_data_size = sizeof(struct args),			\
}

/* Same order and symbols as toa_kretprobes. */
static struct fprobe toa_fprobes[] = {
	TOA_FPROBE(toa_fp_getname_entry, toa_fp_getname_v4_exit, toa_getname_args),
	TOA_FPROBE(toa_fp_getname_entry, toa_fp_getname_v6_exit, toa_getname_args),
	TOA_FPROBE(toa_fp_syn_recv_entry, toa_fp_syn_recv_v4_exit, toa_syn_recv_args),
	TOA_FPROBE(toa_fp_syn_recv_entry, toa_fp_syn_recv_v6_exit, toa_syn_recv_args),
};

static bool toa_probe_on[ARRAY_SIZE(toa_kretprobes)];
static bool toa_use_fprobe;

static bool toa_probe_optional(size_t i)
{
	return i == 1 || i == 3;
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

static unsigned long toa_probes_missed(void)
{
	unsigned long missed = toa_destruct_probe.nmissed;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(toa_kretprobes); i++) {
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
/* /proc/net/toa_stats (in every network namespace, same global values).     */

static int toa_stats_show(struct seq_file *seq, void *v)
{
	char head[16];
	unsigned int i;
	int cpu;

	seq_printf(seq, "%-24s", "");
	for_each_online_cpu(cpu) {
		snprintf(head, sizeof(head), "CPU%d", cpu);
		seq_printf(seq, " %12s", head);
	}
	seq_printf(seq, " %12s\n", "total");

	for (i = 0; i < toa_nr_counters; i++) {
		u64 total = 0;

		seq_printf(seq, "%-24s", toa_stat_name(i));
		for_each_online_cpu(cpu)
			seq_printf(seq, " %12llu", per_cpu_ptr(toa_counters, cpu)->v[i]);
		/* Counts of CPUs gone offline stay in the total. */
		for_each_possible_cpu(cpu)
			total += per_cpu_ptr(toa_counters, cpu)->v[i];
		seq_printf(seq, " %12llu\n", total);
	}

	/* Not per-CPU: events the probe core could not hand to toa. */
	seq_printf(seq, "%-24s", "probe_missed");
	for_each_online_cpu(cpu)
		seq_printf(seq, " %12s", "-");
	seq_printf(seq, " %12lu\n", toa_probes_missed());
	return 0;
}

static int __net_init toa_net_init(struct net *net)
{
	if (!proc_create_single("toa_stats", 0444, net->proc_net, toa_stats_show))
		return -ENOMEM;
	return 0;
}

static void __net_exit toa_net_exit(struct net *net)
{
	remove_proc_entry("toa_stats", net->proc_net);
}

static struct pernet_operations toa_net_ops = {
	.init = toa_net_init,
	.exit = toa_net_exit,
};

/* ------------------------------------------------------------------------ */
/* Option kinds: /proc/sys/net/toa/{tcpopt_addr,tcpopt_addr_v6} and the       */
/* module parameters of the same names. Validation lives in config.rs.       */

static int toa_kind_sysctl(const struct ctl_table *table, int write, void *buffer,
			   size_t *lenp, loff_t *ppos)
{
	unsigned int slot = (unsigned long)table->extra1;
	struct ctl_table tmp = *table;
	int value, err;

	if (write) {
		/* A value is written whole, in one write, or not at all. */
		if (*ppos)
			return -EINVAL;
		err = toa_config_write_kind(slot, buffer, *lenp);
		if (err)
			return err;
		*ppos += *lenp;
		return 0;
	}
	value = toa_config_kind(slot);
	tmp.data = &value;
	tmp.maxlen = sizeof(value);
	return proc_dointvec(&tmp, 0, buffer, lenp, ppos);
}

/*
 * Trusted sources: /proc/sys/net/toa/trusted_sources and the module
 * parameter. Parsing and the list live in trust.rs; writers are serialized
 * here, and a write is taken whole or refused whole.
 */
#define TOA_TRUST_TEXT_MAX 4096

static DEFINE_MUTEX(toa_trust_mutex);

static int toa_trust_set(const u8 *text, size_t len)
{
	int err;

	mutex_lock(&toa_trust_mutex);
	err = toa_trust_write(text, len);
	mutex_unlock(&toa_trust_mutex);
	return err;
}

/* The list as text, without a final newline, into buf (size bytes). */
static void toa_trust_get(char *buf, size_t size)
{
	size_t n;

	mutex_lock(&toa_trust_mutex);
	n = toa_trust_read((u8 *)buf, size - 1);
	mutex_unlock(&toa_trust_mutex);
	buf[n] = '\0';
}

static int toa_trust_sysctl(const struct ctl_table *table, int write, void *buffer,
			    size_t *lenp, loff_t *ppos)
{
	struct ctl_table tmp = *table;
	char *text;
	int err;

	if (write) {
		if (*ppos)
			return -EINVAL;
		err = toa_trust_set(buffer, *lenp);
		if (!err)
			*ppos += *lenp;
		return err;
	}
	text = kzalloc(TOA_TRUST_TEXT_MAX, GFP_KERNEL);
	if (!text)
		return -ENOMEM;
	toa_trust_get(text, TOA_TRUST_TEXT_MAX);
	tmp.data = text;
	tmp.maxlen = TOA_TRUST_TEXT_MAX;
	err = proc_dostring(&tmp, 0, buffer, lenp, ppos);
	kfree(text);
	return err;
}

static struct ctl_table toa_sysctl_table[] = {
	{
		.procname = "tcpopt_addr",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)0UL,
	},
	{
		.procname = "tcpopt_addr_v6",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)1UL,
	},
	{
		.procname = "trusted_sources",
		.mode = 0644,
		.proc_handler = toa_trust_sysctl,
	},
};

static struct ctl_table_header *toa_sysctl_header;

static int toa_kind_param_set(const char *val, const struct kernel_param *kp)
{
	return toa_config_write_kind((unsigned long)kp->arg, (const u8 *)val, strlen(val));
}

static int toa_kind_param_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", toa_config_kind((unsigned long)kp->arg));
}

static const struct kernel_param_ops toa_kind_param_ops = {
	.set = toa_kind_param_set,
	.get = toa_kind_param_get,
};

static int toa_trust_param_set(const char *val, const struct kernel_param *kp)
{
	return toa_trust_set((const u8 *)val, strlen(val));
}

static int toa_trust_param_get(char *buf, const struct kernel_param *kp)
{
	toa_trust_get(buf, PAGE_SIZE - 1);
	return strlcat(buf, "\n", PAGE_SIZE);
}

static const struct kernel_param_ops toa_trust_param_ops = {
	.set = toa_trust_param_set,
	.get = toa_trust_param_get,
};

module_param_cb(trusted_sources, &toa_trust_param_ops, NULL, 0644);
MODULE_PARM_DESC(trusted_sources, "Balancer prefixes allowed to name a client, e.g. 10.0.0.0/8,fd00::/64 (default empty: all)");
module_param_cb(tcpopt_addr, &toa_kind_param_ops, (void *)0UL, 0644);
MODULE_PARM_DESC(tcpopt_addr, "TCP option kind carrying the client address (default 200; 0 disables)");
module_param_cb(tcpopt_addr_v6, &toa_kind_param_ops, (void *)1UL, 0644);
MODULE_PARM_DESC(tcpopt_addr_v6, "Second TCP option kind carrying the client address (default 254; 0 disables)");

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
	size_t i = ARRAY_SIZE(toa_kretprobes);

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
	for (i = 0; i < ARRAY_SIZE(toa_kretprobes); i++)
		toa_kretprobes[i].maxactive = i < 2 ? getname_max : syn_recv_max;
#ifndef TOA_FPROBE_FTRACE_REGS
	for (i = 0; i < ARRAY_SIZE(toa_fprobes); i++)
		toa_fprobes[i].nr_maxactive = i < 2 ? getname_max : syn_recv_max;
#endif

	if (toa_use_fprobe)
		pr_info("hooks placed with fprobes\n");
	for (i = 0; i < ARRAY_SIZE(toa_kretprobes); i++) {
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

int toa_glue_register(void)
{
	int err;

	toa_nr_counters = toa_stat_count();
	if (WARN_ON(toa_nr_counters > TOA_MAX_COUNTERS))
		return -EINVAL;
	toa_counters = alloc_percpu(struct toa_counters);
	if (!toa_counters)
		return -ENOMEM;

	toa_v6_cache = kmem_cache_create("toa_ip6", sizeof(struct toa_v6_record), 16, 0, NULL);
	if (!toa_v6_cache) {
		err = -ENOMEM;
		goto free_counters;
	}

	err = register_pernet_subsys(&toa_net_ops);
	if (err)
		goto destroy_cache;

	toa_sysctl_header = register_sysctl("net/toa", toa_sysctl_table);
	if (!toa_sysctl_header) {
		err = -ENOMEM;
		goto unregister_pernet;
	}

	/* The destructor first: every record made afterwards gets freed. */
	err = register_kprobe(&toa_destruct_probe);
	if (err) {
		pr_err("cannot probe %s: %d\n", toa_destruct_probe.symbol_name, err);
		goto unregister_sysctl;
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
	toa_v6_drain();
unregister_sysctl:
	unregister_sysctl_table(toa_sysctl_header);
unregister_pernet:
	unregister_pernet_subsys(&toa_net_ops);
destroy_cache:
	kmem_cache_destroy(toa_v6_cache);
free_counters:
	free_percpu(toa_counters);
	toa_nr_counters = 0;
	return err;
}

void toa_glue_unregister(void)
{
	unsigned int drained;

	/* Each unregistration returns once no handler of its runs anywhere. */
	nf_unregister_sockopt(&toa_sockopt_ops);
	toa_unregister_probes();
	unregister_kprobe(&toa_destruct_probe);
	drained = toa_v6_drain();
	if (drained)
		pr_info("freed %u IPv6 client records of open connections\n", drained);
	unregister_sysctl_table(toa_sysctl_header);
	unregister_pernet_subsys(&toa_net_ops);
	kmem_cache_destroy(toa_v6_cache);
	toa_nr_counters = 0;
	free_percpu(toa_counters);
}
