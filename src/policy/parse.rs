// SPDX-License-Identifier: GPL-2.0

//! Strict parsing of what administrators write to toa's sysctls and module
//! parameters. A write is taken whole or refused whole: these functions say
//! `None` for anything that is not exactly a valid value.
//!
//! Pure Rust, no kernel dependency: tested on the host by `toa-core`.

use crate::tcp::wire::{self, Kinds};

/// The bytes of `text` without ASCII whitespace at either end.
fn trim(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    text.get(start..end).unwrap_or(&[])
}

/// A decimal number without sign, prefix or separators, at most `max`.
pub fn decimal(text: &[u8], max: u32) -> Option<u32> {
    let digits = trim(text);
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(d - b'0');
    }
    u32::try_from(value).ok().filter(|v| *v <= max)
}

/// A TOA option kind: 0 (disabled) or 1..=255 except the kinds the kernel
/// uses itself ([`wire::RESERVED_KINDS`]).
pub fn kind(text: &[u8]) -> Option<u8> {
    let value = decimal(text, 255)?;
    if !wire::kind_is_configurable(value) {
        return None;
    }
    u8::try_from(value).ok()
}

/// A list of TOA option kinds separated by commas and/or whitespace, each
/// in 1..=255 and configurable ([`wire::kind_is_configurable`]); empty (or
/// whitespace only) is the empty set. Repeated kinds are taken once.
pub fn kind_list(text: &[u8]) -> Option<Kinds> {
    let text = trim(text);
    if text.is_empty() {
        return Some(Kinds::EMPTY);
    }
    let mut set = Kinds::EMPTY;
    // A comma separates exactly two kinds; whitespace around it is allowed.
    for item in text.split(|b| *b == b',') {
        let item = trim(item);
        if item.is_empty() {
            return None;
        }
        for word in item.split(|b| b.is_ascii_whitespace()) {
            if word.is_empty() {
                continue;
            }
            match kind(word)? {
                0 => return None,
                k => set = set.with(k),
            }
        }
    }
    Some(set)
}

/// A switch: `0` or `1` (whitespace around allowed).
pub fn switch(text: &[u8]) -> Option<bool> {
    match decimal(text, 1)? {
        0 => Some(false),
        _ => Some(true),
    }
}

/// One of `words` (whitespace around allowed, exact case): its index.
pub fn word(text: &[u8], words: &[&str]) -> Option<usize> {
    let text = trim(text);
    words.iter().position(|w| w.as_bytes() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_taken_whole() {
        let w = ["any", "syn", "ack"];
        assert_eq!(word(b"any", &w), Some(0));
        assert_eq!(word(b" ack\n", &w), Some(2));
        for bad in [&b""[..], b"SYN", b"sy", b"synack", b"syn ack", b"\0syn"] {
            assert_eq!(word(bad, &w), None, "{bad:?}");
        }
    }

    #[test]
    fn kinds_are_taken_with_whitespace_around() {
        assert_eq!(kind(b"200"), Some(200));
        assert_eq!(kind(b"254\n"), Some(254));
        assert_eq!(kind(b"  253 \n"), Some(253));
        assert_eq!(kind(b"0"), Some(0));
        assert_eq!(kind(b"255"), Some(255));
    }

    #[test]
    fn out_of_range_and_kernel_kinds_are_refused() {
        for bad in [
            &b"256"[..],
            b"1000",
            b"-1",
            b"2",
            b"8",
            b"19",
            b"29",
            b"30",
            b"34",
            b"28",
            b"1",
            b"5",
        ] {
            assert_eq!(kind(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn junk_is_refused() {
        for bad in [
            &b""[..],
            b"\n",
            b"abc",
            b"200abc",
            b"200 254",
            b"+200",
            b"0x20",
            b"2 00",
            b"99999999999999999999",
            b"4294967496",
            b"20\x000",
        ] {
            assert_eq!(kind(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn decimal_limits() {
        assert_eq!(decimal(b"4294967295", u32::MAX), Some(u32::MAX));
        assert_eq!(decimal(b"4294967296", u32::MAX), None);
        assert_eq!(decimal(b"0000000007", 7), Some(7));
        assert_eq!(decimal(b"8", 7), None);
    }

    #[test]
    fn kind_lists() {
        let k = |ks: &[u8]| ks.iter().fold(Kinds::EMPTY, |s, k| s.with(*k));
        assert_eq!(kind_list(b"200 253 254"), Some(k(&[200, 253, 254])));
        assert_eq!(kind_list(b"254,200\n"), Some(k(&[200, 254])));
        assert_eq!(kind_list(b" 200 , 253\t254 "), Some(k(&[200, 253, 254])));
        assert_eq!(kind_list(b"200 200"), Some(k(&[200])));
        assert_eq!(kind_list(b""), Some(Kinds::EMPTY));
        assert_eq!(kind_list(b" \n"), Some(Kinds::EMPTY));
        assert_eq!(kind_list(b"6"), Some(k(&[6])));
    }

    #[test]
    fn bad_kind_lists_are_refused() {
        for bad in [
            &b"0"[..],
            b"200 0",
            b"8",
            b"28",
            b"200,,254",
            b",200",
            b"200,",
            b"256",
            b"200;254",
            b"0x10",
            b"-1",
            b"200 abc",
            b"2 00 1",
        ] {
            assert_eq!(kind_list(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn switches() {
        assert_eq!(switch(b"0"), Some(false));
        assert_eq!(switch(b"1\n"), Some(true));
        for bad in [&b""[..], b"2", b"on", b"-0", b"01x"] {
            assert_eq!(switch(bad), None, "{bad:?}");
        }
    }
}
