// SPDX-License-Identifier: GPL-2.0

//! `getpeername()` and `accept()`: answer with the recorded client.
//!
//! The glue hooks `inet_getname` and `inet6_getname`, which serve both
//! (accept asks for the peer with `peer == 2`): by default it redirects the
//! calls for TOA sockets to a wrapper (`glue/tcp_redirect.c`), otherwise it
//! probes them. On entry it lets sockets without `sk_user_data` go at once
//! and asks [`toa_getname_peek`] about the others; after the kernel's
//! function has run, [`toa_getname_v4`] or [`toa_getname_v6`] rewrites its
//! answer.

use crate::kapi::{self, Sock, SockaddrIn, SockaddrIn6};
use crate::stats::{self, Counter};
use crate::tcp::record::{self, Recorded};
use crate::tcp::stash::{self, Stashed};
use crate::tcp::wire::ClientAddr;
use core::ffi::c_uint;

/// The top byte of every word toa stores in `sk_user_data`, for the glue's
/// direct-call trampoline (`glue/tcp_redirect.c`), which lets a `getpeername()`
/// go on at once when the socket's word does not carry it.
#[no_mangle]
pub static TOA_STASH_TAG: u8 = stash::TAG;

/// Whether the peer address of `sk`, whose `sk_user_data` is set, is to be
/// rewritten; counts the sockets whose word is someone else's.
///
/// # Safety
///
/// `sk` must be a live socket for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_getname_peek(sk: *const Sock) -> bool {
    // SAFETY: the caller guarantees `sk` is live.
    match stash::decode(unsafe { kapi::toa_sk_user_data(sk) }) {
        // The glue lets sockets without sk_user_data go before asking.
        Stashed::Empty => false,
        Stashed::Foreign => {
            // SAFETY: the caller guarantees `sk` is live.
            unsafe { stats::inc_sk(sk, Counter::GetnameToaMismatch) };
            false
        }
        Stashed::V4 { .. } | Stashed::V6Record(_) => true,
    }
}

/// Put the client recorded on IPv4 socket `sk`, whose `sk_user_data` the
/// glue has just read as `word`, into `sin`, the peer address `inet_getname`
/// has just filled in. Returns the counter the glue bumps (inline: this is
/// every `getpeername()` of a TOA socket).
///
/// # Safety
///
/// `sk` must be a live socket and `sin` a writable `struct sockaddr_in`, for
/// the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_getname_v4(
    sk: *const Sock,
    word: usize,
    sin: *mut SockaddrIn,
) -> c_uint {
    // SAFETY: the caller guarantees `sk` is live.
    let counter = match unsafe { record::lookup_word(sk, word) } {
        Recorded::Client(ClientAddr::V4 { port, addr }) => {
            // SAFETY: the caller guarantees `sin` is a writable sockaddr_in.
            let sin = unsafe { &mut *sin };
            sin.sin_port = port;
            sin.sin_addr = addr;
            Counter::GetnameToaOk
        }
        // An IPv6 client cannot be shown in a sockaddr_in (NAT64): the
        // application asks with TOA_SO_GET_LOOKUP instead.
        Recorded::Client(ClientAddr::V6 { .. }) => Counter::GetnameToaBypass,
        Recorded::Empty | Recorded::Foreign | Recorded::Stale => Counter::GetnameToaMismatch,
    };
    counter as c_uint
}

/// Put the client recorded on IPv6 socket `sk`, whose `sk_user_data` the
/// glue has just read as `word`, into `sin6`, the peer address
/// `inet6_getname` has just filled in; an IPv4 client as `::ffff:a.b.c.d`.
/// Returns the counter the glue bumps.
///
/// # Safety
///
/// `sk` must be a live socket and `sin6` a writable `struct sockaddr_in6`,
/// for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_getname_v6(
    sk: *const Sock,
    word: usize,
    sin6: *mut SockaddrIn6,
) -> c_uint {
    // SAFETY: the caller guarantees `sk` is live.
    let (port, addr) = match unsafe { record::lookup_word(sk, word) } {
        Recorded::Client(client) => client.to_v6(),
        Recorded::Empty | Recorded::Foreign | Recorded::Stale => {
            return Counter::GetnameToaMismatch as c_uint;
        }
    };
    // SAFETY: the caller guarantees `sin6` is a writable sockaddr_in6.
    let sin6 = unsafe { &mut *sin6 };
    sin6.sin6_port = port;
    sin6.sin6_addr = addr;
    // The kernel derived the scope from its own peer address; the client's
    // is not on one of this host's links.
    sin6.sin6_scope_id = 0;
    Counter::GetnameToaOk as c_uint
}
