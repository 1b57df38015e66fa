/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What toa's C files share among themselves (the Rust boundary is glue.h).
 */
#ifndef TOA_GLUE_INTERNAL_H
#define TOA_GLUE_INTERNAL_H

/* glue_admin.c: counters, procfs, sysctls, parameters */
int toa_admin_register(void);
void toa_admin_unregister(void);

/* glue_records.c: the IPv6 record cache and registry */
int toa_records_init(void);
void toa_records_exit(void);
unsigned int toa_v6_drain(void);

/* glue_hooks.c: probes and the getsockopt */
int toa_hooks_register(void);
void toa_hooks_unregister(void);
unsigned long toa_probes_missed(void);

#endif /* TOA_GLUE_INTERNAL_H */
