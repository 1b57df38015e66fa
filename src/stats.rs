// SPDX-License-Identifier: GPL-2.0

//! The counters of `/proc/net/toa_stats`.
//!
//! The names are the ones existing TOA deployments already watch. The values
//! are per-CPU `u64`s kept by the C glue for each network namespace
//! ([`kapi::toa_stat_add`]); this file owns their names and order, and the
//! glue asks for them by index. An event is counted in the namespace it
//! happened in: the one whose settings decided it ([`inc`]), or the
//! socket's ([`inc_sk`]); what belongs to no namespace (the shared tables'
//! upkeep) is counted as the host's ([`host`]).

use core::ffi::{c_char, c_uint};

use crate::kapi::{self, Sock};
use crate::settings::Settings;

/// Every counter toa keeps, in the order `/proc/net/toa_stats` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    /// A child socket was created and its client recorded (from its own
    /// packet or from the handshake table).
    SynRecvSockToa,
    /// A child socket was created without a usable client (no option, a
    /// malformed or untrusted one, nothing in the handshake table, or a
    /// socket already owned).
    SynRecvSockNoToa,
    /// getpeername/accept answered with the recorded client.
    GetnameToaOk,
    /// The socket's `sk_user_data` belongs to someone else: left untouched.
    GetnameToaMismatch,
    /// A client is recorded but the socket cannot show it (an IPv6 client on
    /// an IPv4 socket: use the TOA_SO_GET_LOOKUP getsockopt).
    GetnameToaBypass,
    /// The handshake's option list was not well formed, or its TOA option had
    /// a wrong length, port 0 or the unspecified address.
    ToaMalformed,
    /// A TOA option was found but the child's `sk_user_data` was already set
    /// (inherited from the listener): not overwritten, client not recorded.
    ToaUserDataBusy,
    /// A Fast Open child (data in the SYN) got the SYN's client.
    ToaFastopen,
    /// An IPv6 client record was allocated (one per IPv6-client socket).
    Ip6AddressAlloc,
    /// An IPv6 client record was freed (socket destroyed, record refused,
    /// or toa unloaded). Equals `ip6_address_alloc` once those sockets are gone.
    Ip6AddressFree,
    /// No IPv6 client record could be had (out of memory): client not recorded.
    Ip6AddressAllocFailed,
    /// TOA_SO_GET_LOOKUP answered with the client.
    LookupToaOk,
    /// TOA_SO_GET_LOOKUP on a TCP socket without a client: ENOENT.
    LookupToaNone,
    /// A TOA option from a source not in `trusted_sources` (or while the
    /// list is not set): ignored.
    ToaUntrusted,
    /// A client named by a SYN (or by a handshake ACK a `TCP_DEFER_ACCEPT`
    /// listener held back) was put in the handshake table.
    ToaSynRecorded,
    /// A new socket got its client from the handshake table (its completing
    /// packet named none).
    ToaSynUsed,
    /// A table entry gave way to a later client of the same handshake (the
    /// completing packet's own, or a deferred ACK's).
    ToaSynReplaced,
    /// A table entry older than the table's age limit was dropped: its
    /// handshake never completed.
    ToaSynExpired,
    /// A live table entry was dropped for a newer one (bucket full: more
    /// handshakes in flight than the table holds, or a SYN flood).
    ToaSynEvicted,
    /// A client named in a handshake of a namespace other than the host's
    /// was not kept: the namespaces other than the host's hold at most half
    /// of each bucket, and never push out another namespace's entries.
    ToaSynShareFull,
    /// A handshake ACK held back by a `TCP_DEFER_ACCEPT` listener named a
    /// client: kept in the table for the socket the data will create.
    ToaAckDeferred,
    /// A handshake completed through a syncookie with no client from either
    /// its own packet or the table.
    ToaSyncookieNoToa,
    /// A client recorded from Alibaba Cloud CDN's option (28/7, 28/19).
    ToaCdn,
    /// A client recorded from a 16-byte option (client and VIP).
    ToaVip,
    /// A TCP socket whose handshake named no client got it from an ip_vs_ca
    /// announcement with protocol 6.
    ToaIcmpUsed,
    /// An ip_vs_ca ICMP announcement was taken (a flow recorded or
    /// refreshed).
    CaIcmpOk,
    /// An ICMP echo request framed as an announcement was refused: wrong
    /// size, checksum, protocol, opcode (not a configured kind), option
    /// size, or a zero port or address.
    CaIcmpBad,
    /// An announcement or UOA from a source not in `trusted_sources` (or
    /// while the list is not set): ignored (an opp packet is still handed
    /// on as plain UDP).
    UdpUntrusted,
    /// A UOA taken from the IPv4 options of a UDP packet (`ipo`).
    UoaIpo,
    /// A UOA taken from an option protocol (248) header (`opp`), the packet
    /// handed on as plain UDP.
    UoaOpp,
    /// A UOA option or option protocol header that does not parse: ignored
    /// (an unparsable opp packet is left to the kernel, which drops it).
    UoaBad,
    /// A flow was recorded in the flow table.
    UdpFlowNew,
    /// A live flow gave way to a new client for the same balancer port.
    UdpFlowReplaced,
    /// An expired flow left the table (its slot taken, or its network
    /// namespace gone).
    UdpFlowExpired,
    /// A live flow was pushed out of a full bucket (more flows than the
    /// table holds: raise `udp_max_flows`).
    UdpFlowEvicted,
    /// A flow announced in a namespace other than the host's was not
    /// recorded: the namespaces other than the host's hold at most half of
    /// each bucket, and never push out another namespace's flows.
    UdpShareFull,
    /// A datagram from a balancer shown to applications as from its client.
    UdpRxRewrite,
    /// A datagram to a client sent back through the balancer instead.
    UdpTxRewrite,
    /// A datagram to a client behind several balancer addresses: sent
    /// through the one seen most recently.
    UdpTxAmbiguous,
    /// A datagram whose client cannot be written into it (an IPv6 client of
    /// an IPv4 flow, NAT64): left as it is; the UOA lookup answers.
    UdpRxNat64,
    /// An IP fragment of a UDP or option protocol packet: left alone (the
    /// kernel reassembles it later, without toa).
    UdpFragment,
    /// `UOA_SO_GET_LOOKUP` answered.
    UoaLookupOk,
    /// `UOA_SO_GET_LOOKUP` found no flow: ENOENT.
    UoaLookupNone,
    /// A TCP packet from the host itself (loopback) named a client, or a
    /// local connection could have been named by an announcement: ignored,
    /// whatever `trusted_sources` says.
    ToaLocal,
    /// An announcement or UOA from the host itself (loopback, or a local
    /// source address): ignored, whatever `trusted_sources` says.
    UdpLocal,
    /// Client options naming different clients in one packet, or in the
    /// SYN and the completing packet, or one in a packet where
    /// `tcpopt_packet` says the balancer puts none: one is not the
    /// balancer's (a client naming itself); the rule's one was taken.
    ToaConflict,
    /// A TOA socket joined a BPF socket map: toa's word was parked beside
    /// it (`tcp/park.rs`), the client still shown.
    ToaSockmapParked,
    /// A TOA socket could not be parked for a BPF socket map (no memory):
    /// the map refused it (`EBUSY`), as without this support.
    ToaSockmapParkFailed,
}

// The glue's direct getname path (internal.h, TOA_GETNAME_ANSWERED) tells
// an answered call by this counter's number.
const _: () = assert!(Counter::GetnameToaOk as u32 == 2);
// The glue counts these itself (internal.h, TOA_COUNTER_*): the children
// whose client it stores, and those toa_child_quick settles.
const _: () = assert!(Counter::SynRecvSockToa as u32 == 0);
const _: () = assert!(Counter::SynRecvSockNoToa as u32 == 1);
const _: () = assert!(Counter::ToaUserDataBusy as u32 == 6);
const _: () = assert!(Counter::ToaSyncookieNoToa as u32 == 21);

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 48] = [
        Counter::SynRecvSockToa,
        Counter::SynRecvSockNoToa,
        Counter::GetnameToaOk,
        Counter::GetnameToaMismatch,
        Counter::GetnameToaBypass,
        Counter::ToaMalformed,
        Counter::ToaUserDataBusy,
        Counter::ToaFastopen,
        Counter::Ip6AddressAlloc,
        Counter::Ip6AddressFree,
        Counter::Ip6AddressAllocFailed,
        Counter::LookupToaOk,
        Counter::LookupToaNone,
        Counter::ToaUntrusted,
        Counter::ToaSynRecorded,
        Counter::ToaSynUsed,
        Counter::ToaSynReplaced,
        Counter::ToaSynExpired,
        Counter::ToaSynEvicted,
        Counter::ToaSynShareFull,
        Counter::ToaAckDeferred,
        Counter::ToaSyncookieNoToa,
        Counter::ToaCdn,
        Counter::ToaVip,
        Counter::ToaIcmpUsed,
        Counter::CaIcmpOk,
        Counter::CaIcmpBad,
        Counter::UdpUntrusted,
        Counter::UoaIpo,
        Counter::UoaOpp,
        Counter::UoaBad,
        Counter::UdpFlowNew,
        Counter::UdpFlowReplaced,
        Counter::UdpFlowExpired,
        Counter::UdpFlowEvicted,
        Counter::UdpShareFull,
        Counter::UdpRxRewrite,
        Counter::UdpTxRewrite,
        Counter::UdpTxAmbiguous,
        Counter::UdpRxNat64,
        Counter::UdpFragment,
        Counter::UoaLookupOk,
        Counter::UoaLookupNone,
        Counter::ToaLocal,
        Counter::UdpLocal,
        Counter::ToaConflict,
        Counter::ToaSockmapParked,
        Counter::ToaSockmapParkFailed,
    ];

    /// The row name, NUL-terminated for C.
    const fn name(self) -> &'static [u8] {
        match self {
            Counter::SynRecvSockToa => b"syn_recv_sock_toa\0",
            Counter::SynRecvSockNoToa => b"syn_recv_sock_no_toa\0",
            Counter::GetnameToaOk => b"getname_toa_ok\0",
            Counter::GetnameToaMismatch => b"getname_toa_mismatch\0",
            Counter::GetnameToaBypass => b"getname_toa_bypass\0",
            Counter::ToaMalformed => b"toa_malformed\0",
            Counter::ToaUserDataBusy => b"toa_user_data_busy\0",
            Counter::ToaFastopen => b"toa_fastopen\0",
            Counter::Ip6AddressAlloc => b"ip6_address_alloc\0",
            Counter::Ip6AddressFree => b"ip6_address_free\0",
            Counter::Ip6AddressAllocFailed => b"ip6_address_alloc_failed\0",
            Counter::LookupToaOk => b"lookup_toa_ok\0",
            Counter::LookupToaNone => b"lookup_toa_none\0",
            Counter::ToaUntrusted => b"toa_untrusted\0",
            Counter::ToaSynRecorded => b"toa_syn_recorded\0",
            Counter::ToaSynUsed => b"toa_syn_used\0",
            Counter::ToaSynReplaced => b"toa_syn_replaced\0",
            Counter::ToaSynExpired => b"toa_syn_expired\0",
            Counter::ToaSynEvicted => b"toa_syn_evicted\0",
            Counter::ToaSynShareFull => b"toa_syn_share_full\0",
            Counter::ToaAckDeferred => b"toa_ack_deferred\0",
            Counter::ToaSyncookieNoToa => b"toa_syncookie_no_toa\0",
            Counter::ToaCdn => b"toa_cdn\0",
            Counter::ToaVip => b"toa_vip\0",
            Counter::ToaIcmpUsed => b"toa_icmp_used\0",
            Counter::CaIcmpOk => b"ca_icmp_ok\0",
            Counter::CaIcmpBad => b"ca_icmp_bad\0",
            Counter::UdpUntrusted => b"udp_untrusted\0",
            Counter::UoaIpo => b"uoa_ipo\0",
            Counter::UoaOpp => b"uoa_opp\0",
            Counter::UoaBad => b"uoa_bad\0",
            Counter::UdpFlowNew => b"udp_flow_new\0",
            Counter::UdpFlowReplaced => b"udp_flow_replaced\0",
            Counter::UdpFlowExpired => b"udp_flow_expired\0",
            Counter::UdpFlowEvicted => b"udp_flow_evicted\0",
            Counter::UdpShareFull => b"udp_share_full\0",
            Counter::UdpRxRewrite => b"udp_rx_rewrite\0",
            Counter::UdpTxRewrite => b"udp_tx_rewrite\0",
            Counter::UdpTxAmbiguous => b"udp_tx_ambiguous\0",
            Counter::UdpRxNat64 => b"udp_rx_nat64\0",
            Counter::UdpFragment => b"udp_fragment\0",
            Counter::UoaLookupOk => b"uoa_lookup_ok\0",
            Counter::UoaLookupNone => b"uoa_lookup_none\0",
            Counter::ToaLocal => b"toa_local\0",
            Counter::UdpLocal => b"udp_local\0",
            Counter::ToaConflict => b"toa_conflict\0",
            Counter::ToaSockmapParked => b"toa_sockmap_parked\0",
            Counter::ToaSockmapParkFailed => b"toa_sockmap_park_failed\0",
        }
    }
}

// The index of a counter is its position in `Counter::ALL`.
const _: () = {
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i] as usize == i);
        i += 1;
    }
};

/// Count `n` events on this CPU, in the namespace whose settings are `s`.
pub fn add(s: &Settings, counter: Counter, n: u64) {
    // SAFETY: `s` is live for the call (a reference); the glue counts in
    // the namespace that holds it, or as the host's when `s` is no
    // namespace's (the load-time values). Any index is accepted
    // (out-of-range ones are ignored) and every context may call it.
    unsafe { kapi::toa_stat_add(core::ptr::from_ref(s).cast(), counter as c_uint, n) }
}

/// Count one event on this CPU, in the namespace whose settings are `s`.
#[inline]
pub fn inc(s: &Settings, counter: Counter) {
    add(s, counter, 1)
}

/// Count `n` events that belong to no namespace as the host's.
pub fn host_add(counter: Counter, n: u64) {
    // SAFETY: NULL asks for the host's counters; see `add`.
    unsafe { kapi::toa_stat_add(core::ptr::null(), counter as c_uint, n) }
}

/// Count one event that belongs to no namespace as the host's.
pub fn host(counter: Counter) {
    host_add(counter, 1)
}

/// Count one event in the namespace of socket `sk`.
///
/// # Safety
///
/// `sk` must be a live socket (or one in its destructor) for the call.
pub unsafe fn inc_sk(sk: *const Sock, counter: Counter) {
    // SAFETY: the caller guarantees `sk`; any index is accepted.
    unsafe { kapi::toa_sk_stat_add(sk, counter as c_uint, 1) }
}

/// How many counters there are.
#[no_mangle]
pub extern "C" fn toa_stat_count() -> c_uint {
    Counter::ALL.len() as c_uint
}

/// The NUL-terminated name of counter `index`, or NULL past the last.
#[no_mangle]
pub extern "C" fn toa_stat_name(index: c_uint) -> *const c_char {
    match Counter::ALL.get(index as usize) {
        Some(c) => c.name().as_ptr().cast(),
        None => core::ptr::null(),
    }
}
