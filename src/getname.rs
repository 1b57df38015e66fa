// SPDX-License-Identifier: GPL-2.0

//! `getpeername()` and `accept()`: answer with the recorded client.
//!
//! The glue probes `inet_getname` and `inet6_getname`, which serve both
//! (accept asks for the peer with `peer == 2`). On entry it asks [`toa_getname_peek`] whether the
//! socket carries a client at all, so sockets without one pay only that
//! check; on return [`toa_getname_v4`] or [`toa_getname_v6`] rewrites the
//! kernel's answer.

use crate::kapi::{self, Sock, SockaddrIn, SockaddrIn6};
use crate::record::{self, Recorded};
use crate::stash::{self, Stashed};
use crate::stats::{self, Counter};
use crate::wire::ClientAddr;

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
    match unsafe { record::lookup(sk) } {
        Recorded::Client(ClientAddr::V4 { port, addr }) => {
            // SAFETY: the caller guarantees `sin` is a writable sockaddr_in.
            let sin = unsafe { &mut *sin };
            sin.sin_port = port;
            sin.sin_addr = addr;
            stats::inc(Counter::GetnameToaOk);
        }
        // An IPv6 client cannot be shown in a sockaddr_in (NAT64): the
        // application asks with TOA_SO_GET_LOOKUP instead.
        Recorded::Client(ClientAddr::V6 { .. }) => stats::inc(Counter::GetnameToaBypass),
        Recorded::Empty | Recorded::Foreign | Recorded::Stale => {
            stats::inc(Counter::GetnameToaMismatch)
        }
    }
}

/// Put the client recorded on IPv6 socket `sk` into `sin6`, the peer address
/// `inet6_getname` has just filled in; an IPv4 client as `::ffff:a.b.c.d`.
///
/// # Safety
///
/// `sk` must be a live socket and `sin6` a writable `struct sockaddr_in6`,
/// for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_getname_v6(sk: *const Sock, sin6: *mut SockaddrIn6) {
    // SAFETY: the caller guarantees `sk` is live.
    let (port, addr) = match unsafe { record::lookup(sk) } {
        Recorded::Client(client) => client.to_v6(),
        Recorded::Empty | Recorded::Foreign | Recorded::Stale => {
            stats::inc(Counter::GetnameToaMismatch);
            return;
        }
    };
    // SAFETY: the caller guarantees `sin6` is a writable sockaddr_in6.
    let sin6 = unsafe { &mut *sin6 };
    sin6.sin6_port = port;
    sin6.sin6_addr = addr;
    // The kernel derived the scope from its own peer address; the client's
    // is not on one of this host's links.
    sin6.sin6_scope_id = 0;
    stats::inc(Counter::GetnameToaOk);
}
