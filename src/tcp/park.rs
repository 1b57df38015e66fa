// SPDX-License-Identifier: GPL-2.0

//! TOA sockets in BPF socket maps (`BPF_MAP_TYPE_SOCKHASH`, `SOCKMAP`).
//!
//! A socket map keeps its state (the `sk_psock`) in `sk_user_data`, flagged
//! `SK_USER_DATA_PSOCK`, and the kernel refuses a socket whose field is
//! already set (`sk_psock_init`: `EBUSY`): a sockops program that inserts
//! accepted sockets (Cilium's socket acceleration, Merbridge, ...) would
//! fail on every socket toa keeps a client on. So, at the entry of
//! `sk_psock_init`, the glue (`glue/tcp_park.c`) parks toa's word in a
//! table keyed by the socket and clears the field, and the map takes it.
//! While the socket is in a map, toa's reads of the field
//! (`kapi::toa_sk_user_data`) answer with the parked word; the socket's
//! destruction unparks it and frees its IPv6 record, as it does for a word
//! still in the field.
//!
//! What is given up: a socket taken out of its maps while still open
//! (the field is NULL again) shows the balancer until it closes, and so
//! does one whose map insertion fails after the word was parked (no
//! memory for the map's state); nothing is ever shown but the recorded
//! client or the balancer.

use crate::kapi::Sock;
use crate::stats::{self, Counter};
use crate::tcp::stash::{self, Stashed};

/// Whether `word`, the `sk_user_data` of a socket a socket map is about to
/// take, is toa's (and so to be parked).
#[no_mangle]
pub extern "C" fn toa_park_wanted(word: usize) -> bool {
    matches!(
        stash::decode(word),
        Stashed::V4 { .. } | Stashed::V6Record(_)
    )
}

/// Count a park of `sk`'s word: done, or refused (no memory for the
/// table's entry: the map's insertion then fails with `EBUSY`, as without
/// this support).
///
/// # Safety
///
/// `sk` must be a live socket for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_park_counted(sk: *const Sock, parked: bool) {
    let counter = if parked {
        Counter::ToaSockmapParked
    } else {
        Counter::ToaSockmapParkFailed
    };
    // SAFETY: the caller guarantees `sk` is live.
    unsafe { stats::inc_sk(sk, counter) };
}
