// SPDX-License-Identifier: GPL-2.0

//! One network namespace's `net.toa.*`: which options name a client
//! ([`crate::policy::config`]), which balancers may ([`crate::policy::trust`]), and whether
//! UDP datagrams of flows are rewritten (`udp_rewrite`).
//!
//! The glue keeps a [`Settings`] in each namespace's private data (its
//! `struct toa_net`) and hands packet paths the one of the namespace the
//! packet is in; each namespace's `/proc/sys/net/toa` reads and writes its
//! own. The initial namespace starts with the module parameters' values
//! ([`LOAD`], which parameters given at load write); a namespace made later
//! starts with a copy of the initial namespace's values at that moment, so
//! that a container or a pod behind the node's balancer is served as the
//! node is until its own root says otherwise. The table sizes and the UDP
//! timeout are the host's ([`crate::udp::config`]): the tables are shared.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::policy::config::Options;
use crate::policy::trust::Trust;

/// One namespace's settings.
pub struct Settings {
    /// The option settings (`tcpopt_*`).
    pub options: Options,
    /// The balancers that may name a client (`trusted_sources`).
    pub trust: Trust,
    /// Whether datagrams of flows are rewritten (`udp_rewrite`).
    pub udp_rewrite: AtomicBool,
}

impl Settings {
    /// The defaults.
    pub const fn new() -> Settings {
        Settings {
            options: Options::new(),
            trust: Trust::new(),
            udp_rewrite: AtomicBool::new(true),
        }
    }

    /// Whether datagrams of flows are rewritten.
    pub fn rewrite(&self) -> bool {
        self.udp_rewrite.load(Ordering::Relaxed)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::new()
    }
}

/// The room the glue keeps for a namespace's [`Settings`]
/// (`TOA_SETTINGS_MAX`, also checked at load).
pub const SETTINGS_MAX: usize = 3072;

// The glue keeps a `Settings` after a pointer-sized field of its own, in
// memory the kernel allocates (at least 8-byte aligned).
const _: () = assert!(core::mem::align_of::<Settings>() <= 8);
const _: () = assert!(core::mem::size_of::<Settings>() <= SETTINGS_MAX);

/// The module parameters' values: written by parameters given at load
/// (before any namespace has settings), copied into the initial namespace's
/// when toa registers its per-namespace data.
pub static LOAD: Settings = Settings::new();

/// How many bytes a [`Settings`] takes (the glue allocates them).
#[no_mangle]
pub extern "C" fn toa_settings_size() -> usize {
    core::mem::size_of::<Settings>()
}

/// The module parameters' values ([`LOAD`]).
#[no_mangle]
pub extern "C" fn toa_settings_load() -> *const Settings {
    &LOAD
}

/// Set up the settings at `dst` as a copy of `src`'s.
///
/// # Safety
///
/// `dst` must be valid for writing a [`Settings`], aligned, and not yet
/// seen by any reader (a namespace being set up); `src` must point to a
/// live [`Settings`]. The caller must hold the glue's config and trust
/// mutexes.
#[no_mangle]
pub unsafe extern "C" fn toa_settings_init(dst: *mut Settings, src: *const Settings) {
    // SAFETY: the caller guarantees `dst` is valid, aligned and unseen.
    unsafe { dst.write(Settings::new()) };
    // SAFETY: `dst` was just written; `src` is live (the caller).
    let (dst, src) = unsafe { (&*dst, &*src) };
    // SAFETY: the caller holds the config mutex.
    unsafe { dst.options.copy_from(&src.options) };
    // SAFETY: the caller holds the trust mutex; nobody reads `dst` yet.
    unsafe { dst.trust.copy_from(&src.trust) };
    dst.udp_rewrite.store(src.rewrite(), Ordering::Relaxed);
}
