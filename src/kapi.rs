// SPDX-License-Identifier: GPL-2.0

//! What the C glue (`glue.c`) provides to the Rust side.
//!
//! The kernel crate has no kprobe, sysctl, procfs or socket abstractions, so
//! `glue.c` registers those and touches `struct sock` for us; everything it
//! decides, it asks the Rust side. This file declares the C functions and the
//! shapes of the data that cross the boundary.

use core::ffi::{c_int, c_uint, c_ulong, c_void};

use kernel::error::{to_result, Result};

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
}

// The C side (`struct toa_handshake`) checks the same size.
const _: () = assert!(core::mem::size_of::<Handshake>() == 64);

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
    /// Count one event on this CPU; an out-of-range `counter` is ignored.
    pub fn toa_stat_inc(counter: c_uint);
    /// `sk->sk_user_data`, read once, as a word.
    pub fn toa_sk_user_data(sk: *const Sock) -> usize;
    /// A random number (`get_random_u64`).
    pub fn toa_random_u64() -> u64;
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
