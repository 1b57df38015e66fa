// SPDX-License-Identifier: GPL-2.0
/*
 * toa's C glue: the kernel registrations the Rust crate cannot make with the
 * kernel crate of 6.12..7.x (kretprobes, sysctl, procfs, module parameters,
 * per-CPU counters) and the few struct sock accesses it needs. Every decision
 * is taken on the Rust side (see glue.h); this file gathers facts and calls.
 *
 * No kernel text or const table is written, no kallsyms lookup is made: the
 * hooks are kretprobes on exported functions, placed by the kprobe core.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/cpumask.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/net.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/sysctl.h>
#include <linux/tcp.h>
#include <net/net_namespace.h>
#include <net/sock.h>

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
/* Probes.                                                                   */

/* tcp_v4_syn_recv_sock(sk, skb, req, dst, req_unhash, own_req, ...) */
struct toa_syn_recv_args {
	struct sk_buff *skb;
};

static int toa_syn_recv_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct toa_syn_recv_args *args = (void *)ri->data;

	args->skb = (struct sk_buff *)regs_get_kernel_argument(regs, 1);
	return 0;
}

static int toa_syn_recv_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct toa_syn_recv_args *args = (void *)ri->data;
	struct sock *child = (struct sock *)regs_return_value(regs);
	const struct tcphdr *th;
	struct toa_handshake hs;

	if (!child || !args->skb)
		return 0;
	/* tcp_v4_rcv() pulled the whole header, options included, into the
	 * linear area and checked doff >= 5 before any child is created. */
	th = tcp_hdr(args->skb);
	hs.options = (const u8 *)(th + 1);
	hs.options_len = th->doff * 4 - sizeof(*th);
	hs.syn = th->syn;
	toa_on_child(child, &hs);
	return 0;
}

static struct kretprobe toa_syn_recv_v4_probe = {
	.kp.symbol_name = "tcp_v4_syn_recv_sock",
	.entry_handler = toa_syn_recv_entry,
	.handler = toa_syn_recv_return,
	.data_size = sizeof(struct toa_syn_recv_args),
};

/* inet_getname(sock, uaddr, peer): getpeername() (peer 1), accept() (peer 2) */
struct toa_getname_args {
	struct socket *sock;
	struct sockaddr *uaddr;
};

static int toa_getname_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct toa_getname_args *args = (void *)ri->data;
	struct socket *sock = (struct socket *)regs_get_kernel_argument(regs, 0);
	int peer = (int)regs_get_kernel_argument(regs, 2);

	/* Only peer addresses of TCP sockets: nothing to do on return else
	 * (a non-zero return skips the return handler). */
	if (!peer || !sock || !sock->sk || sock->sk->sk_protocol != IPPROTO_TCP)
		return 1;
	if (!toa_getname_peek(sock->sk))
		return 1;
	args->sock = sock;
	args->uaddr = (struct sockaddr *)regs_get_kernel_argument(regs, 1);
	return 0;
}

static int toa_getname_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct toa_getname_args *args = (void *)ri->data;
	long ret = (long)regs_return_value(regs);

	/* A negative return (-ENOTCONN) left no address to rewrite. */
	if (ret >= (long)sizeof(struct sockaddr_in) && args->uaddr->sa_family == AF_INET)
		toa_getname_v4(args->sock->sk, (struct sockaddr_in *)args->uaddr);
	return 0;
}

static struct kretprobe toa_getname_v4_probe = {
	.kp.symbol_name = "inet_getname",
	.entry_handler = toa_getname_entry,
	.handler = toa_getname_return,
	.data_size = sizeof(struct toa_getname_args),
};

/*
 * The getname probes hold an instance while inet_getname sleeps in
 * lock_sock(); size the pool for many concurrent callers. A miss (pool
 * empty) leaves the kernel's answer and shows in toa_stats as probe_missed.
 */
static int toa_getname_maxactive(void)
{
	return max_t(int, 256, 16 * num_possible_cpus());
}

static struct kretprobe *toa_probes[] = {
	&toa_getname_v4_probe,
	&toa_syn_recv_v4_probe,
};

static unsigned long toa_probes_missed(void)
{
	unsigned long missed = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(toa_probes); i++)
		missed += toa_probes[i]->nmissed + toa_probes[i]->kp.nmissed;
	return missed;
}

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

module_param_cb(tcpopt_addr, &toa_kind_param_ops, (void *)0UL, 0644);
MODULE_PARM_DESC(tcpopt_addr, "TCP option kind carrying the client address (default 200; 0 disables)");
module_param_cb(tcpopt_addr_v6, &toa_kind_param_ops, (void *)1UL, 0644);
MODULE_PARM_DESC(tcpopt_addr_v6, "Second TCP option kind carrying the client address (default 254; 0 disables)");

/* ------------------------------------------------------------------------ */
/* Registration.                                                             */

int toa_glue_register(void)
{
	int err;
	size_t i;

	toa_nr_counters = toa_stat_count();
	if (WARN_ON(toa_nr_counters > TOA_MAX_COUNTERS))
		return -EINVAL;
	toa_counters = alloc_percpu(struct toa_counters);
	if (!toa_counters)
		return -ENOMEM;

	err = register_pernet_subsys(&toa_net_ops);
	if (err)
		goto free_counters;

	toa_sysctl_header = register_sysctl("net/toa", toa_sysctl_table);
	if (!toa_sysctl_header) {
		err = -ENOMEM;
		goto unregister_pernet;
	}

	/* getname first: clients recorded by syn_recv are then always shown. */
	toa_getname_v4_probe.maxactive = toa_getname_maxactive();
	toa_syn_recv_v4_probe.maxactive = max_t(int, 64, 4 * num_possible_cpus());
	for (i = 0; i < ARRAY_SIZE(toa_probes); i++) {
		err = register_kretprobe(toa_probes[i]);
		if (err) {
			pr_err("cannot probe %s: %d\n", toa_probes[i]->kp.symbol_name, err);
			goto unregister_probes;
		}
	}
	return 0;

unregister_probes:
	while (i--)
		unregister_kretprobe(toa_probes[i]);
	unregister_sysctl_table(toa_sysctl_header);
unregister_pernet:
	unregister_pernet_subsys(&toa_net_ops);
free_counters:
	free_percpu(toa_counters);
	toa_nr_counters = 0;
	return err;
}

void toa_glue_unregister(void)
{
	size_t i = ARRAY_SIZE(toa_probes);

	/* Reverse order; returns once no handler of ours runs anywhere. */
	while (i--)
		unregister_kretprobe(toa_probes[i]);
	unregister_sysctl_table(toa_sysctl_header);
	unregister_pernet_subsys(&toa_net_ops);
	toa_nr_counters = 0;
	free_percpu(toa_counters);
}
