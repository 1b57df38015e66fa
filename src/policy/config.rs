// SPDX-License-Identifier: GPL-2.0

//! What toa takes as a client option, in each network namespace: the kinds
//! (`tcpopt_kinds`, and the older `tcpopt_addr`, `tcpopt_addr_v6`; see
//! [`crate::policy::kinds`] for how they fit together), Alibaba Cloud CDN's kind 28
//! (`tcpopt_cdn`), and which packet and which option are the balancer's
//! (`tcpopt_packet`, `tcpopt_position`).
//!
//! Set at load time by the module parameters and at run time through
//! `/proc/sys/net/toa/<name>` of each namespace ([`crate::settings`]);
//! writers are serialized by the glue's config mutex and go through the
//! functions below, which refuse anything invalid (`-EINVAL`, nothing
//! changed). Readers in softirq take no lock: they read the kinds in force
//! as four words and the switches with relaxed loads. A reader racing a
//! write may see some words of the old set and some of the new; each kind
//! it sees in force was valid before or after.

use core::ffi::{c_int, c_uint};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use kernel::error::code::EINVAL;

use crate::policy::kinds::KindConfig;
use crate::settings::Settings;
use crate::{policy::parse, tcp::wire};

/// One network namespace's option settings (see [`crate::settings`]).
pub struct Options {
    /// The two slots (`tcpopt_addr`, `tcpopt_addr_v6`), for readers of the
    /// sysctls; written only under the config mutex.
    slots: [AtomicU8; 2],
    /// The whole kind configuration; read and written only under the
    /// config mutex — see [`Options::with_config`].
    config: ConfigCell,
    /// The kinds in force, as [`wire::Kinds`] words, for the packet paths.
    kinds: [AtomicU64; 4],
    /// Whether Alibaba Cloud CDN's option (28/7, 28/19) is taken.
    cdn: AtomicBool,
    /// `tcpopt_packet`, as the index of its word in `FROM_WORDS`.
    from: AtomicU8,
    /// `tcpopt_position`, as the index of its word in `PICK_WORDS`.
    pick: AtomicU8,
}

/// Every kind any namespace has had in force since load, and whether any
/// has taken the CDN option: the rules within which [`wire::may_name`]
/// lets a handshake packet go without a look at its namespace's settings.
/// Only ever grows, before a namespace's new kinds are stored (a packet
/// that races a write is judged under the old settings or the new).
static ANY_KINDS: [AtomicU64; 4] = {
    let w = KindConfig::DEFAULT.effective().words();
    [
        AtomicU64::new(w[0]),
        AtomicU64::new(w[1]),
        AtomicU64::new(w[2]),
        AtomicU64::new(w[3]),
    ]
};
/// See [`ANY_KINDS`].
static ANY_CDN: AtomicBool = AtomicBool::new(wire::Rules::DEFAULT.cdn);

/// The first word of [`any_rules`]' kinds (kinds 0 to 63), alone: what
/// [`wire::may_name_lazy`] reads before it needs the rest.
#[inline]
pub fn any_kinds_word0() -> u64 {
    ANY_KINDS[0].load(Ordering::Relaxed)
}

/// The rules every namespace's are within (see [`ANY_KINDS`]).
pub fn any_rules() -> wire::Rules {
    wire::Rules {
        kinds: wire::Kinds::from_words([
            ANY_KINDS[0].load(Ordering::Relaxed),
            ANY_KINDS[1].load(Ordering::Relaxed),
            ANY_KINDS[2].load(Ordering::Relaxed),
            ANY_KINDS[3].load(Ordering::Relaxed),
        ]),
        cdn: ANY_CDN.load(Ordering::Relaxed),
    }
}

/// The kind configuration, in a cell only config-mutex holders touch.
struct ConfigCell(core::cell::UnsafeCell<KindConfig>);

// SAFETY: the cell is only accessed through `Options::with_config` and
// `Options::copy_from`, whose callers hold the glue's config mutex, so
// accesses never overlap.
unsafe impl Sync for ConfigCell {}

impl Options {
    /// Out of the box: kinds 200, 253, 254, the CDN option, any packet and
    /// any option as long as they agree (`agree`, `only`).
    pub const fn new() -> Options {
        let w = KindConfig::DEFAULT.effective().words();
        let s = KindConfig::DEFAULT.slots();
        Options {
            slots: [AtomicU8::new(s[0]), AtomicU8::new(s[1])],
            config: ConfigCell(core::cell::UnsafeCell::new(KindConfig::DEFAULT)),
            kinds: [
                AtomicU64::new(w[0]),
                AtomicU64::new(w[1]),
                AtomicU64::new(w[2]),
                AtomicU64::new(w[3]),
            ],
            cdn: AtomicBool::new(wire::Rules::DEFAULT.cdn),
            from: AtomicU8::new(0),
            pick: AtomicU8::new(0),
        }
    }

    /// Run `f` on the kind configuration and publish the result.
    ///
    /// # Safety
    ///
    /// The caller must hold the glue's config mutex.
    unsafe fn with_config<R>(&self, f: impl FnOnce(&mut KindConfig) -> R) -> R {
        // SAFETY: the caller holds the config mutex: no other access to the
        // cell runs meanwhile.
        let config = unsafe { &mut *self.config.0.get() };
        let r = f(config);
        for (cell, kind) in self.slots.iter().zip(config.slots()) {
            cell.store(kind, Ordering::Relaxed);
        }
        for ((cell, any), word) in self
            .kinds
            .iter()
            .zip(&ANY_KINDS)
            .zip(config.effective().words())
        {
            any.fetch_or(word, Ordering::Relaxed);
            cell.store(word, Ordering::Relaxed);
        }
        r
    }

    /// Take every setting of `src`.
    ///
    /// # Safety
    ///
    /// The caller must hold the glue's config mutex.
    pub unsafe fn copy_from(&self, src: &Options) {
        // SAFETY: the caller holds the config mutex: no writer changes
        // `src`'s configuration meanwhile.
        let theirs = unsafe { *src.config.0.get() };
        // SAFETY: the caller holds the config mutex.
        unsafe { self.with_config(|c| *c = theirs) };
        // The host's CDN setting is in ANY_CDN already.
        self.cdn
            .store(src.cdn.load(Ordering::Relaxed), Ordering::Relaxed);
        self.from
            .store(src.from.load(Ordering::Relaxed), Ordering::Relaxed);
        self.pick
            .store(src.pick.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// What packet paths take now.
    pub fn rules(&self) -> wire::Rules {
        wire::Rules {
            kinds: wire::Kinds::from_words([
                self.kinds[0].load(Ordering::Relaxed),
                self.kinds[1].load(Ordering::Relaxed),
                self.kinds[2].load(Ordering::Relaxed),
                self.kinds[3].load(Ordering::Relaxed),
            ]),
            cdn: self.cdn.load(Ordering::Relaxed),
        }
    }

    /// The packets that may name the client now.
    pub fn named_in(&self) -> NamedIn {
        match self.from.load(Ordering::Relaxed) {
            1 => NamedIn::Any,
            2 => NamedIn::Syn,
            3 => NamedIn::Ack,
            _ => NamedIn::Agree,
        }
    }

    /// Which client option of a packet is the balancer's now.
    pub fn pick(&self) -> wire::Pick {
        match self.pick.load(Ordering::Relaxed) {
            1 => wire::Pick::First,
            2 => wire::Pick::Last,
            _ => wire::Pick::Only,
        }
    }

    /// Which word setting a C call is about.
    fn word_setting(&self, which: c_uint) -> Option<(&AtomicU8, &'static [&'static str])> {
        match which {
            0 => Some((&self.from, &FROM_WORDS)),
            1 => Some((&self.pick, &PICK_WORDS)),
            _ => None,
        }
    }
}

/// The kinds in force, read in place (no copy of the set: the handshake
/// ACK's quick path, `tcp/handshake.rs`); each word as [`Options::rules`]
/// reads it.
impl wire::KindWords for Options {
    #[inline(always)]
    fn kind_word(&self, i: usize) -> u64 {
        self.kinds[i & 3].load(Ordering::Relaxed)
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

/// The option settings in force in the namespace `s` belongs to.
///
/// # Safety
///
/// `s` must point to a live [`Settings`].
unsafe fn options<'a>(s: *const Settings) -> &'a Options {
    // SAFETY: the caller guarantees a live `Settings`.
    unsafe { (*s).options() }
}

/// Apply `f` to the kind configuration in force in the namespace of `s`;
/// if it succeeds, the result becomes the namespace's own (nothing changes
/// otherwise).
///
/// # Safety
///
/// `s` must point to a live [`Settings`]; the caller must hold the glue's
/// config mutex.
unsafe fn write_config(
    s: *const Settings,
    f: impl FnOnce(&mut KindConfig) -> Option<()>,
) -> Option<()> {
    // SAFETY: the caller guarantees a live `Settings` and holds the config
    // mutex, under which the configuration is read.
    let mut config = unsafe { *options(s).config.0.get() };
    f(&mut config)?;
    // SAFETY: as above.
    unsafe { options_mut(s).with_config(|c| *c = config) };
    Some(())
}

/// The namespace's own option settings, for a writer (taken from the
/// host's first if they followed them).
///
/// # Safety
///
/// `s` must point to a live [`Settings`]; the caller must hold the glue's
/// config mutex.
unsafe fn options_mut<'a>(s: *const Settings) -> &'a Options {
    // SAFETY: the caller guarantees a live `Settings` and holds the mutex.
    unsafe { (*s).own_options() }
}

/// The bytes of `len` at `text`, or `None` for NULL.
///
/// # Safety
///
/// `text` must be NULL or point to `len` readable bytes that stay unchanged
/// for `'a`.
unsafe fn bytes<'a>(text: *const u8, len: usize) -> Option<&'a [u8]> {
    if text.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `len` readable bytes.
    Some(unsafe { core::slice::from_raw_parts(text, len) })
}

/// The kind in slot `slot` (0: `tcpopt_addr`, 1: `tcpopt_addr_v6`), or
/// `-EINVAL` for another slot.
///
/// # Safety
///
/// `s` must point to a live [`Settings`].
#[no_mangle]
pub unsafe extern "C" fn toa_config_kind(s: *const Settings, slot: c_uint) -> c_int {
    // SAFETY: the caller guarantees a live `Settings`.
    match unsafe { options(s) }.slots.get(slot as usize) {
        Some(k) => c_int::from(k.load(Ordering::Relaxed)),
        None => EINVAL.to_errno(),
    }
}

/// Set slot `slot` from the text an administrator wrote; 0 or `-EINVAL`
/// (and nothing changed) if the slot or the text is not valid.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `text` to `len` readable
/// bytes; the caller must hold the glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_kind(
    s: *const Settings,
    slot: c_uint,
    text: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller guarantees a live `Settings` and holds the config
    // mutex.
    match unsafe { write_config(s, |c| c.write_slot(slot as usize, text)) } {
        Some(()) => 0,
        None => EINVAL.to_errno(),
    }
}

/// Set the list of kinds from text; 0 or `-EINVAL` (nothing changed).
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `text` to `len` readable
/// bytes; the caller must hold the glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_kinds(
    s: *const Settings,
    text: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller guarantees a live `Settings` and holds the config
    // mutex.
    match unsafe { write_config(s, |c| c.write_list(text)) } {
        Some(()) => 0,
        None => EINVAL.to_errno(),
    }
}

/// A `core::fmt` writer into a byte buffer that drops what does not fit.
struct Buf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Write the kinds in force as text (`200 253 254`) into `buf` (`size`
/// bytes); how many bytes were written.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `buf` be writable for `size`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn toa_config_read_kinds(
    s: *const Settings,
    buf: *mut u8,
    size: usize,
) -> usize {
    if buf.is_null() {
        return 0;
    }
    // SAFETY: the caller guarantees `size` writable bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    // SAFETY: the caller guarantees a live `Settings`.
    let kinds = unsafe { options(s) }.rules().kinds;
    let mut w = Buf { buf, len: 0 };
    let _ = write!(w, "{}", kinds);
    w.len
}

/// Whether the CDN option is taken: 1 or 0.
///
/// # Safety
///
/// `s` must point to a live [`Settings`].
#[no_mangle]
pub unsafe extern "C" fn toa_config_cdn(s: *const Settings) -> c_int {
    // SAFETY: the caller guarantees a live `Settings`.
    c_int::from(unsafe { options(s) }.cdn.load(Ordering::Relaxed))
}

/// Switch the CDN option from text (`0` or `1`); 0 or `-EINVAL`.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `text` to `len` readable
/// bytes; the caller must hold the glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_cdn(
    s: *const Settings,
    text: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    match parse::switch(text) {
        Some(on) => {
            ANY_CDN.fetch_or(on, Ordering::Relaxed);
            // SAFETY: the caller guarantees a live `Settings` and holds
            // the config mutex.
            unsafe { options_mut(s) }.cdn.store(on, Ordering::Relaxed);
            0
        }
        None => EINVAL.to_errno(),
    }
}

/// Which packets of a handshake may name the client
/// (`net.toa.tcpopt_packet`): the packets the balancer puts its option in.
/// A client whose balancer forwards its TCP options can put options of its
/// own in any of its packets; pinning the balancer's packets leaves it
/// none that counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedIn {
    /// Any packet, as long as they agree (the default): the completing
    /// packet's client, else the SYN's (or a held-back ACK's); two packets
    /// naming different clients name nobody (one of them is not the
    /// balancer's). Fits every producer; a client can still name itself
    /// from its SYN to an ACK-only balancer whose option is lost.
    Agree,
    /// Any packet, the later one winning (the older modules' rule): the
    /// completing packet's client, else the SYN's. A client can override
    /// a SYN-only balancer from its ACK.
    Any,
    /// The SYN only (Alibaba LVS, Alibaba Cloud CDN): options in the other
    /// packets never name the client.
    Syn,
    /// The ACK and data only (DPVS, JD Jupiter, Tencent): options in a SYN
    /// never name the client.
    Ack,
}

/// The words of [`NamedIn`], in its order.
const FROM_WORDS: [&str; 4] = ["agree", "any", "syn", "ack"];
/// The words of [`wire::Pick`], in its order.
const PICK_WORDS: [&str; 3] = ["only", "first", "last"];

/// Set word setting `which` (0: `tcpopt_packet`, 1: `tcpopt_position`) from
/// text; 0 or `-EINVAL` (nothing changed).
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `text` to `len` readable
/// bytes; the caller must hold the glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_word(
    s: *const Settings,
    which: c_uint,
    text: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller guarantees a live `Settings`.
    let Some((_, words)) = unsafe { options(s) }.word_setting(which) else {
        return EINVAL.to_errno();
    };
    let Some(i) = parse::word(text, words).and_then(|i| u8::try_from(i).ok()) else {
        return EINVAL.to_errno();
    };
    // Valid: now the namespace's own.
    // SAFETY: the caller guarantees a live `Settings` and holds the config
    // mutex.
    if let Some((cell, _)) = unsafe { options_mut(s) }.word_setting(which) {
        cell.store(i, Ordering::Relaxed);
    }
    0
}

/// Write word setting `which` as text into `buf` (`size` bytes); how many
/// bytes were written.
///
/// # Safety
///
/// `s` must point to a live [`Settings`] and `buf` be writable for `size`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn toa_config_read_word(
    s: *const Settings,
    which: c_uint,
    buf: *mut u8,
    size: usize,
) -> usize {
    // SAFETY: the caller guarantees a live `Settings`.
    let Some((cell, words)) = unsafe { options(s) }.word_setting(which) else {
        return 0;
    };
    if buf.is_null() {
        return 0;
    }
    // SAFETY: the caller guarantees `size` writable bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    let word = words
        .get(usize::from(cell.load(Ordering::Relaxed)))
        .copied()
        .unwrap_or("");
    let mut w = Buf { buf, len: 0 };
    let _ = w.write_str(word);
    w.len
}
