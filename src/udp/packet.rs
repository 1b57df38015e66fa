// SPDX-License-Identifier: GPL-2.0

//! What the UDP hooks do with a packet (the glue's protocol-level hooks in
//! `glue/udp_entry.c` or netfilter hooks in `glue/udp_nf.c`, for every
//! network namespace that trusts a balancer):
//!
//! - on receive (`udp_rcv`/`icmp_rcv`/protocol 248, or `PRE_ROUTING`
//!   after defragmentation, before conntrack and the filter tables),
//!   [`toa_udp_rx`]: an ICMP announcement records its
//!   flow; a UOA (in the IPv4 options of a UDP datagram, or in an option
//!   protocol header, which the glue then removes) records its flow; then a
//!   datagram of a live flow is shown as coming from its client;
//! - on send (`ip_send_skb`, or `POST_ROUTING` after NAT), [`toa_udp_tx`]: a datagram to a
//!   client with a live flow goes to the balancer's address and port
//!   instead, whether a local socket sent it or the namespace forwards it
//!   (a pod's reply behind the node's DNAT, the DNAT undone).
//!
//! Announcements are taken only from trusted sources (the balancer's local
//! address is the packet's source; `net.toa.trusted_sources`), and never
//! from the host itself (a packet that arrived on the loopback device or
//! carries a local source address, `local`): a local user's ping socket
//! can send an echo request shaped as an announcement to a local address,
//! and could otherwise make a flow that shows its datagrams to local
//! services as any client, and sends the host's replies to it. Both hooks
//! run in softirq or with softirqs off, in an RCU read-side critical
//! section: they allocate nothing and take at most a bucket lock.

use super::announce::{self, Parsed, Proto};
use super::flow_table::{Endpoint, FlowKey, Via};
use super::flows;
use super::uoa::{self, Options};
use crate::kapi::{UdpPacket, UdpVerdict};
use crate::policy::cidr::Source;
use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::tcp::wire::ClientAddr;

impl UdpPacket {
    /// The bytes at `hdr`.
    ///
    /// # Safety
    ///
    /// `hdr` must be NULL or point to `hdr_len` readable bytes for the
    /// lifetime of `self`.
    unsafe fn hdr(&self) -> &[u8] {
        if self.hdr.is_null() {
            &[]
        } else {
            // SAFETY: the caller guarantees `hdr_len` readable bytes.
            unsafe { core::slice::from_raw_parts(self.hdr, self.hdr_len as usize) }
        }
    }

    /// The settings of the packet's network namespace.
    ///
    /// # Safety
    ///
    /// `settings` must point to a live [`Settings`] for the lifetime of
    /// `self` (the glue's guarantee for the duration of a hook).
    unsafe fn settings(&self) -> &Settings {
        // SAFETY: the caller guarantees `settings` is live.
        unsafe { &*self.settings }
    }

    fn endpoint(&self, addr: &[u8; 16], port: [u8; 2]) -> Endpoint {
        if self.v6 {
            Endpoint::v6(*addr, port)
        } else {
            Endpoint::v4([addr[0], addr[1], addr[2], addr[3]], port)
        }
    }

    fn source(&self) -> Source {
        if self.v6 {
            Source::V6(self.saddr)
        } else {
            let s = &self.saddr;
            Source::V4([s[0], s[1], s[2], s[3]])
        }
    }

    /// The flow a datagram from its source to its destination belongs to.
    fn key(&self) -> FlowKey {
        FlowKey {
            net: self.net,
            proto: Proto::Udp,
            lip: self.endpoint(&self.saddr, self.sport),
            rs: self.endpoint(&self.daddr, self.dport),
        }
    }
}

/// Record the flow of `key` for `client` if the packet came from a trusted
/// balancer (never from the host itself); whether it was recorded.
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section, and
/// `p.settings` must be live.
unsafe fn record(p: &UdpPacket, key: &FlowKey, client: &ClientAddr, via: Via) -> bool {
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { p.settings() };
    if p.local {
        stats::inc(settings, Counter::UdpLocal);
        return false;
    }
    let trust = settings.trust();
    if !trust.trusted(&p.source()) {
        stats::inc(settings, Counter::UdpUntrusted);
        trust.untrusted_seen(&p.source());
        return false;
    }
    // SAFETY: the caller holds RCU.
    unsafe { flows::announce(settings, key, client, via, p.now_ms) }
}

/// An ICMP message: record the flow if it is an announcement; the flow's
/// backend port if one was recorded.
///
/// # Safety
///
/// As for [`toa_udp_rx`].
unsafe fn icmp(p: &UdpPacket) -> Option<[u8; 2]> {
    // SAFETY: the caller guarantees `hdr`.
    let msg = unsafe { p.hdr() };
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { p.settings() };
    let kinds = settings.options().rules().kinds;
    let a = match announce::parse(msg, p.msg_len as usize, &kinds) {
        Parsed::NotOurs => return None,
        Parsed::Bad(_) => {
            stats::inc(settings, Counter::CaIcmpBad);
            return None;
        }
        Parsed::Ok(a) => a,
    };
    let key = FlowKey {
        net: p.net,
        proto: a.proto,
        lip: p.endpoint(&p.saddr, a.lport),
        rs: p.endpoint(&p.daddr, a.rsport),
    };
    // SAFETY: the caller holds RCU; the settings are live (the caller).
    let recorded = unsafe { record(p, &key, &a.client, Via::Icmp) };
    if recorded {
        stats::inc(settings, Counter::CaIcmpOk);
    }
    recorded.then_some(a.rsport)
}

/// A packet on its way in.
///
/// # Safety
///
/// `p` must point to a valid [`UdpPacket`] whose `hdr` is NULL or
/// `hdr_len` readable bytes and whose `settings` are live, and `v` to a
/// writable [`UdpVerdict`], for the call; the caller must be in an RCU read-side critical section (a
/// netfilter hook).
#[no_mangle]
pub unsafe extern "C" fn toa_udp_rx(p: *const UdpPacket, v: *mut UdpVerdict) {
    // SAFETY: the caller guarantees both.
    let (p, v) = unsafe { (&*p, &mut *v) };
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { p.settings() };
    *v = UdpVerdict::default();
    let key = p.key();
    let mut recorded = false;
    match p.kind {
        UdpPacket::ICMP => {
            // SAFETY: the caller guarantees `hdr` and RCU.
            if let Some(rsport) = unsafe { icmp(p) } {
                v.active = true;
                v.recorded = true;
                v.rsport = rsport;
            }
            return;
        }
        UdpPacket::IPO => {
            // SAFETY: the caller guarantees `hdr`.
            match uoa::scan(unsafe { p.hdr() }) {
                Options::Found(client) => {
                    // SAFETY: the caller holds RCU; the settings are live.
                    recorded = unsafe { record(p, &key, &client, Via::Ipo) };
                    if recorded {
                        stats::inc(settings, Counter::UoaIpo);
                    }
                }
                Options::Bad(_) => stats::inc(settings, Counter::UoaBad),
                Options::Absent => {}
            }
        }
        UdpPacket::OPP => {
            // SAFETY: the caller guarantees `hdr`.
            match uoa::parse_opp(unsafe { p.hdr() }) {
                Ok(opp) => {
                    v.strip = opp.len as u16;
                    // SAFETY: the caller holds RCU; the settings are live.
                    recorded = unsafe { record(p, &key, &opp.client, Via::Opp) };
                    if recorded {
                        stats::inc(settings, Counter::UoaOpp);
                    }
                }
                Err(_) => {
                    stats::inc(settings, Counter::UoaBad);
                    return;
                }
            }
        }
        _ => {}
    }
    v.active = recorded;
    v.recorded = recorded;
    v.rsport = p.dport;
    // The host's own datagrams are never shown as a client's.
    if p.local || !settings.rewrite() || !(p.live || recorded) {
        return;
    }
    // SAFETY: the caller holds RCU.
    let Some((hit, refreshed)) = (unsafe { flows::receive(&key, p.now_ms) }) else {
        return;
    };
    v.active |= refreshed;
    if hit.peer.v6 != p.v6 {
        stats::inc(settings, Counter::UdpRxNat64);
        return;
    }
    v.rewrite = true;
    v.addr = hit.peer.addr;
    v.port = hit.peer.port;
    stats::inc(settings, Counter::UdpRxRewrite);
}

/// A datagram on its way out: to a client with a live flow, it goes back
/// through the balancer.
///
/// # Safety
///
/// As for [`toa_udp_rx`].
#[no_mangle]
pub unsafe extern "C" fn toa_udp_tx(p: *const UdpPacket, v: *mut UdpVerdict) {
    // SAFETY: the caller's guarantees.
    unsafe { tx(p, v, false) }
}

/// A datagram a socket is about to send (`udp_sendmsg`), to the
/// destination its sender named (`p.daddr`, `p.dport`), from `p.sport` and
/// `p.saddr` (all zero: a socket bound to no address, which does not know
/// its source yet): the balancer address to name instead, so that the
/// kernel builds and routes the datagram for the balancer itself. Answers
/// only when one flow's way back fits; several (`ambiguous`): the
/// datagram's own hook decides, with its source known.
///
/// # Safety
///
/// As for [`toa_udp_rx`].
#[no_mangle]
pub unsafe extern "C" fn toa_udp_tx_named(p: *const UdpPacket, v: *mut UdpVerdict) {
    // SAFETY: the caller's guarantees.
    unsafe { tx(p, v, true) }
}

/// [`toa_udp_tx`] for a datagram built, [`toa_udp_tx_named`] for one
/// about to be (`named`).
///
/// # Safety
///
/// As for [`toa_udp_rx`].
#[inline(always)]
unsafe fn tx(p: *const UdpPacket, v: *mut UdpVerdict, named: bool) {
    // SAFETY: the caller guarantees both.
    let (p, v) = unsafe { (&*p, &mut *v) };
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { p.settings() };
    *v = UdpVerdict::default();
    if !settings.rewrite() {
        return;
    }
    let rs = p.endpoint(&p.saddr, p.sport);
    let client = p.endpoint(&p.daddr, p.dport);
    let found = if named {
        // SAFETY: the caller holds RCU.
        unsafe { flows::send_named(p.net, &rs, p.saddr == [0; 16], &client, p.now_ms) }
    } else {
        // SAFETY: the caller holds RCU.
        unsafe { flows::send(p.net, &rs, &client, p.now_ms) }
    };
    let Some((hit, refreshed)) = found else {
        return;
    };
    let ambiguous = hit.matches > 1;
    if named && ambiguous {
        v.ambiguous = true;
        return;
    }
    v.active = refreshed;
    v.rewrite = true;
    v.addr = hit.peer.addr;
    v.port = hit.peer.port;
    stats::inc(settings, Counter::UdpTxRewrite);
    if ambiguous {
        stats::inc(settings, Counter::UdpTxAmbiguous);
    }
}

/// An IP fragment of a UDP or option protocol packet was left alone, in
/// the namespace whose settings are `s`.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] for the call.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_fragment(s: *const Settings) {
    // SAFETY: the caller guarantees `s` is live.
    stats::inc(unsafe { &*s }, Counter::UdpFragment);
}
