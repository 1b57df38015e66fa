// SPDX-License-Identifier: GPL-2.0

//! What toa takes as a client option: the kinds (`tcpopt_kinds`, and the
//! older `tcpopt_addr`, `tcpopt_addr_v6`; see [`crate::kinds`] for how they fit
//! together) and Alibaba Cloud CDN's kind 28 (`tcpopt_cdn`).
//!
//! Set at load time by the module parameters and at run time through
//! `/proc/sys/net/toa/<name>`; writers are serialized by the glue's config
//! mutex and go through the functions below, which refuse anything invalid
//! (`-EINVAL`, nothing changed). Readers in softirq take no lock: they read
//! the kinds in force as four words and the CDN switch with relaxed loads.
//! A reader racing a write may see some words of the old set and some of
//! the new; each kind it sees in force was valid before or after.

use core::ffi::{c_int, c_uint};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use kernel::error::code::EINVAL;

use crate::kinds::KindConfig;
use crate::{parse, wire};

/// The two slots (`tcpopt_addr`, `tcpopt_addr_v6`), for readers of the
/// sysctls; written only under the config mutex.
static SLOTS: [AtomicU8; 2] = [
    AtomicU8::new(KindConfig::DEFAULT.slots()[0]),
    AtomicU8::new(KindConfig::DEFAULT.slots()[1]),
];

/// The whole kind configuration; read and written only under the config
/// mutex (writers) — see [`with_config`].
static CONFIG: ConfigCell = ConfigCell(core::cell::UnsafeCell::new(KindConfig::DEFAULT));

/// The kinds in force, as [`wire::Kinds`] words, for the packet paths.
static KINDS: [AtomicU64; 4] = {
    let w = KindConfig::DEFAULT.effective().words();
    [
        AtomicU64::new(w[0]),
        AtomicU64::new(w[1]),
        AtomicU64::new(w[2]),
        AtomicU64::new(w[3]),
    ]
};

/// Whether Alibaba Cloud CDN's option (28/7, 28/19) is taken.
static CDN: AtomicBool = AtomicBool::new(wire::Rules::DEFAULT.cdn);

/// The kind configuration, in a cell only config-mutex holders touch.
struct ConfigCell(core::cell::UnsafeCell<KindConfig>);

// SAFETY: the cell is only accessed through `with_config`, whose callers
// hold the glue's config mutex, so accesses never overlap.
unsafe impl Sync for ConfigCell {}

/// Run `f` on the kind configuration and publish the result.
///
/// # Safety
///
/// The caller must hold the glue's config mutex.
unsafe fn with_config<R>(f: impl FnOnce(&mut KindConfig) -> R) -> R {
    // SAFETY: the caller holds the config mutex: no other access to the
    // cell runs meanwhile.
    let config = unsafe { &mut *CONFIG.0.get() };
    let r = f(config);
    for (cell, kind) in SLOTS.iter().zip(config.slots()) {
        cell.store(kind, Ordering::Relaxed);
    }
    for (cell, word) in KINDS.iter().zip(config.effective().words()) {
        cell.store(word, Ordering::Relaxed);
    }
    r
}

/// What packet paths take now.
pub fn rules() -> wire::Rules {
    wire::Rules {
        kinds: wire::Kinds::from_words([
            KINDS[0].load(Ordering::Relaxed),
            KINDS[1].load(Ordering::Relaxed),
            KINDS[2].load(Ordering::Relaxed),
            KINDS[3].load(Ordering::Relaxed),
        ]),
        cdn: CDN.load(Ordering::Relaxed),
    }
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
#[no_mangle]
pub extern "C" fn toa_config_kind(slot: c_uint) -> c_int {
    match SLOTS.get(slot as usize) {
        Some(k) => c_int::from(k.load(Ordering::Relaxed)),
        None => EINVAL.to_errno(),
    }
}

/// Set slot `slot` from the text an administrator wrote; 0 or `-EINVAL`
/// (and nothing changed) if the slot or the text is not valid.
///
/// # Safety
///
/// `text` must point to `len` readable bytes; the caller must hold the
/// glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_kind(slot: c_uint, text: *const u8, len: usize) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller holds the config mutex.
    match unsafe { with_config(|c| c.write_slot(slot as usize, text)) } {
        Some(()) => 0,
        None => EINVAL.to_errno(),
    }
}

/// Set the list of kinds from text; 0 or `-EINVAL` (nothing changed).
///
/// # Safety
///
/// `text` must point to `len` readable bytes; the caller must hold the
/// glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_kinds(text: *const u8, len: usize) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller holds the config mutex.
    match unsafe { with_config(|c| c.write_list(text)) } {
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
/// `buf` must be writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn toa_config_read_kinds(buf: *mut u8, size: usize) -> usize {
    if buf.is_null() {
        return 0;
    }
    // SAFETY: the caller guarantees `size` writable bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    let mut w = Buf { buf, len: 0 };
    let _ = write!(w, "{}", rules().kinds);
    w.len
}

/// Whether the CDN option is taken: 1 or 0.
#[no_mangle]
pub extern "C" fn toa_config_cdn() -> c_int {
    c_int::from(CDN.load(Ordering::Relaxed))
}

/// Switch the CDN option from text (`0` or `1`); 0 or `-EINVAL`.
///
/// # Safety
///
/// `text` must point to `len` readable bytes; the caller must hold the
/// glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_cdn(text: *const u8, len: usize) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    match parse::switch(text) {
        Some(on) => {
            CDN.store(on, Ordering::Relaxed);
            0
        }
        None => EINVAL.to_errno(),
    }
}

/// The kinds in force, for the load message.
pub fn kinds() -> wire::Kinds {
    rules().kinds
}

/// Which packets of a handshake may name the client
/// (`net.toa.tcpopt_packet`): the packets the balancer puts its option in.
/// A client whose balancer forwards its TCP options can put options of its
/// own in any of its packets; pinning the balancer's packets leaves it
/// none that counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedIn {
    /// Any (the default): the completing packet's client, else the SYN's
    /// (or a held-back ACK's). Fits every producer; a client can override
    /// a SYN-only balancer from its ACK, or name itself from its SYN to an
    /// ACK-only balancer whose option is lost.
    Any,
    /// The SYN only (Alibaba LVS, Alibaba Cloud CDN): options in the other
    /// packets never name the client.
    Syn,
    /// The ACK and data only (DPVS, JD Jupiter, Tencent): options in a SYN
    /// never name the client.
    Ack,
}

/// The words of [`NamedIn`], in its order.
const FROM_WORDS: [&str; 3] = ["any", "syn", "ack"];
/// The words of [`wire::Pick`], in its order.
const PICK_WORDS: [&str; 2] = ["first", "last"];

/// `tcpopt_packet`, as the index of its word.
static FROM: AtomicU8 = AtomicU8::new(0);
/// `tcpopt_position`, as the index of its word.
static PICK: AtomicU8 = AtomicU8::new(0);

/// The packets that may name the client now.
pub fn named_in() -> NamedIn {
    match FROM.load(Ordering::Relaxed) {
        1 => NamedIn::Syn,
        2 => NamedIn::Ack,
        _ => NamedIn::Any,
    }
}

/// Which client option of a packet is the balancer's now.
pub fn pick() -> wire::Pick {
    match PICK.load(Ordering::Relaxed) {
        1 => wire::Pick::Last,
        _ => wire::Pick::First,
    }
}

/// Which word setting a C call is about.
fn word_setting(which: c_uint) -> Option<(&'static AtomicU8, &'static [&'static str])> {
    match which {
        0 => Some((&FROM, &FROM_WORDS)),
        1 => Some((&PICK, &PICK_WORDS)),
        _ => None,
    }
}

/// Set word setting `which` (0: `tcpopt_packet`, 1: `tcpopt_position`) from
/// text; 0 or `-EINVAL` (nothing changed).
///
/// # Safety
///
/// `text` must point to `len` readable bytes; the caller must hold the
/// glue's config mutex.
#[no_mangle]
pub unsafe extern "C" fn toa_config_write_word(
    which: c_uint,
    text: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `len` readable bytes.
    let Some(text) = (unsafe { bytes(text, len) }) else {
        return EINVAL.to_errno();
    };
    let Some((cell, words)) = word_setting(which) else {
        return EINVAL.to_errno();
    };
    match parse::word(text, words).and_then(|i| u8::try_from(i).ok()) {
        Some(i) => {
            cell.store(i, Ordering::Relaxed);
            0
        }
        None => EINVAL.to_errno(),
    }
}

/// Write word setting `which` as text into `buf` (`size` bytes); how many
/// bytes were written.
///
/// # Safety
///
/// `buf` must be writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn toa_config_read_word(which: c_uint, buf: *mut u8, size: usize) -> usize {
    let Some((cell, words)) = word_setting(which) else {
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
