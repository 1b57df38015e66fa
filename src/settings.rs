// SPDX-License-Identifier: GPL-2.0

//! One network namespace's `net.toa.*`: which options name a client
//! ([`crate::policy::config`]), which balancers may ([`crate::policy::trust`]), and whether
//! UDP datagrams of flows are rewritten (`udp_rewrite`).
//!
//! The glue keeps a [`Settings`] in each namespace's private data (its
//! `struct toa_net`) and hands packet paths the one of the namespace the
//! packet is in; each namespace's `/proc/sys/net/toa` reads and writes its
//! own. The initial namespace's are the host's: they start with the module
//! parameters' values ([`LOAD`], which parameters given at load write).
//! Every other namespace follows the host's values, group by group (the
//! `tcpopt_*` settings, `trusted_sources`, `udp_rewrite`), until its root
//! writes one of the group: from then on that group is its own, starting
//! from the host's values at that moment. So a container or a pod behind
//! the node's balancer is served as the node is, whenever it was made and
//! whenever the node's settings change, until its root says otherwise. The
//! table sizes and the UDP timeout are the host's ([`crate::udp::config`]):
//! the tables are shared.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

use crate::policy::config::Options;
use crate::policy::trust::Trust;

/// One namespace's settings.
pub struct Settings {
    /// The option settings (`tcpopt_*`), when they are the namespace's own.
    options: Options,
    /// The balancers that may name a client (`trusted_sources`), when they
    /// are the namespace's own.
    trust: Trust,
    /// Whether datagrams of flows are rewritten (`udp_rewrite`), when it is
    /// the namespace's own.
    udp_rewrite: AtomicBool,
    /// Which groups are the namespace's own ([`OWN_OPTIONS`]...); the
    /// others follow the host's. Bits are only ever set.
    own: AtomicU8,
}

/// The `tcpopt_*` settings are the namespace's own.
pub const OWN_OPTIONS: u8 = 1;
/// `trusted_sources` is the namespace's own.
pub const OWN_TRUST: u8 = 2;
/// `udp_rewrite` is the namespace's own.
pub const OWN_REWRITE: u8 = 4;
/// Every group (the host's own settings).
const OWN_ALL: u8 = OWN_OPTIONS | OWN_TRUST | OWN_REWRITE;

/// The initial namespace's settings (NULL before it has them and after
/// they go).
// INVARIANT: non-NULL only between `toa_settings_init(.., host = true)`
// and `toa_settings_exit`, while the memory is the initial namespace's
// live data, which the glue frees only after every hook, sysctl handler
// and namespace that could read it is gone.
static HOST: AtomicPtr<Settings> = AtomicPtr::new(core::ptr::null_mut());

impl Settings {
    /// The defaults, every group the namespace's own.
    pub const fn new() -> Settings {
        Settings {
            options: Options::new(),
            trust: Trust::new(),
            udp_rewrite: AtomicBool::new(true),
            own: AtomicU8::new(OWN_ALL),
        }
    }

    /// The host's settings, if `group` follows them here.
    fn host_for(&self, group: u8) -> Option<&Settings> {
        if self.own.load(Ordering::Acquire) & group != 0 {
            return None;
        }
        self.host()
    }

    /// The host's settings, unless these are the host's (or there is no
    /// host yet).
    #[inline(always)]
    fn host(&self) -> Option<&Settings> {
        let host = HOST.load(Ordering::Acquire);
        if host.is_null() || core::ptr::eq(host, self) {
            return None;
        }
        // SAFETY: a non-NULL `HOST` is the initial namespace's live
        // settings, kept until no reader can be here (see `HOST`).
        Some(unsafe { &*host })
    }

    /// [`Settings::options`] and [`Settings::trust`] at once, with one
    /// look at which groups follow the host's (every handshake ACK naming
    /// a client asks for both).
    #[inline(always)]
    pub fn options_and_trust(&self) -> (&Options, &Trust) {
        let own = self.own.load(Ordering::Acquire);
        let host = if own & (OWN_OPTIONS | OWN_TRUST) == OWN_OPTIONS | OWN_TRUST {
            None
        } else {
            self.host()
        };
        let of = |group: u8| match host {
            Some(h) if own & group == 0 => h,
            _ => self,
        };
        (&of(OWN_OPTIONS).options, &of(OWN_TRUST).trust)
    }

    /// The `tcpopt_*` settings in force in the namespace.
    pub fn options(&self) -> &Options {
        self.host_for(OWN_OPTIONS)
            .map_or(&self.options, |h| &h.options)
    }

    /// The trusted sources in force in the namespace.
    pub fn trust(&self) -> &Trust {
        self.host_for(OWN_TRUST).map_or(&self.trust, |h| &h.trust)
    }

    /// Whether datagrams of flows are rewritten in the namespace.
    pub fn rewrite(&self) -> bool {
        self.host_for(OWN_REWRITE)
            .map_or(&self.udp_rewrite, |h| &h.udp_rewrite)
            .load(Ordering::Relaxed)
    }

    /// Whether `udp_rewrite` follows the host's.
    pub fn rewrite_follows(&self) -> bool {
        self.host_for(OWN_REWRITE).is_some()
    }

    /// The namespace's own `tcpopt_*` settings, for a writer: taken from
    /// the host's first if they followed them.
    ///
    /// # Safety
    ///
    /// The caller must hold the glue's config mutex.
    pub unsafe fn own_options(&self) -> &Options {
        if let Some(h) = self.host_for(OWN_OPTIONS) {
            // SAFETY: the caller holds the config mutex.
            unsafe { self.options.copy_from(&h.options) };
            self.own.fetch_or(OWN_OPTIONS, Ordering::Release);
        }
        &self.options
    }

    /// The namespace's own trusted sources, for a writer: taken from the
    /// host's first if they followed them.
    ///
    /// # Safety
    ///
    /// The caller must hold the glue's trust mutex.
    pub unsafe fn own_trust(&self) -> &Trust {
        if let Some(h) = self.host_for(OWN_TRUST) {
            // SAFETY: the caller holds the trust mutex, and no reader has
            // seen the namespace's own list yet: readers look at it only
            // once the bit below is set.
            unsafe { self.trust.copy_from(&h.trust) };
            self.own.fetch_or(OWN_TRUST, Ordering::Release);
        }
        &self.trust
    }

    /// The namespace's own `udp_rewrite`, for a writer: taken from the
    /// host's first if it followed it. The caller holds the config mutex.
    pub fn own_rewrite(&self) -> &AtomicBool {
        if let Some(h) = self.host_for(OWN_REWRITE) {
            self.udp_rewrite
                .store(h.udp_rewrite.load(Ordering::Relaxed), Ordering::Relaxed);
            self.own.fetch_or(OWN_REWRITE, Ordering::Release);
        }
        &self.udp_rewrite
    }
}

/// Whether the namespace whose settings are `s` trusts any balancer (its
/// `trusted_sources`, or the host's it follows, is not empty): the glue
/// registers a namespace's UDP hooks only while it does.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] for the call.
#[no_mangle]
pub unsafe extern "C" fn toa_settings_trust_anyone(s: *const Settings) -> bool {
    // SAFETY: the caller guarantees a live `Settings`.
    unsafe { &*s }.trust().anyone()
}

impl Default for Settings {
    fn default() -> Self {
        Self::new()
    }
}

/// The room the glue keeps for a namespace's [`Settings`]
/// (`TOA_SETTINGS_MAX`, also checked at load): with the glue's own fields
/// ahead of it (`struct toa_net`, under 128 bytes) a namespace's toa data
/// stays one 4 KiB allocation.
pub const SETTINGS_MAX: usize = 3968;

// The glue keeps a `Settings` after a pointer-sized field of its own, in
// memory the kernel allocates (at least 8-byte aligned).
const _: () = assert!(core::mem::align_of::<Settings>() <= 8);
const _: () = assert!(core::mem::size_of::<Settings>() <= SETTINGS_MAX);

/// What a namespace's settings start from ([`toa_settings_init`]); never
/// written.
static NEW: Settings = Settings::new();

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

/// Set up a namespace's settings at `dst`: the host's (the initial
/// namespace's, from the module parameters' values), or a namespace's that
/// follow the host's.
///
/// # Safety
///
/// `dst` must be valid for writing a [`Settings`], aligned, and not yet
/// seen by any reader (a namespace being set up), and stay allocated until
/// [`toa_settings_exit`] (host) or until its namespace's hooks and sysctls
/// are gone. The caller must hold the glue's config and trust mutexes.
#[no_mangle]
pub unsafe extern "C" fn toa_settings_init(dst: *mut Settings, host: bool) {
    // SAFETY: the caller guarantees `dst` is valid, aligned and unseen;
    // copied from a template (a `Settings` is 3.4 KiB: not through the
    // stack, as `dst.write(Settings::new())` would build it).
    unsafe { core::ptr::copy_nonoverlapping(&NEW, dst, 1) };
    // SAFETY: `dst` was just written.
    let s = unsafe { &*dst };
    if host {
        // SAFETY: the caller holds the config mutex.
        unsafe { s.options.copy_from(&LOAD.options) };
        // SAFETY: the caller holds the trust mutex; nobody reads `s` yet.
        unsafe { s.trust.copy_from(&LOAD.trust) };
        s.udp_rewrite.store(LOAD.rewrite(), Ordering::Relaxed);
        // INVARIANT: the initial namespace's settings, live until
        // `toa_settings_exit`.
        HOST.store(dst, Ordering::Release);
    } else {
        s.own.store(0, Ordering::Release);
    }
}

/// The initial namespace's settings at `s` are going: namespaces fall back
/// to their own (unload only).
///
/// # Safety
///
/// `s` must be the settings given to [`toa_settings_init`] for the host.
#[no_mangle]
pub unsafe extern "C" fn toa_settings_exit(s: *mut Settings) {
    let _ = HOST.compare_exchange(
        s,
        core::ptr::null_mut(),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}
