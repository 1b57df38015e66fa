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
//! trusted, whatever the list (`crate::tcp::handshake`, `crate::udp::packet`).
//!
//! Each network namespace has its own list ([`crate::settings`]). Readers
//! run in softirq (the handshake probe) and take no lock. A list lives in
//! one of two slots; `active` names the slot in force (or none: trust
//! nobody). A writer (serialized by the glue's mutex) fills the other slot,
//! publishes it, and waits for an RCU grace period, after which no reader
//! can still be looking at the slot it replaced: that slot is then free for
//! the next writer. No allocation, no freeing.

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

use kernel::error::code::EINVAL;

use crate::kapi;
use crate::policy::cidr::{PrefixList, Source};
use crate::settings::Settings;

/// One namespace's trusted sources.
pub struct Trust {
    /// The two slots a list can be in.
    slots: [UnsafeCell<PrefixList>; 2],
    /// 0: no list, no source is trusted; 1 or 2: slot 0 or 1 is in force.
    active: AtomicUsize,
}

// SAFETY: a slot is written only by a writer holding the glue's trust mutex,
// and only while it is not active and no reader can hold it (a grace period
// has passed since it was last active, or the list was never published);
// readers only read the active slot.
unsafe impl Sync for Trust {}

impl Trust {
    /// Nobody trusted.
    pub const fn new() -> Trust {
        Trust {
            slots: [
                UnsafeCell::new(PrefixList::EMPTY),
                UnsafeCell::new(PrefixList::EMPTY),
            ],
            active: AtomicUsize::new(0),
        }
    }

    /// Whether a list is set (else nobody is trusted).
    pub fn configured(&self) -> bool {
        self.active.load(Ordering::Relaxed) != 0
    }

    /// A client from `src` was just ignored as untrusted: if that is
    /// because no list is set, say so in the kernel log (rate-limited), so
    /// that a site that forgot to name its balancers finds out why toa
    /// shows nothing.
    pub fn untrusted_seen(&self, src: &Source) {
        if self.configured() {
            return;
        }
        let (addr, v6) = match src {
            Source::V4(a) => (&a[..], false),
            Source::V6(a) => (&a[..], true),
        };
        // SAFETY: `addr` is 4 (IPv4) or 16 (IPv6) readable bytes, as the
        // glue reads them for `v6`; the call only logs, in any context.
        unsafe { kapi::toa_trust_unset_warn(addr.as_ptr(), v6) }
    }

    /// Whether any source is trusted (a list is in force).
    pub fn anyone(&self) -> bool {
        self.active.load(Ordering::Acquire) != 0
    }

    /// Whether a TOA option from `src` may be taken. Callable in any
    /// context that is an RCU read-side critical section (softirq,
    /// preemption disabled).
    pub fn trusted(&self, src: &Source) -> bool {
        self.in_force(|list| list.contains(src))
    }

    /// [`Trust::trusted`] for an IPv4 source `addr` ([`PrefixList::contains_v4`]).
    #[inline]
    pub fn trusted_v4(&self, addr: [u8; 4]) -> bool {
        self.in_force(|list| list.contains_v4(addr))
    }

    /// What `test` says of the list in force; false when none is. Callable
    /// where [`Trust::trusted`] is.
    #[inline(always)]
    fn in_force(&self, test: impl FnOnce(&PrefixList) -> bool) -> bool {
        match self.active.load(Ordering::Acquire) {
            0 => false,
            n => {
                let slot = &self.slots[(n - 1) & 1];
                // SAFETY: the active slot is not written until a grace
                // period after it stops being active, and the caller is
                // inside an RCU read-side critical section that began
                // after this load (the list does not outlive `test`).
                test(unsafe { &*slot.get() })
            }
        }
    }

    /// Take `src`'s list, copied slot to slot (a list is 1.7 KiB: not
    /// through the stack).
    ///
    /// # Safety
    ///
    /// The caller must hold the glue's trust mutex, and no reader may see
    /// `self` yet (a namespace being set up).
    pub unsafe fn copy_from(&self, src: &Trust) {
        let next = match src.active.load(Ordering::Relaxed) {
            0 => 0,
            n => {
                // SAFETY: the caller holds the trust mutex: no writer
                // changes `src`'s active slot meanwhile; nobody reads
                // `self` yet, and no other writer runs. Two different
                // `Trust`s (a namespace's own is never the one it follows),
                // so the slots do not overlap.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.slots[(n - 1) & 1].get().cast_const(),
                        self.slots[0].get(),
                        1,
                    );
                }
                // An active slot holds a list that is not empty.
                1
            }
        };
        // INVARIANT: slot 1 was never published; slot 0 is published only
        // now, after it was filled.
        self.active.store(next, Ordering::Release);
    }
}

impl Default for Trust {
    fn default() -> Self {
        Self::new()
    }
}

/// The trusted sources in force in the namespace `s` belongs to.
///
/// # Safety
///
/// `s` must point to a live [`Settings`].
unsafe fn trust<'a>(s: *const Settings) -> &'a Trust {
    // SAFETY: the caller guarantees a live `Settings`.
    unsafe { (*s).trust() }
}

/// Replace the list with the one in `text` (`len` bytes); 0, or `-EINVAL`
/// with the list in force unchanged.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `text` to `len` readable
/// bytes. The caller must hold the glue's trust mutex and be able to sleep
/// (this waits for a grace period).
#[no_mangle]
pub unsafe extern "C" fn toa_trust_write(s: *const Settings, text: *const u8, len: usize) -> c_int {
    if text.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller guarantees `len` readable bytes.
    let text = unsafe { core::slice::from_raw_parts(text, len) };
    // Refused whole before anything changes (the namespace's list stays
    // the host's if it followed it).
    if !PrefixList::valid(text) {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller guarantees a live `Settings` and holds the trust
    // mutex.
    let t = unsafe { (*s).own_trust() };
    let active = t.active.load(Ordering::Relaxed);
    // The slot not in force (slot 0 when none is).
    let target = if active == 1 { 1 } else { 0 };
    // SAFETY: the caller holds the trust mutex, so no other writer runs;
    // `target` is not active, and every writer waited for a grace period
    // after un-publishing a slot, so no reader holds it (see `Trust`).
    let list = unsafe { &mut *t.slots[target].get() };
    if list.parse_into(text).is_none() {
        return EINVAL.to_errno();
    }
    let next = if list.is_empty() { 0 } else { target + 1 };
    t.active.store(next, Ordering::Release);
    // SAFETY: the caller can sleep.
    unsafe { kapi::toa_synchronize_rcu() };
    // INVARIANT: a grace period has passed since the other slot stopped
    // being active: no reader holds it, and the next writer may fill it.
    0
}

/// Write the list in force, as text, into `buf` (`size` bytes); how many
/// bytes were written.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `buf` be writable for `size`
/// bytes; the caller must hold the glue's trust mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_trust_read(s: *const Settings, buf: *mut u8, size: usize) -> usize {
    if buf.is_null() {
        return 0;
    }
    // SAFETY: the caller guarantees `size` writable bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    // SAFETY: the caller guarantees a live `Settings`.
    let t = unsafe { trust(s) };
    match t.active.load(Ordering::Relaxed) {
        0 => PrefixList::EMPTY.format(buf),
        n => {
            // SAFETY: the caller holds the trust mutex: no writer changes
            // the active slot meanwhile.
            unsafe { (*t.slots[(n - 1) & 1].get()).format(buf) }
        }
    }
}
