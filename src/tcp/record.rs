// SPDX-License-Identifier: GPL-2.0

//! The client recorded on a socket: stored when the kernel creates the
//! socket, looked up when an application asks, dropped when the socket is
//! destroyed or toa is unloaded.
//!
//! An IPv4 client is the `sk_user_data` word itself ([`stash`]). An IPv6
//! client lives in a 16-byte-aligned record from the glue's `toa_ip6` slab
//! cache, and the word names the record. The glue keeps every live record in
//! a registry (an RCU hash table, a lock per bucket for writers), and a
//! record is only ever read, or freed, after it was found in the registry.
//! So:
//!
//! - a word naming a record that is not registered (left by an earlier load
//!   of toa, whose records were freed at its unload) is never dereferenced:
//!   it is [`Recorded::Stale`]; nor is one whose address the slab has since
//!   given to another socket's record: a record remembers its socket, and
//!   only that socket's lookups find it;
//! - lookups (every `getpeername()`) take no lock: they run under
//!   `rcu_read_lock()`, a record's client never changes once registered,
//!   and a record removed from the registry is freed only after a grace
//!   period, so a lookup never reads freed memory;
//! - the destructor probe and the unload drain both remove a record from the
//!   registry under its bucket's lock before freeing it, so they cannot both
//!   free it;
//! - the unload drain never touches a socket.

use crate::kapi::{self, Sock, V6Client};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::tcp::stash::{self, Stashed};
use crate::tcp::wire::ClientAddr;

/// What a socket carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing: `sk_user_data` is NULL.
    Empty,
    /// Someone else's `sk_user_data`.
    Foreign,
    /// A record word whose record is gone (an earlier load of toa).
    Stale,
    /// The client.
    Client(ClientAddr),
}

/// Store `client` on the new socket `child`, of the namespace whose settings
/// are `settings` (where it is counted); whether it was stored.
///
/// # Safety
///
/// `child` must be a live socket held by the caller, not yet visible to
/// userspace. Callable in softirq: allocates with `GFP_ATOMIC` only.
pub unsafe fn store(child: *mut Sock, client: ClientAddr, settings: &Settings) -> bool {
    match client {
        ClientAddr::V4 { port, addr } => {
            // SAFETY: the caller guarantees `child` is live.
            let stored =
                unsafe { kapi::toa_sk_claim_user_data(child, stash::encode_v4(port, addr)) };
            if !stored {
                stats::inc(settings, Counter::ToaUserDataBusy);
            }
            stored
        }
        ClientAddr::V6 { port, addr } => {
            let v6 = V6Client { addr, port };
            // SAFETY: `v6` is a valid V6Client for the duration of the call.
            let rec = unsafe { kapi::toa_v6_new(&v6) };
            if rec.is_null() {
                stats::inc(settings, Counter::Ip6AddressAllocFailed);
                return false;
            }
            stats::inc(settings, Counter::Ip6AddressAlloc);
            let (stored, refused) = match stash::encode_v6_record(rec as usize) {
                // SAFETY: the caller guarantees `child` is live; `rec` is a
                // fresh, unregistered record.
                // INVARIANT (kept by `toa_v6_attach` under the registry
                // lock): a registered record is attached to exactly the one
                // socket whose word names it.
                Some(word) => match unsafe { kapi::toa_v6_attach(child, rec, word) } {
                    true => (true, None),
                    false => (false, Some(Counter::ToaUserDataBusy)),
                },
                // Not a plain kernel address (a tagged pointer): no word can
                // name it.
                None => (false, Some(Counter::Ip6AddressAllocFailed)),
            };
            if let Some(why) = refused {
                // SAFETY: `rec` was not registered, so nothing else has it.
                unsafe { kapi::toa_v6_free(rec) };
                stats::inc(settings, Counter::Ip6AddressFree);
                stats::inc(settings, why);
            }
            stored
        }
    }
}

/// The client recorded on `sk`, if any.
///
/// # Safety
///
/// `sk` must be a live socket for the duration of the call.
pub unsafe fn lookup(sk: *const Sock) -> Recorded {
    // SAFETY: the caller guarantees `sk` is live.
    unsafe { lookup_word(sk, kapi::toa_sk_user_data(sk)) }
}

/// The client recorded on `sk`, whose `sk_user_data` the caller has just
/// read as `word`.
///
/// # Safety
///
/// `sk` must be a live socket for the duration of the call.
#[inline]
pub unsafe fn lookup_word(sk: *const Sock, word: usize) -> Recorded {
    match stash::decode(word) {
        Stashed::Empty => Recorded::Empty,
        Stashed::Foreign => Recorded::Foreign,
        Stashed::V4 { port, addr } => Recorded::Client(ClientAddr::V4 { port, addr }),
        Stashed::V6Record(rec) => {
            let mut v6 = V6Client {
                addr: [0; 16],
                port: [0; 2],
            };
            // SAFETY: `toa_v6_lookup` only dereferences `rec` once it has
            // found it in the registry; `sk` is live; `v6` is writable.
            if unsafe { kapi::toa_v6_lookup(sk, rec, &mut v6) } {
                Recorded::Client(ClientAddr::V6 {
                    port: v6.port,
                    addr: v6.addr,
                })
            } else {
                Recorded::Stale
            }
        }
    }
}

/// Socket `sk` is being destroyed: free its IPv6 record, if it has one.
///
/// # Safety
///
/// `sk` must be a socket in its destructor (`inet_sock_destruct`), which no
/// one else uses any more.
#[no_mangle]
pub unsafe extern "C" fn toa_on_destruct(sk: *mut Sock) {
    // SAFETY: the caller guarantees `sk` is still allocated.
    let word = unsafe { kapi::toa_sk_user_data(sk) };
    // SAFETY: the caller's guarantee.
    unsafe { toa_on_destruct_word(sk, word) }
}

/// Socket `sk` is being destroyed and `word` is what toa kept for it (in
/// its `sk_user_data`, or parked beside a socket map's state,
/// `tcp/park.rs`): free its IPv6 record, if it has one.
///
/// # Safety
///
/// As for [`toa_on_destruct`].
#[no_mangle]
pub unsafe extern "C" fn toa_on_destruct_word(sk: *mut Sock, word: usize) {
    if let Stashed::V6Record(rec) = stash::decode(word) {
        // SAFETY: `toa_v6_release` frees `rec` only if it finds it in the
        // registry, where it removes it under its bucket's lock.
        if unsafe { kapi::toa_v6_release(sk, word, rec) } {
            // SAFETY: the caller guarantees `sk` is in its destructor.
            unsafe { stats::inc_sk(sk, Counter::Ip6AddressFree) };
        }
    }
}
