// SPDX-License-Identifier: GPL-2.0

//! `getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP)`: the client of any TCP
//! socket as an IPv6 address, for applications behind NAT64 whose IPv4
//! sockets cannot show an IPv6 client through `getpeername()`.
//!
//! The glue registers the option with netfilter's sockopt table and checks
//! the length and the socket type; this answers with what is recorded.

use core::ffi::c_int;

use kernel::error::code::ENOENT;

use crate::kapi::{Nat64Peer, Sock};
use crate::stats::{self, Counter};
use crate::tcp::record::{self, Recorded};

/// Fill `out` with the client recorded on TCP socket `sk`: 0, or `-ENOENT`
/// if none is (and `out` is left as it was).
///
/// # Safety
///
/// `sk` must be a live socket and `out` a writable [`Nat64Peer`], for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_lookup(sk: *const Sock, out: *mut Nat64Peer) -> c_int {
    // SAFETY: the caller guarantees `sk` is live.
    let (port, addr) = match unsafe { record::lookup(sk) } {
        Recorded::Client(client) => client.to_v6(),
        Recorded::Empty | Recorded::Foreign | Recorded::Stale => {
            // SAFETY: the caller guarantees `sk` is live.
            unsafe { stats::inc_sk(sk, Counter::LookupToaNone) };
            return ENOENT.to_errno();
        }
    };
    // SAFETY: the caller guarantees `out` is writable.
    let out = unsafe { &mut *out };
    out.saddr = addr;
    out.sport = port;
    out.pad = [0; 2];
    // SAFETY: the caller guarantees `sk` is live.
    unsafe { stats::inc_sk(sk, Counter::LookupToaOk) };
    0
}
