// SPDX-License-Identifier: GPL-2.0

//! The handshake table: clients named before the packet that creates the
//! connection's socket (in the SYN, or in a handshake ACK a
//! `TCP_DEFER_ACCEPT` listener drops), kept until that socket is created.
//!
//! A request socket has no field toa could use, and nothing may be
//! allocated per SYN, so the table is fixed: [`BUCKETS`] buckets of
//! [`WAYS`] slots, allocated once at load by the glue, each bucket under its
//! own lock (taken by the caller). A slot is found by a keyed hash
//! ([`siphash24`], key drawn at load) of its [`Key`]: both addresses and
//! ports of the balancer's connection and the balancer's initial sequence
//! number. The completing packet's request socket carries that number
//! (`rcv_isn`), also on the syncookie path, so an entry is only ever given
//! to the connection whose SYN made it: a slot left by an earlier
//! connection of the same four-tuple has another sequence number.
//!
//! An entry lives until the socket is created (taken), until it is older
//! than [`MAX_AGE_MS`] (expired: the handshake never completed), or until
//! its bucket is full and it is the oldest of its namespace (evicted).
//!
//! Network namespaces share the table: the key names the namespace, and
//! the namespaces other than the host's hold together at most
//! [`GUEST_WAYS`] live entries of a bucket. No namespace ever pushes out
//! another's live entry: one whose share of the bucket is full makes room
//! among its own entries only, else its entry is refused (counted). A SYN
//! flood from a container evicts the container's own entries, never the
//! host's or another container's. Every entry put in
//! leaves by exactly one of those doors or is still in the table, which is
//! what the counters check.
//!
//! Pure Rust, no kernel dependency: tested on the host by `toa-core`.

use crate::siphash::siphash24;
use crate::tcp::wire::{ClientAddr, Format, Found};

/// Slots per bucket.
pub const WAYS: usize = 4;
/// Buckets in the table (a power of two).
pub const BUCKETS: usize = 1024;
/// Of each bucket, the live entries the namespaces other than the host's
/// may hold together.
pub const GUEST_WAYS: usize = WAYS / 2;
/// Slots in the table.
pub const SLOTS: usize = WAYS * BUCKETS;
/// How long an entry may wait for its socket: longer than a request socket
/// lives with the default `tcp_synack_retries` (5: about 63 s) and than a
/// syncookie stays valid (two minutes).
pub const MAX_AGE_MS: u64 = 130_000;

const _: () = assert!(BUCKETS.is_power_of_two());

/// Which connection an entry belongs to: the balancer's side of it, as the
/// backend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Key {
    /// The balancer's address (IPv4: the first four bytes, the rest zero).
    pub saddr: [u8; 16],
    /// The backend's address (likewise).
    pub daddr: [u8; 16],
    /// The balancer's port, network order.
    pub sport: [u8; 2],
    /// The backend's port, network order.
    pub dport: [u8; 2],
    /// The balancer's initial sequence number (the SYN's).
    pub isn: u32,
    /// Whether the connection is over IPv6.
    pub v6: bool,
    /// The listener's network namespace (its cookie).
    pub net: u64,
}

impl Key {
    /// The key's bytes, in a fixed order, for hashing.
    fn bytes(&self) -> [u8; 49] {
        // Element by element: `copy_from_slice` (and copy loops, which
        // become `memcpy` calls) stay out of line in the kernel's build.
        let [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15] = self.saddr;
        let [d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, d12, d13, d14, d15] = self.daddr;
        let [sp0, sp1] = self.sport;
        let [dp0, dp1] = self.dport;
        let [i0, i1, i2, i3] = self.isn.to_le_bytes();
        let [n0, n1, n2, n3, n4, n5, n6, n7] = self.net.to_le_bytes();
        #[rustfmt::skip]
        let bytes = [
            s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15,
            d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, d12, d13, d14, d15,
            sp0, sp1, dp0, dp1, i0, i1, i2, i3, u8::from(self.v6),
            n0, n1, n2, n3, n4, n5, n6, n7,
        ];
        bytes
    }

    /// The bucket of this key under the hash key `seed`.
    pub fn bucket(&self, seed: &[u64; 2]) -> usize {
        (siphash24(seed, &self.bytes()) as usize) & (BUCKETS - 1)
    }
}

/// One slot of a bucket. All-zero is a valid, free slot: the glue hands
/// zeroed memory.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Slot {
    /// When the entry was put, in milliseconds of the caller's clock.
    stamp: u64,
    key: Key,
    /// Whether the slot holds an entry.
    used: bool,
    /// Whether the client is IPv6.
    client_v6: bool,
    /// The client's format ([`Format`] as a byte).
    format: u8,
    /// The client's port, network order.
    port: [u8; 2],
    /// The client's address (IPv4: the first four bytes).
    addr: [u8; 16],
    /// Two packets of the handshake named different clients: the entry
    /// names nobody (see [`Same::Disagree`]).
    conflict: bool,
}

impl Slot {
    fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.stamp)
    }

    fn found(&self) -> Found {
        Found {
            client: ClientAddr::unpack(self.client_v6, self.port, &self.addr),
            format: Format::from_byte(self.format),
        }
    }

    fn fill(&mut self, key: &Key, found: &Found, now: u64) {
        let (v6, port, addr) = found.client.pack();
        *self = Slot {
            stamp: now,
            key: *key,
            used: true,
            client_v6: v6,
            format: found.format as u8,
            port,
            addr,
            conflict: false,
        };
    }
}

/// A bucket: the slots one lock covers.
pub type Bucket = [Slot; WAYS];

/// Whether a new entry for a key already in the table replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Same {
    /// Keep the entry there (a SYN seen again: the first one counts).
    Keep,
    /// Replace it (a handshake ACK: the later packet counts).
    Replace,
    /// Keep it if it names the same client; if it names another, one of
    /// the two packets is not the balancer's: the entry then names nobody
    /// (a held-back ACK under `tcpopt_packet=agree`).
    Disagree,
}

/// What [`put`] did; each `true` is one event to count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Put {
    /// A new entry is in the table.
    pub recorded: bool,
    /// An entry for the same key was replaced by it.
    pub replaced: bool,
    /// An entry older than [`MAX_AGE_MS`] was dropped to make room.
    pub expired: bool,
    /// A live entry (the oldest of the namespace's in the bucket) was
    /// dropped to make room.
    pub evicted: bool,
    /// Not recorded: the namespace's share of the bucket was full of other
    /// namespaces' live entries (see [`GUEST_WAYS`]).
    pub refused: bool,
    /// The entry named another client ([`Same::Disagree`]): it names
    /// nobody now.
    pub conflict: bool,
}

/// Put `found` for `key` into `bucket` at time `now` (milliseconds); `host`
/// is the host's namespace.
pub fn put(bucket: &mut Bucket, key: &Key, found: &Found, now: u64, same: Same, host: u64) -> Put {
    let mut out = Put {
        recorded: true,
        ..Put::default()
    };
    if let Some(slot) = bucket.iter_mut().find(|s| s.used && s.key == *key) {
        if slot.age(now) > MAX_AGE_MS {
            out.expired = true;
        } else if same == Same::Replace {
            out.replaced = true;
        } else if same == Same::Disagree && !slot.conflict && slot.found() != *found {
            slot.conflict = true;
            slot.stamp = now;
            return Put {
                conflict: true,
                ..Put::default()
            };
        } else {
            // The same SYN again (a retransmission on the syncookie path):
            // the first entry stays; it waits from now if it names the
            // same client.
            if slot.found() == *found {
                slot.stamp = now;
            }
            return Put::default();
        }
        slot.fill(key, found, now);
        return out;
    }
    // A free slot, else the oldest expired one, else the namespace's own
    // oldest live entry; a guest namespace whose share is full only the
    // latter.
    let mut free = None;
    let mut dead: Option<usize> = None;
    let mut own: Option<usize> = None;
    let mut guests = 0;
    for (i, s) in bucket.iter().enumerate() {
        if !s.used {
            free = free.or(Some(i));
            continue;
        }
        let live = s.age(now) <= MAX_AGE_MS;
        guests += usize::from(live && s.key.net != host);
        let pick = match (live, s.key.net == key.net) {
            (false, _) => &mut dead,
            (true, true) => &mut own,
            (true, false) => continue,
        };
        // (`Option::is_none_or` is newer than the oldest kernels' Rust.)
        if !matches!(*pick, Some(p) if s.stamp >= bucket[p].stamp) {
            *pick = Some(i);
        }
    }
    let victim = if key.net != host && guests >= GUEST_WAYS {
        own
    } else {
        free.or(dead).or(own)
    };
    let Some(victim) = victim else {
        return Put {
            refused: true,
            ..Put::default()
        };
    };
    if bucket[victim].used {
        if bucket[victim].age(now) > MAX_AGE_MS {
            out.expired = true;
        } else {
            out.evicted = true;
        }
    }
    bucket[victim].fill(key, found, now);
    out
}

/// What [`take`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// The entry for the key, now removed.
    Found(Found),
    /// The key's entry was older than [`MAX_AGE_MS`]: removed, not given.
    Expired,
    /// The key's packets named different clients ([`Same::Disagree`]):
    /// removed, names nobody.
    Conflict,
    /// No entry for the key.
    Missing,
}

/// Take the entry for `key` out of `bucket` at time `now`.
pub fn take(bucket: &mut Bucket, key: &Key, now: u64) -> Take {
    let Some(slot) = bucket.iter_mut().find(|s| s.used && s.key == *key) else {
        return Take::Missing;
    };
    let result = if slot.age(now) > MAX_AGE_MS {
        Take::Expired
    } else if slot.conflict {
        Take::Conflict
    } else {
        Take::Found(slot.found())
    };
    *slot = Slot::default();
    result
}

/// How many slots of `bucket` hold an entry (expired ones included).
pub fn occupied(bucket: &Bucket) -> usize {
    bucket.iter().filter(|s| s.used).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreeing_packets_name_nobody() {
        let mut b = Bucket::default();
        assert!(put(&mut b, &key(1), &client(1), 10, Same::Keep, 0).recorded);
        // The same client again: kept, nothing to count.
        assert_eq!(
            put(&mut b, &key(1), &client(1), 11, Same::Disagree, 0),
            Put::default()
        );
        assert_eq!(take(&mut b, &key(1), 12), Take::Found(client(1)));
        // Another client: the entry names nobody, and stays so.
        put(&mut b, &key(2), &client(2), 20, Same::Keep, 0);
        let p = put(&mut b, &key(2), &client(3), 21, Same::Disagree, 0);
        assert!(p.conflict && !p.recorded && !p.replaced);
        assert!(!put(&mut b, &key(2), &client(2), 22, Same::Disagree, 0).conflict);
        assert_eq!(take(&mut b, &key(2), 23), Take::Conflict);
        assert_eq!(take(&mut b, &key(2), 24), Take::Missing);
    }

    fn key(n: u32) -> Key {
        Key {
            saddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: (n as u16).to_be_bytes(),
            dport: [0, 80],
            isn: n.wrapping_mul(0x9e37_79b9),
            v6: false,
            net: 0,
        }
    }

    #[test]
    fn guests_hold_half_a_bucket_and_evict_only_their_own() {
        let mut b = empty();
        let guest = |n: u32, net: u64| Key { net, ..key(n) };
        // The host holds one entry; a guest floods the bucket.
        assert!(put(&mut b, &key(1), &client(1), 10, Same::Keep, 0).recorded);
        let mut evicted = 0;
        for i in 0..1000 {
            let p = put(
                &mut b,
                &guest(100 + i, 7),
                &client(2),
                20 + u64::from(i),
                Same::Keep,
                0,
            );
            assert!(p.recorded && !p.refused);
            evicted += u32::from(p.evicted);
        }
        assert_eq!(evicted, 1000 - GUEST_WAYS as u32);
        let guests = b.iter().filter(|s| s.used && s.key.net != 0).count();
        assert_eq!(guests, GUEST_WAYS);
        // Another guest finds no share left and evicts nobody.
        let p = put(&mut b, &guest(5000, 8), &client(3), 2000, Same::Keep, 0);
        assert!(p.refused && !p.recorded && !p.evicted);
        // The host's entry is still there, and the host fills the rest.
        assert_eq!(take(&mut b, &key(1), 2001), Take::Found(client(1)));
        for i in 0..(WAYS - GUEST_WAYS) as u32 {
            let p = put(&mut b, &key(10 + i), &client(4), 2002, Same::Keep, 0);
            assert!(p.recorded && !p.evicted, "{p:?}");
        }
        // Full: the host evicts its own oldest, never a guest's.
        let p = put(&mut b, &key(50), &client(5), 2003, Same::Keep, 0);
        assert!(p.recorded && p.evicted);
        assert_eq!(
            b.iter().filter(|s| s.used && s.key.net == 7).count(),
            GUEST_WAYS
        );
        // Once the guests' entries expire, their slots are anyone's.
        let p = put(
            &mut b,
            &guest(6000, 8),
            &client(6),
            2003 + MAX_AGE_MS + 1,
            Same::Keep,
            0,
        );
        assert!(p.recorded && p.expired && !p.evicted);
    }

    fn client(n: u8) -> Found {
        Found {
            client: ClientAddr::V4 {
                port: [0x9c, n],
                addr: [198, 51, 100, n],
            },
            format: Format::Toa,
        }
    }

    fn client6(n: u8) -> Found {
        Found {
            client: ClientAddr::V6 {
                port: [0xc3, n],
                addr: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n],
            },
            format: Format::Cdn,
        }
    }

    fn empty() -> Bucket {
        [Slot::default(); WAYS]
    }

    #[test]
    fn a_slot_is_88_bytes() {
        // 4096 slots: 352 KiB, as the README says.
        assert_eq!(core::mem::size_of::<Slot>(), 88);
        assert_eq!(core::mem::size_of::<Bucket>() * BUCKETS, 352 * 1024);
    }

    #[test]
    fn put_then_take() {
        let mut b = empty();
        let p = put(&mut b, &key(1), &client(1), 1000, Same::Keep, 0);
        assert_eq!(
            p,
            Put {
                recorded: true,
                ..Put::default()
            }
        );
        assert_eq!(occupied(&b), 1);
        assert_eq!(take(&mut b, &key(1), 2000), Take::Found(client(1)));
        assert_eq!(occupied(&b), 0);
        assert_eq!(take(&mut b, &key(1), 2000), Take::Missing);
    }

    #[test]
    fn ipv6_clients_fit_in_a_slot() {
        let mut b = empty();
        put(&mut b, &key(2), &client6(2), 0, Same::Keep, 0);
        assert_eq!(take(&mut b, &key(2), 1), Take::Found(client6(2)));
    }

    #[test]
    fn another_sequence_number_is_another_connection() {
        let mut b = empty();
        put(&mut b, &key(3), &client(3), 0, Same::Keep, 0);
        let mut other = key(3);
        other.isn ^= 1;
        assert_eq!(take(&mut b, &other, 1), Take::Missing);
        let mut other = key(3);
        other.v6 = true;
        assert_eq!(take(&mut b, &other, 1), Take::Missing);
        assert_eq!(take(&mut b, &key(3), 1), Take::Found(client(3)));
    }

    #[test]
    fn a_syn_seen_again_keeps_the_first_entry() {
        let mut b = empty();
        put(&mut b, &key(4), &client(4), 0, Same::Keep, 0);
        assert_eq!(
            put(&mut b, &key(4), &client(5), 10, Same::Keep, 0),
            Put::default()
        );
        assert_eq!(occupied(&b), 1);
        assert_eq!(take(&mut b, &key(4), 20), Take::Found(client(4)));
    }

    #[test]
    fn the_same_syn_again_restarts_the_wait() {
        let mut b = empty();
        put(&mut b, &key(4), &client(4), 0, Same::Keep, 0);
        put(&mut b, &key(4), &client(4), MAX_AGE_MS, Same::Keep, 0);
        assert_eq!(
            take(&mut b, &key(4), MAX_AGE_MS + 10),
            Take::Found(client(4))
        );
    }

    #[test]
    fn an_ack_replaces_the_syns_entry() {
        let mut b = empty();
        put(&mut b, &key(6), &client(6), 0, Same::Keep, 0);
        let p = put(&mut b, &key(6), &client(7), 5, Same::Replace, 0);
        assert!(p.recorded && p.replaced && !p.evicted && !p.expired);
        assert_eq!(occupied(&b), 1);
        assert_eq!(take(&mut b, &key(6), 6), Take::Found(client(7)));
    }

    #[test]
    fn old_entries_expire() {
        let mut b = empty();
        put(&mut b, &key(8), &client(8), 0, Same::Keep, 0);
        assert_eq!(take(&mut b, &key(8), MAX_AGE_MS + 1), Take::Expired);
        assert_eq!(occupied(&b), 0);
        // An expired entry of the same key is replaced, counted expired.
        put(&mut b, &key(8), &client(8), 0, Same::Keep, 0);
        let p = put(&mut b, &key(8), &client(9), MAX_AGE_MS + 1, Same::Keep, 0);
        assert!(p.recorded && p.expired && !p.replaced);
        assert_eq!(
            take(&mut b, &key(8), MAX_AGE_MS + 2),
            Take::Found(client(9))
        );
    }

    #[test]
    fn a_full_bucket_drops_its_oldest() {
        let mut b = empty();
        for i in 0..WAYS as u32 {
            let p = put(
                &mut b,
                &key(10 + i),
                &client(10),
                u64::from(i) + 100,
                Same::Keep,
                0,
            );
            assert!(p.recorded && !p.evicted);
        }
        // The oldest (key 10) is live: evicted.
        let p = put(&mut b, &key(20), &client(20), 200, Same::Keep, 0);
        assert!(p.recorded && p.evicted && !p.expired);
        assert_eq!(take(&mut b, &key(10), 201), Take::Missing);
        assert_eq!(take(&mut b, &key(11), 201), Take::Found(client(10)));
        put(&mut b, &key(22), &client(22), 201, Same::Keep, 0);
        // Later, with everything old, the oldest is expired, not evicted.
        let p = put(
            &mut b,
            &key(21),
            &client(21),
            200 + MAX_AGE_MS + 1,
            Same::Keep,
            0,
        );
        assert!(p.recorded && p.expired && !p.evicted);
        assert_eq!(occupied(&b), WAYS);
    }

    #[test]
    fn buckets_spread() {
        let seed = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        let mut hits = vec![0u32; BUCKETS];
        for n in 0..(BUCKETS as u32 * 8) {
            hits[key(n).bucket(&seed)] += 1;
        }
        let max = *hits.iter().max().unwrap_or(&0);
        assert!(max < 30, "a bucket got {max} of 8 per bucket on average");
        // Another hash key, other buckets.
        let moved = (0..100)
            .filter(|n| key(*n).bucket(&seed) != key(*n).bucket(&[1, 2]))
            .count();
        assert!(moved > 90, "only {moved} of 100 keys moved");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        #[derive(Clone, Debug)]
        enum Op {
            Put(u32, u8, bool),
            Take(u32),
            Wait(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            // Few keys (0..12): buckets fill, keys repeat.
            prop_oneof![
                (0u32..12, any::<u8>(), any::<bool>()).prop_map(|(k, c, r)| Op::Put(k, c, r)),
                (0u32..12).prop_map(Op::Take),
                prop_oneof![0u64..1000, Just(MAX_AGE_MS), Just(MAX_AGE_MS + 1)].prop_map(Op::Wait),
            ]
        }

        proptest! {
            /// The key's bytes are its fields in their fixed order.
            #[test]
            fn key_bytes_are_the_fields_in_order(
                saddr: [u8; 16], daddr: [u8; 16], sport: [u8; 2], dport: [u8; 2],
                isn: u32, v6: bool, net: u64,
            ) {
                let k = Key { saddr, daddr, sport, dport, isn, v6, net };
                let mut want = Vec::new();
                want.extend(saddr);
                want.extend(daddr);
                want.extend(sport);
                want.extend(dport);
                want.extend(isn.to_le_bytes());
                want.push(u8::from(v6));
                want.extend(net.to_le_bytes());
                prop_assert_eq!(&k.bytes()[..], &want[..]);
            }

            /// Against a model: a key's entry is the one put last under the
            /// rules, or nothing; never another key's. Every entry put in
            /// leaves by exactly one door or is still there.
            #[test]
            fn one_bucket_against_a_model(ops in proptest::collection::vec(op(), 0..80)) {
                let mut b = empty();
                let mut now = 0u64;
                // What may still be there, per key: (client, stamp).
                let mut model: HashMap<u32, (Found, u64)> = HashMap::new();
                let (mut recorded, mut left) = (0usize, 0usize);
                for o in ops {
                    match o {
                        Op::Wait(ms) => now += ms,
                        Op::Put(k, c, replace) => {
                            let same = if replace { Same::Replace } else { Same::Keep };
                            let p = put(&mut b, &key(k), &client(c), now, same, 0);
                            recorded += usize::from(p.recorded);
                            left += usize::from(p.replaced) + usize::from(p.evicted) + usize::from(p.expired);
                            prop_assert!(!(p.evicted && p.expired));
                            prop_assert!(!p.replaced || replace);
                            if p.recorded {
                                if p.evicted || p.expired {
                                    // Some other key's entry went (or this
                                    // key's expired one): forget the oldest.
                                    let gone = model
                                        .iter()
                                        .filter(|(kk, _)| b.iter().all(|s| !s.used || s.key != key(**kk)))
                                        .map(|(kk, _)| *kk)
                                        .collect::<Vec<_>>();
                                    for g in gone {
                                        model.remove(&g);
                                    }
                                }
                                model.insert(k, (client(c), now));
                            } else if model.get(&k).map(|m| m.0) == Some(client(c)) {
                                model.insert(k, (client(c), now));
                            }
                        }
                        Op::Take(k) => {
                            let t = take(&mut b, &key(k), now);
                            match (t, model.remove(&k)) {
                                (Take::Found(f), Some((want, stamp))) => {
                                    prop_assert_eq!(f, want);
                                    prop_assert!(now - stamp <= MAX_AGE_MS);
                                    left += 1;
                                }
                                (Take::Expired, Some((_, stamp))) => {
                                    prop_assert!(now - stamp > MAX_AGE_MS);
                                    left += 1;
                                }
                                (Take::Missing, None) => {}
                                (t, m) => prop_assert!(false, "take {:?}, model {:?}", t, m),
                            }
                        }
                    }
                    prop_assert!(occupied(&b) <= WAYS);
                    prop_assert_eq!(recorded, left + occupied(&b));
                    prop_assert_eq!(model.len(), occupied(&b));
                }
            }
        }
    }
}
