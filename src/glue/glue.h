/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The boundary between toa's C glue (bringup.c) and its Rust crate
 * (toa_main.rs and its modules). Keep in step with kapi.rs, which declares
 * the C side for Rust, and with the #[no_mangle] functions named here.
 */
#ifndef TOA_GLUE_H
#define TOA_GLUE_H

#include <linux/types.h>

struct request_sock;
struct sk_buff;
struct sock;
struct sockaddr_in;
struct sockaddr_in6;
struct toa_nat64_peer;
struct uoa_param_map;

/* Mirrors kapi::V6Client: the head of every IPv6 record. */
struct toa_v6_client {
	u8 addr[16];
	u8 port[2];
};

/* Rust's settings of a network namespace (settings.rs), by pointer. */
struct toa_settings;

/* Mirrors kapi::Handshake (88 bytes, checked on both sides). */
struct toa_handshake {
	const u8 *options;
	u32 options_len;
	bool syn;
	bool v6;
	bool syncookie;
	bool local;		/* from the host itself (loopback) */
	u8 saddr[16];
	u8 daddr[16];
	u8 sport[2];
	u8 dport[2];
	u32 isn;
	u64 now_ms;
	u64 net;		/* the listener's (child's) network namespace cookie */
	const struct toa_settings *settings;	/* that namespace's */
	bool owner_clears;	/* the listener's owner clears the child's sk_user_data */
};

/* Mirrors kapi::UdpPacket (80 bytes). */
enum toa_udp_kind {
	TOA_UDP_PLAIN,
	TOA_UDP_IPO,
	TOA_UDP_OPP,
	TOA_UDP_ICMP,
};

struct toa_udp_packet {
	u64 net;
	u64 now_ms;
	const u8 *hdr;
	u32 hdr_len;
	u32 msg_len;
	u8 saddr[16];
	u8 daddr[16];
	u8 sport[2];
	u8 dport[2];
	bool v6;
	u8 kind;		/* enum toa_udp_kind */
	bool live;
	bool local;		/* from the host itself */
	const struct toa_settings *settings;	/* the namespace's */
};

/* Mirrors kapi::UdpVerdict (28 bytes). */
struct toa_udp_verdict {
	u8 addr[16];
	u8 port[2];
	u8 rsport[2];
	u16 strip;
	bool rewrite;
	bool active;
	bool recorded;
	bool ambiguous;
	u8 pad[2];
};

/* Mirrors kapi::UdpView (88 bytes). */
struct toa_udp_view {
	u8 lip[16];
	u8 rs[16];
	u8 client[16];
	u8 lport[2];
	u8 rsport[2];
	u8 cport[2];
	bool v6;
	bool client_v6;
	bool tcp;
	u8 pad[7];
	const char *via;
	u64 age_ms;
	u64 idle_ms;
};

/* ---- implemented in Rust ---- */

/* settings.rs */
bool toa_settings_trust_anyone(const struct toa_settings *s);
/* handshake.rs */
void toa_on_child(struct sock *child, const struct toa_handshake *hs);
bool toa_options_may_name(const u8 *options, size_t len);
unsigned long toa_child_word_v4(const struct toa_settings *settings, const u8 *options,
				size_t len, __be32 saddr, u64 now_ms);
unsigned int toa_child_quick(const u8 *options, size_t len, bool local, bool v6, bool syncookie,
			     u64 now_ms);
/* syn.rs: a SYN, or a handshake ACK a TCP_DEFER_ACCEPT listener holds back */
void toa_on_request(const struct toa_handshake *hs);
void toa_syn_table_shape(unsigned int *buckets, size_t *bucket_bytes);
unsigned long toa_syn_occupied(void);
/* getname.rs */
bool toa_getname_peek(const struct sock *sk);
/* Both return the counter to bump (toa_sk_stat_inc(): inline on this
 * path, which every getpeername() of a TOA socket takes). */
unsigned int toa_getname_v4(const struct sock *sk, unsigned long word, struct sockaddr_in *sin);
unsigned int toa_getname_v6(const struct sock *sk, unsigned long word, struct sockaddr_in6 *sin6);
/* lookup.rs: 0 or -ENOENT */
int toa_lookup(const struct sock *sk, struct toa_nat64_peer *out);
/* record.rs */
void toa_on_destruct(struct sock *sk);
void toa_on_destruct_word(struct sock *sk, unsigned long word);
/* park.rs */
bool toa_park_wanted(unsigned long word);
void toa_park_counted(const struct sock *sk, bool parked);
/* settings.rs: init with toa_config_mutex and toa_trust_mutex held */
size_t toa_settings_size(void);
const struct toa_settings *toa_settings_load(void);
void toa_settings_init(struct toa_settings *dst, bool host);
void toa_settings_exit(struct toa_settings *s);
/* config.rs: slot 0 is tcpopt_addr, slot 1 tcpopt_addr_v6; writes with
 * toa_config_mutex held */
int toa_config_kind(const struct toa_settings *s, unsigned int slot);
int toa_config_write_kind(const struct toa_settings *s, unsigned int slot, const u8 *text,
			  size_t len);
int toa_config_write_kinds(const struct toa_settings *s, const u8 *text, size_t len);
size_t toa_config_read_kinds(const struct toa_settings *s, u8 *buf, size_t size);
int toa_config_cdn(const struct toa_settings *s);
int toa_config_write_cdn(const struct toa_settings *s, const u8 *text, size_t len);
/* which 0: tcpopt_packet, 1: tcpopt_position */
int toa_config_write_word(const struct toa_settings *s, unsigned int which, const u8 *text,
			  size_t len);
size_t toa_config_read_word(const struct toa_settings *s, unsigned int which, u8 *buf,
			    size_t size);
/* trust.rs: call with toa_trust_mutex held */
int toa_trust_write(const struct toa_settings *s, const u8 *text, size_t len);
size_t toa_trust_read(const struct toa_settings *s, u8 *buf, size_t size);
/* stats.rs */
unsigned int toa_stat_count(void);
const char *toa_stat_name(unsigned int index);
/* udp/packet.rs: in a netfilter hook (RCU held) */
void toa_udp_rx(const struct toa_udp_packet *p, struct toa_udp_verdict *v);
void toa_udp_tx(const struct toa_udp_packet *p, struct toa_udp_verdict *v);
void toa_udp_tx_named(const struct toa_udp_packet *p, struct toa_udp_verdict *v);
void toa_udp_fragment(const struct toa_settings *s);
/* udp/sockopt.rs: RCU held; 0, -EINVAL or -ENOENT */
int toa_uoa_lookup(const struct toa_settings *s, u64 net, u64 now_ms, struct uoa_param_map *map);
/* udp/flows.rs */
void toa_udp_table_shape(unsigned long flows, unsigned int *buckets, size_t *bucket_bytes);
void toa_udp_migrate(const void *old, const void *old_buckets, unsigned int old_n,
		     const void *new, const void *new_buckets, unsigned int new_n, u64 now_ms);
void toa_udp_dropped_all(void);
void toa_udp_net_exit(u64 net);		/* RCU held */
unsigned long toa_udp_flow_count(void);
int toa_udp_view(u64 net, u64 now_ms, unsigned long index, struct toa_udp_view *out); /* RCU */
/* udp/config.rs: writes with toa_config_mutex held */
int toa_udp_config_rewrite(const struct toa_settings *s);
int toa_udp_config_write_rewrite(const struct toa_settings *s, const u8 *text, size_t len);
int toa_udp_config_rewrite_mode(const struct toa_settings *s);	/* -1: the host's */
unsigned int toa_udp_config_timeout(void);
int toa_udp_config_write_timeout(const u8 *text, size_t len);
unsigned long toa_udp_config_max_flows(void);
int toa_udp_config_parse_max_flows(const u8 *text, size_t len, unsigned long *out);
void toa_udp_config_set_max_flows(unsigned long flows);

/* ---- implemented in C (bringup.c), called from Rust ---- */

int toa_glue_register(void);
void toa_glue_unregister(void);
int toa_hook_kind(void);
/* s NULL (or the load-time values): the host's counters */
void toa_stat_add(const struct toa_settings *s, unsigned int counter, u64 n);
void toa_sk_stat_add(const struct sock *sk, unsigned int counter, u64 n);
void toa_trust_unset_warn(const u8 *addr, bool v6);
void toa_synchronize_rcu(void);
void toa_rcu_read_lock(void);
void toa_rcu_read_unlock(void);
const void *toa_udp_table(void **buckets, unsigned int *nbuckets);
void toa_udp_lock(const void *table, unsigned int bucket);
void toa_udp_unlock(const void *table, unsigned int bucket);
u64 toa_random_u64(void);
u64 toa_host_net(void);
void *toa_syn_lock(unsigned int bucket, unsigned long *flags);
void toa_syn_unlock(unsigned int bucket, unsigned long flags);
unsigned long toa_sk_user_data(const struct sock *sk);
bool toa_sk_claim_user_data(struct sock *sk, unsigned long word);
void *toa_v6_new(const struct toa_v6_client *client);
void toa_v6_free(void *rec);
bool toa_v6_attach(struct sock *sk, void *rec, unsigned long word);
bool toa_v6_lookup(const struct sock *sk, unsigned long rec, struct toa_v6_client *out);
bool toa_v6_release(struct sock *sk, unsigned long word, unsigned long rec);

#endif /* TOA_GLUE_H */
