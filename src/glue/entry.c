// SPDX-License-Identifier: GPL-2.0
/*
 * Entry hooks: a handler run at the entry of a kernel function, with its
 * first four arguments, for the hooks that only look (a SYN reaching a
 * listener, a deferred handshake ACK, a socket being destroyed).
 *
 * With hook=direct (auto's choice on x86_64 and arm64) each is a direct-call
 * trampoline of its own that calls the handler (TOA_ENTRY_DIRECT,
 * direct_x86.h, direct_arm64.h); with hook=ftrace (or where a direct call cannot be had) an
 * ftrace_ops without IPMODIFY: the function tracer calls the handler from
 * the function's call site. Either way any number of tracers, live
 * patches and BPF programs can share the function with them; an ftrace_ops
 * costs some 40 instructions more per call than a direct call, a kprobe
 * some 300. With hook=kretprobe or fprobe, every hook of toa is a probe,
 * these as kprobes.
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

static bool toa_entry_use_ftrace, toa_entry_use_direct;

void toa_entry_hooks_use(bool ftrace, bool direct)
{
	toa_entry_use_ftrace = ftrace || direct;
	toa_entry_use_direct = direct;
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

/*
 * Bench builds only (`make bench` breakdowns, docs/performance.md): a
 * module built with TOA_BENCH_OMIT="sym ..." leaves those hooks out, so
 * that what each one costs can be counted. Never set in a package.
 */
bool toa_bench_omits(const char *symbol)
{
#ifdef TOA_BENCH_OMIT
	static const char omit[] = TOA_BENCH_OMIT;
	const char *p = omit;
	size_t n = strlen(symbol);

	while ((p = strstr(p, symbol))) {
		if ((p == omit || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return true;
		p += n;
	}
#endif
	return false;
}

#ifdef TOA_DIRECT_ARCH
/*
 * hook=direct: the function's tracer call site calls h->direct, which
 * calls the handler (some 15 instructions around it, where the tracer's
 * own trampoline and ops callback take some 40 more). The function is
 * named as for an ftrace_ops (not all are exported); other users of its
 * call site (tracers, BPF, live patches) share it through ftrace. If the
 * direct call cannot be had, the hook is an ftrace_ops.
 */
static int toa_entry_direct_register(struct toa_entry_hook *h, unsigned char *name)
{
	int err;

	memset(&h->ops, 0, sizeof(h->ops));
	err = ftrace_set_filter(&h->ops, name, strlen(name), 0);
	if (err)
		return err;
	err = register_ftrace_direct(&h->ops, (unsigned long)h->direct);
	if (err)
		ftrace_free_filter(&h->ops);
	return err;
}

static void toa_entry_direct_unregister(struct toa_entry_hook *h)
{
	WARN_ON(unregister_ftrace_direct(&h->ops, (unsigned long)h->direct, true));
}
#else
static int toa_entry_direct_register(struct toa_entry_hook *h, unsigned char *name)
{
	return -EOPNOTSUPP;
}

static void toa_entry_direct_unregister(struct toa_entry_hook *h)
{
}
#endif

int toa_entry_hook_register(struct toa_entry_hook *h)
{
	/* The filter parser may write into its buffer: give it a copy. */
	unsigned char name[64];
	int err;

	if (strscpy(name, h->symbol, sizeof(name)) < 0)
		return -ENAMETOOLONG;
	if (toa_bench_omits(h->symbol))
		return 0;
	if (toa_entry_use_direct && h->direct) {
		err = toa_entry_direct_register(h, name);
		/* The parser may have written into it. */
		strscpy(name, h->symbol, sizeof(name));
		if (!err) {
			h->is_direct = true;
			h->ftrace = true;
			h->on = true;
			return 0;
		}
		pr_info("%s: no direct call (%d), an ftrace_ops instead\n", h->symbol, err);
	}
	h->is_direct = false;
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
	if (h->is_direct) {
		toa_entry_direct_unregister(h);
	} else if (h->ftrace) {
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
