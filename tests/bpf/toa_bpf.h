/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the test BPF programs (tests/bpf/, each NAME.bpf.c) share, without libbpf's
 * headers: section names, BTF-defined maps as libbpf (and so bpftool)
 * reads them, the one helper both call.
 */
#ifndef TOA_BPF_H
#define TOA_BPF_H

#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;

#endif /* TOA_BPF_H */
