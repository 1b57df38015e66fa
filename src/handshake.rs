// SPDX-License-Identifier: GPL-2.0

//! A new child socket: find the client in the handshake and record it.
//!
//! Called by the glue's return probes on `tcp_v4_syn_recv_sock` and
//! `tcp_v6_syn_recv_sock`, which the kernel runs when the packet completing a
//! handshake reaches a listener: on the normal path (`tcp_check_req`), the
//! syncookie path (`cookie_v4_check`/`cookie_v6_check`), and for IPv4
//! clients of dual-stack listeners (IPv4 packets are seen once, by the IPv4
//! probe). It runs in softirq with the child locked and not yet visible to
//! userspace: it must not sleep or allocate with `GFP_KERNEL`; IPv4 clients
//! need no allocation, IPv6 clients one `GFP_ATOMIC` record.

use crate::cidr::Source;
use crate::config;
use crate::kapi::{Handshake, Sock};
use crate::record;
use crate::stats::{self, Counter};
use crate::trust;
use crate::wire::{self, Scan};

impl Handshake {
    /// The packet's source address: the balancer, as the backend sees it.
    fn source(&self) -> Source {
        if self.v6 {
            Source::V6(self.saddr)
        } else {
            let s = &self.saddr;
            Source::V4([s[0], s[1], s[2], s[3]])
        }
    }
}

/// Record the client of the connection `child` was created for.
///
/// # Safety
///
/// `child` must be a live socket the caller holds (locked, as the kernel
/// holds it in `tcp_v4_syn_recv_sock`), and `hs` must point to a valid
/// [`Handshake`] whose `options` are `options_len` readable bytes, for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_on_child(child: *mut Sock, hs: *const Handshake) {
    // SAFETY: the caller guarantees `hs` is valid for the call.
    let hs = unsafe { &*hs };
    let len = (hs.options_len as usize).min(wire::MAX_OPTIONS_LEN);
    let options = if hs.options.is_null() {
        &[][..]
    } else {
        // SAFETY: the caller guarantees `options_len` readable bytes, and
        // `len` is not more than that.
        unsafe { core::slice::from_raw_parts(hs.options, len) }
    };

    let client = match wire::scan(options, config::kinds()) {
        Scan::Found(_) if hs.syn => {
            stats::inc(Counter::ToaSynIgnored);
            None
        }
        Scan::Found(client) if trust::trusted(&hs.source()) => Some(client),
        Scan::Found(_) => {
            stats::inc(Counter::ToaUntrusted);
            None
        }
        Scan::Absent => None,
        Scan::Malformed(_) => {
            stats::inc(Counter::ToaMalformed);
            None
        }
    };
    let recorded = match client {
        // SAFETY: the caller guarantees `child` is live, held and not yet
        // visible to userspace.
        Some(client) => unsafe { record::store(child, client) },
        None => false,
    };
    stats::inc(if recorded {
        Counter::SynRecvSockToa
    } else {
        Counter::SynRecvSockNoToa
    });
}
