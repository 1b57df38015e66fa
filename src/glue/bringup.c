// SPDX-License-Identifier: GPL-2.0
/*
 * toa's C glue: the kernel registrations the Rust crate cannot make with the
 * kernel crate of 6.12..7.x, and the few struct sock accesses it needs.
 * Every decision is taken on the Rust side (the boundary is glue.h and
 * kapi.rs); the C files gather facts, call, and keep memory and locks:
 *
 *   admin.c    counters, /proc/net/toa_stats, sysctls, parameters
 *   tcp_records.c  sk_user_data and the IPv6 client records
 *   tcp_hooks.c    probes, the TOA_SO_GET_LOOKUP getsockopt, and when
 *                  new connections are hooked
 *   tcp_syn.c      the handshake table and the SYN-side probes
 *   udp_nf.c       UDP clients: the flow table, which hooks serve a
 *                  namespace, netfilter hooks, the UOA getsockopt,
 *                  /proc/net/toa_udp
 *   udp_entry.c    UDP clients: the protocol-level hooks (namespaces that
 *                  do not forward)
 *
 * This file brings them up and down in order.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/rcupdate.h>

#include "glue.h"
#include "internal.h"

void toa_synchronize_rcu(void)
{
	synchronize_rcu();
}

void toa_rcu_read_lock(void)
{
	rcu_read_lock();
}

void toa_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

int toa_glue_register(void)
{
	int err;

	/* The tables first and gone last: procfs, sysctls and the handshake
	 * probes read them. */
	err = toa_syn_table_init();
	if (err)
		return err;
	err = toa_udp_table_init();
	if (err)
		goto exit_table;
	err = toa_admin_register();
	if (err)
		goto exit_udp_table;
	err = toa_records_init();
	if (err)
		goto unregister_admin;
	err = toa_hooks_register();
	if (err)
		goto exit_records;
	err = toa_udp_register();
	if (err)
		goto unregister_hooks;
	/* New connections are hooked once a balancer is trusted: now, if
	 * the load's trusted_sources names one. */
	if (toa_settings_trust_anyone(toa_net_settings(&init_net))) {
		err = toa_intake_want();
		if (err)
			goto unregister_udp;
	}
	return 0;

unregister_udp:
	toa_intake_close();
	toa_udp_unregister();
unregister_hooks:
	toa_hooks_unregister();
exit_records:
	toa_records_exit();
unregister_admin:
	toa_admin_unregister();
exit_udp_table:
	toa_udp_table_exit();
exit_table:
	toa_syn_table_exit();
	return err;
}

void toa_glue_unregister(void)
{
	toa_intake_close();
	toa_udp_unregister();
	toa_hooks_unregister();
	toa_records_exit();
	toa_admin_unregister();
	toa_udp_table_exit();
	toa_syn_table_exit();
}
