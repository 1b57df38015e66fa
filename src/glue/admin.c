// SPDX-License-Identifier: GPL-2.0
/*
 * What administrators see and set: the per-CPU counters behind
 * /proc/net/toa_stats, the sysctls under /proc/sys/net/toa and the module
 * parameters of the same names. Names, parsing and validation live on the
 * Rust side (stats.rs, config.rs, trust.rs).
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/capability.h>
#include <linux/cpumask.h>
#include <linux/ctype.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/nsproxy.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/seq_file_net.h>
#include <linux/slab.h>
#include <linux/sysctl.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "glue.h"
#include "internal.h"

/* ------------------------------------------------------------------------ */
/* Per-CPU counters of each namespace: names and order belong to stats.rs.  */

unsigned int toa_nr_counters;

/*
 * The namespaces with counters (toa_nets), the initial namespace's data
 * (toa_host_tn: RCU, for events of no namespace), and what the namespaces
 * that went had counted (toa_gone), which the initial namespace's
 * all-namespaces column adds.
 */
static DEFINE_MUTEX(toa_nets_mutex);
static LIST_HEAD(toa_nets);
static struct toa_net __rcu *toa_host_tn;
static u64 toa_gone[TOA_MAX_COUNTERS];

/* The toa data holding settings s. */
static const struct toa_net *toa_net_of(const struct toa_settings *s)
{
	return (const struct toa_net *)((const u8 *)s - offsetof(struct toa_net, settings));
}

/* The load-time settings (toa_settings_load(), fixed), which count as the
 * host's: set before any namespace or hook exists. */
static const struct toa_settings *toa_load_settings __read_mostly;

void notrace toa_host_stat_add(unsigned int counter, u64 n)
{
	const struct toa_net *tn;
	struct toa_counters __percpu *c;

	/* A preempt-disabled section, as toa_net_stat_add()'s: the host's data
	 * and counters are freed after synchronize_rcu(). */
	preempt_disable_notrace();
	tn = rcu_dereference_sched(toa_host_tn);
	c = tn ? rcu_dereference_sched(tn->counters) : NULL;
	if (c && counter < TOA_MAX_COUNTERS)
		this_cpu_add(c->v[counter], n);
	preempt_enable_notrace();
}

void notrace toa_stat_add(const struct toa_settings *s, unsigned int counter, u64 n)
{
	if (likely(s && s != toa_load_settings))
		toa_net_stat_add(toa_net_of(s), counter, n);
	else
		toa_host_stat_add(counter, n);
}

void toa_sk_stat_add(const struct sock *sk, unsigned int counter, u64 n)
{
	toa_net_stat_add(net_generic(sock_net(sk), toa_net_id), counter, n);
}

/* tn's counters, live or going (toa_nets_mutex held). */
static struct toa_counters __percpu *toa_net_counters(const struct toa_net *tn)
{
	struct toa_counters __percpu *c;

	c = rcu_dereference_protected(tn->counters, lockdep_is_held(&toa_nets_mutex));
	return c ? c : tn->dying;
}

static u64 toa_counter_total(struct toa_counters __percpu *c, unsigned int i)
{
	u64 total = 0;
	int cpu;

	/* Counts of CPUs gone offline stay in the total. */
	for_each_possible_cpu(cpu)
		total += per_cpu_ptr(c, cpu)->v[i];
	return total;
}

/* ------------------------------------------------------------------------ */
/* /proc/net/toa_stats: the namespace's own counters, a column per online   */
/* CPU and the total; the initial namespace adds every namespace's total    */
/* (all_netns: the live ones and those gone) and the host-wide rows.        */

static void toa_stats_row_host(struct seq_file *seq, const char *name, unsigned long value)
{
	int cpu;

	seq_printf(seq, "%-24s", name);
	for_each_online_cpu(cpu)
		seq_printf(seq, " %12s", "-");
	seq_printf(seq, " %12lu %12lu\n", value, value);
}

static int toa_stats_show(struct seq_file *seq, void *v)
{
	struct net *net = seq_file_single_net(seq);
	const struct toa_net *tn = net_generic(net, toa_net_id), *other;
	bool host = net_eq(net, &init_net);
	struct toa_counters __percpu *c;
	char head[16];
	unsigned int i;
	int cpu;

	seq_printf(seq, "%-24s", "");
	for_each_online_cpu(cpu) {
		snprintf(head, sizeof(head), "CPU%d", cpu);
		seq_printf(seq, " %12s", head);
	}
	seq_printf(seq, " %12s", "total");
	if (host)
		seq_printf(seq, " %12s", "all_netns");
	seq_putc(seq, '\n');

	mutex_lock(&toa_nets_mutex);
	c = rcu_dereference_protected(tn->counters, lockdep_is_held(&toa_nets_mutex));
	for (i = 0; c && i < toa_nr_counters; i++) {
		seq_printf(seq, "%-24s", toa_stat_name(i));
		for_each_online_cpu(cpu)
			seq_printf(seq, " %12llu", per_cpu_ptr(c, cpu)->v[i]);
		seq_printf(seq, " %12llu", toa_counter_total(c, i));
		if (host) {
			u64 all = toa_gone[i];

			list_for_each_entry(other, &toa_nets, list)
				all += toa_counter_total(toa_net_counters(other), i);
			seq_printf(seq, " %12llu", all);
		}
		seq_putc(seq, '\n');
	}
	mutex_unlock(&toa_nets_mutex);

	/* Not per-CPU, and the host's: events the probe core could not hand
	 * to toa, the entries of the shared handshake and flow tables. */
	if (host) {
		toa_stats_row_host(seq, "probe_missed",
				   toa_probes_missed() + toa_syn_probes_missed());
		toa_stats_row_host(seq, "syn_table_entries", toa_syn_occupied());
		toa_stats_row_host(seq, "udp_flows", toa_udp_flow_count());
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Option kinds: /proc/sys/net/toa/{tcpopt_kinds,tcpopt_addr,tcpopt_addr_v6, */
/* tcpopt_cdn} and the module parameters of the same names. Validation and   */
/* the rules of the kinds live in config.rs and kinds.rs; writers are        */
/* serialized here, and a write is taken whole or refused whole.             */

static DEFINE_MUTEX(toa_config_mutex);

/*
 * Each network namespace has its own net.toa.* (settings.rs); a writer
 * needs CAP_NET_ADMIN over the namespace's user namespace, so a
 * container's root changes its own namespace's values and nobody else's.
 * The UDP table's size and timeout are the host's (the table is shared):
 * read-only in other namespaces, written only from the initial one. The
 * module parameters are the initial namespace's.
 */
static bool toa_setting_is_host(unsigned int what);

static int toa_may_write(const struct net *net, unsigned int what)
{
	bool ok;

	if (!net)	/* a parameter given at load: the loader may */
		ok = capable(CAP_NET_ADMIN);
	else if (toa_setting_is_host(what))
		ok = net_eq(net, &init_net) && capable(CAP_NET_ADMIN);
	else
		ok = ns_capable(net->user_ns, CAP_NET_ADMIN);
	if (ok)
		return 0;
	pr_warn_ratelimited("net.toa write refused (pid %d): %s\n", task_pid_nr(current),
			    toa_setting_is_host(what) ?
			    "this setting is the host's: write it from the initial network namespace" :
			    "CAP_NET_ADMIN over the namespace is needed");
	return -EPERM;
}

/* Each namespace's toa data: net_generic(net, toa_net_id), internal.h. */
unsigned int toa_net_id __read_mostly;
/* Whether the namespaces have their settings (parameters written after
 * load go to the initial namespace's; before, to the load-time values). */
static bool toa_nets_ready;

/* What a config write does: which setting (a slot, the list, the switch,
 * the UDP settings of udp/config.rs). */
enum toa_setting {
	TOA_SET_ADDR,		/* tcpopt_addr: slot 0 */
	TOA_SET_ADDR_V6,	/* tcpopt_addr_v6: slot 1 */
	TOA_SET_KINDS,
	TOA_SET_CDN,
	TOA_SET_UDP_REWRITE,
	TOA_SET_UDP_TIMEOUT,
	TOA_SET_UDP_MAX_FLOWS,
	TOA_SET_PACKET,		/* tcpopt_packet: word 0 */
	TOA_SET_POSITION,	/* tcpopt_position: word 1 */
	TOA_SET_TRUST,		/* trusted_sources (toa_trust_mutex) */
};

static bool toa_setting_is_host(unsigned int what)
{
	return what == TOA_SET_UDP_TIMEOUT || what == TOA_SET_UDP_MAX_FLOWS;
}

/* The namespace a write or read of net's values is about: net, or for a
 * parameter (NULL) the initial namespace once the namespaces have their
 * settings (NULL before: the load-time values). */
static const struct net *toa_param_net(const struct net *net)
{
	if (!net && READ_ONCE(toa_nets_ready))
		return &init_net;
	return net;
}

/* The settings a write or read of net's (NULL: load-time) values uses. */
static const struct toa_settings *toa_settings_of(const struct net *net)
{
	return net ? toa_net_settings(net) : toa_settings_load();
}

static bool toa_setting_is_text(enum toa_setting what)
{
	return what == TOA_SET_KINDS || what == TOA_SET_PACKET || what == TOA_SET_POSITION;
}

/* A write of net's setting (net NULL: a parameter, before or after load). */
static int toa_config_set(const struct net *net, enum toa_setting what, const u8 *text,
			  size_t len)
{
	const struct toa_settings *s;
	int err;

	err = toa_may_write(net, what);
	if (err)
		return err;
	mutex_lock(&toa_config_mutex);
	net = toa_param_net(net);
	s = toa_settings_of(net);
	switch (what) {
	case TOA_SET_ADDR:
	case TOA_SET_ADDR_V6:
		err = toa_config_write_kind(s, what, text, len);
		break;
	case TOA_SET_KINDS:
		err = toa_config_write_kinds(s, text, len);
		break;
	case TOA_SET_CDN:
		err = toa_config_write_cdn(s, text, len);
		break;
	case TOA_SET_PACKET:
	case TOA_SET_POSITION:
		err = toa_config_write_word(s, what - TOA_SET_PACKET, text, len);
		break;
	case TOA_SET_UDP_REWRITE:
		err = toa_udp_config_write_rewrite(s, text, len);
		break;
	case TOA_SET_UDP_TIMEOUT:
		err = toa_udp_config_write_timeout(text, len);
		break;
	case TOA_SET_UDP_MAX_FLOWS: {
		unsigned long flows;

		/* The table is reallocated (in this context) before the new
		 * size is recorded; a failed allocation changes nothing. */
		err = toa_udp_config_parse_max_flows(text, len, &flows);
		if (!err)
			err = toa_udp_resize(flows);
		if (!err)
			toa_udp_config_set_max_flows(flows);
		break;
	}
	default:
		err = -EINVAL;
	}
	if (!err)
		toa_udp_config_changed(net);
	mutex_unlock(&toa_config_mutex);
	return err;
}

/* The value of net's numeric setting (NULL: the parameters'). */
static int toa_config_get(const struct net *net, enum toa_setting what)
{
	const struct toa_settings *s;

	net = toa_param_net(net);
	s = toa_settings_of(net);
	switch (what) {
	case TOA_SET_CDN:
		return toa_config_cdn(s);
	case TOA_SET_UDP_REWRITE:
		return toa_udp_config_rewrite(s);
	case TOA_SET_UDP_TIMEOUT:
		return toa_udp_config_timeout();
	case TOA_SET_UDP_MAX_FLOWS:
		return toa_udp_config_max_flows();
	default:
		return toa_config_kind(s, what);
	}
}

/* A text setting (the kinds, a word) of net as text, without a final
 * newline, into buf. */
static void toa_text_get(const struct net *net, enum toa_setting what, char *buf, size_t size)
{
	const struct toa_settings *s;
	size_t n;

	net = toa_param_net(net);
	s = toa_settings_of(net);
	if (what == TOA_SET_KINDS)
		n = toa_config_read_kinds(s, (u8 *)buf, size - 1);
	else
		n = toa_config_read_word(s, what - TOA_SET_PACKET, (u8 *)buf, size - 1);
	buf[n] = '\0';
}

/* Room for every kind: 255 of at most 3 digits and a space. */
#define TOA_KINDS_TEXT_MAX 1024

static int toa_kind_sysctl(const struct ctl_table *table, int write, void *buffer,
			   size_t *lenp, loff_t *ppos)
{
	enum toa_setting what = (unsigned long)table->extra1;
	struct net *net = table->extra2;
	struct ctl_table tmp = *table;
	char *text;
	int value, err;

	if (write) {
		/* A value is written whole, in one write, or not at all. */
		if (*ppos)
			return -EINVAL;
		err = toa_config_set(net, what, buffer, *lenp);
		if (err)
			return err;
		*ppos += *lenp;
		return 0;
	}
	if (toa_setting_is_text(what)) {
		text = kzalloc(TOA_KINDS_TEXT_MAX, GFP_KERNEL);
		if (!text)
			return -ENOMEM;
		toa_text_get(net, what, text, TOA_KINDS_TEXT_MAX);
		tmp.data = text;
		tmp.maxlen = TOA_KINDS_TEXT_MAX;
		err = proc_dostring(&tmp, 0, buffer, lenp, ppos);
		kfree(text);
		return err;
	}
	value = toa_config_get(net, what);
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

/* A client was ignored because no balancer is named yet (trust.rs). */
void toa_trust_unset_warn(const u8 *addr, bool v6)
{
	if (v6)
		pr_warn_ratelimited("client named by %pI6c ignored: no balancer is trusted yet (set net.toa.trusted_sources to the balancers' prefixes)\n",
				    addr);
	else
		pr_warn_ratelimited("client named by %pI4 ignored: no balancer is trusted yet (set net.toa.trusted_sources to the balancers' prefixes)\n",
				    addr);
}

/* Whether a list's text names nobody (the empty list). */
static bool toa_trust_text_blank(const u8 *text, size_t len)
{
	while (len && (isspace(*text) || !*text)) {
		text++;
		len--;
	}
	return !len;
}

/* A write of net's list (NULL: the parameter). */
static int toa_trust_set(const struct net *net, const u8 *text, size_t len)
{
	bool names = !toa_trust_text_blank(text, len);
	int err;

	err = toa_may_write(net, TOA_SET_TRUST);
	if (err)
		return err;
	net = toa_param_net(net);
	/* A list that names a balancer needs new connections hooked: if they
	 * cannot be, the write is refused (the log says why). Before the
	 * module is up (a load's parameter) its bring-up does it. */
	if (names && net) {
		err = toa_intake_want();
		if (err)
			return err;
	}
	mutex_lock(&toa_trust_mutex);
	err = toa_trust_write(toa_settings_of(net), text, len);
	mutex_unlock(&toa_trust_mutex);
	if (err || !net)
		return err;
	/* Again, for a write that raced with the bring-up. */
	if (names)
		toa_intake_want();
	/* UDP hooks are registered where a balancer is trusted. */
	toa_udp_trust_changed(net);
	return 0;
}

/* net's list as text, without a final newline, into buf (size bytes). */
static void toa_trust_get(const struct net *net, char *buf, size_t size)
{
	size_t n;

	mutex_lock(&toa_trust_mutex);
	net = toa_param_net(net);
	n = toa_trust_read(toa_settings_of(net), (u8 *)buf, size - 1);
	mutex_unlock(&toa_trust_mutex);
	buf[n] = '\0';
}

static int toa_trust_sysctl(const struct ctl_table *table, int write, void *buffer,
			    size_t *lenp, loff_t *ppos)
{
	struct net *net = table->extra2;
	struct ctl_table tmp = *table;
	char *text;
	int err;

	if (write) {
		if (*ppos)
			return -EINVAL;
		err = toa_trust_set(net, buffer, *lenp);
		if (!err)
			*ppos += *lenp;
		return err;
	}
	text = kzalloc(TOA_TRUST_TEXT_MAX, GFP_KERNEL);
	if (!text)
		return -ENOMEM;
	toa_trust_get(net, text, TOA_TRUST_TEXT_MAX);
	tmp.data = text;
	tmp.maxlen = TOA_TRUST_TEXT_MAX;
	err = proc_dostring(&tmp, 0, buffer, lenp, ppos);
	kfree(text);
	return err;
}

/* Which hooks serve the namespace's UDP clients (read only, udp_nf.c). */
static int toa_udp_hooks_sysctl(const struct ctl_table *table, int write, void *buffer,
				size_t *lenp, loff_t *ppos)
{
	struct ctl_table tmp = *table;
	char text[16];

	strscpy(text, toa_udp_hooks_of(table->extra2), sizeof(text));
	tmp.data = text;
	tmp.maxlen = sizeof(text);
	return proc_dostring(&tmp, write, buffer, lenp, ppos);
}

/* The template each namespace copies (extra2: the namespace). */
static const struct ctl_table toa_sysctl_table[] = {
	{
		.procname = "tcpopt_kinds",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_KINDS,
	},
	{
		.procname = "tcpopt_addr",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_ADDR,
	},
	{
		.procname = "tcpopt_addr_v6",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_ADDR_V6,
	},
	{
		.procname = "tcpopt_cdn",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_CDN,
	},
	{
		.procname = "tcpopt_packet",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_PACKET,
	},
	{
		.procname = "tcpopt_position",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_POSITION,
	},
	{
		.procname = "trusted_sources",
		.mode = 0644,
		.proc_handler = toa_trust_sysctl,
	},
	{
		.procname = "udp_rewrite",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_UDP_REWRITE,
	},
	{
		.procname = "udp_timeout",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_UDP_TIMEOUT,
	},
	{
		.procname = "udp_max_flows",
		.mode = 0644,
		.proc_handler = toa_kind_sysctl,
		.extra1 = (void *)TOA_SET_UDP_MAX_FLOWS,
	},
	{
		.procname = "udp_hooks",
		.mode = 0444,
		.proc_handler = toa_udp_hooks_sysctl,
	},
};

static int toa_kind_param_set(const char *val, const struct kernel_param *kp)
{
	return toa_config_set(NULL, (unsigned long)kp->arg, (const u8 *)val, strlen(val));
}

static int toa_kind_param_get(char *buf, const struct kernel_param *kp)
{
	enum toa_setting what = (unsigned long)kp->arg;

	if (toa_setting_is_text(what)) {
		toa_text_get(NULL, what, buf, PAGE_SIZE - 1);
		return strlcat(buf, "\n", PAGE_SIZE);
	}
	return sysfs_emit(buf, "%d\n", toa_config_get(NULL, what));
}

static const struct kernel_param_ops toa_kind_param_ops = {
	.set = toa_kind_param_set,
	.get = toa_kind_param_get,
};

static int toa_trust_param_set(const char *val, const struct kernel_param *kp)
{
	return toa_trust_set(NULL, (const u8 *)val, strlen(val));
}

static int toa_trust_param_get(char *buf, const struct kernel_param *kp)
{
	toa_trust_get(NULL, buf, PAGE_SIZE - 1);
	return strlcat(buf, "\n", PAGE_SIZE);
}

static const struct kernel_param_ops toa_trust_param_ops = {
	.set = toa_trust_param_set,
	.get = toa_trust_param_get,
};

module_param_cb(trusted_sources, &toa_trust_param_ops, NULL, 0644);
MODULE_PARM_DESC(trusted_sources, "Balancer prefixes allowed to name a client, e.g. 10.0.0.0/8,fd00::/64 (default empty: none; 0.0.0.0/0,::/0: any)");
/* Parameters are applied in the order given on the command line. */
module_param_cb(tcpopt_kinds, &toa_kind_param_ops, (void *)TOA_SET_KINDS, 0644);
MODULE_PARM_DESC(tcpopt_kinds, "TCP option kinds carrying the client address, e.g. 200,253,254 (the default)");
module_param_cb(tcpopt_addr, &toa_kind_param_ops, (void *)TOA_SET_ADDR, 0644);
MODULE_PARM_DESC(tcpopt_addr, "One of the kinds, replaced by a write (default 200; 0: none)");
module_param_cb(tcpopt_addr_v6, &toa_kind_param_ops, (void *)TOA_SET_ADDR_V6, 0644);
MODULE_PARM_DESC(tcpopt_addr_v6, "Another of the kinds, replaced by a write (default 254; 0: none)");
module_param_cb(tcpopt_cdn, &toa_kind_param_ops, (void *)TOA_SET_CDN, 0644);
MODULE_PARM_DESC(tcpopt_cdn, "Take Alibaba Cloud CDN's option 28/7, 28/19 (default 1; 0: off)");
module_param_cb(tcpopt_packet, &toa_kind_param_ops, (void *)TOA_SET_PACKET, 0644);
MODULE_PARM_DESC(tcpopt_packet, "Which handshake packets may name the client: any (default), syn (Alibaba LVS, CDN) or ack (DPVS, JD, Tencent)");
module_param_cb(tcpopt_position, &toa_kind_param_ops, (void *)TOA_SET_POSITION, 0644);
MODULE_PARM_DESC(tcpopt_position, "Which of several client options in a packet is the balancer's: first (default: it inserts its own first) or last (it appends it: JD Jupiter)");
module_param_cb(udp_rewrite, &toa_kind_param_ops, (void *)TOA_SET_UDP_REWRITE, 0644);
MODULE_PARM_DESC(udp_rewrite, "Show UDP clients to applications and send replies back through the balancer (default 1; 0: only the UOA getsockopt answers)");
module_param_cb(udp_timeout, &toa_kind_param_ops, (void *)TOA_SET_UDP_TIMEOUT, 0644);
MODULE_PARM_DESC(udp_timeout, "Seconds a UDP flow lives unseen (default 330, 1..86400)");
module_param_cb(udp_max_flows, &toa_kind_param_ops, (void *)TOA_SET_UDP_MAX_FLOWS, 0644);
MODULE_PARM_DESC(udp_max_flows, "UDP flows the table holds (default 8192, 0..1048576; 0: UDP clients off)");

/* ------------------------------------------------------------------------ */
/* Namespaces: each gets its settings (the initial one's from the module    */
/* parameters; the others follow the initial one's until written, see       */
/* settings.rs), its /proc/sys/net/toa and its /proc/net/toa_stats.         */

static int __net_init toa_net_init(struct net *net)
{
	struct toa_net *tn = net_generic(net, toa_net_id);
	struct ctl_table *table;
	unsigned int i;

	mutex_lock(&toa_config_mutex);
	mutex_lock(&toa_trust_mutex);
	toa_settings_init((struct toa_settings *)tn->settings, net_eq(net, &init_net));
	mutex_unlock(&toa_trust_mutex);
	mutex_unlock(&toa_config_mutex);

	tn->dying = alloc_percpu(struct toa_counters);
	if (!tn->dying)
		return -ENOMEM;
	table = kmemdup(toa_sysctl_table, sizeof(toa_sysctl_table), GFP_KERNEL);
	if (!table)
		goto free_counters;
	for (i = 0; i < ARRAY_SIZE(toa_sysctl_table); i++) {
		table[i].extra2 = net;
		/* The host's settings are only shown in other namespaces. */
		if (!net_eq(net, &init_net) && toa_setting_is_host((unsigned long)table[i].extra1) &&
		    table[i].proc_handler == toa_kind_sysctl)
			table[i].mode = 0444;
	}
	tn->sysctl = register_net_sysctl_sz(net, "net/toa", table, ARRAY_SIZE(toa_sysctl_table));
	if (!tn->sysctl)
		goto free_table;
	if (!proc_create_net_single("toa_stats", 0444, net->proc_net, toa_stats_show, NULL))
		goto unregister_sysctl;
	mutex_lock(&toa_nets_mutex);
	rcu_assign_pointer(tn->counters, tn->dying);
	tn->dying = NULL;
	list_add_tail(&tn->list, &toa_nets);
	if (net_eq(net, &init_net))
		rcu_assign_pointer(toa_host_tn, tn);
	mutex_unlock(&toa_nets_mutex);
	return 0;

unregister_sysctl:
	unregister_net_sysctl_table(tn->sysctl);
free_table:
	kfree(table);
free_counters:
	free_percpu(tn->dying);
	tn->dying = NULL;
	return -ENOMEM;
}

static void __net_exit toa_net_exit(struct net *net)
{
	struct toa_net *tn = net_generic(net, toa_net_id);
	const struct ctl_table *table = tn->sysctl->ctl_table_arg;

	remove_proc_entry("toa_stats", net->proc_net);
	unregister_net_sysctl_table(tn->sysctl);
	kfree(table);
	/* Events still to come in this namespace are counted as the host's;
	 * the counters go once no one can be counting in them (exit_batch),
	 * and stay in toa_nets until then. */
	mutex_lock(&toa_nets_mutex);
	tn->dying = rcu_dereference_protected(tn->counters, lockdep_is_held(&toa_nets_mutex));
	RCU_INIT_POINTER(tn->counters, NULL);
	if (net_eq(net, &init_net))
		RCU_INIT_POINTER(toa_host_tn, NULL);
	mutex_unlock(&toa_nets_mutex);
	if (net_eq(net, &init_net))
		toa_settings_exit((struct toa_settings *)tn->settings);
}

static void __net_exit toa_net_exit_batch(struct list_head *net_exit_list)
{
	struct toa_net *tn;
	struct net *net;
	unsigned int i;

	synchronize_rcu();
	mutex_lock(&toa_nets_mutex);
	list_for_each_entry(net, net_exit_list, exit_list) {
		tn = net_generic(net, toa_net_id);
		if (!tn->dying)
			continue;
		/* Its counts move to toa_gone and it leaves toa_nets at once:
		 * the all-namespaces column never misses them. */
		for (i = 0; i < toa_nr_counters; i++)
			toa_gone[i] += toa_counter_total(tn->dying, i);
		list_del(&tn->list);
		free_percpu(tn->dying);
		tn->dying = NULL;
	}
	mutex_unlock(&toa_nets_mutex);
}

/* A namespace's toa data: one 4 KiB allocation (settings.rs: SETTINGS_MAX). */
static_assert(sizeof(struct toa_net) + TOA_SETTINGS_MAX <= 4096);

static struct pernet_operations toa_net_ops = {
	.init = toa_net_init,
	.exit = toa_net_exit,
	.exit_batch = toa_net_exit_batch,
	.id = &toa_net_id,
	.size = sizeof(struct toa_net) + TOA_SETTINGS_MAX,
};

int toa_admin_register(void)
{
	int err;

	toa_nr_counters = toa_stat_count();
	if (WARN_ON(toa_nr_counters > TOA_MAX_COUNTERS))
		return -EINVAL;
	if (WARN_ON(toa_settings_size() > TOA_SETTINGS_MAX))
		return -EINVAL;
	memset(toa_gone, 0, sizeof(toa_gone));
	toa_load_settings = toa_settings_load();
	err = register_pernet_subsys(&toa_net_ops);
	if (err) {
		toa_nr_counters = 0;
		return err;
	}
	mutex_lock(&toa_config_mutex);
	mutex_lock(&toa_trust_mutex);
	WRITE_ONCE(toa_nets_ready, true);
	mutex_unlock(&toa_trust_mutex);
	mutex_unlock(&toa_config_mutex);
	return 0;
}

void toa_admin_unregister(void)
{
	mutex_lock(&toa_config_mutex);
	mutex_lock(&toa_trust_mutex);
	WRITE_ONCE(toa_nets_ready, false);
	mutex_unlock(&toa_trust_mutex);
	mutex_unlock(&toa_config_mutex);
	unregister_pernet_subsys(&toa_net_ops);
	toa_nr_counters = 0;
}
