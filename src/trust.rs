// SPDX-License-Identifier: GPL-2.0

//! Which balancers may name a client: `net.toa.trusted_sources` and the
//! module parameter of the same name.
//!
//! Any host that reaches a backend directly can put a TOA option into its own
//! handshake, or send an announcement, and become any client address to the
//! application (or divert the host's datagrams). So a client is taken only
//! from packets whose source is in the list of the balancers' prefixes;
//! others are ignored and counted (`toa_untrusted`, `udp_untrusted`). The
//! list is empty by default, and an empty list trusts nobody: toa says so
//! at load and, rate-limited, whenever it ignores a client for that reason,
//! until the site names its balancers (`0.0.0.0/0 ::/0` trusts everyone,
//! as the older TOA modules do). Packets from the host itself are never
//! trusted, whatever the list (`crate::handshake`, `crate::udp::packet`).
//!
//! Readers run in softirq (the handshake probe) and take no lock. The list
//! lives in one of two static slots; [`ACTIVE`] names the slot in force (or
//! none: trust all). A writer (serialized by the glue's mutex) fills the
//! other slot, publishes it, and waits for an RCU grace period, after which
//! no reader can still be looking at the slot it replaced: that slot is then
//! free for the next writer. No allocation, no freeing at unload.

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

use kernel::error::code::EINVAL;

use crate::cidr::{PrefixList, Source};
use crate::kapi;

/// The two slots a list can be in.
struct Slots([UnsafeCell<PrefixList>; 2]);

// SAFETY: a slot is written only by a writer holding the glue's trust mutex,
// and only while it is not ACTIVE and no reader can hold it (a grace period
// has passed since it was last ACTIVE); readers only read the ACTIVE slot.
unsafe impl Sync for Slots {}

static SLOTS: Slots = Slots([
    UnsafeCell::new(PrefixList::EMPTY),
    UnsafeCell::new(PrefixList::EMPTY),
]);

/// 0: no list, no source is trusted; 1 or 2: slot 0 or 1 is in force.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether a list is set (else nobody is trusted).
pub fn configured() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

/// A client from `src` was just ignored as untrusted: if that is because no
/// list is set, say so in the kernel log (rate-limited), so that a site
/// that forgot to name its balancers finds out why toa shows nothing.
pub fn untrusted_seen(src: &Source) {
    if configured() {
        return;
    }
    let (addr, v6) = match src {
        Source::V4(a) => (&a[..], false),
        Source::V6(a) => (&a[..], true),
    };
    // SAFETY: `addr` is 4 (IPv4) or 16 (IPv6) readable bytes, as the glue
    // reads them for `v6`; the call only logs, in any context.
    unsafe { kapi::toa_trust_unset_warn(addr.as_ptr(), v6) }
}

/// Whether a TOA option from `src` may be taken. Callable in any context
/// that is an RCU read-side critical section (softirq, preemption disabled).
pub fn trusted(src: &Source) -> bool {
    match ACTIVE.load(Ordering::Acquire) {
        0 => false,
        n => {
            let slot = &SLOTS.0[(n - 1) & 1];
            // SAFETY: the ACTIVE slot is not written until a grace period
            // after it stops being ACTIVE, and the caller is inside an RCU
            // read-side critical section that began after this load.
            unsafe { (*slot.get()).contains(src) }
        }
    }
}

/// Replace the list with the one in `text` (`len` bytes); 0, or `-EINVAL`
/// with the list in force unchanged.
///
/// # Safety
///
/// `text` must point to `len` readable bytes. The caller must hold the
/// glue's trust mutex and be able to sleep (this waits for a grace period).
#[no_mangle]
pub unsafe extern "C" fn toa_trust_write(text: *const u8, len: usize) -> c_int {
    if text.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller guarantees `len` readable bytes.
    let text = unsafe { core::slice::from_raw_parts(text, len) };
    let active = ACTIVE.load(Ordering::Relaxed);
    // The slot not in force (slot 0 when none is).
    let target = if active == 1 { 1 } else { 0 };
    // SAFETY: the caller holds the trust mutex, so no other writer runs;
    // `target` is not ACTIVE, and every writer waited for a grace period
    // after un-publishing a slot, so no reader holds it (see `Slots`).
    let list = unsafe { &mut *SLOTS.0[target].get() };
    if list.parse_into(text).is_none() {
        return EINVAL.to_errno();
    }
    let next = if list.is_empty() { 0 } else { target + 1 };
    ACTIVE.store(next, Ordering::Release);
    // SAFETY: the caller can sleep.
    unsafe { kapi::toa_synchronize_rcu() };
    // INVARIANT: a grace period has passed since the other slot stopped
    // being ACTIVE: no reader holds it, and the next writer may fill it.
    0
}

/// Write the list in force, as text, into `buf` (`size` bytes); how many
/// bytes were written.
///
/// # Safety
///
/// `buf` must be writable for `size` bytes; the caller must hold the glue's
/// trust mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_trust_read(buf: *mut u8, size: usize) -> usize {
    if buf.is_null() {
        return 0;
    }
    // SAFETY: the caller guarantees `size` writable bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    match ACTIVE.load(Ordering::Relaxed) {
        0 => PrefixList::EMPTY.format(buf),
        n => {
            // SAFETY: the caller holds the trust mutex: no writer changes
            // the ACTIVE slot meanwhile.
            unsafe { (*SLOTS.0[(n - 1) & 1].get()).format(buf) }
        }
    }
}
