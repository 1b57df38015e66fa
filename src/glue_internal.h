/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What toa's C files share among themselves (the Rust boundary is glue.h).
 */
#ifndef TOA_GLUE_INTERNAL_H
#define TOA_GLUE_INTERNAL_H

struct request_sock;
struct sk_buff;
struct sock;

/* glue_admin.c: counters, procfs, sysctls, parameters */
int toa_admin_register(void);
void toa_admin_unregister(void);

/* glue_records.c: the IPv6 record cache and registry */
int toa_records_init(void);
void toa_records_exit(void);
unsigned int toa_v6_drain(void);

/* glue_syn.c: the handshake table, the SYN-side probes, the child's facts */
int toa_syn_table_init(void);
void toa_syn_table_exit(void);
int toa_syn_hooks_register(void);
void toa_syn_hooks_unregister(void);
unsigned long toa_syn_probes_missed(void);
void toa_syn_recv_child(struct sock *child, const struct sk_buff *skb,
			const struct request_sock *req);

/* glue_hooks.c: probes and the getsockopt */
int toa_hooks_register(void);
void toa_hooks_unregister(void);
unsigned long toa_probes_missed(void);

#endif /* TOA_GLUE_INTERNAL_H */
