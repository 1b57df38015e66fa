// SPDX-License-Identifier: GPL-2.0
/*
 * Where toa keeps clients: the socket's sk_user_data word (see stash.rs for
 * what it holds and why that is safe) and the IPv6 client records (see
 * record.rs): a slab cache and a registry of the live ones.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/hashtable.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <net/sock.h>

#include "glue.h"
#include "glue_internal.h"

/* ---- sk_user_data ---- */

unsigned long toa_sk_user_data(const struct sock *sk)
{
	return (unsigned long)rcu_access_pointer(sk->sk_user_data);
}

bool toa_sk_claim_user_data(struct sock *sk, unsigned long word)
{
	unsigned long *slot = (unsigned long *)&sk->sk_user_data;

	return cmpxchg(slot, 0UL, word) == 0UL;
}

/* ------------------------------------------------------------------------ */
/* IPv6 client records (see record.rs): a slab cache, and a registry of the  */
/* live ones. A record is read or freed only after it was found in the       */
/* registry under toa_v6_lock, so a stale word is never dereferenced.        */

struct toa_v6_record {
	struct toa_v6_client client;	/* first: read by Rust */
	struct hlist_node node;
	/* The socket the record was attached to; compared, never followed.
	 * A word left by an unloaded instance may name an address the slab
	 * has since given to another socket's record: that record is not
	 * this socket's, and the socket is alive, so the pointers differ. */
	const struct sock *sk;
};

static struct kmem_cache *toa_v6_cache;
static DEFINE_HASHTABLE(toa_v6_table, 10);
static DEFINE_SPINLOCK(toa_v6_lock);

void *toa_v6_new(const struct toa_v6_client *client)
{
	struct toa_v6_record *rec = kmem_cache_alloc(toa_v6_cache, GFP_ATOMIC);

	if (!rec)
		return NULL;
	rec->client = *client;
	INIT_HLIST_NODE(&rec->node);
	rec->sk = NULL;
	return rec;
}

void toa_v6_free(void *rec)
{
	kmem_cache_free(toa_v6_cache, rec);
}

bool toa_v6_attach(struct sock *sk, void *ptr, unsigned long word)
{
	struct toa_v6_record *rec = ptr;
	unsigned long flags;
	bool ok;

	spin_lock_irqsave(&toa_v6_lock, flags);
	ok = toa_sk_claim_user_data(sk, word);
	if (ok) {
		rec->sk = sk;
		hash_add(toa_v6_table, &rec->node, (unsigned long)rec);
	}
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	return ok;
}

/* The record at key, if registered and attached to sk. Caller holds
 * toa_v6_lock. */
static struct toa_v6_record *toa_v6_find(const struct sock *sk, unsigned long key)
{
	struct toa_v6_record *rec;

	hash_for_each_possible(toa_v6_table, rec, node, key)
		if ((unsigned long)rec == key)
			return rec->sk == sk ? rec : NULL;
	return NULL;
}

bool toa_v6_lookup(const struct sock *sk, unsigned long key, struct toa_v6_client *out)
{
	struct toa_v6_record *rec;
	unsigned long flags;

	spin_lock_irqsave(&toa_v6_lock, flags);
	rec = toa_v6_find(sk, key);
	if (rec)
		*out = rec->client;
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	return rec;
}

bool toa_v6_release(struct sock *sk, unsigned long word, unsigned long key)
{
	unsigned long *slot = (unsigned long *)&sk->sk_user_data;
	struct toa_v6_record *rec;
	unsigned long flags;

	spin_lock_irqsave(&toa_v6_lock, flags);
	rec = toa_v6_find(sk, key);
	if (rec) {
		hash_del(&rec->node);
		cmpxchg(slot, word, 0UL);
	}
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	if (rec)
		toa_v6_free(rec);
	return rec;
}

/* At unload, once no hook can run: free every record still registered.
 * Their sockets are not touched (some may be mid-destruction); the words
 * left in them name no registered record and are never dereferenced. */
unsigned int toa_v6_drain(void)
{
	struct toa_v6_record *rec;
	struct hlist_node *tmp;
	unsigned long flags;
	unsigned int bkt, n = 0;

	spin_lock_irqsave(&toa_v6_lock, flags);
	hash_for_each_safe(toa_v6_table, bkt, tmp, rec, node) {
		hash_del(&rec->node);
		kmem_cache_free(toa_v6_cache, rec);
		n++;
	}
	spin_unlock_irqrestore(&toa_v6_lock, flags);
	return n;
}

int toa_records_init(void)
{
	toa_v6_cache = kmem_cache_create("toa_ip6", sizeof(struct toa_v6_record), 16, 0, NULL);
	return toa_v6_cache ? 0 : -ENOMEM;
}

/* Once no hook can run: free what is left (kmem_cache_destroy warns if a
 * record escaped both the destructor hook and the drain). */
void toa_records_exit(void)
{
	unsigned int drained = toa_v6_drain();

	if (drained)
		pr_info("freed %u IPv6 client records of open connections\n", drained);
	kmem_cache_destroy(toa_v6_cache);
}
