/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hook=direct on arm64: the same three trampolines as direct_x86.h, for
 * the arm64 function tracer's direct calls (DYNAMIC_FTRACE_WITH_ARGS and
 * _WITH_DIRECT_CALLS, Debian's arm64 kernels). Included by internal.h
 * only.
 *
 * A function's tracer call site is its first two instructions (with
 * -fpatchable-function-entry; CALL_OPS puts two more before the symbol):
 *
 *	FN+0:	mov	x9, x30		(a NOP while nothing traces FN)
 *	FN+4:	bl	<trampoline>	(or ftrace_caller, which branches to it
 *					 with br x17)
 *	FN+8:	the function's own first instruction (paciasp, ...)
 *
 * so a direct trampoline starts with the function's arguments in x0-x8,
 * the function's return address in x9, the address of FN+8 in x30 and the
 * stack as at the function's entry; x10-x17 are free. It goes on into the
 * function with x30 = x9 and a branch to FN+8 (as the kernel's own
 * ftrace_stub_direct_tramp does), or, to redirect, with x30 = x9 and a
 * branch to toa's wrapper, which is then entered exactly as if the
 * function's caller had called it.
 *
 * Pointer authentication (ARM64_PTR_AUTH_KERNEL): a return address is
 * signed by the function that keeps it (paciasp in its prologue) and
 * checked before that function returns. The trampolines hand x9 on
 * unsigned, as they found it, to the function or to the wrapper, whose own
 * prologue signs it; the assembly wrapper below signs and checks its
 * return address like compiled code (hint 25/29: paciasp/autiasp, NOPs
 * without the feature). Branch target identification: every entry begins
 * with bti c (hint 34), a NOP where BTI is off (Debian's kernel); a
 * function whose call site is not at FN+0 (a BTI kernel puts bti c there)
 * is refused by toa_direct_site_ok(), and hook=auto takes ftrace.
 */
#ifndef TOA_DIRECT_ARM64_H
#define TOA_DIRECT_ARM64_H

#define TOA_DIRECT_ARCH 1

#include <asm/alternative-macros.h>
#include <linux/uaccess.h>

/* The frame a trampoline keeps: a frame record (x29, x30) and x0-x9. */
#define TOA_ASM_SAVE_ARGS							\
	"stp x29, x30, [sp, #-96]!\n\t"						\
	"mov x29, sp\n\t"							\
	"stp x0, x1, [sp, #16]\n\t"						\
	"stp x2, x3, [sp, #32]\n\t"						\
	"stp x4, x5, [sp, #48]\n\t"						\
	"stp x6, x7, [sp, #64]\n\t"						\
	"stp x8, x9, [sp, #80]\n\t"
#define TOA_ASM_RESTORE_ARGS							\
	"ldp x0, x1, [sp, #16]\n\t"						\
	"ldp x2, x3, [sp, #32]\n\t"						\
	"ldp x4, x5, [sp, #48]\n\t"						\
	"ldp x6, x7, [sp, #64]\n\t"						\
	"ldp x8, x9, [sp, #80]\n\t"						\
	"ldp x29, x30, [sp], #96\n\t"
/* On into the function: its body, with its own return address. */
#define TOA_ASM_INTO_FUNCTION							\
	"mov x16, x30\n\t"							\
	"mov x30, x9\n\t"							\
	"ret x16\n\t"

#define TOA_ENTRY_DIRECT_UNLESS(handler, skip)				\
	void handler##_direct(void);						\
	asm(".pushsection .text.toa_direct, \"ax\", @progbits\n\t"		\
	    ".p2align 3\n\t"							\
	    ".type " #handler "_direct, @function\n"				\
	    #handler "_direct:\n\t"						\
	    "hint 34\n\t"							\
	    skip								\
	    TOA_ASM_SAVE_ARGS							\
	    "bl " #handler "\n\t"						\
	    TOA_ASM_RESTORE_ARGS						\
	    "1:\n\t"								\
	    TOA_ASM_INTO_FUNCTION						\
	    ".size " #handler "_direct, .-" #handler "_direct\n\t"		\
	    ".popsection\n\t")
#define TOA_ENTRY_DIRECT_FN(handler) handler##_direct

/* The trampolines' early tests (internal.h): a branch to 1f goes on into
 * the function; only x16 and x17 are used. */
#define TOA_ASM_SKIP_UNLESS_USER_DATA						\
	"cbz x0, 1f\n\t"							\
	"adrp x16, toa_parked_count\n\t"					\
	"ldr w16, [x16, :lo12:toa_parked_count]\n\t"				\
	"cbnz w16, 2f\n\t"							\
	"ldr x16, [x0, #toa_off_sk_user_data]\n\t"				\
	"cbz x16, 1f\n\t"							\
	/* toa's word of an IPv4 client (stash.rs: bit 3, the tag on top) */	\
	"tbz x16, #3, 2f\n\t"							\
	"lsr x16, x16, #56\n\t"						\
	"adrp x17, TOA_STASH_TAG\n\t"						\
	"ldrb w17, [x17, :lo12:TOA_STASH_TAG]\n\t"				\
	"cmp x16, x17\n\t"							\
	"b.eq 1f\n"								\
	"2:\n\t"
#define TOA_ASM_SKIP_UNLESS_DEFERRING						\
	"tst w3, #0xff\n\t"							\
	"b.ne 1f\n\t"								\
	"cbz x0, 1f\n\t"							\
	"ldrb w16, [x0, #toa_off_defer_accept]\n\t"				\
	"cbz w16, 1f\n\t"
/* Nothing is left on this CPU for a child (tcp_redirect.c's
 * toa_child_stash, whose first member, the listener, is NULL): this CPU's
 * per-CPU offset, read as the kernel reads it (TPIDR_EL1, or TPIDR_EL2
 * where the kernel runs at EL2: its alternative, patched at load, as in
 * __kern_my_cpu_offset()), added to the variable's address, and a load. */
#define TOA_ASM_SKIP_UNLESS_CHILD_STASHED					\
	ALTERNATIVE("mrs x16, tpidr_el1", "mrs x16, tpidr_el2",		\
		    ARM64_HAS_VIRT_HOST_EXTN)					\
	"adrp x17, toa_child_stash\n\t"						\
	"add x17, x17, :lo12:toa_child_stash\n\t"				\
	"ldr x17, [x17, x16]\n\t"						\
	"cbz x17, 1f\n\t"

/* UDP's protocol-level hooks: the same tests as on x86_64 (direct_x86.h),
 * with x16 and x17. The port, in network order, in w16. */
#define TOA_ASM_UDP_PORT_BIT_TEST						\
	"rev16 w16, w16\n\t"							\
	"and w16, w16, #2047\n\t"						\
	"adrp x17, toa_udp_ports_seen\n\t"					\
	"add x17, x17, :lo12:toa_udp_ports_seen\n\t"				\
	"add x17, x17, x16, lsr #3\n\t"					\
	"ldrb w17, [x17]\n\t"							\
	"and w16, w16, #7\n\t"							\
	"lsr w17, w17, w16\n\t"						\
	"tbz w17, #0, 1f\n\t"
/* The destination port, from a linear UDP header at skb->data. */
#define TOA_ASM_SKIP_UNLESS_UDP_RCV6						\
	"ldr w16, [x0, #toa_off_skb_len]\n\t"					\
	"ldr w17, [x0, #toa_off_skb_data_len]\n\t"				\
	"sub w16, w16, w17\n\t"						\
	"cmp w16, #8\n\t"							\
	"b.lo 2f\n\t"								\
	"ldr x16, [x0, #toa_off_skb_data]\n\t"				\
	"ldrh w16, [x16, #2]\n\t"						\
	TOA_ASM_UDP_PORT_BIT_TEST						\
	"2:\n\t"
#define TOA_ASM_SKIP_UNLESS_UDP_RCV4						\
	"ldr x16, [x0, #toa_off_skb_head]\n\t"				\
	"ldrh w17, [x0, #toa_off_skb_nh]\n\t"					\
	"ldrb w16, [x16, x17]\n\t"						\
	"cmp w16, #0x45\n\t"							\
	"b.ne 2f\n\t"								\
	TOA_ASM_SKIP_UNLESS_UDP_RCV6
/* x16: the IP header of skb (a register), which must be UDP (the
 * protocol's byte at `proto`). */
#define TOA_ASM_UDP_SEND_HEADER(skb, proto)					\
	"ldr x16, [" skb ", #toa_off_skb_head]\n\t"				\
	"ldrh w17, [" skb ", #toa_off_skb_nh]\n\t"				\
	"add x16, x16, x17\n\t"						\
	"ldrb w17, [x16, #" proto "]\n\t"					\
	"cmp w17, #17\n\t"							\
	"b.ne 1f\n\t"
#define TOA_ASM_SKIP_UNLESS_UDP_SEND4						\
	TOA_ASM_UDP_SEND_HEADER("x1", "9")					\
	"ldrb w17, [x16]\n\t"							\
	"and w17, w17, #15\n\t"						\
	"add x16, x16, x17, lsl #2\n\t"					\
	"ldrh w16, [x16]\n\t"							\
	TOA_ASM_UDP_PORT_BIT_TEST
/* udp_sendmsg(sk, ...): the socket's own port (inet_sport). */
#define TOA_ASM_SKIP_UNLESS_UDP_SENDMSG					\
	"ldrh w16, [x0, #toa_off_inet_sport]\n\t"				\
	TOA_ASM_UDP_PORT_BIT_TEST
#define TOA_ASM_SKIP_UNLESS_UDP_SEND6						\
	TOA_ASM_UDP_SEND_HEADER("x0", "6")					\
	"ldrh w16, [x16, #40]\n\t"						\
	TOA_ASM_UDP_PORT_BIT_TEST

/* Where toa_redirected_FN enters FN: past its call site. */
#define TOA_DIRECT_SKIP 8

/*
 * getname (x0 struct socket *, x1 uaddr, w2 peer), as on x86_64: the same
 * tests in the same order (a socket without sk_user_data leaves after
 * eight instructions, the landing pad and the return into FN included;
 * socket->sk read without a NULL test, as on x86_64),
 * toa's tag in the word's top byte, a socket map's flag
 * (SK_USER_DATA_PSOCK, bit 2) while words are parked; the guard against the
 * wrapper's own call (which enters FN past the call site, so only a
 * guard). toa_redirected_FN returns toa_getname_answer_FAMILY()'s answer
 * unless it is TOA_GETNAME_WRAP (as on x86_64); then it keeps the three
 * arguments across toa_redirect_enter() (an ordinary C function here) and
 * calls FN + 8.
 */
#define TOA_DIRECT_GETNAME_ASM(fn, family)					\
	".pushsection .text.toa_direct, \"ax\", @progbits\n\t"			\
	".p2align 3\n\t"							\
	".type toa_direct_" #fn ", @function\n"					\
	"toa_direct_" #fn ":\n\t"						\
	"hint 34\n\t"								\
	"cbz w2, 1f\n\t"							\
	"ldr x16, [x0, #toa_off_socket_sk]\n\t"					\
	"ldr x16, [x16, #toa_off_sk_user_data]\n\t"				\
	"cbz x16, 1f\n\t"							\
	"adrp x17, TOA_STASH_TAG\n\t"						\
	"ldrb w17, [x17, :lo12:TOA_STASH_TAG]\n\t"				\
	"lsr x15, x16, #56\n\t"							\
	"cmp w15, w17\n\t"							\
	"b.ne 3f\n"								\
	"2:\n\t"								\
	"adr x16, .Ltoa_redirected_" #fn "_call\n\t"				\
	"cmp x9, x16\n\t"							\
	"b.eq 1f\n\t"								\
	"mov x30, x9\n\t"							\
	"b toa_redirected_" #fn "\n"						\
	"1:\n\t"								\
	TOA_ASM_INTO_FUNCTION							\
	"3:\n\t"								\
	"tbz x16, #2, 1b\n\t"							\
	"adrp x17, toa_parked_count\n\t"					\
	"ldr w17, [x17, :lo12:toa_parked_count]\n\t"				\
	"cbnz w17, 2b\n\t"							\
	"b 1b\n\t"								\
	".size toa_direct_" #fn ", .-toa_direct_" #fn "\n\t"			\
	".p2align 3\n\t"							\
	".type toa_redirected_" #fn ", @function\n"				\
	"toa_redirected_" #fn ":\n\t"						\
	"hint 34\n\t"								\
	"hint 25\n\t"								\
	"stp x29, x30, [sp, #-48]!\n\t"						\
	"mov x29, sp\n\t"							\
	"stp x0, x1, [sp, #16]\n\t"						\
	"str x2, [sp, #32]\n\t"							\
	"bl toa_getname_answer_" #family "\n\t"				\
	"cmp w0, #" __stringify(TOA_GETNAME_WRAP) "\n\t"			\
	"b.ne 4f\n\t"								\
	"ldp x0, x1, [sp, #16]\n\t"						\
	"ldr x2, [sp, #32]\n\t"							\
	"bl toa_redirect_enter\n\t"						\
	"ldp x0, x1, [sp, #16]\n\t"						\
	"ldr x2, [sp, #32]\n\t"							\
	"bl " #fn " + " __stringify(TOA_DIRECT_SKIP) "\n"			\
	".Ltoa_redirected_" #fn "_call:\n\t"					\
	"mov w2, w0\n\t"							\
	"ldp x0, x1, [sp, #16]\n\t"						\
	"bl toa_redirect_exit_" #family "\n"					\
	"4:\n\t"								\
	"ldp x29, x30, [sp], #48\n\t"						\
	"hint 29\n\t"								\
	"ret\n\t"								\
	".size toa_redirected_" #fn ", .-toa_redirected_" #fn "\n\t"		\
	".popsection\n\t"

/*
 * syn_recv_sock's trampoline: asks toa_syn_recv_check(sk, skb, req, v6)
 * with every argument register kept, and for a yes enters the wrapper
 * toa_syn_recv_vN_wrapper instead of the function (its caller's return
 * address in x30, the stack as at the function's entry).
 */
#define TOA_SYN_RECV_DIRECT_ASM(v, isv6)					\
	".pushsection .text.toa_direct, \"ax\", @progbits\n\t"		\
	".p2align 3\n\t"							\
	".type toa_direct_syn_recv_" #v ", @function\n"			\
	"toa_direct_syn_recv_" #v ":\n\t"					\
	"hint 34\n\t"								\
	TOA_ASM_SAVE_ARGS							\
	"mov w3, #" #isv6 "\n\t"						\
	"bl toa_syn_recv_check\n\t"						\
	"mov w15, w0\n\t"							\
	TOA_ASM_RESTORE_ARGS							\
	"cbz w15, 1f\n\t"							\
	"mov x30, x9\n\t"							\
	"b toa_syn_recv_" #v "_wrapper\n"					\
	"1:\n\t"								\
	TOA_ASM_INTO_FUNCTION							\
	".size toa_direct_syn_recv_" #v ", .-toa_direct_syn_recv_" #v "\n\t"	\
	".popsection\n\t"

/* FN's tracer call site as ftrace knows it: the BL, at FN+4. */
static inline unsigned long toa_direct_site_of(unsigned long func)
{
	return func + 4;
}

/*
 * toa_redirected_FN calls FN + 8, so FN's first two instructions must be
 * the call site: a NOP or mov x9, x30, then a NOP or a bl (FN traced
 * already). Anything else (a BTI kernel's bti c at FN+0, another compiler's
 * layout) and hook=direct is refused (auto takes the next mechanism).
 */
static inline bool toa_direct_site_ok(unsigned long func)
{
	u32 insn[2];

	if (copy_from_kernel_nofault(insn, (void *)func, sizeof(insn)))
		return false;
	insn[0] = le32_to_cpu((__force __le32)insn[0]);
	insn[1] = le32_to_cpu((__force __le32)insn[1]);
	return (insn[0] == 0xd503201f || insn[0] == 0xaa1e03e9) &&	/* nop, mov x9, x30 */
	       (insn[1] == 0xd503201f || (insn[1] & 0xfc000000) == 0x94000000);	/* nop, bl */
}

#endif /* TOA_DIRECT_ARM64_H */
