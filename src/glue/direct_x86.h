/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hook=direct on x86_64: the direct-call trampolines toa places on the
 * function tracer's call sites (register_ftrace_direct), in assembly:
 * the entry hooks' (TOA_ENTRY_DIRECT_UNLESS, with its early tests
 * TOA_ASM_SKIP_*), getname's redirection (TOA_DIRECT_GETNAME_ASM) and
 * syn_recv_sock's (TOA_SYN_RECV_DIRECT_ASM), and where a function's call
 * site is (toa_direct_site_of/_ok). Included
 * by internal.h only; direct_arm64.h is the same for arm64.
 *
 * At a call site's call, %rdi, %rsi, %rdx, %rcx, %r8, %r9 hold the
 * function's arguments, (%rsp) is the return into the function and
 * 8(%rsp) the function's own return address.
 */
#ifndef TOA_DIRECT_X86_H
#define TOA_DIRECT_X86_H

#define TOA_DIRECT_ARCH 1

#include <asm/ibt.h>
#include <asm/linkage.h>
#include <asm/nops.h>
#include <asm/nospec-branch.h>
#include <asm/text-patching.h>
#include <linux/uaccess.h>

/* A direct-call trampoline keeps the function's six argument registers
 * around a C call of its own (the other caller-saved ones are free at a
 * function's entry). */
#define TOA_ASM_SAVE_ARGS							\
	"pushq %rdi\n\t"							\
	"pushq %rsi\n\t"							\
	"pushq %rdx\n\t"							\
	"pushq %rcx\n\t"							\
	"pushq %r8\n\t"							\
	"pushq %r9\n\t"
#define TOA_ASM_RESTORE_ARGS							\
	"popq %r9\n\t"								\
	"popq %r8\n\t"								\
	"popq %rcx\n\t"							\
	"popq %rdx\n\t"							\
	"popq %rsi\n\t"							\
	"popq %rdi\n\t"

#define TOA_ENTRY_DIRECT_UNLESS(handler, skip)				\
	void handler##_direct(void);						\
	asm(".pushsection .text.toa_direct, \"ax\", @progbits\n\t"		\
	    ".p2align 4\n\t"							\
	    ".type " #handler "_direct, @function\n"				\
	    #handler "_direct:\n\t"						\
	    ASM_ENDBR								\
	    CALL_DEPTH_ACCOUNT							\
	    skip								\
	    TOA_ASM_SAVE_ARGS							\
	    "call " #handler "\n\t"						\
	    TOA_ASM_RESTORE_ARGS						\
	    "1:\n\t"								\
	    ASM_RET								\
	    ".size " #handler "_direct, .-" #handler "_direct\n\t"		\
	    ".popsection\n\t")
#define TOA_ENTRY_DIRECT_FN(handler) handler##_direct

/* The trampolines' early tests (internal.h): a branch to 1f goes on into
 * the function; only %rax is used. */
#define TOA_ASM_SKIP_UNLESS_USER_DATA						\
	"testq %rdi, %rdi\n\t"							\
	"jz 1f\n\t"								\
	"cmpl $0, toa_parked_count(%rip)\n\t"					\
	"jne 2f\n\t"								\
	"movq toa_off_sk_user_data(%rdi), %rax\n\t"				\
	"testq %rax, %rax\n\t"							\
	"jz 1f\n\t"								\
	/* toa's word of an IPv4 client (stash.rs: bit 3, the tag on top) */	\
	"testb $8, %al\n\t"							\
	"jz 2f\n\t"								\
	"shrq $56, %rax\n\t"							\
	"cmpb TOA_STASH_TAG(%rip), %al\n\t"					\
	"je 1f\n"								\
	"2:\n\t"
#define TOA_ASM_SKIP_UNLESS_DEFERRING						\
	"testb %cl, %cl\n\t"							\
	"jnz 1f\n\t"								\
	"testq %rdi, %rdi\n\t"							\
	"jz 1f\n\t"								\
	"cmpb $0, toa_off_defer_accept(%rdi)\n\t"				\
	"je 1f\n\t"

/* Nothing is left on this CPU for a child (tcp_redirect.c's
 * toa_child_stash, whose first member, the listener, is NULL): a per-CPU
 * load, addressed as the compiler addresses one (PER_CPU_VAR). */
#define TOA_ASM_SKIP_UNLESS_CHILD_STASHED					\
	"cmpq $0, " __stringify(PER_CPU_VAR(toa_child_stash)) "\n\t"		\
	"je 1f\n\t"

/*
 * UDP's protocol-level hooks (udp_entry.c): a datagram whose backend-side
 * port has no bit in toa_udp_ports_seen (every port any namespace ever had
 * a flow on; udp_net.h) goes on at once, without the handler's call. On
 * receive (%rdi: the skb, its data at the UDP header) only with the UDP
 * header in the linear part, and for IPv4 only a header without options
 * (options may carry a UOA); on send (the skb's data at the IP header,
 * which the kernel built with the UDP header after it) only UDP is looked
 * at. %rax and %r10 are used (free at a function's entry). The offsets
 * come from udp_entry.c's toa_udp_direct_offsets().
 */
#define TOA_ASM_UDP_PORT_BIT_TEST(port_load)					\
	port_load								\
	"rolw $8, %ax\n\t"							\
	"andl $2047, %eax\n\t"							\
	"btl %eax, toa_udp_ports_seen(%rip)\n\t"				\
	"jnc 1f\n"
/* The destination port, from a linear UDP header at skb->data. */
#define TOA_ASM_SKIP_UNLESS_UDP_RCV6						\
	"movl toa_off_skb_len(%rdi), %r10d\n\t"				\
	"subl toa_off_skb_data_len(%rdi), %r10d\n\t"			\
	"cmpl $8, %r10d\n\t"							\
	"jb 2f\n\t"								\
	TOA_ASM_UDP_PORT_BIT_TEST("movq toa_off_skb_data(%rdi), %rax\n\t"	\
				  "movzwl 2(%rax), %eax\n\t")			\
	"2:\n\t"
#define TOA_ASM_SKIP_UNLESS_UDP_RCV4						\
	"movq toa_off_skb_head(%rdi), %rax\n\t"				\
	"movzwl toa_off_skb_nh(%rdi), %r10d\n\t"				\
	"cmpb $0x45, (%rax,%r10)\n\t"						\
	"jne 2f\n\t"								\
	TOA_ASM_SKIP_UNLESS_UDP_RCV6
/* %rax: the IP header of skb (a register), which must be UDP (the
 * protocol's byte at `proto`). */
#define TOA_ASM_UDP_SEND_HEADER(skb, proto)					\
	"movq toa_off_skb_head(" skb "), %rax\n\t"				\
	"movzwl toa_off_skb_nh(" skb "), %r10d\n\t"				\
	"addq %r10, %rax\n\t"							\
	"cmpb $17, " proto "(%rax)\n\t"					\
	"jne 1f\n\t"
#define TOA_ASM_SKIP_UNLESS_UDP_SEND4						\
	TOA_ASM_UDP_SEND_HEADER("%rsi", "9")					\
	TOA_ASM_UDP_PORT_BIT_TEST("movzbl (%rax), %r10d\n\t"			\
				  "andl $15, %r10d\n\t"				\
				  "movzwl (%rax,%r10,4), %eax\n\t")
/* udp_sendmsg(sk, ...): the socket's own port (inet_sport). */
#define TOA_ASM_SKIP_UNLESS_UDP_SENDMSG					\
	TOA_ASM_UDP_PORT_BIT_TEST("movzwl toa_off_inet_sport(%rdi), %eax\n\t")
#define TOA_ASM_SKIP_UNLESS_UDP_SEND6						\
	TOA_ASM_UDP_SEND_HEADER("%rdi", "6")					\
	TOA_ASM_UDP_PORT_BIT_TEST("movzwl 40(%rax), %eax\n\t")

/*
 * For each function FN (inet_getname, inet6_getname), two pieces of code:
 *
 * toa_direct_FN: called by FN's tracer call site, at FN's entry: the
 *   arguments are in %rdi (struct socket *), %rsi (uaddr), %edx (peer);
 *   (%rsp) is the return into FN, 8(%rsp) FN's own return address. Returns
 *   into FN unless this is a peer query of a socket whose sk_user_data
 *   carries toa's tag (TOA_STASH_TAG, stash.rs; toa's Rust decides the rest, in the
 *   rewrite), or is a socket map's while words are parked (tcp_park.c),
 *   and the call does not come from toa_redirected_FN: then it
 *   replaces its return address with toa_redirected_FN and returns there,
 *   with the stack as at FN's entry. The tests go in the order that lets
 *   every other socket go soonest (8 instructions for a socket without
 *   sk_user_data, the ENDBR and the return included). socket->sk is read
 *   without a NULL test: FN itself dereferences it first thing
 *   (inet_sk(sk), lock_sock(sk)), so no call with a NULL sk gets past FN
 *   unharmed either way. Only
 *   %rax is used (the caller-saved registers are free at a function's
 *   entry; the arguments are kept).
 *
 * toa_redirected_FN: in FN's place: returns toa_getname_answer_FAMILY()'s
 *   answer (tcp_redirect.c: a connected TOA socket's peer, from its
 *   record, FN not called) unless that is TOA_GETNAME_WRAP; then counts
 *   the call in
 *   (toa_redirect_enter() keeps every register), calls FN itself just past
 *   its tracer call site (TOA_DIRECT_SKIP: the ENDBR and the 5-byte call;
 *   registration checks the call site is there), so that neither toa's
 *   trampoline nor any other user of the call site sees this call again,
 *   and hands the result to toa_redirect_exit_v4/v6(), which rewrites the
 *   peer, counts the call out and returns the result. The return-address
 *   check in toa_direct_FN is then only a guard.
 */
#define TOA_DIRECT_SKIP (ENDBR_INSN_SIZE + MCOUNT_INSN_SIZE)

#define TOA_DIRECT_GETNAME_ASM(fn, family)						\
	".pushsection .text.toa_direct, \"ax\", @progbits\n\t"			\
	".p2align 4\n\t"							\
	".type toa_direct_" #fn ", @function\n"					\
	"toa_direct_" #fn ":\n\t"						\
	ASM_ENDBR								\
	CALL_DEPTH_ACCOUNT							\
	"testl %edx, %edx\n\t"							\
	"jz 1f\n\t"								\
	"movq toa_off_socket_sk(%rdi), %rax\n\t"				\
	"movq toa_off_sk_user_data(%rax), %rax\n\t"				\
	"testq %rax, %rax\n\t"							\
	"jz 1f\n\t"								\
	"rolq $8, %rax\n\t"							\
	"cmpb TOA_STASH_TAG(%rip), %al\n\t"					\
	"jne 3f\n"								\
	"2:\n\t"								\
	"leaq toa_redirected_" #fn "(%rip), %rax\n\t"				\
	"addq $(.Ltoa_redirected_" #fn "_call - toa_redirected_" #fn "), %rax\n\t" \
	"cmpq %rax, 8(%rsp)\n\t"						\
	"je 1f\n\t"								\
	"leaq toa_redirected_" #fn "(%rip), %rax\n\t"				\
	"movq %rax, (%rsp)\n"							\
	"1:\n\t"								\
	ASM_RET									\
	/* A socket map's field (SK_USER_DATA_PSOCK, now bit 10): toa's	\
	 * word may be parked beside it (tcp_park.c). */			\
	"3:\n\t"								\
	"testl $0x400, %eax\n\t"						\
	"jz 1b\n\t"								\
	"cmpl $0, toa_parked_count(%rip)\n\t"					\
	"jne 2b\n\t"								\
	"jmp 1b\n\t"								\
	".size toa_direct_" #fn ", .-toa_direct_" #fn "\n\t"			\
	".p2align 4\n\t"							\
	".type toa_redirected_" #fn ", @function\n"				\
	"toa_redirected_" #fn ":\n\t"						\
	ASM_ENDBR								\
	"pushq %rdi\n\t"							\
	"pushq %rsi\n\t"							\
	"pushq %rdx\n\t"							\
	"call toa_getname_answer_" #family "\n\t"				\
	"popq %rdx\n\t"							\
	"popq %rsi\n\t"							\
	"popq %rdi\n\t"							\
	"cmpl $" __stringify(TOA_GETNAME_WRAP) ", %eax\n\t"			\
	"jne 4f\n\t"								\
	"pushq %rdi\n\t"							\
	"pushq %rsi\n\t"							\
	"call toa_redirect_enter\n\t"						\
	CALL_DEPTH_ACCOUNT							\
	"call " #fn " + " __stringify(TOA_DIRECT_SKIP) "\n\t"			\
	".Ltoa_redirected_" #fn "_call:\n\t"					\
	"popq %rsi\n\t"								\
	"popq %rdi\n\t"								\
	"movl %eax, %edx\n\t"							\
	"call toa_redirect_exit_" #family "\n"				\
	"4:\n\t"								\
	ASM_RET									\
	".size toa_redirected_" #fn ", .-toa_redirected_" #fn "\n\t"		\
	".popsection\n\t"

/*
 * syn_recv_sock's trampoline: asks toa_syn_recv_check(sk, skb, req, v6)
 * with the arguments kept, and for a yes returns into the wrapper
 * toa_syn_recv_vN_wrapper instead of the function, with the stack as at
 * the function's entry (the seventh argument, if any, included).
 */
#define TOA_SYN_RECV_DIRECT_ASM(v, isv6)					\
	".pushsection .text.toa_direct, \"ax\", @progbits\n\t"		\
	".p2align 4\n\t"							\
	".type toa_direct_syn_recv_" #v ", @function\n"			\
	"toa_direct_syn_recv_" #v ":\n\t"					\
	ASM_ENDBR								\
	CALL_DEPTH_ACCOUNT							\
	TOA_ASM_SAVE_ARGS							\
	"movl $" #isv6 ", %ecx\n\t"						\
	"call toa_syn_recv_check\n\t"						\
	TOA_ASM_RESTORE_ARGS							\
	"testb %al, %al\n\t"							\
	"jz 1f\n\t"								\
	"leaq toa_syn_recv_" #v "_wrapper(%rip), %rax\n\t"			\
	"movq %rax, (%rsp)\n"							\
	"1:\n\t"								\
	ASM_RET									\
	".size toa_direct_syn_recv_" #v ", .-toa_direct_syn_recv_" #v "\n\t"	\
	".popsection\n\t"

/* FN's tracer call site, TOA_DIRECT_SKIP - MCOUNT_INSN_SIZE bytes into FN
 * (toa_redirected_FN calls the instruction after it). With IBT that is no
 * symbol's start, so ftrace takes the filter only if it is exactly a call
 * site (else -EINVAL, and toa falls back to hook=ftrace); without IBT it is
 * FN's start, where -mfentry puts the call site. */
static inline unsigned long toa_direct_site_of(unsigned long func)
{
	return func + ENDBR_INSN_SIZE;
}

/*
 * toa_redirected_FN calls FN + TOA_DIRECT_SKIP, so the call site must be
 * exactly at toa_direct_site_of(FN): its 5 bytes are the tracer's NOP, or
 * a call when FN is traced already. ftrace alone would not tell: it maps
 * an address inside a call site to the site's start, so were the site at
 * FN+0 (a kernel whose FN has no ENDBR), the filter would be taken and the
 * wrapper would call into the middle of an instruction. Anything else and
 * hook=direct is refused (auto takes the next mechanism).
 */
static inline bool toa_direct_site_ok(unsigned long func)
{
	static const u8 nop[MCOUNT_INSN_SIZE] = { BYTES_NOP5 };
	u8 insn[MCOUNT_INSN_SIZE];

	if (copy_from_kernel_nofault(insn, (void *)toa_direct_site_of(func), sizeof(insn)))
		return false;
	return insn[0] == CALL_INSN_OPCODE || !memcmp(insn, nop, sizeof(nop));
}

#endif /* TOA_DIRECT_X86_H */
