// SPDX-License-Identifier: GPL-2.0

//! The flow table in the kernel: its memory and locks (the glue's, see
//! `glue/udp_nf.c`: allocated in process context when toa loads or
//! `udp_max_flows` is written, published with RCU), its hash key (drawn at
//! load), and what the rest of toa asks it, with the counters each answer
//! moves.

use core::ffi::{c_int, c_uint, c_ulong, c_void};
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::announce::Proto;
use super::config;
use super::flow_table::{
    Announced, Bucket, Endpoint, FlowKey, Hit, Locks, Query, Table, Via, View, WAYS,
};
use crate::kapi::{self, Handshake, UdpView};
use crate::recent::Recent;
use crate::settings::Settings;
use crate::stats::{self, Counter};
use crate::tcp::wire::{ClientAddr, Format, Found};

/// The hash key, drawn at load.
static SEED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The host's network namespace (the initial one's cookie, fixed from
/// boot), read at load: the table gives the other namespaces a share of
/// each bucket, and every lookup asks.
static HOST: AtomicU64 = AtomicU64::new(0);

/// Forward halves in the table (flows), for the `udp_flows` row of
/// `/proc/net/toa_stats`.
static FLOWS: AtomicI64 = AtomicI64::new(0);

/// When a protocol-6 announcement (a TCP connection's client named ahead
/// of its SYN) was last recorded: while none is live, a connection's
/// handshake looks nothing up.
static LAST_TCP: Recent = Recent::new();

/// Draw the hash key and note the host's namespace; called at load,
/// before any hook can run.
pub fn init() {
    for s in &SEED {
        // SAFETY: `toa_random_u64` may be called from any context.
        s.store(unsafe { kapi::toa_random_u64() }, Ordering::Relaxed);
    }
    // SAFETY: `toa_host_net` may be called from any context.
    HOST.store(unsafe { kapi::toa_host_net() }, Ordering::Relaxed);
}

fn seed() -> [u64; 2] {
    [
        SEED[0].load(Ordering::Relaxed),
        SEED[1].load(Ordering::Relaxed),
    ]
}

/// A table's locks: the glue's spinlocks (softirqs off while held).
pub struct GlueLocks(*const c_void);

impl Locks for GlueLocks {
    fn lock(&self, bucket: usize) {
        // SAFETY: `self.0` is a live table handle (see `table_at`) and
        // `bucket` is below its number of buckets (`Table` only asks for
        // buckets it has).
        unsafe { kapi::toa_udp_lock(self.0, bucket as c_uint) }
    }

    fn unlock(&self, bucket: usize) {
        // SAFETY: as in `lock`; the bucket was locked by `lock`.
        unsafe { kapi::toa_udp_unlock(self.0, bucket as c_uint) }
    }
}

/// Run `f` on the table at `handle` with `n` buckets at `buckets`.
///
/// # Safety
///
/// `handle` must be NULL or a table of the glue's that stays allocated for
/// the call, whose buckets are `n` zero-initialized (or written only by
/// this module) [`Bucket`]s at `buckets`.
#[inline(always)]
unsafe fn table_at<R>(
    handle: *const c_void,
    buckets: *const c_void,
    n: c_uint,
    f: impl FnOnce(&Table<'_, GlueLocks>) -> R,
) -> Option<R> {
    if handle.is_null()
        || buckets.is_null()
        || buckets as usize % core::mem::align_of::<Bucket>() != 0
    {
        return None;
    }
    // SAFETY: the caller guarantees `n` buckets at `buckets`, which are
    // aligned (checked above); a bucket is atomics only, and every access
    // to them is atomic.
    let slice = unsafe { core::slice::from_raw_parts(buckets.cast::<Bucket>(), n as usize) };
    let locks = GlueLocks(handle);
    let host = HOST.load(Ordering::Relaxed);
    let table = Table::new(slice, &locks, seed(), host)?;
    Some(f(&table))
}

/// Run `f` on the table in force, if there is one.
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section (netfilter
/// hooks are), which keeps the table it finds allocated.
#[inline(always)]
pub unsafe fn with_table<R>(f: impl FnOnce(&Table<'_, GlueLocks>) -> R) -> Option<R> {
    let mut buckets: *mut c_void = core::ptr::null_mut();
    let mut n: c_uint = 0;
    // SAFETY: both out-pointers are writable; the caller holds RCU.
    let handle = unsafe { kapi::toa_udp_table(&mut buckets, &mut n) };
    // SAFETY: the glue hands its table in force with its buckets, kept
    // allocated by the caller's RCU read-side critical section.
    unsafe { table_at(handle, buckets, n, f) }
}

/// Count what an announcement did, in the namespace whose settings are `s`.
fn count(s: &Settings, a: &Announced) {
    for (n, counter) in [
        (u64::from(a.new), Counter::UdpFlowNew),
        (u64::from(a.replaced), Counter::UdpFlowReplaced),
        (u64::from(a.expired), Counter::UdpFlowExpired),
        (u64::from(a.evicted), Counter::UdpFlowEvicted),
        (u64::from(a.refused), Counter::UdpShareFull),
    ] {
        if n > 0 {
            stats::add(s, counter, n);
        }
    }
    FLOWS.fetch_add(i64::from(a.delta), Ordering::Relaxed);
}

/// Record a flow a balancer announced in the namespace whose settings are
/// `s`; whether it was recorded (or refreshed).
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section.
pub unsafe fn announce(
    s: &Settings,
    key: &FlowKey,
    client: &ClientAddr,
    via: Via,
    now: u64,
) -> bool {
    let client = Endpoint::from_client(client);
    // SAFETY: the caller holds RCU.
    let a = unsafe { with_table(|t| t.announce(key, &client, via, now, config::timeout_ms())) };
    match a {
        Some(a) => {
            count(s, &a);
            let recorded = a.new || a.refreshed;
            if recorded && key.proto == Proto::Tcp {
                LAST_TCP.put(now);
            }
            recorded
        }
        None => false,
    }
}

/// The client of a datagram from `key.lip` to `key.rs`, and whether the
/// lookup refreshed the flow.
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section.
#[inline(always)]
pub unsafe fn receive(key: &FlowKey, now: u64) -> Option<(Hit, bool)> {
    // SAFETY: the caller holds RCU.
    let hit = unsafe { with_table(|t| t.receive(key, now, config::timeout_ms())) }??;
    Some((
        hit,
        now.saturating_sub(hit.seen) >= super::flow_table::REFRESH_MS,
    ))
}

/// The balancer address a datagram from `rs` to `client` goes back
/// through, and whether the lookup refreshed the flow.
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section.
#[inline(always)]
pub unsafe fn send(net: u64, rs: &Endpoint, client: &Endpoint, now: u64) -> Option<(Hit, bool)> {
    // SAFETY: the caller holds RCU.
    let hit =
        unsafe { with_table(|t| t.send(net, Proto::Udp, rs, client, now, config::timeout_ms())) }??;
    Some((
        hit,
        now.saturating_sub(hit.seen) >= super::flow_table::REFRESH_MS,
    ))
}

/// [`send`] for a datagram a socket is about to build, to `client` as the
/// sender named it, from `rs` (from its port on any address if `any_rs`):
/// [`Table::send_named`].
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section.
#[inline(always)]
pub unsafe fn send_named(
    net: u64,
    rs: &Endpoint,
    any_rs: bool,
    client: &Endpoint,
    now: u64,
) -> Option<(Hit, bool)> {
    let mut q = Query::reverse(net, Proto::Udp, client, rs);
    if any_rs {
        q = q.any_rs();
    }
    // SAFETY: the caller holds RCU.
    let hit = unsafe { with_table(|t| t.send_named(&q, now, config::timeout_ms())) }??;
    Some((
        hit,
        hit.matches == 1 && now.saturating_sub(hit.seen) >= super::flow_table::REFRESH_MS,
    ))
}

/// What `q` names, without side effects.
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section.
pub unsafe fn lookup(q: &Query, now: u64) -> Option<Hit> {
    // SAFETY: the caller holds RCU.
    unsafe { with_table(|t| t.lookup(q, now, config::timeout_ms())) }?
}

/// Whether a protocol-6 flow may be recorded at `now_ms`: one was within
/// a flow's lifetime ([`tcp_client`] finds none otherwise).
pub fn tcp_may_hold(now_ms: u64) -> bool {
    LAST_TCP.may_hold(now_ms, config::timeout_ms())
}

/// The client an ip_vs_ca announcement with protocol 6 named for the
/// connection of handshake `hs` (IPv4 only: announcements are). Callable in
/// softirq.
pub fn tcp_client(hs: &Handshake) -> Option<Found> {
    if hs.v6 || hs.net == 0 {
        return None;
    }
    // No protocol-6 flow recorded within a flow's lifetime: none is live.
    if !tcp_may_hold(hs.now_ms) {
        return None;
    }
    let s = &hs.saddr;
    let d = &hs.daddr;
    let key = FlowKey {
        net: hs.net,
        proto: Proto::Tcp,
        lip: Endpoint::v4([s[0], s[1], s[2], s[3]], hs.sport),
        rs: Endpoint::v4([d[0], d[1], d[2], d[3]], hs.dport),
    };
    // SAFETY: no precondition.
    unsafe { kapi::toa_rcu_read_lock() };
    // SAFETY: inside the RCU read-side critical section just begun.
    let hit = unsafe { lookup(&Query::forward(&key), hs.now_ms) };
    // SAFETY: ends the section begun above.
    unsafe { kapi::toa_rcu_read_unlock() };
    Some(Found {
        client: hit?.peer.to_client(),
        format: Format::Toa,
    })
}

/// Network namespace `net` is going away: drop its flows.
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_net_exit(net: u64) {
    // SAFETY: the caller holds RCU.
    if let Some(n) = unsafe { with_table(|t| t.remove_net(net)) } {
        if n > 0 {
            // Its counters go with it: counted as the host's.
            stats::host_add(Counter::UdpFlowExpired, n);
            FLOWS.fetch_sub(n as i64, Ordering::Relaxed);
        }
    }
}

/// The shape of a table holding `flows` flows: a power of two of buckets
/// with room for both halves of every flow, and the bytes of one bucket.
///
/// # Safety
///
/// Both pointers must be writable.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_table_shape(
    flows: c_ulong,
    buckets: *mut c_uint,
    bucket_bytes: *mut usize,
) {
    let slots = (flows as usize).saturating_mul(super::flow_table::SLOTS_PER_FLOW);
    let n = slots.div_ceil(WAYS).max(1).next_power_of_two();
    // SAFETY: the caller guarantees both are writable.
    unsafe {
        *buckets = n as c_uint;
        *bucket_bytes = core::mem::size_of::<Bucket>();
    }
}

/// Move the live flows of table `old` (no longer published, no one uses it
/// after an RCU grace period) into table `new` (published).
///
/// # Safety
///
/// Both must be tables of the glue's with their buckets, as for
/// `table_at`; the caller must be in an RCU read-side critical section
/// or otherwise keep `new` allocated, and no one else may use `old`.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_migrate(
    old: *const c_void,
    old_buckets: *const c_void,
    old_n: c_uint,
    new: *const c_void,
    new_buckets: *const c_void,
    new_n: c_uint,
    now: u64,
) {
    // SAFETY: the caller guarantees both tables and their buckets.
    let moved = unsafe {
        table_at(new, new_buckets, new_n, |n| {
            table_at(old, old_buckets, old_n, |o| {
                n.take_from(o, now, config::timeout_ms())
            })
        })
    };
    if let Some(Some(m)) = moved {
        stats::host_add(Counter::UdpFlowExpired, m.expired);
        stats::host_add(Counter::UdpFlowEvicted, m.evicted);
        FLOWS.store(m.kept as i64, Ordering::Relaxed);
    } else {
        FLOWS.store(0, Ordering::Relaxed);
    }
}

/// A table was dropped whole (`udp_max_flows` set to 0): its flows went
/// with it, counted `n` evicted.
#[no_mangle]
pub extern "C" fn toa_udp_dropped_all() {
    let n = FLOWS.swap(0, Ordering::Relaxed);
    if n > 0 {
        stats::host_add(Counter::UdpFlowEvicted, n as u64);
    }
}

/// Flows (forward halves) in the table, expired ones not yet reclaimed
/// included: the `udp_flows` row of `/proc/net/toa_stats`.
#[no_mangle]
pub extern "C" fn toa_udp_flow_count() -> c_ulong {
    FLOWS.load(Ordering::Relaxed).max(0) as c_ulong
}

/// How a flow was announced, NUL-terminated for C.
fn via_name(via: Via) -> &'static [u8] {
    match via {
        Via::Icmp => b"icmp\0",
        Via::Ipo => b"ipo\0",
        Via::Opp => b"opp\0",
    }
}

fn copy_addr(e: &Endpoint) -> [u8; 16] {
    e.addr
}

/// Fill `out` with the live flow of namespace `net` in slot `index`: 1 if
/// there is one, 0 if not, -1 past the last slot (or without a table).
///
/// # Safety
///
/// The caller must be in an RCU read-side critical section; `out` must be
/// writable.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_view(
    net: u64,
    now: u64,
    index: c_ulong,
    out: *mut UdpView,
) -> c_int {
    // SAFETY: the caller holds RCU.
    let r = unsafe {
        with_table(|t| {
            if index as usize >= t.slots() {
                return Err(());
            }
            Ok(t.view(index as usize, net, now, config::timeout_ms()))
        })
    };
    let v: View = match r {
        Some(Ok(Some(v))) => v,
        Some(Ok(None)) => return 0,
        _ => return -1,
    };
    // SAFETY: the caller guarantees `out` is writable.
    let out = unsafe { &mut *out };
    out.lip = copy_addr(&v.lip);
    out.rs = copy_addr(&v.rs);
    out.client = copy_addr(&v.client);
    out.lport = v.lip.port;
    out.rsport = v.rs.port;
    out.cport = v.client.port;
    out.v6 = v.lip.v6;
    out.client_v6 = v.client.v6;
    out.tcp = v.proto == Proto::Tcp;
    out.pad = [0; 7];
    out.via = via_name(v.via).as_ptr();
    out.age_ms = v.age_ms;
    out.idle_ms = v.idle_ms;
    1
}
