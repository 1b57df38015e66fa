// SPDX-License-Identifier: GPL-2.0

//! The flow table: which client each balancer flow stands for.
//!
//! A flow is what a balancer announced (an ICMP announcement or a UOA):
//! in network namespace `net`, datagrams of protocol `proto` from the
//! balancer's local address and port (LIP:lport) to the backend (RS:port)
//! come from `client`. Every flow is kept as two *halves*, as conntrack
//! keeps two tuples per connection:
//!
//! - the forward half, keyed by (LIP:lport, RS:port), answers "who is the
//!   client of this datagram the balancer sent?" (receive path, UOA lookup);
//! - the reverse half, keyed by (client, RS:port), answers "through which
//!   LIP:lport does a datagram to this client go back?" (send path). A flow
//!   whose client cannot be written into its packets (NAT64: an IPv6 client
//!   of IPv4 packets) has no reverse half.
//!
//! The table is fixed memory, allocated by the glue in process context:
//! buckets of [`WAYS`] slots (set-associative, like a CPU cache), a bucket
//! chosen by a keyed hash (SipHash-1-3, key drawn at load) of the half's
//! key without the RS address (a UOA lookup may name any RS address). So:
//!
//! - nothing is allocated per flow, per announcement or per packet; a
//!   flood of announcements only ever replaces entries, in its own buckets;
//! - a new half goes to a free slot of its bucket, else to the slot of an
//!   expired half, else to the least recently seen half (LRU): that flow is
//!   *evicted*;
//! - the host's namespace (the one the table is made for: the initial
//!   one) and the others share each bucket: the other namespaces together
//!   hold at most [`GUEST_WAYS`] live halves of a bucket, so at least as
//!   many stay the host's, and no namespace ever pushes out another's live
//!   half: when its share of the bucket is full (or every live half there
//!   is another namespace's), a namespace makes room among its own halves
//!   only, else the new flow is *refused* (counted). A container flooding
//!   the table evicts its own flows, never the host's or another
//!   container's;
//! - a half lives until it has not been seen for `timeout` ms: no timer,
//!   expiry is read from the stamp by whoever looks, and reclaimed by the
//!   next writer of the bucket (counted *expired* then);
//! - a new announcement for a live forward key with another client
//!   *replaces* it (the balancer reused its port); the old client's reverse
//!   half goes with it;
//! - readers take no lock: a bucket has a sequence count that writers make
//!   odd while they change its slots, and a reader retries when it saw it
//!   odd or changed. Writers take the bucket's lock (the [`Locks`] the glue
//!   provides) and never hold two. Slots are atomic words, so a reader
//!   racing a writer reads torn data only in the window the sequence count
//!   tells it to throw away;
//! - each packet of a flow refreshes it (both halves), at most once a
//!   second ([`REFRESH_MS`]): an atomic store, no lock.
//!
//! A client behind two balancer addresses (two live forward halves with
//! the same client, RS and port) has two reverse halves with the same key:
//! the send path takes the one seen most recently (ties: the lower slot)
//! and says there were several.
//!
//! Pure Rust, no kernel dependency: tested on the host by `toa-core`.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::announce::Proto;
use crate::siphash::sip13;
use crate::tcp::wire::ClientAddr;

/// Slots per bucket.
pub const WAYS: usize = 8;
/// Of each bucket, the live halves the namespaces other than the host's may
/// hold together.
pub const GUEST_WAYS: usize = WAYS / 2;
/// Words (u64) per slot.
const WORDS: usize = 10;
/// A half is refreshed by its packets at most this often (ms).
pub const REFRESH_MS: u64 = 1000;
/// How many slots a flow may take (its two halves).
pub const SLOTS_PER_FLOW: usize = 2;

/// An address and a port, IPv4 (the first four bytes, the rest zero) or
/// IPv6, both in network order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Endpoint {
    /// The address.
    pub addr: [u8; 16],
    /// The port.
    pub port: [u8; 2],
    /// Whether the address is IPv6.
    pub v6: bool,
}

impl Endpoint {
    /// An IPv4 endpoint.
    pub fn v4(addr: [u8; 4], port: [u8; 2]) -> Endpoint {
        // As one 128-bit value, not with `copy_from_slice`: the kernel's
        // `core` keeps that out of line (tens of instructions for a few
        // bytes, on every datagram's lookups).
        Endpoint {
            addr: (u128::from(u32::from_be_bytes(addr)) << 96).to_be_bytes(),
            port,
            v6: false,
        }
    }

    /// An IPv6 endpoint.
    pub fn v6(addr: [u8; 16], port: [u8; 2]) -> Endpoint {
        Endpoint {
            addr,
            port,
            v6: true,
        }
    }

    /// The endpoint of a client as the wire format names it.
    pub fn from_client(c: &ClientAddr) -> Endpoint {
        let (v6, port, addr) = c.pack();
        Endpoint { addr, port, v6 }
    }

    /// This endpoint as a client address.
    pub fn to_client(&self) -> ClientAddr {
        ClientAddr::unpack(self.v6, self.port, &self.addr)
    }

    /// The IPv4 address (the first four bytes).
    pub fn v4_addr(&self) -> [u8; 4] {
        let a = &self.addr;
        [a[0], a[1], a[2], a[3]]
    }

    fn addr_words(&self) -> (u64, u64) {
        let a = u128::from_le_bytes(self.addr);
        (a as u64, (a >> 64) as u64)
    }

    fn from_words(hi: u64, lo: u64, port: u16, v6: bool) -> Endpoint {
        Endpoint {
            addr: (u128::from(lo) << 64 | u128::from(hi)).to_le_bytes(),
            port: port.to_be_bytes(),
            v6,
        }
    }
}

/// How a flow was announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Via {
    /// An ip_vs_ca / LVS ICMP announcement.
    Icmp = 0,
    /// A UOA in the IPv4 options of a UDP packet.
    Ipo = 1,
    /// A UOA in an option protocol (248) header.
    Opp = 2,
}

impl Via {
    fn from_bits(b: u64) -> Via {
        match b & 3 {
            1 => Via::Ipo,
            2 => Via::Opp,
            _ => Via::Icmp,
        }
    }

    /// The name `/proc/net/toa_udp` shows.
    pub fn name(self) -> &'static str {
        match self {
            Via::Icmp => "icmp",
            Via::Ipo => "ipo",
            Via::Opp => "opp",
        }
    }
}

/// A flow as the backend sees the balancer's side of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The network namespace (its cookie).
    pub net: u64,
    /// The protocol.
    pub proto: Proto,
    /// The balancer's local address and port: the packets' source.
    pub lip: Endpoint,
    /// The backend's address and port: the packets' destination (same
    /// family as `lip`).
    pub rs: Endpoint,
}

/// One half of a flow, decoded from a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Half {
    net: u64,
    tcp: bool,
    rev: bool,
    /// Forward: LIP:lport; reverse: the client.
    a: Endpoint,
    /// The RS (same family as `a`).
    b: Endpoint,
    /// Forward: the client; reverse: LIP:lport.
    c: Endpoint,
    via: Via,
    seen: u64,
    born: u64,
}

// Word 0 of a slot: three ports and the flags.
const USED: u64 = 1 << 48;
const REV: u64 = 1 << 49;
const V6: u64 = 1 << 50;
const C_V6: u64 = 1 << 51;
const TCP: u64 = 1 << 52;
const VIA_SHIFT: u32 = 53;

fn port16(p: [u8; 2]) -> u64 {
    u64::from(u16::from_be_bytes(p))
}

/// What a lookup asks for: a half's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    net: u64,
    tcp: bool,
    rev: bool,
    a: Endpoint,
    b: Endpoint,
    /// Any RS address (a UOA lookup with `daddr` 0).
    any_b: bool,
}

/// A query's words, as a slot holding a half it names has them
/// ([`Query::words`]).
struct SlotWords {
    w0: u64,
    w0_mask: u64,
    net: u64,
    a: (u64, u64),
    b: (u64, u64),
    any_b: bool,
}

impl SlotWords {
    /// Whether the slot whose word `i` is `load(i)` holds a half the query
    /// names (live or not): what [`Query::matches`] says of the decoded
    /// half, a word at a time, leaving at the first that differs.
    #[inline]
    fn held_by(&self, load: impl Fn(usize) -> u64) -> bool {
        load(0) & self.w0_mask == self.w0
            && load(1) == self.net
            && (load(2), load(3)) == self.a
            && (self.any_b || (load(4), load(5)) == self.b)
    }
}

impl Query {
    /// The forward half of `key`: the client of datagrams LIP -> RS.
    pub fn forward(key: &FlowKey) -> Query {
        Query {
            net: key.net,
            tcp: key.proto == Proto::Tcp,
            rev: false,
            a: key.lip,
            b: key.rs,
            any_b: false,
        }
    }

    /// The reverse half: the LIP of datagrams RS -> `client`.
    pub fn reverse(net: u64, proto: Proto, client: &Endpoint, rs: &Endpoint) -> Query {
        Query {
            net,
            tcp: proto == Proto::Tcp,
            rev: true,
            a: *client,
            b: *rs,
            any_b: false,
        }
    }

    /// The same query for any RS address.
    pub fn any_rs(mut self) -> Query {
        self.any_b = true;
        self
    }

    fn w0(&self) -> u64 {
        let mut w = port16(self.a.port) | (port16(self.b.port) << 16) | USED;
        if self.rev {
            w |= REV;
        }
        if self.a.v6 {
            w |= V6;
        }
        if self.tcp {
            w |= TCP;
        }
        w
    }

    fn hash(&self, seed: &[u64; 2]) -> u64 {
        let (hi, lo) = self.a.addr_words();
        sip13(seed, &[self.net, hi, lo, self.w0()])
    }

    /// What a slot holding a half this query names has in its words: word
    /// 0 under a mask (the ports of `a` and `b`, the flags; not `c`'s port,
    /// its family or how the flow came), the namespace, `a`'s address and
    /// `b`'s. `None` if `a` and `b` differ in family: a half's never do.
    fn words(&self) -> Option<SlotWords> {
        if self.a.v6 != self.b.v6 {
            return None;
        }
        Some(SlotWords {
            w0: self.w0(),
            w0_mask: 0xffff_ffff | USED | REV | V6 | TCP,
            net: self.net,
            a: self.a.addr_words(),
            b: self.b.addr_words(),
            any_b: self.any_b,
        })
    }

    fn matches(&self, h: &Half) -> bool {
        h.net == self.net
            && h.tcp == self.tcp
            && h.rev == self.rev
            && h.a == self.a
            && h.b.port == self.b.port
            && h.b.v6 == self.b.v6
            && (self.any_b || h.b.addr == self.b.addr)
    }
}

impl Half {
    fn query(&self) -> Query {
        Query {
            net: self.net,
            tcp: self.tcp,
            rev: self.rev,
            a: self.a,
            b: self.b,
            any_b: false,
        }
    }

    fn live(&self, now: u64, timeout: u64) -> bool {
        now.saturating_sub(self.seen) <= timeout
    }

    fn encode(&self) -> [u64; WORDS] {
        let mut w0 = port16(self.a.port)
            | (port16(self.b.port) << 16)
            | (port16(self.c.port) << 32)
            | USED
            | ((self.via as u64) << VIA_SHIFT);
        for (on, bit) in [
            (self.rev, REV),
            (self.a.v6, V6),
            (self.c.v6, C_V6),
            (self.tcp, TCP),
        ] {
            if on {
                w0 |= bit;
            }
        }
        let (a0, a1) = self.a.addr_words();
        let (b0, b1) = self.b.addr_words();
        let (c0, c1) = self.c.addr_words();
        [w0, self.net, a0, a1, b0, b1, c0, c1, self.seen, self.born]
    }

    fn decode(w: &[u64; WORDS]) -> Option<Half> {
        let w0 = w[0];
        if w0 & USED == 0 {
            return None;
        }
        let v6 = w0 & V6 != 0;
        Some(Half {
            net: w[1],
            tcp: w0 & TCP != 0,
            rev: w0 & REV != 0,
            a: Endpoint::from_words(w[2], w[3], w0 as u16, v6),
            b: Endpoint::from_words(w[4], w[5], (w0 >> 16) as u16, v6),
            c: Endpoint::from_words(w[6], w[7], (w0 >> 32) as u16, w0 & C_V6 != 0),
            via: Via::from_bits(w0 >> VIA_SHIFT),
            seen: w[8],
            born: w[9],
        })
    }
}

/// A bucket: a sequence count, a tag per slot (a few bits of the hash of
/// the half in it, 0 when free: most slots are passed over without being
/// read), and the slots. All-zero is an empty bucket: the glue hands zeroed
/// memory.
#[repr(C, align(64))]
pub struct Bucket {
    seq: AtomicU32,
    _pad: AtomicU32,
    /// The tags, four to a word: way `w`'s in bits `16 * (w % 4)` up of
    /// word `w / 4`, so a lookup compares four at once ([`Self::tagged`]).
    tags: [AtomicU64; WAYS / TAGS_PER_WORD],
    _reserved: [AtomicU64; 5],
    slots: [[AtomicU64; WORDS]; WAYS],
}

const _: () = assert!(core::mem::size_of::<Bucket>() == 64 + WAYS * WORDS * 8);

/// Tags in one of a bucket's tag words.
const TAGS_PER_WORD: usize = 4;
const _: () = assert!(WAYS / TAGS_PER_WORD * TAGS_PER_WORD == WAYS);
/// The low bit of each of a tag word's four tags.
const TAG_LOW: u64 = 0x0001_0001_0001_0001;
/// The high bit of each.
const TAG_HIGH: u64 = 0x8000_8000_8000_8000;

/// The ways whose tag in tag word `word` (ways `first..first + 4`) may be
/// the one `broadcast` holds four times, as a bit set of ways: every way
/// whose tag it is, and perhaps a way above one of those (a lane's borrow
/// in the zero-lane test; the caller compares the slot itself anyway).
#[inline(always)]
fn tagged_in(word: u64, broadcast: u64, first: usize) -> u32 {
    let x = word ^ broadcast;
    let mut zero = x.wrapping_sub(TAG_LOW) & !x & TAG_HIGH;
    let mut ways = 0u32;
    while zero != 0 {
        ways |= 1 << (first + zero.trailing_zeros() as usize / 16);
        zero &= zero - 1;
    }
    ways
}

impl Bucket {
    /// An empty bucket (host tests; the kernel's come zeroed from the glue).
    pub fn new() -> Bucket {
        Bucket {
            seq: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            tags: [const { AtomicU64::new(0) }; WAYS / TAGS_PER_WORD],
            _reserved: [const { AtomicU64::new(0) }; 5],
            slots: [const { [const { AtomicU64::new(0) }; WORDS] }; WAYS],
        }
    }

    /// The tag word holding slot `way`'s tag, and the tag's shift in it.
    fn tag_at(&self, way: usize) -> (&AtomicU64, u32) {
        (
            &self.tags[way / TAGS_PER_WORD],
            16 * (way % TAGS_PER_WORD) as u32,
        )
    }

    /// Slot `way`'s tag (0: free).
    #[cfg(test)]
    fn tag(&self, way: usize) -> u16 {
        let (word, shift) = self.tag_at(way);
        (word.load(Ordering::Relaxed) >> shift) as u16
    }

    /// The ways whose tag may be `tag` (non-zero), as a bit set: every way
    /// whose tag it is, and perhaps others (see [`tagged_in`]); four tags
    /// compared at once.
    #[inline(always)]
    fn tagged(&self, tag: u16) -> u32 {
        let broadcast = u64::from(tag).wrapping_mul(TAG_LOW);
        let mut ways = 0;
        for (i, word) in self.tags.iter().enumerate() {
            ways |= tagged_in(word.load(Ordering::Relaxed), broadcast, i * TAGS_PER_WORD);
        }
        ways
    }

    fn load(&self, way: usize) -> [u64; WORDS] {
        let mut w = [0u64; WORDS];
        for (dst, src) in w.iter_mut().zip(&self.slots[way]) {
            *dst = src.load(Ordering::Relaxed);
        }
        w
    }

    /// Change slot `way` (to `half`, or free). The caller holds the
    /// bucket's lock.
    fn store(&self, way: usize, half: Option<(&Half, u16)>) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let (words, tag) = match half {
            Some((h, tag)) => (h.encode(), tag),
            None => ([0u64; WORDS], 0),
        };
        for (dst, src) in self.slots[way].iter().zip(words) {
            dst.store(src, Ordering::Relaxed);
        }
        let (word, shift) = self.tag_at(way);
        let others = word.load(Ordering::Relaxed) & !(0xffff << shift);
        word.store(others | (u64::from(tag) << shift), Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The half in slot `way`, read by the holder of the bucket's lock.
    fn locked_half(&self, way: usize) -> Option<Half> {
        Half::decode(&self.load(way))
    }

    fn seen(&self, way: usize) -> &AtomicU64 {
        &self.slots[way][8]
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

/// The buckets' locks, kept by whoever owns the memory.
pub trait Locks {
    /// Lock bucket `bucket` (in the kernel: a spinlock with softirqs off).
    fn lock(&self, bucket: usize);
    /// Unlock bucket `bucket`.
    fn unlock(&self, bucket: usize);
}

/// A half found by a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Forward: the client; reverse: LIP:lport.
    pub peer: Endpoint,
    /// The RS the half names.
    pub rs: Endpoint,
    /// How the flow was announced.
    pub via: Via,
    /// When it was last seen (ms).
    pub seen: u64,
    /// How many live halves matched (more than one: a client behind two
    /// balancer addresses).
    pub matches: u32,
    bucket: usize,
    way: usize,
}

/// What an announcement did; each count is of forward halves (flows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    /// A flow was recorded (new, or replacing another).
    pub new: bool,
    /// The flow was there already, with the same client: refreshed.
    pub refreshed: bool,
    /// A live flow with another client gave way (the balancer reused its
    /// port).
    pub replaced: bool,
    /// Expired flows whose slots were taken.
    pub expired: u32,
    /// Live flows pushed out of a full bucket.
    pub evicted: u32,
    /// The flow was not recorded: its namespace's share of the bucket was
    /// full of live halves of other namespaces (see [`GUEST_WAYS`]).
    pub refused: bool,
    /// How the number of forward halves in the table changed.
    pub delta: i32,
}

/// What moving a table's halves into another did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Forward halves now in the new table.
    pub kept: u64,
    /// Forward halves that had expired: not moved.
    pub expired: u64,
    /// Live forward halves that found no room.
    pub evicted: u64,
}

/// A live flow, for `/proc/net/toa_udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// The protocol.
    pub proto: Proto,
    /// LIP:lport.
    pub lip: Endpoint,
    /// RS:port.
    pub rs: Endpoint,
    /// The client.
    pub client: Endpoint,
    /// How it was announced.
    pub via: Via,
    /// Milliseconds since it was announced.
    pub age_ms: u64,
    /// Milliseconds since it was last seen.
    pub idle_ms: u64,
}

/// What a victim search found in a locked bucket.
struct Victim {
    way: usize,
    /// The half that was there.
    was: Option<Half>,
}

/// The table: buckets (a power of two of them), their locks, the hash key.
pub struct Table<'a, L: Locks> {
    buckets: &'a [Bucket],
    locks: &'a L,
    seed: [u64; 2],
    /// The host's namespace (cookie): the others share [`GUEST_WAYS`] of
    /// each bucket.
    host: u64,
}

impl<'a, L: Locks> Table<'a, L> {
    /// The table over `buckets` (a non-zero power of two of them), for the
    /// host's namespace `host` and the others.
    pub fn new(buckets: &'a [Bucket], locks: &'a L, seed: [u64; 2], host: u64) -> Option<Self> {
        if !buckets.len().is_power_of_two() {
            return None;
        }
        Some(Table {
            buckets,
            locks,
            seed,
            host,
        })
    }

    /// How many slots the table has.
    pub fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    fn place(&self, q: &Query) -> (usize, u16) {
        let h = q.hash(&self.seed);
        (
            (h as usize) & (self.buckets.len() - 1),
            ((h >> 48) as u16) | 1,
        )
    }

    /// Run `f` on bucket `i` with its lock held.
    fn locked<R>(&self, i: usize, f: impl FnOnce(&Bucket) -> R) -> R {
        self.locks.lock(i);
        let r = f(&self.buckets[i]);
        self.locks.unlock(i);
        r
    }

    /// The live half `q` names (with peer `want` if given): the one seen
    /// most recently. Takes no lock. A slot is compared word by word with
    /// what `q` asks ([`Query::words`]); only the half that answers is
    /// decoded (decoding every slot whose tag matched, and comparing the
    /// decoded endpoints, was most of a lookup's cost).
    fn find(&self, q: &Query, want: Option<&Endpoint>, now: u64, timeout: u64) -> Option<Hit> {
        let (i, tag) = self.place(q);
        let b = &self.buckets[i];
        let w = q.words()?;
        loop {
            let s1 = b.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let mut best: Option<Hit> = None;
            let mut matches = 0;
            let mut ways = b.tagged(tag);
            while ways != 0 {
                let way = ways.trailing_zeros() as usize;
                ways &= ways - 1;
                let slot = &b.slots[way];
                let load = |i: usize| slot[i].load(Ordering::Relaxed);
                if !w.held_by(load) {
                    continue;
                }
                let (w0, b0, b1) = (load(0), load(4), load(5));
                let seen = load(8);
                if now.saturating_sub(seen) > timeout {
                    continue;
                }
                let c = Endpoint::from_words(load(6), load(7), (w0 >> 32) as u16, w0 & C_V6 != 0);
                if want.is_some_and(|want| *want != c) {
                    continue;
                }
                matches += 1;
                let newer = match &best {
                    Some(x) => seen > x.seen,
                    None => true,
                };
                if newer {
                    best = Some(Hit {
                        peer: c,
                        rs: Endpoint::from_words(b0, b1, (w0 >> 16) as u16, w0 & V6 != 0),
                        via: Via::from_bits(w0 >> VIA_SHIFT),
                        seen,
                        matches: 0,
                        bucket: i,
                        way,
                    });
                }
            }
            fence(Ordering::Acquire);
            if b.seq.load(Ordering::Relaxed) == s1 {
                return best.map(|mut h| {
                    h.matches = matches;
                    h
                });
            }
        }
    }

    /// [`Table::find`] as it was: every slot whose tag matched decoded
    /// and compared as a half (the property tests' reference).
    #[cfg(test)]
    fn find_decoding(
        &self,
        q: &Query,
        want: Option<&Endpoint>,
        now: u64,
        timeout: u64,
    ) -> Option<Hit> {
        let (i, tag) = self.place(q);
        let b = &self.buckets[i];
        loop {
            let s1 = b.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let mut best: Option<Hit> = None;
            let mut matches = 0;
            for way in 0..WAYS {
                if b.tag(way) != tag {
                    continue;
                }
                let Some(h) = Half::decode(&b.load(way)) else {
                    continue;
                };
                if !q.matches(&h) || !h.live(now, timeout) || want.is_some_and(|w| *w != h.c) {
                    continue;
                }
                matches += 1;
                let newer = match &best {
                    Some(x) => h.seen > x.seen,
                    None => true,
                };
                if newer {
                    best = Some(Hit {
                        peer: h.c,
                        rs: h.b,
                        via: h.via,
                        seen: h.seen,
                        matches: 0,
                        bucket: i,
                        way,
                    });
                }
            }
            fence(Ordering::Acquire);
            if b.seq.load(Ordering::Relaxed) == s1 {
                return best.map(|mut h| {
                    h.matches = matches;
                    h
                });
            }
        }
    }

    /// Mark a half found by a lookup as seen `now` (no lock: a slot taken
    /// over meanwhile by another half only gets a stamp no older than its
    /// own).
    fn touch(&self, hit: &Hit, now: u64) {
        self.buckets[hit.bucket]
            .seen(hit.way)
            .fetch_max(now, Ordering::Relaxed);
    }

    /// The slot a new half of namespace `net` goes to in locked bucket
    /// `b`: a free one, else the longest expired, else its own namespace's
    /// least recently seen; a namespace other than the host's whose share
    /// ([`GUEST_WAYS`]) is full only its own least recently seen. `None`:
    /// refused, every slot it may take holds another namespace's live half.
    fn victim(&self, b: &Bucket, net: u64, now: u64, timeout: u64) -> Option<Victim> {
        let mut free = None;
        let mut dead: Option<(usize, Half)> = None;
        let mut own: Option<(usize, Half)> = None;
        let mut guests = 0;
        for way in 0..WAYS {
            let Some(h) = b.locked_half(way) else {
                free = free.or(Some(way));
                continue;
            };
            let live = h.live(now, timeout);
            guests += usize::from(live && h.net != self.host);
            let pick = match (live, h.net == net) {
                (false, _) => &mut dead,
                (true, true) => &mut own,
                (true, false) => continue,
            };
            // (`Option::is_none_or` is newer than the oldest kernels' Rust.)
            if !matches!(pick, Some((_, x)) if h.seen >= x.seen) {
                *pick = Some((way, h));
            }
        }
        let lru = own.map(|(way, h)| Victim { way, was: Some(h) });
        if net != self.host && guests >= GUEST_WAYS {
            return lru;
        }
        match (free, dead) {
            (Some(way), _) => Some(Victim { way, was: None }),
            (None, Some((way, h))) => Some(Victim { way, was: Some(h) }),
            (None, None) => lru,
        }
    }

    /// Count a forward half that gave way to another half.
    fn count_gone(was: &Half, now: u64, timeout: u64, out: &mut Announced) {
        if !was.rev {
            if was.live(now, timeout) {
                out.evicted += 1;
            } else {
                out.expired += 1;
            }
            out.delta -= 1;
        }
    }

    /// Put half `h` in a slot of its bucket. If a half with its key (and,
    /// for a reverse half, its peer: a client may be behind several
    /// balancer addresses) is there, the more recently seen of the two
    /// stays. Returns the half pushed out to make room, if any (its
    /// partner has to go too: see [`Self::drop_partner`]).
    fn put_half(&self, h: &Half, now: u64, timeout: u64, out: &mut Announced) -> Option<Half> {
        let q = h.query();
        let (i, tag) = self.place(&q);
        self.locked(i, |b| {
            for way in 0..WAYS {
                let Some(x) = b.locked_half(way) else {
                    continue;
                };
                if !q.matches(&x) || (h.rev && x.c != h.c) {
                    continue;
                }
                if x.c == h.c {
                    b.seen(way).fetch_max(h.seen, Ordering::Relaxed);
                    return None;
                }
                if x.seen < h.seen {
                    Self::count_gone(&x, now, timeout, out);
                    out.delta += 1;
                    b.store(way, Some((h, tag)));
                    return Some(x);
                }
                // A newer flow of the same key is there: `h` goes.
                out.evicted += 1;
                return Some(*h);
            }
            let Some(v) = self.victim(b, h.net, now, timeout) else {
                out.refused = true;
                return Some(*h);
            };
            if let Some(was) = &v.was {
                Self::count_gone(was, now, timeout, out);
            }
            if !h.rev {
                out.delta += 1;
            }
            b.store(v.way, Some((h, tag)));
            v.was
        })
    }

    /// Remove the halves `q` names whose peer is `peer`; the forward halves
    /// among them are counted in `out`.
    fn remove(&self, q: &Query, peer: &Endpoint, now: u64, timeout: u64, out: &mut Announced) {
        let (i, _) = self.place(q);
        self.locked(i, |b| {
            for way in 0..WAYS {
                if let Some(x) = b.locked_half(way) {
                    if q.matches(&x) && x.c == *peer {
                        Self::count_gone(&x, now, timeout, out);
                        b.store(way, None);
                    }
                }
            }
        });
    }

    /// Half `h` left the table: remove its partner, so that a flow is
    /// always whole or gone (a reverse half left behind would send a
    /// client's datagrams to a balancer port that may since serve another
    /// client).
    fn drop_partner(&self, h: &Half, now: u64, timeout: u64, out: &mut Announced) {
        let proto = if h.tcp { Proto::Tcp } else { Proto::Udp };
        if h.rev {
            let key = FlowKey {
                net: h.net,
                proto,
                lip: h.c,
                rs: h.b,
            };
            self.remove(&Query::forward(&key), &h.a, now, timeout, out);
        } else if h.c.v6 == h.a.v6 {
            let q = Query::reverse(h.net, proto, &h.c, &h.b);
            self.remove(&q, &h.a, now, timeout, out);
        }
    }

    /// A balancer announced that `key`'s datagrams come from `client`.
    pub fn announce(
        &self,
        key: &FlowKey,
        client: &Endpoint,
        via: Via,
        now: u64,
        timeout: u64,
    ) -> Announced {
        let mut out = Announced::default();
        let q = Query::forward(key);
        let (i, tag) = self.place(&q);
        let fwd = Half {
            net: key.net,
            tcp: key.proto == Proto::Tcp,
            rev: false,
            a: key.lip,
            b: key.rs,
            c: *client,
            via,
            seen: now,
            born: now,
        };
        // The half that left this bucket for the new one, if any.
        let gone = self.locked(i, |b| {
            for way in 0..WAYS {
                let Some(x) = b.locked_half(way) else {
                    continue;
                };
                if !q.matches(&x) {
                    continue;
                }
                if x.live(now, timeout) && x.c == *client {
                    b.seen(way).fetch_max(now, Ordering::Relaxed);
                    out.refreshed = true;
                    return None;
                }
                out.new = true;
                if x.live(now, timeout) {
                    out.replaced = true;
                } else {
                    out.expired += 1;
                }
                b.store(way, Some((&fwd, tag)));
                return Some(x);
            }
            let Some(v) = self.victim(b, key.net, now, timeout) else {
                out.refused = true;
                return None;
            };
            out.new = true;
            if let Some(was) = &v.was {
                Self::count_gone(was, now, timeout, &mut out);
            }
            out.delta += 1;
            b.store(v.way, Some((&fwd, tag)));
            v.was
        });
        if let Some(g) = gone {
            self.drop_partner(&g, now, timeout, &mut out);
        }
        if out.refused || client.v6 != key.lip.v6 {
            // NAT64: no datagram can name this client; no reverse half.
            return out;
        }
        let rev = Half {
            rev: true,
            a: *client,
            c: key.lip,
            ..fwd
        };
        if let Some(g) = self.put_half(&rev, now, timeout, &mut out) {
            if out.refused {
                // No room for the reverse half: the flow goes whole (the
                // forward half just put in), counted as refused, not as
                // made and evicted.
                let mut undo = Announced::default();
                self.remove(&q, client, now, timeout, &mut undo);
                out.new = false;
                out.delta += undo.delta;
                return out;
            }
            self.drop_partner(&g, now, timeout, &mut out);
        }
        out
    }

    /// The client of a datagram from `key.lip` to `key.rs`, refreshing the
    /// flow (both halves) when it was last seen a while ago.
    pub fn receive(&self, key: &FlowKey, now: u64, timeout: u64) -> Option<Hit> {
        let hit = self.find(&Query::forward(key), None, now, timeout)?;
        if now.saturating_sub(hit.seen) >= REFRESH_MS {
            self.touch(&hit, now);
            if hit.peer.v6 == key.lip.v6 {
                let q = Query::reverse(key.net, key.proto, &hit.peer, &key.rs);
                if let Some(r) = self.find(&q, Some(&key.lip), now, timeout) {
                    self.touch(&r, now);
                }
            }
        }
        Some(hit)
    }

    /// The balancer address (LIP:lport) a datagram from `rs` to `client`
    /// goes back through, refreshing the flow when it was last seen a while
    /// ago. `hit.matches` > 1: the client is behind several.
    pub fn send(
        &self,
        net: u64,
        proto: Proto,
        rs: &Endpoint,
        client: &Endpoint,
        now: u64,
        timeout: u64,
    ) -> Option<Hit> {
        let hit = self.find(&Query::reverse(net, proto, client, rs), None, now, timeout)?;
        if now.saturating_sub(hit.seen) >= REFRESH_MS {
            self.refresh_way_back(&hit, net, proto, client, now, timeout);
        }
        Some(hit)
    }

    /// Mark `hit`, a way back from its RS to `client`, and its flow's
    /// forward half as seen `now`.
    fn refresh_way_back(
        &self,
        hit: &Hit,
        net: u64,
        proto: Proto,
        client: &Endpoint,
        now: u64,
        timeout: u64,
    ) {
        self.touch(hit, now);
        let key = FlowKey {
            net,
            proto,
            lip: hit.peer,
            rs: hit.rs,
        };
        if let Some(f) = self.find(&Query::forward(&key), Some(client), now, timeout) {
            self.touch(&f, now);
        }
    }

    /// [`Self::send`] for a datagram not built yet, its destination as the
    /// sender named it: `q` is the way back from the RS to that client
    /// ([`Query::reverse`]; [`Query::any_rs`] when the socket is bound to
    /// no address and does not know its source yet). A hit with `matches`
    /// above 1 (the client behind several balancer addresses, or from
    /// several of the port's addresses) is not one the sender may be sent
    /// to: only the datagram's source tells which; it refreshes nothing.
    pub fn send_named(&self, q: &Query, now: u64, timeout: u64) -> Option<Hit> {
        if !q.rev {
            return None;
        }
        let hit = self.find(q, None, now, timeout)?;
        if hit.matches == 1 && now.saturating_sub(hit.seen) >= REFRESH_MS {
            let proto = if q.tcp { Proto::Tcp } else { Proto::Udp };
            self.refresh_way_back(&hit, q.net, proto, &q.a, now, timeout);
        }
        Some(hit)
    }

    /// A lookup without side effects (the UOA getsockopt, the TCP
    /// fallback): the live half `q` names.
    pub fn lookup(&self, q: &Query, now: u64, timeout: u64) -> Option<Hit> {
        self.find(q, None, now, timeout)
    }

    /// Remove every half of namespace `net`; how many flows (forward
    /// halves) went.
    pub fn remove_net(&self, net: u64) -> u64 {
        let mut n = 0;
        for i in 0..self.buckets.len() {
            self.locked(i, |b| {
                for way in 0..WAYS {
                    if let Some(h) = b.locked_half(way) {
                        if h.net == net {
                            n += u64::from(!h.rev);
                            b.store(way, None);
                        }
                    }
                }
            });
        }
        n
    }

    /// The live flow in slot `index` (of [`Self::slots`]) if it is a
    /// forward half of namespace `net`. Takes no lock.
    pub fn view(&self, index: usize, net: u64, now: u64, timeout: u64) -> Option<View> {
        let b = self.buckets.get(index / WAYS)?;
        let way = index % WAYS;
        let h = loop {
            let s1 = b.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let w = b.load(way);
            fence(Ordering::Acquire);
            if b.seq.load(Ordering::Relaxed) == s1 {
                break Half::decode(&w)?;
            }
        };
        if h.rev || h.net != net || !h.live(now, timeout) {
            return None;
        }
        Some(View {
            proto: if h.tcp { Proto::Tcp } else { Proto::Udp },
            lip: h.a,
            rs: h.b,
            client: h.c,
            via: h.via,
            age_ms: now.saturating_sub(h.born),
            idle_ms: now.saturating_sub(h.seen),
        })
    }

    /// How many forward halves are in the table (expired ones not yet
    /// reclaimed included). Takes no lock.
    pub fn count(&self) -> u64 {
        let mut n = 0;
        for i in 0..self.slots() {
            let b = &self.buckets[i / WAYS];
            let w0 = b.slots[i % WAYS][0].load(Ordering::Relaxed);
            n += u64::from(w0 & USED != 0 && w0 & REV == 0);
        }
        n
    }

    /// Move the live halves of `old` (which no one changes any more) into
    /// this table.
    pub fn take_from<M: Locks>(&self, old: &Table<'_, M>, now: u64, timeout: u64) -> Moved {
        let mut moved = Moved::default();
        for b in old.buckets {
            for way in 0..WAYS {
                let Some(h) = b.locked_half(way) else {
                    continue;
                };
                if !h.live(now, timeout) {
                    moved.expired += u64::from(!h.rev);
                    continue;
                }
                let mut out = Announced::default();
                if let Some(g) = self.put_half(&h, now, timeout, &mut out) {
                    self.drop_partner(&g, now, timeout, &mut out);
                }
                moved.evicted += u64::from(out.evicted) + u64::from(out.refused && !h.rev);
                moved.expired += u64::from(out.expired);
            }
        }
        moved.kept = self.count();
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A spinlock per bucket.
    struct Spin(Vec<AtomicBool>);

    impl Spin {
        fn new(n: usize) -> Spin {
            Spin((0..n).map(|_| AtomicBool::new(false)).collect())
        }
    }

    impl Locks for Spin {
        fn lock(&self, i: usize) {
            while self.0[i]
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                std::hint::spin_loop();
            }
        }
        fn unlock(&self, i: usize) {
            self.0[i].store(false, Ordering::Release);
        }
    }

    struct Mem {
        buckets: Vec<Bucket>,
        locks: Spin,
    }

    impl Mem {
        fn new(n: usize) -> Mem {
            Mem {
                buckets: (0..n).map(|_| Bucket::new()).collect(),
                locks: Spin::new(n),
            }
        }
        fn table(&self) -> Table<'_, Spin> {
            Table::new(&self.buckets, &self.locks, [0x1234_5678, 0x9abc_def0], NET).unwrap()
        }
    }

    const T: u64 = 330_000;
    const NET: u64 = 0x5eed;

    fn ep4(last: u8, port: u16) -> Endpoint {
        Endpoint::v4([10, 0, 0, last], port.to_be_bytes())
    }

    fn client4(n: u32) -> Endpoint {
        let b = n.to_be_bytes();
        Endpoint::v4(
            [198, b[1], b[2], b[3]],
            (1000 + (n % 60000) as u16).to_be_bytes(),
        )
    }

    fn ep6(last: u16, port: u16) -> Endpoint {
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&[0xfd, 0]);
        a[14..].copy_from_slice(&last.to_be_bytes());
        Endpoint::v6(a, port.to_be_bytes())
    }

    fn key(lport: u16) -> FlowKey {
        FlowKey {
            net: NET,
            proto: Proto::Udp,
            lip: ep4(2, lport),
            rs: ep4(1, 53),
        }
    }

    #[test]
    fn a_bucket_is_eleven_cache_lines() {
        assert_eq!(core::mem::size_of::<Bucket>(), 704);
        assert_eq!(core::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn guests_share_half_of_each_bucket_and_never_evict_others() {
        // 4 buckets of 8: 32 slots, 16 halves per flow pair -> at most 16
        // host flows fill it with reverse halves.
        let m = Mem::new(4);
        let t = m.table();
        let host: Vec<(FlowKey, Endpoint)> = (0..6)
            .map(|i| (key(5000 + i), client4(100 + u32::from(i))))
            .collect();
        for (k, c) in &host {
            assert!(t.announce(k, c, Via::Icmp, 1000, T).new);
        }
        // A guest floods: 10 000 announcements, each its own flow.
        let guest = |i: u32| FlowKey {
            net: 7,
            lip: ep4(3, 1000 + (i % 60000) as u16),
            ..key(0)
        };
        let (mut made, mut refused, mut evicted) = (0, 0, 0);
        for i in 0..10_000 {
            let a = t.announce(&guest(i), &client4(i), Via::Icmp, 1001, T);
            made += u32::from(a.new);
            refused += u32::from(a.refused);
            evicted += a.evicted;
            assert!(!a.refused || !a.new);
        }
        // It made room among its own flows only (evicting them).
        assert!(made > 0 && evicted > 0, "{made} {refused} {evicted}");
        // Every host flow kept its client, both ways.
        for (k, c) in &host {
            assert_eq!(t.receive(k, 1002, T).map(|h| h.peer), Some(*c));
            assert_eq!(
                t.send(NET, Proto::Udp, &k.rs, c, 1002, T).map(|h| h.peer),
                Some(k.lip)
            );
        }
        // The guest holds at most half of each bucket (live halves).
        for b in m.buckets.iter() {
            let guests = (0..WAYS)
                .filter_map(|w| b.locked_half(w))
                .filter(|h| h.net != NET)
                .count();
            assert!(guests <= GUEST_WAYS, "{guests}");
        }
        // A second guest cannot push the first one's flows out either.
        let kept: Vec<(FlowKey, Endpoint)> = (0..10_000)
            .filter_map(|i| {
                let k = guest(i);
                t.receive(&k, 1003, T).map(|h| (k, h.peer))
            })
            .collect();
        assert!(!kept.is_empty());
        for i in 0..5_000 {
            let k = FlowKey { net: 8, ..guest(i) };
            let a = t.announce(&k, &client4(i), Via::Icmp, 1004, T);
            refused += u32::from(a.refused);
        }
        assert!(refused > 0);
        for (k, c) in &kept {
            assert_eq!(t.receive(k, 1005, T).map(|h| h.peer), Some(*c));
        }
        // The host's new flows still find room (the guests' expired ones
        // count for nothing): new host flows, later, all recorded.
        for i in 0..6 {
            let a = t.announce(
                &key(6000 + i),
                &client4(200 + u32::from(i)),
                Via::Icmp,
                1006,
                T,
            );
            assert!(a.new && !a.refused, "{a:?}");
        }
    }

    /// The way back from `rs` (any of its port's addresses if `any`) to
    /// `client`.
    fn named(net: u64, proto: Proto, rs: &Endpoint, any: bool, client: &Endpoint) -> Query {
        let q = Query::reverse(net, proto, client, rs);
        if any {
            q.any_rs()
        } else {
            q
        }
    }

    #[test]
    fn a_named_destination_finds_its_way_back() {
        let m = Mem::new(16);
        let t = m.table();
        let k = key(5000);
        let c = client4(7);
        t.announce(&k, &c, Via::Icmp, 1000, T);
        let unbound = Endpoint::v4([0; 4], k.rs.port);
        // From the RS address, or from its port on any address.
        for (rs, any) in [(k.rs, false), (unbound, true)] {
            let back = t
                .send_named(&named(NET, Proto::Udp, &rs, any, &c), 1001, T)
                .unwrap();
            assert_eq!((back.peer, back.rs, back.matches), (k.lip, k.rs, 1));
        }
        // Not from another address, another port, or in another namespace
        // or protocol; not to another client.
        let other = [
            (NET, Proto::Udp, ep4(9, 53), false, c),
            (NET, Proto::Udp, ep4(1, 54), false, c),
            (NET, Proto::Udp, Endpoint::v4([0; 4], [0, 54]), true, c),
            (NET + 1, Proto::Udp, unbound, true, c),
            (NET, Proto::Tcp, unbound, true, c),
            (NET, Proto::Udp, unbound, true, client4(8)),
        ];
        for (net, proto, rs, any, client) in other {
            assert!(t
                .send_named(&named(net, proto, &rs, any, &client), 1001, T)
                .is_none());
        }
        // The same client's flow to a second RS address of the port: from
        // an unbound socket the way back is ambiguous (the datagram's own
        // hook decides, its source known); from either address it is not.
        let k2 = FlowKey {
            lip: ep4(3, 5001),
            rs: ep4(4, 53),
            ..k
        };
        t.announce(&k2, &c, Via::Icmp, 1002, T);
        let both = t.send_named(&named(NET, Proto::Udp, &unbound, true, &c), 1003, T);
        assert_eq!(both.map(|h| h.matches), Some(2));
        for kk in [k, k2] {
            let back = t
                .send_named(&named(NET, Proto::Udp, &kk.rs, false, &c), 1003, T)
                .unwrap();
            assert_eq!(back.peer, kk.lip);
        }
        // Refreshed like a datagram's way back: still live a timeout after
        // the announcement, when a named send a while after refreshed it.
        let back = t.send_named(
            &named(NET, Proto::Udp, &k.rs, false, &c),
            1000 + REFRESH_MS,
            T,
        );
        // Only a way back answers a named send.
        assert!(t
            .send_named(&Query::forward(&k), 1000 + REFRESH_MS, T)
            .is_none());
        assert!(back.is_some());
        assert!(t.receive(&k, 1000 + T + 10, T).is_some());
    }

    #[test]
    fn announce_receive_send_ipv4() {
        let m = Mem::new(16);
        let t = m.table();
        let k = key(5000);
        let c = client4(7);
        let a = t.announce(&k, &c, Via::Icmp, 1000, T);
        assert_eq!(
            a,
            Announced {
                new: true,
                delta: 1,
                ..Default::default()
            }
        );
        let hit = t.receive(&k, 1001, T).unwrap();
        assert_eq!((hit.peer, hit.via, hit.matches), (c, Via::Icmp, 1));
        let back = t.send(NET, Proto::Udp, &k.rs, &c, 1002, T).unwrap();
        assert_eq!(back.peer, k.lip);
        // Another namespace, protocol, RS port or address: nothing.
        assert!(t.receive(&FlowKey { net: 1, ..k }, 1002, T).is_none());
        assert!(t
            .receive(
                &FlowKey {
                    proto: Proto::Tcp,
                    ..k
                },
                1002,
                T
            )
            .is_none());
        assert!(t
            .receive(
                &FlowKey {
                    rs: ep4(1, 54),
                    ..k
                },
                1002,
                T
            )
            .is_none());
        assert!(t
            .receive(
                &FlowKey {
                    rs: ep4(9, 53),
                    ..k
                },
                1002,
                T
            )
            .is_none());
        assert!(t.send(NET, Proto::Udp, &ep4(9, 53), &c, 1002, T).is_none());
        // Any RS address, when asked so.
        let any = t.lookup(
            &Query::forward(&FlowKey {
                rs: ep4(9, 53),
                ..k
            })
            .any_rs(),
            1002,
            T,
        );
        assert_eq!(any.map(|h| (h.peer, h.rs)), Some((c, k.rs)));
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn ipv6_and_nat64() {
        let m = Mem::new(16);
        let t = m.table();
        let k6 = FlowKey {
            net: NET,
            proto: Proto::Udp,
            lip: ep6(2, 5000),
            rs: ep6(1, 53),
        };
        let c6 = ep6(0x99, 4444);
        t.announce(&k6, &c6, Via::Opp, 0, T);
        assert_eq!(t.receive(&k6, 1, T).map(|h| h.peer), Some(c6));
        assert_eq!(
            t.send(NET, Proto::Udp, &k6.rs, &c6, 1, T).map(|h| h.peer),
            Some(k6.lip)
        );
        // NAT64: an IPv6 client of IPv4 packets: found, but no way back.
        let k = key(6000);
        let a = t.announce(&k, &c6, Via::Opp, 0, T);
        assert_eq!(a.delta, 1);
        assert_eq!(t.receive(&k, 1, T).map(|h| h.peer), Some(c6));
        assert!(t.send(NET, Proto::Udp, &k.rs, &c6, 1, T).is_none());
        assert_eq!(t.count(), 2);
    }

    #[test]
    fn the_same_announcement_refreshes_another_client_replaces() {
        let m = Mem::new(16);
        let t = m.table();
        let k = key(5001);
        let (c1, c2) = (client4(1), client4(2));
        t.announce(&k, &c1, Via::Ipo, 0, T);
        let again = t.announce(&k, &c1, Via::Ipo, 500, T);
        assert_eq!(
            again,
            Announced {
                refreshed: true,
                ..Default::default()
            }
        );
        let r = t.announce(&k, &c2, Via::Ipo, 600, T);
        assert_eq!(
            r,
            Announced {
                new: true,
                replaced: true,
                ..Default::default()
            }
        );
        assert_eq!(t.receive(&k, 700, T).map(|h| h.peer), Some(c2));
        // The old client's way back went with it.
        assert!(t.send(NET, Proto::Udp, &k.rs, &c1, 700, T).is_none());
        assert_eq!(
            t.send(NET, Proto::Udp, &k.rs, &c2, 700, T).map(|h| h.peer),
            Some(k.lip)
        );
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn flows_expire_and_packets_keep_them_alive() {
        let m = Mem::new(16);
        let t = m.table();
        let k = key(5002);
        let c = client4(3);
        t.announce(&k, &c, Via::Icmp, 0, 10_000);
        // Packets every 6 s keep both halves alive past the timeout.
        for now in [6_000, 12_000, 18_000] {
            assert!(t.receive(&k, now, 10_000).is_some(), "rx at {now}");
        }
        for now in [24_000, 30_000] {
            assert!(
                t.send(NET, Proto::Udp, &k.rs, &c, now, 10_000).is_some(),
                "tx at {now}"
            );
        }
        assert!(t.receive(&k, 40_000, 10_000).is_some());
        // Then silence: gone for both directions.
        assert!(t.receive(&k, 50_001, 10_000).is_none());
        assert!(t.send(NET, Proto::Udp, &k.rs, &c, 50_001, 10_000).is_none());
        assert!(t.view(0, NET, 50_001, 10_000).is_none());
        // The next announcement takes its slot back, counted expired.
        let a = t.announce(&k, &client4(4), Via::Icmp, 60_000, 10_000);
        assert_eq!(
            a,
            Announced {
                new: true,
                expired: 1,
                ..Default::default()
            }
        );
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn one_client_behind_two_balancer_addresses() {
        let m = Mem::new(16);
        let t = m.table();
        let c = client4(5);
        let k1 = FlowKey {
            lip: ep4(2, 7000),
            ..key(0)
        };
        let k2 = FlowKey {
            lip: ep4(3, 7001),
            ..key(0)
        };
        t.announce(&k1, &c, Via::Icmp, 100, T);
        t.announce(&k2, &c, Via::Icmp, 200, T);
        let h = t.send(NET, Proto::Udp, &k1.rs, &c, 300, T).unwrap();
        assert_eq!((h.peer, h.matches), (k2.lip, 2));
        // k1's packets make it the most recent.
        t.receive(&k1, 5000, T);
        let h = t.send(NET, Proto::Udp, &k1.rs, &c, 5001, T).unwrap();
        assert_eq!((h.peer, h.matches), (k1.lip, 2));
    }

    #[test]
    fn remove_a_namespace() {
        let m = Mem::new(16);
        let t = m.table();
        t.announce(&key(1), &client4(1), Via::Icmp, 0, T);
        t.announce(&FlowKey { net: 2, ..key(2) }, &client4(2), Via::Icmp, 0, T);
        assert_eq!(t.remove_net(NET), 1);
        assert!(t.receive(&key(1), 1, T).is_none());
        assert!(t
            .send(NET, Proto::Udp, &key(1).rs, &client4(1), 1, T)
            .is_none());
        assert!(t.receive(&FlowKey { net: 2, ..key(2) }, 1, T).is_some());
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn views_list_live_forward_halves_of_one_namespace() {
        let m = Mem::new(4);
        let t = m.table();
        t.announce(&key(1), &client4(1), Via::Opp, 100, T);
        t.announce(
            &FlowKey { net: 2, ..key(2) },
            &client4(2),
            Via::Icmp,
            100,
            T,
        );
        let views: Vec<View> = (0..t.slots())
            .filter_map(|i| t.view(i, NET, 400, T))
            .collect();
        assert_eq!(views.len(), 1);
        let v = views[0];
        assert_eq!(
            (v.lip, v.rs, v.client, v.via, v.age_ms, v.idle_ms),
            (key(1).lip, key(1).rs, client4(1), Via::Opp, 300, 300)
        );
        assert!(t.view(t.slots(), NET, 400, T).is_none());
    }

    #[test]
    fn a_flood_costs_no_memory_and_the_counters_balance() {
        let m = Mem::new(64);
        let t = m.table();
        let (mut new, mut gone, mut delta) = (0u64, 0u64, 0i64);
        for n in 0..100_000u32 {
            let k = FlowKey {
                lip: ep4((n % 200) as u8 + 2, (n / 200) as u16 + 1),
                ..key(0)
            };
            let a = t.announce(&k, &client4(n), Via::Icmp, u64::from(n), T);
            assert!(a.new);
            new += 1;
            gone += u64::from(a.replaced) + u64::from(a.expired) + u64::from(a.evicted);
            delta += i64::from(a.delta);
        }
        assert_eq!(new, gone + t.count());
        assert_eq!(delta as u64, t.count());
        assert!(t.count() <= (t.slots() / 2) as u64 + WAYS as u64 * 64);
        // The most recent flows are still there.
        let k = FlowKey {
            lip: ep4((99_999 % 200) as u8 + 2, (99_999 / 200) as u16 + 1),
            ..key(0)
        };
        assert_eq!(
            t.receive(&k, 100_000, T).map(|h| h.peer),
            Some(client4(99_999))
        );
    }

    #[test]
    fn a_bigger_table_takes_the_live_flows() {
        let small = Mem::new(4);
        let s = small.table();
        for n in 0..10 {
            s.announce(
                &key(100 + n),
                &client4(u32::from(n)),
                Via::Icmp,
                u64::from(n) * 1000,
                20_000,
            );
        }
        let big = Mem::new(64);
        let b = big.table();
        let moved = b.take_from(&s, 25_000, 20_000);
        assert_eq!(moved.kept + moved.expired + moved.evicted, s.count());
        for n in 6..10 {
            assert_eq!(
                b.receive(&key(100 + n), 25_000, 20_000).map(|h| h.peer),
                Some(client4(u32::from(n)))
            );
            assert!(b
                .send(
                    NET,
                    Proto::Udp,
                    &key(0).rs,
                    &client4(u32::from(n)),
                    25_000,
                    20_000
                )
                .is_some());
        }
    }

    #[test]
    fn readers_never_see_torn_flows() {
        // Writers announce keys 0..64 with one of two clients each; readers
        // must only ever see one of those two for a key.
        let m = Arc::new(Mem::new(8));
        let stop = Arc::new(AtomicBool::new(false));
        let alt = |k: u16, which: u32| client4(u32::from(k) * 2 + which);
        let mut hs = Vec::new();
        for w in 0..2u32 {
            let (m, stop) = (m.clone(), stop.clone());
            hs.push(std::thread::spawn(move || {
                let t = m.table();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let k = (i % 64) as u16;
                    t.announce(&key(k + 1), &alt(k, (i / 64 + w) % 2), Via::Icmp, 1, T);
                    i += 1;
                }
                0u64
            }));
        }
        for _ in 0..2 {
            let (m, stop) = (m.clone(), stop.clone());
            hs.push(std::thread::spawn(move || {
                let t = m.table();
                let mut seen = 0u64;
                let mut i = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % 64;
                    if let Some(h) = t.lookup(&Query::forward(&key(k + 1)), 1, T) {
                        assert!(h.peer == alt(k, 0) || h.peer == alt(k, 1), "torn: {h:?}");
                        seen += 1;
                    }
                    i = i.wrapping_add(7);
                }
                seen
            }));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let seen: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(seen > 0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        #[derive(Clone, Debug)]
        enum Op {
            Announce(u16, u32),
            Receive(u16),
            Send(u32),
            Wait(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u16..12, 0u32..6).prop_map(|(k, c)| Op::Announce(k, c)),
                (0u16..12).prop_map(Op::Receive),
                (0u32..6).prop_map(Op::Send),
                prop_oneof![0u64..2000, Just(5000), Just(5001)].prop_map(Op::Wait),
            ]
        }

        /// An endpoint from a few drawn bits: IPv4 or IPv6, one of a few
        /// addresses and ports (so that lookups meet).
        fn endpoint(v6: bool, n: u8) -> Endpoint {
            let port = (1000 + u16::from(n % 3)).to_be_bytes();
            if v6 {
                let mut a = [0u8; 16];
                a[0] = 0xfd;
                a[15] = n % 4;
                Endpoint::v6(a, port)
            } else {
                Endpoint::v4([10, 0, 0, n % 4], port)
            }
        }

        /// A flow key from drawn bits: namespace, protocol, LIP and RS.
        fn flow_key(bits: (bool, bool, bool, u8, u8)) -> FlowKey {
            let (other_net, tcp, v6, l, r) = bits;
            FlowKey {
                net: NET + u64::from(other_net),
                proto: if tcp { Proto::Tcp } else { Proto::Udp },
                lip: endpoint(v6, l),
                rs: endpoint(v6, r.wrapping_add(1)),
            }
        }

        proptest! {
            /// The ways a bucket's tag words say may hold a tag are every
            /// way that does, and only ways that do unless a lower way of
            /// the same word does (the zero-lane test's borrow): for any
            /// tags, with the tag looked for placed in any ways.
            #[test]
            fn tagged_ways_are_the_tags_ways(
                tags: [u16; WAYS],
                tag in any::<u16>().prop_map(|t| t | 1),
                placed: [bool; WAYS],
            ) {
                let b = Bucket::new();
                for way in 0..WAYS {
                    let t = if placed[way] { tag } else { tags[way] };
                    let (word, shift) = b.tag_at(way);
                    word.store(word.load(Ordering::Relaxed) | (u64::from(t) << shift), Ordering::Relaxed);
                    prop_assert_eq!(b.tag(way), t);
                }
                let got = b.tagged(tag);
                for way in 0..WAYS {
                    let first = way - way % TAGS_PER_WORD;
                    let below = (first..way).any(|w| b.tag(w) == tag);
                    if b.tag(way) == tag {
                        prop_assert!(got & (1 << way) != 0, "way {} missed", way);
                    } else if !below {
                        prop_assert!(got & (1 << way) == 0, "way {} taken", way);
                    }
                }
            }

            /// An endpoint's words give the endpoint back.
            #[test]
            fn endpoint_words_round_trip(addr: [u8; 16], port: [u8; 2], v6: bool, a4: [u8; 4]) {
                let e = Endpoint { addr, port, v6 };
                let (hi, lo) = e.addr_words();
                prop_assert_eq!(Endpoint::from_words(hi, lo, u16::from_be_bytes(port), v6), e);
                let e4 = Endpoint::v4(a4, port);
                prop_assert_eq!(&e4.addr[..4], &a4[..]);
                prop_assert_eq!(&e4.addr[4..], &[0u8; 12][..]);
            }

            /// A slot's words say what its decoded half says: for any
            /// words (a half's, or a half's with one word changed) and any
            /// query drawn near it.
            #[test]
            fn slot_words_are_the_halves_matches(
                k in (any::<bool>(), any::<bool>(), any::<bool>(), any::<u8>(), any::<u8>()),
                (cv6, c) in (any::<bool>(), any::<u8>()),
                rev: bool,
                any_b: bool,
                q in (any::<bool>(), any::<bool>(), any::<bool>(), any::<u8>(), any::<u8>()),
                qrev: bool,
                change in proptest::option::of((0usize..WORDS, 0u32..64, any::<u64>(), any::<bool>())),
            ) {
                let key = flow_key(k);
                let client = endpoint(cv6, c);
                let h = if rev {
                    Half { net: key.net, tcp: key.proto == Proto::Tcp, rev: true, a: client, b: key.rs, c: key.lip, via: Via::Icmp, seen: 1, born: 1 }
                } else {
                    Half { net: key.net, tcp: key.proto == Proto::Tcp, rev: false, a: key.lip, b: key.rs, c: client, via: Via::Icmp, seen: 1, born: 1 }
                };
                let mut words = h.encode();
                if let Some((i, bit, any, flip)) = change {
                    // One bit flipped (near misses), or the word anything.
                    words[i] = if flip { words[i] ^ (1 << bit) } else { any };
                }
                let qk = flow_key(q);
                let mut query = if qrev {
                    Query::reverse(qk.net, qk.proto, &endpoint(cv6, c), &qk.rs)
                } else {
                    Query::forward(&qk)
                };
                if any_b {
                    query = query.any_rs();
                }
                for query in [query, h.query(), h.query().any_rs()] {
                    let by_words = query.words().is_some_and(|w| w.held_by(|i| words[i]));
                    let by_half = Half::decode(&words).is_some_and(|h| query.matches(&h));
                    prop_assert_eq!(by_words, by_half);
                }
            }

            /// The word-comparing lookup answers as decoding every slot did,
            /// for every kind of query (forward, reverse, any RS, with a
            /// wanted peer or not, of either family, mixed families
            /// included), on tables holding flows of both families, both
            /// protocols, two namespaces, some expired.
            #[test]
            fn lookups_by_words_are_lookups_by_halves(
                flows in proptest::collection::vec(
                    ((any::<bool>(), any::<bool>(), any::<bool>(), any::<u8>(), any::<u8>()), any::<bool>(), any::<u8>(), prop_oneof![Just(0u64), Just(1000), Just(1001), 0u64..3000]),
                    0..40,
                ),
                queries in proptest::collection::vec(
                    ((any::<bool>(), any::<bool>(), any::<bool>(), any::<u8>(), any::<u8>()), any::<bool>(), any::<u8>(), 0u8..4, proptest::option::of((any::<bool>(), any::<u8>()))),
                    1..20,
                ),
                now in prop_oneof![Just(2000u64), Just(2001), Just(3000), Just(3001), 0u64..6000],
            ) {
                // Announcements at a few instants (halves seen at the same
                // time) and lookups at the edge of their lifetime.
                let m = Mem::new(4);
                let t = m.table();
                let timeout = 2000;
                for (k, cv6, c, at) in flows {
                    t.announce(&flow_key(k), &endpoint(cv6, c), Via::Icmp, at, timeout);
                }
                for (k, cv6, c, shape, want) in queries {
                    let key = flow_key(k);
                    let client = endpoint(cv6, c);
                    let q = match shape {
                        0 => Query::forward(&key),
                        1 => Query::reverse(key.net, key.proto, &client, &key.rs),
                        2 => Query::forward(&key).any_rs(),
                        // Families that differ: no half matches.
                        _ => Query::reverse(key.net, key.proto, &client, &endpoint(!cv6, c)),
                    };
                    let want = want.map(|(v6, n)| endpoint(v6, n));
                    prop_assert_eq!(
                        t.find(&q, want.as_ref(), now, timeout),
                        t.find_decoding(&q, want.as_ref(), now, timeout)
                    );
                }
            }

            /// Against a model: a flow's client is the one announced last
            /// for its key, never another; the way back leads to a LIP that
            /// announced the client; when nothing was evicted, the table
            /// answers exactly as the model does.
            #[test]
            fn against_a_model(ops in proptest::collection::vec(op(), 0..100)) {
                let m = Mem::new(8);
                let t = m.table();
                let timeout = 5000;
                let mut now = 0u64;
                // key -> (client, last seen), and the model's notion of live.
                let mut model: HashMap<u16, (u32, u64)> = HashMap::new();
                let mut evicted = 0;
                for o in ops {
                    match o {
                        Op::Wait(ms) => now += ms,
                        Op::Announce(k, c) => {
                            let a = t.announce(&key(k + 1), &client4(c), Via::Icmp, now, timeout);
                            evicted += a.evicted;
                            // Announcing a client moves it away from any other key
                            // in the model only by replacement of the same key.
                            model.insert(k, (c, now));
                        }
                        Op::Receive(k) => {
                            let got = t.receive(&key(k + 1), now, timeout).map(|h| h.peer);
                            let want = model
                                .get(&k)
                                .filter(|(_, seen)| now - seen <= timeout)
                                .map(|(c, _)| client4(*c));
                            if let Some(g) = got {
                                prop_assert_eq!(Some(g), want, "key {}", k);
                            } else if evicted == 0 {
                                prop_assert_eq!(None, want, "key {}", k);
                            }
                            if got.is_some() && now - model[&k].1 >= REFRESH_MS {
                                model.get_mut(&k).unwrap().1 = now;
                            }
                        }
                        Op::Send(c) => {
                            let got = t.send(NET, Proto::Udp, &key(0).rs, &client4(c), now, timeout);
                            if let Some(h) = got {
                                let port = u16::from_be_bytes(h.peer.port) - 1;
                                let entry = model.get(&port);
                                prop_assert!(entry.is_some_and(|(cc, _)| *cc == c), "send {} -> {:?}", c, h);
                                if now - entry.unwrap().1 >= REFRESH_MS {
                                    model.get_mut(&port).unwrap().1 = now;
                                }
                            } else if evicted == 0 {
                                prop_assert!(!model.values().any(|(cc, seen)| *cc == c && now - seen <= timeout), "send {} found nothing", c);
                            }
                        }
                    }
                }
            }
        }
    }
}
