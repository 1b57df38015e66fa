// SPDX-License-Identifier: GPL-2.0
/*
 * toa_claim: a test module standing in for another user of inet_getname's
 * entry (a live patch of af_inet.c does the same): it registers an
 * IPMODIFY ftrace_ops with an empty callback on inet_getname and
 * inet6_getname. toa, loaded after it, must fall back to kretprobes for
 * getpeername()/accept() and say so once. Used by toa-vmtest's hooks cases.
 */
#include <linux/ftrace.h>
#include <linux/module.h>
#include <net/inet_common.h>
#include <net/ipv6.h>

static void notrace toa_claim_func(unsigned long ip, unsigned long parent_ip,
				   struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
}

static struct ftrace_ops toa_claim_ops = {
	.func = toa_claim_func,
	.flags = FTRACE_OPS_FL_IPMODIFY
#ifndef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
		 | FTRACE_OPS_FL_SAVE_REGS
#endif
};

static int __init toa_claim_init(void)
{
	int err;

	err = ftrace_set_filter_ip(&toa_claim_ops, (unsigned long)inet_getname, 0, 0);
	if (!err)
		err = ftrace_set_filter_ip(&toa_claim_ops, (unsigned long)inet6_getname, 0, 0);
	if (!err)
		err = register_ftrace_function(&toa_claim_ops);
	if (err)
		ftrace_free_filter(&toa_claim_ops);
	return err;
}

static void __exit toa_claim_exit(void)
{
	unregister_ftrace_function(&toa_claim_ops);
	ftrace_free_filter(&toa_claim_ops);
}

module_init(toa_claim_init);
module_exit(toa_claim_exit);
MODULE_DESCRIPTION("toa test: claim inet_getname with an IPMODIFY ftrace_ops");
MODULE_LICENSE("GPL");
