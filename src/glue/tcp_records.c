// SPDX-License-Identifier: GPL-2.0
/*
 * Where toa keeps clients: the socket's sk_user_data word (see stash.rs for
 * what it holds and why that is safe) and the IPv6 client records (see
 * record.rs): a slab cache and a registry of the live ones.
 */
#define pr_fmt(fmt) "TOA: " fmt

#include <linux/hash.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <net/sock.h>

#include "glue.h"
#include "internal.h"

/* ---- sk_user_data ---- */

/* The field, or the word parked for a socket a socket map holds
 * (tcp_park.c). */
unsigned long toa_sk_user_data(const struct sock *sk)
{
	unsigned long word = (unsigned long)rcu_access_pointer(sk->sk_user_data);

	if (unlikely(word & SK_USER_DATA_PSOCK) && atomic_read(&toa_parked_count))
		return toa_parked_word(sk, word);
	return word;
}

bool toa_sk_claim_user_data(struct sock *sk, unsigned long word)
{
	return toa_sk_claim_word(sk, word);
}

/* ------------------------------------------------------------------------ */
/* IPv6 client records (see record.rs): a slab cache, and a registry of the  */
/* live ones. A record is read or freed only after it was found in the       */
/* registry, so a stale word is never dereferenced.                          */
/*                                                                           */
/* Lookups (every getpeername() of an IPv6-client socket) take no lock: the  */
/* registry is an RCU hash table, a record's client and socket are written   */
/* before it is published and never after, and a removed record is freed    */
/* after a grace period. Writers (attach in softirq, release at socket       */
/* destruction, the unload drain) take the lock of their bucket only.        */

struct toa_v6_record {
	struct toa_v6_client client;	/* first: read by Rust */
	struct hlist_node node;
	/* The socket the record was attached to; compared, never followed.
	 * A word left by an unloaded instance may name an address the slab
	 * has since given to another socket's record: that record is not
	 * this socket's, and the socket is alive, so the pointers differ. */
	const struct sock *sk;
	struct rcu_head rcu;
};

#define TOA_V6_BITS 10

struct toa_v6_bucket {
	struct hlist_head head;
	spinlock_t lock;
};

static struct kmem_cache *toa_v6_cache;
static struct toa_v6_bucket toa_v6_table[1 << TOA_V6_BITS];

static struct toa_v6_bucket *toa_v6_bucket(unsigned long key)
{
	return &toa_v6_table[hash_long(key, TOA_V6_BITS)];
}

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

static void toa_v6_free_rcu(struct rcu_head *head)
{
	kmem_cache_free(toa_v6_cache, container_of(head, struct toa_v6_record, rcu));
}

bool toa_v6_attach(struct sock *sk, void *ptr, unsigned long word)
{
	struct toa_v6_record *rec = ptr;
	struct toa_v6_bucket *b = toa_v6_bucket((unsigned long)rec);
	unsigned long flags;
	bool ok;

	rec->sk = sk;
	spin_lock_irqsave(&b->lock, flags);
	ok = toa_sk_claim_user_data(sk, word);
	if (ok)
		hlist_add_head_rcu(&rec->node, &b->head);
	spin_unlock_irqrestore(&b->lock, flags);
	return ok;
}

/* The record at key, if registered and attached to sk. Caller holds the
 * bucket's lock or is in an RCU read-side section (a preempt-disabled one
 * will do: records are freed with call_rcu(), whose grace period waits for
 * those too). */
static struct toa_v6_record *toa_v6_find(struct toa_v6_bucket *b, const struct sock *sk,
					 unsigned long key)
{
	struct toa_v6_record *rec;

	hlist_for_each_entry_rcu(rec, &b->head, node, lockdep_is_held(&b->lock))
		if ((unsigned long)rec == key)
			return rec->sk == sk ? rec : NULL;
	return NULL;
}

bool toa_v6_lookup(const struct sock *sk, unsigned long key, struct toa_v6_client *out)
{
	struct toa_v6_record *rec;

	/* Not rcu_read_lock(): two out-of-line calls on preemptible kernels,
	 * on every getpeername() of a socket with an IPv6 client. */
	preempt_disable_notrace();
	rec = toa_v6_find(toa_v6_bucket(key), sk, key);
	if (rec)
		*out = rec->client;
	preempt_enable_notrace();
	return rec;
}

bool toa_v6_release(struct sock *sk, unsigned long word, unsigned long key)
{
	unsigned long *slot = (unsigned long *)&sk->sk_user_data;
	struct toa_v6_bucket *b = toa_v6_bucket(key);
	struct toa_v6_record *rec;
	unsigned long flags;

	spin_lock_irqsave(&b->lock, flags);
	rec = toa_v6_find(b, sk, key);
	if (rec) {
		hlist_del_rcu(&rec->node);
		cmpxchg(slot, word, 0UL);
	}
	spin_unlock_irqrestore(&b->lock, flags);
	if (rec)
		call_rcu(&rec->rcu, toa_v6_free_rcu);
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
	unsigned int i, n = 0;

	for (i = 0; i < ARRAY_SIZE(toa_v6_table); i++) {
		struct toa_v6_bucket *b = &toa_v6_table[i];

		spin_lock_irqsave(&b->lock, flags);
		hlist_for_each_entry_safe(rec, tmp, &b->head, node) {
			hlist_del_rcu(&rec->node);
			call_rcu(&rec->rcu, toa_v6_free_rcu);
			n++;
		}
		spin_unlock_irqrestore(&b->lock, flags);
	}
	return n;
}

int toa_records_init(void)
{
	unsigned int i;
	int err;

	for (i = 0; i < ARRAY_SIZE(toa_v6_table); i++) {
		INIT_HLIST_HEAD(&toa_v6_table[i].head);
		spin_lock_init(&toa_v6_table[i].lock);
	}
	toa_v6_cache = kmem_cache_create("toa_ip6", sizeof(struct toa_v6_record), 16, 0, NULL);
	if (!toa_v6_cache)
		return -ENOMEM;
	err = toa_park_init();
	if (err)
		kmem_cache_destroy(toa_v6_cache);
	return err;
}

/* Once no hook can run: free what is left, wait for the frees queued
 * behind RCU grace periods (they run toa's code), then destroy the cache
 * (kmem_cache_destroy warns if a record escaped both the destructor hook
 * and the drain). */
void toa_records_exit(void)
{
	unsigned int drained;

	toa_park_exit();
	drained = toa_v6_drain();

	if (drained)
		pr_info("freed %u IPv6 client records of open connections\n", drained);
	rcu_barrier();
	kmem_cache_destroy(toa_v6_cache);
}
