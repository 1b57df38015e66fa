// SPDX-License-Identifier: GPL-2.0

//! A new child socket: find its client and record it.
//!
//! For the kernel's `tcp_v4_syn_recv_sock` and `tcp_v6_syn_recv_sock`,
//! which it runs when the packet completing a handshake reaches a
//! listener: on the normal path (`tcp_check_req`), the syncookie path
//! (`cookie_v4_check`/`cookie_v6_check`), for a Fast Open SYN carrying data
//! (`tcp_try_fastopen`: the packet is the SYN itself), and for IPv4 clients
//! of dual-stack listeners (IPv4 packets are seen once, by the IPv4
//! function's hook). At their entry the glue asks [`toa_child_word_v4`]
//! (what balancers send: the word to store, decided from the packet alone)
//! and [`toa_child_quick`] (nothing can name a client); once the child
//! exists (the glue's hook on `__inet_inherit_port`, or a wrapper, or a
//! return probe) it stores that word or asks [`toa_on_child`]. Both run in
//! softirq, the child locked and not yet visible to userspace: they must
//! not sleep or allocate with `GFP_KERNEL`; IPv4 clients need no
//! allocation, IPv6 clients one `GFP_ATOMIC` record.
//!
//! The client is the one the packet's own options name; if they name none,
//! the one an earlier packet of the handshake named ([`crate::tcp::syn`]); if
//! none did, the one an ip_vs_ca ICMP announcement with protocol 6 named
//! for the connection ([`crate::udp`]). A packet from the host itself (it
//! arrived on the loopback device) names no client, whatever
//! `trusted_sources` says: local users are not the balancer.

use crate::kapi::{Handshake, Sock};
use crate::policy::cidr::Source;
use crate::policy::config::{self, NamedIn};
use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::tcp::record;
use crate::tcp::stash;
use crate::tcp::syn;
use crate::tcp::wire::{self, ClientAddr, Format, Found, Packet, Scan};
use crate::udp;

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

    /// The settings of the packet's network namespace.
    ///
    /// # Safety
    ///
    /// `settings` must point to a live [`Settings`] for the lifetime of
    /// `self` (the glue's guarantee for the duration of a call).
    pub(crate) unsafe fn settings(&self) -> &Settings {
        // SAFETY: the caller guarantees `settings` is live.
        unsafe { &*self.settings }
    }

    /// The packet's TCP options.
    ///
    /// # Safety
    ///
    /// `options` must be NULL or point to `options_len` readable bytes for
    /// the lifetime of `self`.
    unsafe fn options(&self) -> &[u8] {
        if self.options.is_null() {
            &[]
        } else {
            // SAFETY: the caller guarantees `options_len` readable bytes.
            unsafe { option_bytes(self.options, self.options_len as usize) }
        }
    }
}

/// The client the options of `hs` name, read as a `packet`, if it is usable
/// and its source trusted; counts why not otherwise.
///
/// # Safety
///
/// `hs.options` must be NULL or point to `hs.options_len` readable bytes,
/// and `hs.settings` to a live [`Settings`].
pub(crate) unsafe fn own_client(hs: &Handshake, packet: Packet) -> Option<Found> {
    // SAFETY: the caller guarantees the options are readable.
    let options = unsafe { hs.options() };
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { hs.settings() };
    let o = settings.options();
    let picked = wire::scan_pick(options, &o.rules(), packet, hs.sport, o.pick());
    // Whether the packet names anyone: a client option, or several that
    // disagree (`tcpopt_position=only`: then nobody, counted).
    let named = matches!(picked.scan, Scan::Found(_)) || picked.conflict;
    match picked.scan {
        // The host's own processes are not the balancer, whatever the list.
        _ if named && hs.local => {
            stats::inc(settings, Counter::ToaLocal);
            None
        }
        _ if named && !settings.trust().trusted(&hs.source()) => {
            stats::inc(settings, Counter::ToaUntrusted);
            settings.trust().untrusted_seen(&hs.source());
            None
        }
        Scan::Found(found) => {
            // Options naming different clients: the one at the balancer's
            // position (`tcpopt_position`) is taken, the others counted.
            if picked.conflict {
                stats::inc(settings, Counter::ToaConflict);
            }
            Some(found)
        }
        Scan::Absent => {
            if picked.conflict {
                stats::inc(settings, Counter::ToaConflict);
            }
            None
        }
        Scan::Malformed(_) => {
            stats::inc(settings, Counter::ToaMalformed);
            None
        }
    }
}

/// The option list at `options`, `len` bytes long (at most
/// [`wire::MAX_OPTIONS_LEN`] of them are read).
///
/// # Safety
///
/// `options` must point to `len` readable bytes for the lifetime `'a`.
#[inline(always)]
unsafe fn option_bytes<'a>(options: *const u8, len: usize) -> &'a [u8] {
    // SAFETY: the caller guarantees `len` readable bytes, and no more are
    // taken.
    unsafe { core::slice::from_raw_parts(options, len.min(wire::MAX_OPTIONS_LEN)) }
}

/// Whether a handshake packet's `options` may name anyone in any
/// namespace ([`wire::may_name`] under [`config::any_rules`]): the glue's
/// first test on a SYN or a held-back ACK, before it gathers the packet's
/// facts. Callable in softirq.
///
/// # Safety
///
/// `options` must point to `len` readable bytes for the call.
#[no_mangle]
pub unsafe extern "C" fn toa_options_may_name(options: *const u8, len: usize) -> bool {
    // SAFETY: the caller guarantees `len` readable bytes.
    unsafe { may_name(options, len) }
}

/// [`toa_options_may_name`], inlined where Rust asks it.
///
/// # Safety
///
/// `options` must point to `len` readable bytes for the call.
#[inline(always)]
unsafe fn may_name(options: *const u8, len: usize) -> bool {
    // SAFETY: the caller guarantees `len` readable bytes.
    let options = unsafe { option_bytes(options, len) };
    wire::may_name_lazy(options, config::any_kinds_word0(), config::any_rules)
}

/// [`toa_child_quick`]'s answer: the child can have no client (the glue
/// counts [`Counter::SynRecvSockNoToa`]).
pub const QUICK_NO_CLIENT: u32 = 1;
/// [`toa_child_quick`]'s answer's flag: the child is a syncookie's, for a
/// packet from another host (the glue also counts
/// [`Counter::ToaSyncookieNoToa`]).
pub const QUICK_SYNCOOKIE: u32 = 2;

// The glue tells the answers by these numbers (internal.h,
// TOA_QUICK_*).
const _: () = assert!(QUICK_NO_CLIENT == 1 && QUICK_SYNCOOKIE == 2);

/// The quick path of [`toa_on_child`]: when the packet creating `child`
/// cannot name anyone (no option of a kind any namespace takes, a
/// well-formed list) and no table can hold a client for it (no handshake
/// entry put, and for a packet from another host no protocol-6 flow
/// recorded, within their lifetimes), the child has no client:
/// [`QUICK_NO_CLIENT`], with [`QUICK_SYNCOOKIE`] for a syncookie's child
/// from another host; the glue counts them as [`toa_on_child`] counts
/// such a child (inline, where the call was made: a call saved on every
/// new connection). Otherwise 0: the caller takes the whole path.
/// Callable in softirq.
///
/// # Safety
///
/// `options` must point to `len` readable bytes for the call.
#[no_mangle]
pub unsafe extern "C" fn toa_child_quick(
    options: *const u8,
    len: usize,
    local: bool,
    v6: bool,
    syncookie: bool,
    now_ms: u64,
) -> u32 {
    // SAFETY: the caller guarantees `len` readable bytes.
    if unsafe { may_name(options, len) }
        || syn::may_hold(now_ms)
        || (!local && !v6 && udp::flows::tcp_may_hold(now_ms))
    {
        return 0;
    }
    if syncookie && !local {
        QUICK_NO_CLIENT | QUICK_SYNCOOKIE
    } else {
        QUICK_NO_CLIENT
    }
}

/// The word to record on the child the kernel is about to make for an IPv4
/// handshake ACK from another host (not a SYN: no Fast Open child; the
/// glue asks before [`toa_child_quick`]), whose `options` are one TOA option
/// naming a usable client ([`wire::lone_ack_client_v4`]: what balancers
/// send), from `saddr` (the packet's source, network order), in the
/// namespace whose settings are `settings`: when that client is trusted,
/// the namespace takes the completing packet's client, and the handshake
/// table holds nothing, the child's client is that one, whatever else
/// [`toa_on_child`] would look at, and the glue stores the word itself
/// once the child exists (counting as [`toa_on_child`] counts). 0
/// otherwise: [`toa_on_child`] decides. Callable in softirq.
///
/// # Safety
///
/// `settings` must point to a live [`Settings`], and `options` to `len`
/// readable bytes, for the call.
#[no_mangle]
pub unsafe extern "C" fn toa_child_word_v4(
    settings: *const Settings,
    options: *const u8,
    len: usize,
    saddr: u32,
    now_ms: u64,
) -> usize {
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { &*settings };
    let (o, trust) = settings.options_and_trust();
    // SAFETY: the caller guarantees `len` readable bytes.
    let options = unsafe { option_bytes(options, len) };
    // The kinds read where they are (no copy of the set).
    match wire::lone_ack_client_v4(options, o) {
        // The SYN's client only: the ACK's option is the client's own.
        Some(_) if o.named_in() == NamedIn::Syn => 0,
        // A SYN or held-back ACK may have named someone (agreeing or not).
        Some(_) if syn::may_hold(now_ms) => 0,
        Some(_) if !trust.trusted_v4(saddr.to_ne_bytes()) => 0,
        Some(ClientAddr::V4 { port, addr }) => stash::encode_v4(port, addr),
        _ => 0,
    }
}

/// Record the client of the connection `child` was created for.
///
/// # Safety
///
/// `child` must be a live socket the caller holds (locked, as the kernel
/// holds it in `tcp_v4_syn_recv_sock`), and `hs` must point to a valid
/// [`Handshake`] whose `options` are `options_len` readable bytes and whose
/// `settings` are live, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn toa_on_child(child: *mut Sock, hs: *const Handshake) {
    // SAFETY: the caller guarantees `hs` is valid for the call.
    let hs = unsafe { &*hs };
    // A Fast Open child is created from the SYN itself.
    let packet = if hs.syn { Packet::Syn } else { Packet::Ack };
    // SAFETY: the caller guarantees the settings are live.
    let settings = unsafe { hs.settings() };
    let from = settings.options().named_in();
    // The packet's own client, unless it is a packet where the balancer
    // puts none (a SYN when it names the client after the SYN).
    let own = if from == NamedIn::Ack && hs.syn {
        None
    } else {
        // SAFETY: the caller guarantees the options are readable.
        unsafe { own_client(hs, packet) }
    };
    // The table's entry is taken either way: it is this connection's, and
    // its socket exists now.
    // SAFETY: the caller guarantees the settings are live.
    let (kept, kept_conflict) = unsafe { syn::take(hs) };
    // Two packets naming two clients: one is not the balancer's (under
    // `agree`, the table's entry already names nobody when the two were a
    // SYN and a held-back ACK: counted when it was marked).
    let mut disagree = kept_conflict;
    if let (Some(o), Some(k)) = (own, kept) {
        if o.client != k.client {
            stats::inc(settings, Counter::ToaConflict);
            disagree = true;
        }
    }
    // A balancer that names the client in the SYN only: the completing
    // packet's option is the client's own (counted above when it differs
    // from the SYN's, or here when the SYN named nobody).
    let own = if from == NamedIn::Syn && !hs.syn {
        if own.is_some() && kept.is_none() {
            stats::inc(settings, Counter::ToaConflict);
        }
        None
    } else {
        own
    };
    // Under `agree`, packets that disagree name nobody.
    let nobody = from == NamedIn::Agree && disagree;
    let (own, kept) = if nobody { (None, None) } else { (own, kept) };
    let client = match (own, kept) {
        (Some(found), Some(_)) => {
            // A Fast Open child's entry is its own SYN's: used, not replaced.
            stats::inc(
                settings,
                if hs.syn {
                    Counter::ToaSynUsed
                } else {
                    Counter::ToaSynReplaced
                },
            );
            Some(found)
        }
        (Some(found), None) => Some(found),
        (None, Some(found)) => {
            stats::inc(settings, Counter::ToaSynUsed);
            Some(found)
        }
        // Nothing in the handshake: an ip_vs_ca announcement with protocol
        // 6 may have named the client before the SYN (never for a
        // connection from the host itself).
        (None, None) if hs.local || nobody => None,
        (None, None) => match udp::flows::tcp_client(hs) {
            Some(found) => {
                stats::inc(settings, Counter::ToaIcmpUsed);
                Some(found)
            }
            None => {
                if hs.syncookie {
                    stats::inc(settings, Counter::ToaSyncookieNoToa);
                }
                None
            }
        },
    };
    let recorded = match client {
        // The listener's owner (SMC) takes the child's field back as soon
        // as the kernel returns it: a word stored now would vanish, and an
        // IPv6 record with it. The owner keeps the field, as when a
        // child inherits another user's word.
        Some(_) if hs.owner_clears => {
            stats::inc(settings, Counter::ToaUserDataBusy);
            false
        }
        // SAFETY: the caller guarantees `child` is live, held and not yet
        // visible to userspace.
        Some(found) => unsafe { record::store(child, found.client, settings) },
        None => false,
    };
    if let (true, Some(found)) = (recorded, client) {
        match found.format {
            Format::Cdn => stats::inc(settings, Counter::ToaCdn),
            Format::Vip => stats::inc(settings, Counter::ToaVip),
            Format::Toa => {}
        }
        if hs.syn {
            stats::inc(settings, Counter::ToaFastopen);
        }
    }
    stats::inc(
        settings,
        if recorded {
            Counter::SynRecvSockToa
        } else {
            Counter::SynRecvSockNoToa
        },
    );
}
