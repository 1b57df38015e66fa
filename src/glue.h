/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The boundary between toa's C glue (glue.c) and its Rust crate
 * (toa_main.rs and its modules). Keep in step with kapi.rs, which declares
 * the C side for Rust, and with the #[no_mangle] functions named here.
 */
#ifndef TOA_GLUE_H
#define TOA_GLUE_H

#include <linux/types.h>

struct sock;
struct sockaddr_in;

/* Mirrors kapi::Handshake. */
struct toa_handshake {
	const u8 *options;
	u32 options_len;
	bool syn;
};

/* ---- implemented in Rust ---- */

/* handshake.rs */
void toa_on_child(struct sock *child, const struct toa_handshake *hs);
/* getname.rs */
bool toa_getname_peek(const struct sock *sk);
void toa_getname_v4(const struct sock *sk, struct sockaddr_in *sin);
/* config.rs: slot 0 is tcpopt_addr, slot 1 tcpopt_addr_v6 */
int toa_config_kind(unsigned int slot);
int toa_config_write_kind(unsigned int slot, const u8 *text, size_t len);
/* stats.rs */
unsigned int toa_stat_count(void);
const char *toa_stat_name(unsigned int index);

/* ---- implemented in C (glue.c), called from Rust ---- */

int toa_glue_register(void);
void toa_glue_unregister(void);
void toa_stat_inc(unsigned int counter);
unsigned long toa_sk_user_data(const struct sock *sk);
bool toa_sk_claim_user_data(struct sock *sk, unsigned long word);

#endif /* TOA_GLUE_H */
