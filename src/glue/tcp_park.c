// SPDX-License-Identifier: GPL-2.0
/*
 * TOA sockets in BPF socket maps (src/tcp/park.rs): where toa's word goes
 * while a socket map holds the socket's sk_user_data. A table keyed by the
 * socket (an rhashtable: entries are made in softirq by a sockops program's
 * insertion, read without a lock, freed after a grace period), the entry
 * hook on sk_psock_init that parks the word, and the lookups and the
 * unpark at destruction that the other TCP paths call while anything is
 * parked (toa_parked_count: one load when nothing is).
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/rhashtable.h>
#include <linux/slab.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>

#include "glue.h"
#include "internal.h"

struct toa_parked {
	struct rhash_head node;
	/* The socket; compared, never followed. */
	const struct sock *sk;
	unsigned long word;
	struct rcu_head rcu;
};

static const struct rhashtable_params toa_park_params = {
	.key_len = sizeof(const struct sock *),
	.key_offset = offsetof(struct toa_parked, sk),
	.head_offset = offsetof(struct toa_parked, node),
	.automatic_shrinking = true,
};

static struct rhashtable toa_park_table;
static bool toa_park_ready;
/* Entries in the table (raised before one is published, lowered after it
 * is removed): the other paths look only while it is not zero. Read by the
 * getname trampoline too (tcp_redirect.c). */
atomic_t toa_parked_count = ATOMIC_INIT(0);

unsigned long toa_parked_word(const struct sock *sk, unsigned long word)
{
	struct toa_parked *p;

	rcu_read_lock();
	p = rhashtable_lookup(&toa_park_table, &sk, toa_park_params);
	if (p)
		word = p->word;
	rcu_read_unlock();
	return word;
}

/*
 * At the entry of sk_psock_init(sk, node), which refuses a socket whose
 * sk_user_data is set: a TOA socket's word is parked, and the field
 * cleared for the map. A socket the kernel refuses before it looks at the
 * field (one with an upper layer protocol: kTLS) keeps its word.
 */
static void toa_park_entry(unsigned long a0, unsigned long a1, unsigned long a2,
			   unsigned long a3)
{
	struct sock *sk = (struct sock *)a0;
	struct toa_parked *p;
	unsigned long word;

	if (!sk || !sk_fullsock(sk) || sk->sk_protocol != IPPROTO_TCP)
		return;
	word = (unsigned long)rcu_access_pointer(sk->sk_user_data);
	if (!word || !toa_park_wanted(word) || inet_csk_has_ulp(sk))
		return;
	p = kmalloc(sizeof(*p), GFP_ATOMIC | __GFP_NOWARN);
	if (!p) {
		toa_park_counted(sk, false);
		return;
	}
	p->sk = sk;
	p->word = word;
	atomic_inc(&toa_parked_count);
	if (rhashtable_lookup_insert_fast(&toa_park_table, &p->node, toa_park_params)) {
		/* No memory for the table to grow (or already parked). */
		atomic_dec(&toa_parked_count);
		kfree(p);
		toa_park_counted(sk, false);
		return;
	}
	if (cmpxchg((unsigned long *)&sk->sk_user_data, word, 0UL) != word) {
		/* Someone else changed the field meanwhile: not toa's to give. */
		if (!rhashtable_remove_fast(&toa_park_table, &p->node, toa_park_params)) {
			atomic_dec(&toa_parked_count);
			kfree_rcu(p, rcu);
		}
		return;
	}
	toa_park_counted(sk, true);
}

TOA_ENTRY_DIRECT(toa_park_entry);

struct toa_entry_hook toa_park_hook = {
	.symbol = "sk_psock_init",
	.handler = toa_park_entry,
	.direct = TOA_ENTRY_DIRECT_FN(toa_park_entry),
};

/* sk is being destroyed (toa_parked_count was not zero): its parked word,
 * if any, leaves the table, and its IPv6 record is freed. */
void toa_unpark(struct sock *sk)
{
	struct toa_parked *p;
	unsigned long word = 0;

	rcu_read_lock();
	p = rhashtable_lookup(&toa_park_table, &sk, toa_park_params);
	if (p && !rhashtable_remove_fast(&toa_park_table, &p->node, toa_park_params)) {
		word = p->word;
		atomic_dec(&toa_parked_count);
		kfree_rcu(p, rcu);
	}
	rcu_read_unlock();
	if (word)
		toa_on_destruct_word(sk, word);
}

int toa_park_init(void)
{
	int err = rhashtable_init(&toa_park_table, &toa_park_params);

	toa_park_ready = !err;
	return err;
}

static void toa_park_free(void *ptr, void *arg)
{
	kfree(ptr);
}

/* Once no hook can run (the IPv6 records of parked words are freed by the
 * records' drain). */
void toa_park_exit(void)
{
	if (!toa_park_ready)
		return;
	rhashtable_free_and_destroy(&toa_park_table, toa_park_free, NULL);
	atomic_set(&toa_parked_count, 0);
	toa_park_ready = false;
}
