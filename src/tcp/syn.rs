// SPDX-License-Identifier: GPL-2.0

//! Clients named before the socket exists: in the SYN (Alibaba LVS puts its
//! option only there, Alibaba Cloud CDN too, F5 in every packet), or in a
//! handshake ACK that a `TCP_DEFER_ACCEPT` listener holds back until data
//! arrives (JD Jupiter puts its option only in that ACK).
//!
//! The glue calls [`toa_on_request`] for every SYN reaching a listener
//! (a probe on `tcp_conn_request`, which serves IPv4 and IPv6 listeners)
//! and for such a held-back ACK (a probe on `tcp_check_req`). A usable,
//! trusted client goes into the handshake table ([`crate::tcp::syn_table`]:
//! fixed at load, nothing allocated per packet, a bounded constant of work
//! per SYN); [`take`] hands it to the socket the handshake creates.
//!
//! With syncookies the kernel keeps no request socket, but the table does
//! not depend on one: the completing ACK's sequence number names the same
//! entry, so the client survives as long as its entry (see
//! [`crate::tcp::syn_table`] for how long; a flood of SYNs carrying options
//! evicts entries, counted `toa_syn_evicted`, and the sockets that lose
//! theirs are counted `toa_syncookie_no_toa`).

use core::ffi::{c_uint, c_ulong};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::kapi::{self, Handshake};
use crate::policy::config::NamedIn;
use crate::recent::Recent;
use crate::stats::{self, Counter};
use crate::tcp::handshake;
use crate::tcp::syn_table::{self, Bucket, Key, Same, Take, BUCKETS, MAX_AGE_MS};
use crate::tcp::wire::{Found, Packet};

/// The hash key of the table, drawn at load.
static SEED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// When the last entry was put in. While it is older than [`MAX_AGE_MS`],
/// no entry could be given out, and sockets skip the table: connections of
/// balancers that never put a client in a SYN pay nothing for it.
static LAST_PUT: Recent = Recent::new();

/// The host's network namespace (the initial one's cookie): the others
/// share [`syn_table::GUEST_WAYS`] of each bucket.
static HOST: AtomicU64 = AtomicU64::new(0);

/// Draw the table's hash key; called at load, before any hook can run.
pub fn init() {
    for s in &SEED {
        // SAFETY: `toa_random_u64` may be called from any context.
        s.store(unsafe { kapi::toa_random_u64() }, Ordering::Relaxed);
    }
    // SAFETY: `toa_host_net` may be called from any context.
    HOST.store(unsafe { kapi::toa_host_net() }, Ordering::Relaxed);
}

fn seed() -> [u64; 2] {
    [
        SEED[0].load(Ordering::Relaxed),
        SEED[1].load(Ordering::Relaxed),
    ]
}

/// A locked bucket of the table; unlocked when dropped.
struct Locked {
    index: c_uint,
    flags: c_ulong,
    slots: *mut Bucket,
}

impl Locked {
    /// Lock bucket `index`, if the table has it.
    fn new(index: usize) -> Option<Locked> {
        let index = c_uint::try_from(index).ok()?;
        let mut flags: c_ulong = 0;
        // SAFETY: `flags` is writable; a NULL return locks nothing.
        let slots = unsafe { kapi::toa_syn_lock(index, &mut flags) }.cast::<Bucket>();
        if slots.is_null() {
            return None;
        }
        // INVARIANT: bucket `index` is locked and `slots` are its slots
        // until this value is dropped.
        Some(Locked {
            index,
            flags,
            slots,
        })
    }

    fn bucket(&mut self) -> &mut Bucket {
        // SAFETY: the glue hands `WAYS` zero-initialized, suitably aligned
        // slots (all-zero is a valid `Slot`), written only by this module
        // under the bucket's lock, which this value holds (see `new`).
        unsafe { &mut *self.slots }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: bucket `index` was locked by `new` with `flags`.
        unsafe { kapi::toa_syn_unlock(self.index, self.flags) }
    }
}

impl Handshake {
    /// The connection's key in the table.
    pub(crate) fn key(&self) -> Key {
        Key {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            isn: self.isn,
            v6: self.v6,
            net: self.net,
        }
    }
}

/// A SYN reached a listener (`hs.syn`), or a `TCP_DEFER_ACCEPT` listener is
/// holding back the handshake's ACK: keep the client it names, if any, for
/// the socket the handshake will create.
///
/// # Safety
///
/// `hs` must point to a valid [`Handshake`] whose `options` are
/// `options_len` readable bytes and whose `settings` are live, for the
/// duration of the call. Callable in
/// softirq and with interrupts off: takes one bucket lock, allocates nothing.
#[no_mangle]
pub unsafe extern "C" fn toa_on_request(hs: *const Handshake) {
    // SAFETY: the caller guarantees `hs` is valid for the call.
    let hs = unsafe { &*hs };
    // Only the packets where the balancer puts its option are kept: a SYN
    // when it names the client after the SYN, a held-back ACK when it names
    // it in the SYN only, carry nobody's but the client's own.
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { hs.settings() };
    match (settings.options().named_in(), hs.syn) {
        (NamedIn::Ack, true) | (NamedIn::Syn, false) => return,
        _ => {}
    }
    let packet = if hs.syn { Packet::Syn } else { Packet::Ack };
    // SAFETY: the caller guarantees the options are readable.
    let Some(found) = (unsafe { handshake::own_client(hs, packet) }) else {
        return;
    };
    let key = hs.key();
    let Some(mut locked) = Locked::new(key.bucket(&seed())) else {
        return;
    };
    // A SYN seen again keeps the first entry; a held-back ACK is later in
    // the same handshake and wins, as the completing packet would.
    let same = match (hs.syn, settings.options().named_in()) {
        (true, _) => Same::Keep,
        // Under `agree`, a held-back ACK naming another client than the
        // SYN's leaves the entry naming nobody.
        (false, NamedIn::Agree) => Same::Disagree,
        (false, _) => Same::Replace,
    };
    let host = HOST.load(Ordering::Relaxed);
    let put = syn_table::put(locked.bucket(), &key, &found, hs.now_ms, same, host);
    drop(locked);
    LAST_PUT.put(hs.now_ms);
    for (happened, counter) in [
        (put.recorded, Counter::ToaSynRecorded),
        (put.replaced, Counter::ToaSynReplaced),
        (put.expired, Counter::ToaSynExpired),
        (put.evicted, Counter::ToaSynEvicted),
        (put.refused, Counter::ToaSynShareFull),
        (put.conflict, Counter::ToaConflict),
        (put.recorded && !hs.syn, Counter::ToaAckDeferred),
    ] {
        if happened {
            stats::inc(settings, counter);
        }
    }
}

/// Whether the table may hold an entry at `now_ms`: one was put within an
/// entry's lifetime.
pub fn may_hold(now_ms: u64) -> bool {
    LAST_PUT.may_hold(now_ms, MAX_AGE_MS)
}

/// Take the client kept for the connection of `hs` (a packet creating a
/// child socket), if there is one, and whether the handshake's packets
/// named different clients (then the entry names nobody). Callable in
/// softirq.
///
/// # Safety
///
/// `hs.settings` must be live for the call.
pub unsafe fn take(hs: &Handshake) -> (Option<Found>, bool) {
    if !may_hold(hs.now_ms) {
        return (None, false);
    }
    let key = hs.key();
    let Some(mut locked) = Locked::new(key.bucket(&seed())) else {
        return (None, false);
    };
    let took = syn_table::take(locked.bucket(), &key, hs.now_ms);
    drop(locked);
    match took {
        Take::Found(found) => (Some(found), false),
        Take::Expired => {
            // SAFETY: the caller guarantees the settings are live.
            stats::inc(unsafe { hs.settings() }, Counter::ToaSynExpired);
            (None, false)
        }
        Take::Conflict => (None, true),
        Take::Missing => (None, false),
    }
}

/// The shape of the table, for the glue to allocate it: the number of
/// buckets and the bytes of one bucket's slots.
///
/// # Safety
///
/// Both pointers must be writable.
#[no_mangle]
pub unsafe extern "C" fn toa_syn_table_shape(buckets: *mut c_uint, bucket_bytes: *mut usize) {
    // SAFETY: the caller guarantees both are writable.
    unsafe {
        *buckets = BUCKETS as c_uint;
        *bucket_bytes = core::mem::size_of::<Bucket>();
    }
}

/// How many entries the table holds (expired ones not yet dropped
/// included): the `syn_table_entries` row of `/proc/net/toa_stats`.
#[no_mangle]
pub extern "C" fn toa_syn_occupied() -> c_ulong {
    let mut n: c_ulong = 0;
    for index in 0..BUCKETS {
        if let Some(mut locked) = Locked::new(index) {
            n += syn_table::occupied(locked.bucket()) as c_ulong;
        }
    }
    n
}
