// SPDX-License-Identifier: GPL-2.0
/*
 * Entry hooks: a handler run at the entry of a kernel function, with its
 * first four arguments, for the hooks that only look (a SYN reaching a
 * listener, a deferred handshake ACK, a socket being destroyed).
 *
 * With the default hooks (hook=auto, direct, ftrace) they are ftrace_ops
 * without IPMODIFY: the function tracer calls the handler from the
 * function's call site (any number of tracers, live patches and BPF
 * programs can share a function with them), some 40 instructions per call
 * where a kprobe costs some 300. With hook=kretprobe or fprobe, every hook
 * of toa is a probe, these as kprobes.
 *
 * A function is named by its symbol (some are not exported); the function
 * tracer or the probe core resolves it, as for any tracer.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/string.h>

#include "glue.h"
#include "internal.h"

static bool toa_entry_use_ftrace;

void toa_entry_hooks_use_ftrace(bool ftrace)
{
	toa_entry_use_ftrace = ftrace;
}

static int toa_entry_kprobe(struct kprobe *kp, struct pt_regs *regs)
{
	struct toa_entry_hook *h = container_of(kp, struct toa_entry_hook, kp);

	h->handler(regs_get_kernel_argument(regs, 0), regs_get_kernel_argument(regs, 1),
		   regs_get_kernel_argument(regs, 2), regs_get_kernel_argument(regs, 3));
	return 0;
}

/* Called directly by the function's tracer trampoline; the handlers call
 * nothing this ops traces, so it needs no recursion protection. */
static void notrace toa_entry_ftrace(unsigned long ip, unsigned long parent_ip,
				     struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct toa_entry_hook *h = container_of(ops, struct toa_entry_hook, ops);

	h->handler(ftrace_regs_get_argument(fregs, 0), ftrace_regs_get_argument(fregs, 1),
		   ftrace_regs_get_argument(fregs, 2), ftrace_regs_get_argument(fregs, 3));
}

int toa_entry_hook_register(struct toa_entry_hook *h)
{
	/* The filter parser may write into its buffer: give it a copy. */
	unsigned char name[64];
	int err;

	if (strscpy(name, h->symbol, sizeof(name)) < 0)
		return -ENAMETOOLONG;
	if (toa_entry_use_ftrace) {
		memset(&h->ops, 0, sizeof(h->ops));
		h->ops.func = toa_entry_ftrace;
		/* The handlers only read: the saved argument registers do. */
#ifndef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
		h->ops.flags = FTRACE_OPS_FL_SAVE_REGS;
#endif
		err = ftrace_set_filter(&h->ops, name, strlen(name), 0);
		if (!err) {
			err = register_ftrace_function(&h->ops);
			if (err)
				ftrace_free_filter(&h->ops);
		}
	} else {
		memset(&h->kp, 0, sizeof(h->kp));
		h->kp.symbol_name = h->symbol;
		h->kp.pre_handler = toa_entry_kprobe;
		err = register_kprobe(&h->kp);
	}
	if (!err) {
		h->ftrace = toa_entry_use_ftrace;
		h->on = true;
	}
	return err;
}

/* Returns once no handler of h runs anywhere. */
void toa_entry_hook_unregister(struct toa_entry_hook *h)
{
	if (!h->on)
		return;
	if (h->ftrace) {
		WARN_ON(unregister_ftrace_function(&h->ops));
		ftrace_free_filter(&h->ops);
	} else {
		unregister_kprobe(&h->kp);
	}
	h->on = false;
}

/* Calls the probe core could not hand to h (a kprobe that hit itself). */
unsigned long toa_entry_hook_missed(const struct toa_entry_hook *h)
{
	return h->on && !h->ftrace ? h->kp.nmissed : 0;
}
