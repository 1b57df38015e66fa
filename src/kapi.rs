// SPDX-License-Identifier: GPL-2.0

//! What the C glue (`glue/bringup.c`) provides to the Rust side.
//!
//! The kernel crate has no kprobe, sysctl, procfs or socket abstractions, so
//! `glue/bringup.c` registers those and touches `struct sock` for us; everything it
//! decides, it asks the Rust side. This file declares the C functions and the
//! shapes of the data that cross the boundary.

use core::ffi::{c_int, c_uint, c_ulong, c_void};

use kernel::error::{to_result, Result};

use crate::settings::Settings;

/// A `struct sock`, only ever handled by pointer.
#[repr(C)]
pub struct Sock {
    _opaque: [u8; 0],
}

/// The facts of a handshake packet, gathered by the glue: the SYN reaching a
/// listener (`tcp_conn_request`), a handshake ACK a `TCP_DEFER_ACCEPT`
/// listener holds back (`tcp_check_req`), or the packet that made the kernel
/// create a child socket (`tcp_v4_syn_recv_sock`'s skb).
#[repr(C)]
pub struct Handshake {
    /// The TCP options: the bytes between the fixed header and the data offset.
    pub options: *const u8,
    /// How many option bytes (0..=40).
    pub options_len: u32,
    /// Whether the packet is a SYN (for a child: a Fast Open child).
    pub syn: bool,
    /// Whether the packet is IPv6 (else IPv4).
    pub v6: bool,
    /// For a child: whether its request socket came from a syncookie.
    pub syncookie: bool,
    /// Whether the packet came from the host itself (it arrived on the
    /// loopback device): such a packet never names a client.
    pub local: bool,
    /// The packet's source address (IPv4: the first 4 bytes), the
    /// balancer's as the backend sees it.
    pub saddr: [u8; 16],
    /// The packet's destination address (IPv4: the first 4 bytes).
    pub daddr: [u8; 16],
    /// The TCP source port, network order.
    pub sport: [u8; 2],
    /// The TCP destination port, network order.
    pub dport: [u8; 2],
    /// The balancer's initial sequence number: the SYN's sequence number,
    /// or the request socket's `rcv_isn`.
    pub isn: u32,
    /// The kernel's clock in milliseconds (`jiffies`).
    pub now_ms: u64,
    /// The network namespace of the listener (of the child, for a child).
    pub net: u64,
    /// That namespace's settings, live while the packet is handled.
    pub settings: *const Settings,
    /// For a child: whether its listener's owner takes the child's
    /// `sk_user_data` back once the kernel has made it (SMC's listener
    /// clears it right after `syn_recv_sock` returns), so a word toa left
    /// there would be lost and its IPv6 record never freed.
    pub owner_clears: bool,
}

// The C side (`struct toa_handshake`) checks the same size.
const _: () = assert!(core::mem::size_of::<Handshake>() == 88);

/// What a UDP (or ICMP, or option protocol) packet is, for the UDP hooks
/// (`struct toa_udp_packet`): gathered by the glue, decided on by
/// [`crate::udp::packet`].
#[repr(C)]
pub struct UdpPacket {
    /// The network namespace's cookie.
    pub net: u64,
    /// The kernel's clock in milliseconds.
    pub now_ms: u64,
    /// The bytes of `kind`: IPv4 options (`IPO`), an option protocol
    /// header and its options (`OPP`), an ICMP message (`ICMP`), or NULL.
    pub hdr: *const u8,
    /// How many bytes are at `hdr`.
    pub hdr_len: u32,
    /// ICMP: the whole message's length (at most its first bytes are at
    /// `hdr`).
    pub msg_len: u32,
    /// The IP source (IPv4: the first 4 bytes).
    pub saddr: [u8; 16],
    /// The IP destination.
    pub daddr: [u8; 16],
    /// The UDP source port (network order).
    pub sport: [u8; 2],
    /// The UDP destination port.
    pub dport: [u8; 2],
    /// Whether the packet is IPv6.
    pub v6: bool,
    /// What the packet is ([`UdpPacket::PLAIN`]...).
    pub kind: u8,
    /// Whether the packet's network namespace may have live flows.
    pub live: bool,
    /// Whether the packet came from the host itself (the loopback device,
    /// or a local source address): it never names a client.
    pub local: bool,
    /// The namespace's settings, live while the packet is handled.
    pub settings: *const Settings,
}

impl UdpPacket {
    /// A UDP datagram without a UOA.
    pub const PLAIN: u8 = 0;
    /// A UDP datagram with IPv4 options (`hdr`), maybe a UOA among them.
    pub const IPO: u8 = 1;
    /// An option protocol packet: `hdr` is its header and options, the
    /// ports are its UDP header's.
    pub const OPP: u8 = 2;
    /// An ICMP message (`hdr`), maybe an announcement.
    pub const ICMP: u8 = 3;
}

const _: () = assert!(core::mem::size_of::<UdpPacket>() == 80);

/// What the UDP hooks do with a packet (`struct toa_udp_verdict`).
#[repr(C)]
#[derive(Default)]
pub struct UdpVerdict {
    /// The address to write (receive: the source; send: the destination).
    pub addr: [u8; 16],
    /// The port to write.
    pub port: [u8; 2],
    /// If `recorded`: the backend's port of the flow recorded.
    pub rsport: [u8; 2],
    /// Option protocol bytes to remove before the UDP header (0: none).
    pub strip: u16,
    /// Whether to write `addr` and `port`.
    pub rewrite: bool,
    /// Whether a flow of the namespace was recorded or refreshed.
    pub active: bool,
    /// Whether a flow was recorded (its backend port in `rsport`).
    pub recorded: bool,
    /// Send, before the datagram is built: several flows' ways back fit,
    /// and only its source tells which.
    pub ambiguous: bool,
    /// Padding, zero.
    pub pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<UdpVerdict>() == 28);

/// `struct uoa_param_map` of `<linux/toa.h>` (DPVS's, packed, 58 bytes):
/// every field as bytes, so the struct needs no packing.
#[repr(C)]
pub struct UoaParamMap {
    /// Input: `AF_INET` or `AF_INET6`, host order.
    pub af: [u8; 2],
    /// Input: the source the application saw (the balancer's, or with
    /// receive rewriting the client itself).
    pub saddr: [u8; 16],
    /// Input: the local address (all zero: any).
    pub daddr: [u8; 16],
    /// Input: the source port, network order.
    pub sport: [u8; 2],
    /// Input: the local port, network order.
    pub dport: [u8; 2],
    /// Output: the client's family, host order.
    pub real_af: [u8; 2],
    /// Output: the client's address.
    pub real_saddr: [u8; 16],
    /// Output: the client's port, network order.
    pub real_sport: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<UoaParamMap>() == 58);

/// A live flow for `/proc/net/toa_udp` (`struct toa_udp_view`).
#[repr(C)]
pub struct UdpView {
    /// LIP.
    pub lip: [u8; 16],
    /// RS.
    pub rs: [u8; 16],
    /// The client.
    pub client: [u8; 16],
    /// lport.
    pub lport: [u8; 2],
    /// RS port.
    pub rsport: [u8; 2],
    /// The client's port.
    pub cport: [u8; 2],
    /// Whether LIP and RS are IPv6.
    pub v6: bool,
    /// Whether the client is IPv6.
    pub client_v6: bool,
    /// Whether the flow is TCP (an announcement with protocol 6).
    pub tcp: bool,
    /// Padding, zero.
    pub pad: [u8; 7],
    /// How it was announced: a NUL-terminated name.
    pub via: *const u8,
    /// Milliseconds since it was announced.
    pub age_ms: u64,
    /// Milliseconds since it was last seen.
    pub idle_ms: u64,
}

const _: () = assert!(core::mem::size_of::<UdpView>() == 88);

/// An IPv6 client as the glue's records keep it (`struct toa_v6_client`).
#[repr(C)]
pub struct V6Client {
    /// Address, network byte order.
    pub addr: [u8; 16],
    /// Port, network byte order.
    pub port: [u8; 2],
}

/// What `TOA_SO_GET_LOOKUP` returns (`struct toa_nat64_peer`, uapi
/// `<linux/toa.h>`).
#[repr(C)]
pub struct Nat64Peer {
    /// IPv6 address, or IPv4-mapped; network byte order.
    pub saddr: [u8; 16],
    /// Port, network byte order.
    pub sport: [u8; 2],
    /// Padding to the C struct's size (20, `in6_addr` is 4-aligned).
    pub pad: [u8; 2],
}

/// `struct sockaddr_in6` (uapi `<linux/in6.h>`).
#[repr(C)]
pub struct SockaddrIn6 {
    /// `AF_INET6`.
    pub sin6_family: u16,
    /// Port, network byte order.
    pub sin6_port: [u8; 2],
    /// Flow information.
    pub sin6_flowinfo: u32,
    /// Address, network byte order.
    pub sin6_addr: [u8; 16],
    /// Scope of a link-local address.
    pub sin6_scope_id: u32,
}

/// `struct sockaddr_in` (uapi `<linux/in.h>`).
#[repr(C)]
pub struct SockaddrIn {
    /// `AF_INET`.
    pub sin_family: u16,
    /// Port, network byte order.
    pub sin_port: [u8; 2],
    /// Address, network byte order.
    pub sin_addr: [u8; 4],
    /// Padding, zero.
    pub sin_zero: [u8; 8],
}

unsafe extern "C" {
    /// Allocate the counters and register sysctls, procfs files and probes.
    fn toa_glue_register() -> c_int;
    /// Undo [`toa_glue_register`]; returns once no probe handler runs.
    fn toa_glue_unregister();
    /// The mechanism hooking `getpeername()`/`accept()` now: 0 direct,
    /// 1 ftrace, 2 kretprobe, 3 fprobe.
    fn toa_hook_kind() -> c_int;
    /// Count `n` events on this CPU in the namespace holding `settings`
    /// (NULL, or the load-time values: the host's); an out-of-range
    /// `counter` is ignored.
    /// (`settings` is a [`Settings`], opaque to C.)
    pub fn toa_stat_add(settings: *const c_void, counter: c_uint, n: u64);
    /// Count `n` events on this CPU in the namespace of socket `sk`.
    pub fn toa_sk_stat_add(sk: *const Sock, counter: c_uint, n: u64);
    /// Say (rate-limited) that a client from `addr` (4 bytes, or 16 with
    /// `v6`) was ignored because `trusted_sources` is not set. Any context.
    pub fn toa_trust_unset_warn(addr: *const u8, v6: bool);
    /// `rcu_read_lock()`.
    pub fn toa_rcu_read_lock();
    /// `rcu_read_unlock()`.
    pub fn toa_rcu_read_unlock();
    /// The flow table in force (under `rcu_read_lock()`): its handle, or
    /// NULL if there is none; its buckets and their number in `buckets`
    /// and `nbuckets`.
    pub fn toa_udp_table(buckets: *mut *mut c_void, nbuckets: *mut c_uint) -> *const c_void;
    /// Lock bucket `bucket` of flow table `table` (softirqs off).
    pub fn toa_udp_lock(table: *const c_void, bucket: c_uint);
    /// Unlock bucket `bucket` of flow table `table`.
    pub fn toa_udp_unlock(table: *const c_void, bucket: c_uint);
    /// `sk->sk_user_data`, read once, as a word.
    pub fn toa_sk_user_data(sk: *const Sock) -> usize;
    /// A random number (`get_random_u64`).
    pub fn toa_random_u64() -> u64;
    /// The initial network namespace's cookie: the host's share of the
    /// handshake and flow tables.
    pub fn toa_host_net() -> u64;
    /// Lock bucket `bucket` of the handshake table (interrupts saved in
    /// `flags`) and return its slots, or NULL (nothing locked) if there is
    /// no table or no such bucket.
    pub fn toa_syn_lock(bucket: c_uint, flags: *mut c_ulong) -> *mut c_void;
    /// Unlock bucket `bucket` locked by [`toa_syn_lock`] with `flags`.
    pub fn toa_syn_unlock(bucket: c_uint, flags: c_ulong);
    /// Store `word` in `sk->sk_user_data` if and only if it is NULL; returns
    /// whether it was stored. Fully ordered.
    pub fn toa_sk_claim_user_data(sk: *mut Sock, word: usize) -> bool;
    /// `synchronize_rcu()`: wait until every RCU reader that began before
    /// has finished. Sleeps.
    pub fn toa_synchronize_rcu();
    /// A new IPv6 record holding `client` (`GFP_ATOMIC`), not registered;
    /// NULL if out of memory.
    pub fn toa_v6_new(client: *const V6Client) -> *mut c_void;
    /// Free a record that is not registered.
    pub fn toa_v6_free(rec: *mut c_void);
    /// Under the lock of `rec`'s registry bucket: store `word` in
    /// `sk->sk_user_data` if it is NULL and register `rec`; whether both
    /// happened.
    pub fn toa_v6_attach(sk: *mut Sock, rec: *mut c_void, word: usize) -> bool;
    /// Under `rcu_read_lock()` (no lock taken): if `rec` is registered and
    /// attached to `sk`, copy its client to `out`; whether it was. `rec` is
    /// not dereferenced otherwise.
    pub fn toa_v6_lookup(sk: *const Sock, rec: usize, out: *mut V6Client) -> bool;
    /// Under the lock of `rec`'s registry bucket: if `rec` is registered
    /// and attached to `sk`, unregister it, clear `sk->sk_user_data` if it
    /// still holds `word`, and free it after an RCU grace period; whether it
    /// was.
    pub fn toa_v6_release(sk: *mut Sock, word: usize, rec: usize) -> bool;
}

/// Register everything the module hooks into.
pub fn register() -> Result {
    // SAFETY: called once, from module init, before anything is registered.
    to_result(unsafe { toa_glue_register() })
}

/// The mechanism hooking `getpeername()`/`accept()`, as `hook=` names it.
pub fn hook_name() -> &'static str {
    // SAFETY: `toa_hook_kind` only reads the glue's registration state.
    match unsafe { toa_hook_kind() } {
        0 => "direct",
        1 => "ftrace",
        2 => "kretprobe",
        3 => "fprobe",
        _ => "?",
    }
}

/// Unregister everything [`register`] registered.
pub fn unregister() {
    // SAFETY: called once, from module exit, after a successful `register`.
    unsafe { toa_glue_unregister() }
}
