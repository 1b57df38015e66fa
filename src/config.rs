// SPDX-License-Identifier: GPL-2.0

//! Which TCP option kinds toa takes as TOA options.
//!
//! Two slots, `tcpopt_addr` (default 200: Tencent, LVS 2012) and
//! `tcpopt_addr_v6` (default 254: Alibaba LVS, Huawei ELB, DPVS); either kind
//! is accepted with either option length. Set at load time by the module
//! parameters and at run time by `/proc/sys/net/toa/<name>`; both go through
//! [`toa_config_write_kind`], which refuses anything but a configurable kind.

use core::ffi::{c_int, c_uint};
use core::sync::atomic::{AtomicU8, Ordering};

use kernel::error::code::EINVAL;

use crate::{parse, wire};

/// The configured kinds; read in softirq with plain relaxed loads (each slot
/// is one byte, so a reader sees the old or the new kind, never a mix).
static KINDS: [AtomicU8; 2] = [AtomicU8::new(200), AtomicU8::new(254)];

/// The kinds in force now.
pub fn kinds() -> wire::Kinds {
    wire::Kinds([
        KINDS[0].load(Ordering::Relaxed),
        KINDS[1].load(Ordering::Relaxed),
    ])
}

/// The kind in slot `slot` (0: `tcpopt_addr`, 1: `tcpopt_addr_v6`), or
/// `-EINVAL` for another slot.
#[no_mangle]
pub extern "C" fn toa_config_kind(slot: c_uint) -> c_int {
    match KINDS.get(slot as usize) {
        Some(k) => c_int::from(k.load(Ordering::Relaxed)),
        None => EINVAL.to_errno(),
    }
}

/// Set slot `slot` from the text an administrator wrote; 0 or `-EINVAL`
/// (and nothing changed) if the slot or the text is not valid.
///
/// # Safety
///
/// `text` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_kind(slot: c_uint, text: *const u8, len: usize) -> c_int {
    let Some(cell) = KINDS.get(slot as usize) else {
        return EINVAL.to_errno();
    };
    if text.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller guarantees `len` readable bytes at `text`, and they
    // are not written while this function runs.
    let text = unsafe { core::slice::from_raw_parts(text, len) };
    match parse::kind(text) {
        Some(kind) => {
            cell.store(kind, Ordering::Relaxed);
            0
        }
        None => EINVAL.to_errno(),
    }
}
