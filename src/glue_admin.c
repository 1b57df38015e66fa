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
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/nsproxy.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/sysctl.h>
#include <net/net_namespace.h>

#include "glue.h"
#include "glue_internal.h"

/* ------------------------------------------------------------------------ */
/* Per-CPU counters: names and order belong to stats.rs.                    */

/* (struct toa_counters and TOA_MAX_COUNTERS: glue_internal.h, whose
 * toa_getname_stat_inc() bumps one on the getpeername() path.) */
struct toa_counters __percpu *toa_counters;
unsigned int toa_nr_counters;

void toa_stat_inc(unsigned int counter)
{
	if (likely(counter < toa_nr_counters))
		this_cpu_inc(toa_counters->v[counter]);
}

void toa_stat_add(unsigned int counter, u64 n)
{
	if (likely(counter < toa_nr_counters))
		this_cpu_add(toa_counters->v[counter], n);
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

	/* Not per-CPU: events the probe core could not hand to toa, the
	 * entries the handshake table holds now, and the UDP flows. */
	seq_printf(seq, "%-24s", "probe_missed");
	for_each_online_cpu(cpu)
		seq_printf(seq, " %12s", "-");
	seq_printf(seq, " %12lu\n", toa_probes_missed() + toa_syn_probes_missed());
	seq_printf(seq, "%-24s", "syn_table_entries");
	for_each_online_cpu(cpu)
		seq_printf(seq, " %12s", "-");
	seq_printf(seq, " %12lu\n", toa_syn_occupied());
	seq_printf(seq, "%-24s", "udp_flows");
	for_each_online_cpu(cpu)
		seq_printf(seq, " %12s", "-");
	seq_printf(seq, " %12lu\n", toa_udp_flow_count());
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
/* Option kinds: /proc/sys/net/toa/{tcpopt_kinds,tcpopt_addr,tcpopt_addr_v6, */
/* tcpopt_cdn} and the module parameters of the same names. Validation and   */
/* the rules of the kinds live in config.rs and kinds.rs; writers are        */
/* serialized here, and a write is taken whole or refused whole.             */

static DEFINE_MUTEX(toa_config_mutex);

/*
 * net.toa.* (and the parameters of the same names) hold the host's
 * settings, one set for every network namespace: only a writer in the
 * initial namespace with CAP_NET_ADMIN over it may change them. A
 * container's root (or a real root whose process lives in a container's
 * network namespace, as `docker run --sysctl` and Kubernetes' namespaced
 * sysctls write them) gets EPERM and the host keeps its values.
 */
static int toa_may_write(void)
{
	if (current->nsproxy && current->nsproxy->net_ns == &init_net && capable(CAP_NET_ADMIN))
		return 0;
	pr_warn_ratelimited("net.toa settings are the host's: write them from the initial network namespace (pid %d refused)\n",
			    task_pid_nr(current));
	return -EPERM;
}

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
};

static bool toa_setting_is_text(enum toa_setting what)
{
	return what == TOA_SET_KINDS || what == TOA_SET_PACKET || what == TOA_SET_POSITION;
}

static int toa_config_set(enum toa_setting what, const u8 *text, size_t len)
{
	int err;

	err = toa_may_write();
	if (err)
		return err;
	mutex_lock(&toa_config_mutex);
	switch (what) {
	case TOA_SET_ADDR:
	case TOA_SET_ADDR_V6:
		err = toa_config_write_kind(what, text, len);
		break;
	case TOA_SET_KINDS:
		err = toa_config_write_kinds(text, len);
		break;
	case TOA_SET_CDN:
		err = toa_config_write_cdn(text, len);
		break;
	case TOA_SET_PACKET:
	case TOA_SET_POSITION:
		err = toa_config_write_word(what - TOA_SET_PACKET, text, len);
		break;
	case TOA_SET_UDP_REWRITE:
		err = toa_udp_config_write_rewrite(text, len);
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
		toa_udp_config_changed();
	mutex_unlock(&toa_config_mutex);
	return err;
}

/* The value of a numeric setting. */
static int toa_config_get(enum toa_setting what)
{
	switch (what) {
	case TOA_SET_CDN:
		return toa_config_cdn();
	case TOA_SET_UDP_REWRITE:
		return toa_udp_config_rewrite();
	case TOA_SET_UDP_TIMEOUT:
		return toa_udp_config_timeout();
	case TOA_SET_UDP_MAX_FLOWS:
		return toa_udp_config_max_flows();
	default:
		return toa_config_kind(what);
	}
}

/* A text setting (the kinds, a word) as text, without a final newline,
 * into buf. */
static void toa_text_get(enum toa_setting what, char *buf, size_t size)
{
	size_t n;

	if (what == TOA_SET_KINDS)
		n = toa_config_read_kinds((u8 *)buf, size - 1);
	else
		n = toa_config_read_word(what - TOA_SET_PACKET, (u8 *)buf, size - 1);
	buf[n] = '\0';
}

/* Room for every kind: 255 of at most 3 digits and a space. */
#define TOA_KINDS_TEXT_MAX 1024

static int toa_kind_sysctl(const struct ctl_table *table, int write, void *buffer,
			   size_t *lenp, loff_t *ppos)
{
	enum toa_setting what = (unsigned long)table->extra1;
	struct ctl_table tmp = *table;
	char *text;
	int value, err;

	if (write) {
		/* A value is written whole, in one write, or not at all. */
		if (*ppos)
			return -EINVAL;
		err = toa_config_set(what, buffer, *lenp);
		if (err)
			return err;
		*ppos += *lenp;
		return 0;
	}
	if (toa_setting_is_text(what)) {
		text = kzalloc(TOA_KINDS_TEXT_MAX, GFP_KERNEL);
		if (!text)
			return -ENOMEM;
		toa_text_get(what, text, TOA_KINDS_TEXT_MAX);
		tmp.data = text;
		tmp.maxlen = TOA_KINDS_TEXT_MAX;
		err = proc_dostring(&tmp, 0, buffer, lenp, ppos);
		kfree(text);
		return err;
	}
	value = toa_config_get(what);
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

static int toa_trust_set(const u8 *text, size_t len)
{
	int err;

	err = toa_may_write();
	if (err)
		return err;
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
};

static struct ctl_table_header *toa_sysctl_header;

static int toa_kind_param_set(const char *val, const struct kernel_param *kp)
{
	return toa_config_set((unsigned long)kp->arg, (const u8 *)val, strlen(val));
}

static int toa_kind_param_get(char *buf, const struct kernel_param *kp)
{
	enum toa_setting what = (unsigned long)kp->arg;

	if (toa_setting_is_text(what)) {
		toa_text_get(what, buf, PAGE_SIZE - 1);
		return strlcat(buf, "\n", PAGE_SIZE);
	}
	return sysfs_emit(buf, "%d\n", toa_config_get(what));
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

int toa_admin_register(void)
{
	int err;

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
	return 0;

unregister_pernet:
	unregister_pernet_subsys(&toa_net_ops);
free_counters:
	free_percpu(toa_counters);
	toa_nr_counters = 0;
	return err;
}

void toa_admin_unregister(void)
{
	unregister_sysctl_table(toa_sysctl_header);
	unregister_pernet_subsys(&toa_net_ops);
	toa_nr_counters = 0;
	free_percpu(toa_counters);
}
