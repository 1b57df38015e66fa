// SPDX-License-Identifier: GPL-2.0

//! The UDP settings: `net.toa.udp_rewrite` (each namespace's, kept in its
//! [`Settings`]), `net.toa.udp_timeout` and `net.toa.udp_max_flows` (the
//! host's: the flow table is shared; read-only in other namespaces), and
//! the module parameters of the same names.
//!
//! Writers are serialized by the glue's config mutex and go through the
//! functions below, which refuse anything invalid (`-EINVAL`, nothing
//! changed); packet paths read the values with relaxed loads.

use core::ffi::{c_int, c_uint, c_ulong};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use kernel::error::code::EINVAL;

use crate::policy::parse;
use crate::settings::Settings;

/// Default flow timeout (s): above the balancers' own (LVS and DPVS: 300).
pub const DEFAULT_TIMEOUT_S: u32 = 330;
/// Longest flow timeout (s): a day.
pub const MAX_TIMEOUT_S: u32 = 86_400;
/// Default number of flows the table holds (about 1.4 MiB).
pub const DEFAULT_MAX_FLOWS: usize = 8192;
/// Most flows a table may hold (about 176 MiB).
pub const MAX_MAX_FLOWS: usize = 1 << 20;

/// How long a flow lives unseen (s).
static TIMEOUT_S: AtomicU32 = AtomicU32::new(DEFAULT_TIMEOUT_S);
/// How many flows the table holds (0: no table, UDP clients off).
static MAX_FLOWS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_FLOWS);

/// The flow timeout in milliseconds.
pub fn timeout_ms() -> u64 {
    u64::from(TIMEOUT_S.load(Ordering::Relaxed)) * 1000
}

/// The bytes at `text`, or `None` for NULL.
///
/// # Safety
///
/// `text` must be NULL or point to `len` readable bytes for `'a`.
unsafe fn bytes<'a>(text: *const u8, len: usize) -> Option<&'a [u8]> {
    if text.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `len` readable bytes.
    Some(unsafe { core::slice::from_raw_parts(text, len) })
}

/// `udp_rewrite` of the namespace `s` belongs to: 1 or 0.
///
/// # Safety
///
/// `s` must point to a live [`Settings`].
#[no_mangle]
pub unsafe extern "C" fn toa_udp_config_rewrite(s: *const Settings) -> c_int {
    // SAFETY: the caller guarantees a live `Settings`.
    c_int::from(unsafe { &*s }.rewrite())
}

/// Set `udp_rewrite` from text (`0` or `1`); 0 or `-EINVAL`.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `text` to `len` readable
/// bytes; the caller must hold the glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_config_write_rewrite(
    s: *const Settings,
    text: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    match unsafe { bytes(text, len) }.and_then(parse::switch) {
        Some(on) => {
            // SAFETY: the caller guarantees a live `Settings`.
            unsafe { &*s }.own_rewrite().store(on, Ordering::Relaxed);
            0
        }
        None => EINVAL.to_errno(),
    }
}

/// `udp_rewrite` of the namespace `s` belongs to as the glue's hooks keep
/// it: -1 (it follows the host's), 0 or 1.
///
/// # Safety
///
/// `s` must point to a live [`Settings`].
#[no_mangle]
pub unsafe extern "C" fn toa_udp_config_rewrite_mode(s: *const Settings) -> c_int {
    // SAFETY: the caller guarantees a live `Settings`.
    let s = unsafe { &*s };
    if s.rewrite_follows() {
        -1
    } else {
        c_int::from(s.rewrite())
    }
}

/// `udp_timeout` in seconds.
#[no_mangle]
pub extern "C" fn toa_udp_config_timeout() -> c_uint {
    TIMEOUT_S.load(Ordering::Relaxed)
}

/// Set `udp_timeout` from text (seconds, 1..=86400); 0 or `-EINVAL`.
///
/// # Safety
///
/// `text` must point to `len` readable bytes; the caller must hold the
/// glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_config_write_timeout(text: *const u8, len: usize) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    match unsafe { bytes(text, len) }.and_then(|t| parse::decimal(t, MAX_TIMEOUT_S)) {
        Some(s) if s >= 1 => {
            TIMEOUT_S.store(s, Ordering::Relaxed);
            0
        }
        _ => EINVAL.to_errno(),
    }
}

/// `udp_max_flows`.
#[no_mangle]
pub extern "C" fn toa_udp_config_max_flows() -> c_ulong {
    MAX_FLOWS.load(Ordering::Relaxed) as c_ulong
}

/// Parse a `udp_max_flows` write (0 or 1..=2^20) into `out`; 0 or `-EINVAL`
/// (the glue resizes the table, then calls [`toa_udp_config_set_max_flows`]).
///
/// # Safety
///
/// `text` must point to `len` readable bytes and `out` be writable.
#[no_mangle]
pub unsafe extern "C" fn toa_udp_config_parse_max_flows(
    text: *const u8,
    len: usize,
    out: *mut c_ulong,
) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let parsed = unsafe { bytes(text, len) }.and_then(|t| parse::decimal(t, MAX_MAX_FLOWS as u32));
    match parsed {
        Some(n) => {
            // SAFETY: the caller guarantees `out` is writable.
            unsafe { *out = c_ulong::from(n) };
            0
        }
        None => EINVAL.to_errno(),
    }
}

/// Record `udp_max_flows` once the table has that size (the caller holds
/// the glue's config mutex).
#[no_mangle]
pub extern "C" fn toa_udp_config_set_max_flows(flows: c_ulong) {
    MAX_FLOWS.store(flows as usize, Ordering::Relaxed);
}
