// SPDX-License-Identifier: GPL-2.0

//! `getpeername()` and `accept()`: answer with the recorded client.
//!
//! The glue probes `inet_getname`, which serves both (accept asks for the
//! peer with `peer == 2`). On entry it asks [`toa_getname_peek`] whether the
//! socket carries a client at all, so sockets without one pay only that
//! check; on return it lets [`toa_getname_v4`] rewrite the kernel's answer.

use crate::kapi::{self, Sock, SockaddrIn};
use crate::stash::{self, Stashed};
use crate::stats::{self, Counter};

/// Whether the peer address of `sk` is to be rewritten on return; counts
/// the calls that are not.
///
/// # Safety
///
/// `sk` must be a live socket for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_getname_peek(sk: *const Sock) -> bool {
    // SAFETY: the caller guarantees `sk` is live.
    match stash::decode(unsafe { kapi::toa_sk_user_data(sk) }) {
        Stashed::Empty => {
            stats::inc(Counter::GetnameToaEmpty);
            false
        }
        Stashed::Foreign => {
            stats::inc(Counter::GetnameToaMismatch);
            false
        }
        Stashed::V4 { .. } | Stashed::V6Record(_) => true,
    }
}

/// Put the client recorded on IPv4 socket `sk` into `sin`, the peer address
/// `inet_getname` has just filled in.
///
/// # Safety
///
/// `sk` must be a live socket and `sin` a writable `struct sockaddr_in`, for
/// the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_getname_v4(sk: *const Sock, sin: *mut SockaddrIn) {
    // SAFETY: the caller guarantees `sk` is live.
    match stash::decode(unsafe { kapi::toa_sk_user_data(sk) }) {
        Stashed::V4 { port, addr } => {
            // SAFETY: the caller guarantees `sin` is a writable sockaddr_in.
            let sin = unsafe { &mut *sin };
            sin.sin_port = port;
            sin.sin_addr = addr;
            stats::inc(Counter::GetnameToaOk);
        }
        // An IPv6 client cannot be shown in a sockaddr_in.
        Stashed::V6Record(_) => stats::inc(Counter::GetnameToaBypass),
        // Changed since entry (it cannot for toa's own words): leave it.
        Stashed::Empty | Stashed::Foreign => stats::inc(Counter::GetnameToaMismatch),
    }
}
