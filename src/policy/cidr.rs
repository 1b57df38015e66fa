// SPDX-License-Identifier: GPL-2.0

//! Lists of IPv4/IPv6 prefixes (CIDRs): the balancers toa trusts.
//!
//! `net.toa.trusted_sources` holds such a list. A packet whose source (as the
//! backend sees it: the balancer's address after FULLNAT) is in the list may
//! name a client; an empty list trusts every source. Parsing is strict: a
//! list is taken whole or refused whole.
//!
//! Pure Rust, no kernel dependency, no allocation (a list is a fixed-size
//! value): tested on the host by `toa-core`.

use core::fmt::{self, Write};
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// Most prefixes a list holds.
pub const MAX_PREFIXES: usize = 64;

/// A packet's source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From an IPv4 packet.
    V4([u8; 4]),
    /// From an IPv6 packet.
    V6([u8; 16]),
}

/// One prefix: the first `len` bits of `addr`, of IPv4 (`v6 == false`,
/// address in the first 4 bytes) or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    v6: bool,
    addr: [u8; 16],
    len: u8,
}

impl Prefix {
    const ZERO: Prefix = Prefix {
        v6: false,
        addr: [0; 16],
        len: 0,
    };

    /// Parse `a.b.c.d[/n]` or `v6addr[/n]`; a bare address is a host prefix.
    /// Refused: bad addresses or lengths, and bits set past the length.
    pub fn parse(text: &str) -> Option<Prefix> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let (v6, bytes, max) = if addr.contains(':') {
            (true, Ipv6Addr::from_str(addr).ok()?.octets(), 128)
        } else {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&Ipv4Addr::from_str(addr).ok()?.octets());
            (false, b, 32)
        };
        let len = match len {
            None => max,
            // Digits only: no sign, no spaces, no leading zeros but "0".
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|c| c.is_ascii_digit()) => {
                if l.len() > 1 && l.starts_with('0') {
                    return None;
                }
                l.parse::<u8>().ok().filter(|n| *n <= max)?
            }
            Some(_) => return None,
        };
        // INVARIANT: `len` is at most 32 (IPv4) or 128 (IPv6), which
        // `masked` relies on to stay inside the 16 address bytes.
        let p = Prefix {
            v6,
            addr: bytes,
            len,
        };
        // The address must be the prefix itself (as `ip route` insists).
        if p.masked(&bytes) != bytes {
            return None;
        }
        Some(p)
    }

    /// `addr` with the bits past this prefix's length cleared.
    fn masked(&self, addr: &[u8; 16]) -> [u8; 16] {
        let mut out = [0u8; 16];
        let full = usize::from(self.len / 8);
        out[..full].copy_from_slice(&addr[..full]);
        let rest = self.len % 8;
        if rest != 0 {
            out[full] = addr[full] & (0xff << (8 - rest));
        }
        out
    }

    /// Whether `src` is inside this prefix: the address as one integer,
    /// masked and compared (every handshake that names a client asks, for
    /// each prefix until one matches).
    #[inline]
    pub fn contains(&self, src: &Source) -> bool {
        match src {
            Source::V4(a) => self.contains_v4(u32::from_be_bytes(*a)),
            Source::V6(a) if self.v6 => {
                // The address is the prefix itself (`parse`): no bits
                // past `len`; len 0: the whole address is past it.
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(u32::from(self.len)))
                    .unwrap_or(0);
                u128::from_be_bytes(*a) & mask == u128::from_be_bytes(self.addr)
            }
            Source::V6(_) => false,
        }
    }

    /// [`Prefix::contains`] for an IPv4 source `a` (as an integer).
    #[inline]
    fn contains_v4(&self, a: u32) -> bool {
        self.v4_net().is_some_and(|n| a & n.mask == n.net)
    }

    /// An IPv4 prefix's network and mask; `None` for an IPv6 prefix.
    #[inline]
    fn v4_net(&self) -> Option<V4Net> {
        if self.v6 {
            return None;
        }
        let net = u32::from_be_bytes([self.addr[0], self.addr[1], self.addr[2], self.addr[3]]);
        // No bits past `len` (`parse`); len 0: the whole address is past it.
        let mask = u32::MAX
            .checked_shl(32u32.saturating_sub(u32::from(self.len)))
            .unwrap_or(0);
        Some(V4Net { net, mask })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", Ipv6Addr::from(self.addr), self.len)
        } else {
            let a = [self.addr[0], self.addr[1], self.addr[2], self.addr[3]];
            write!(f, "{}/{}", Ipv4Addr::from(a), self.len)
        }
    }
}

/// An IPv4 prefix as [`PrefixList::contains_v4`] tests it: the network
/// and its mask, as integers (`a & mask == net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct V4Net {
    net: u32,
    mask: u32,
}

impl V4Net {
    const ZERO: V4Net = V4Net { net: 0, mask: 0 };
}

/// A list of up to [`MAX_PREFIXES`] prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixList {
    len: usize,
    items: [Prefix; MAX_PREFIXES],
    /// How many of `items` are IPv4 prefixes.
    v4_len: usize,
    /// The IPv4 prefixes of `items`, in their order, as networks and
    /// masks: the test every handshake ACK naming a client asks
    /// ([`PrefixList::contains_v4`]) is then an AND and a compare a prefix.
    v4: [V4Net; MAX_PREFIXES],
}

impl Default for PrefixList {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl PrefixList {
    /// The empty list.
    pub const EMPTY: PrefixList = PrefixList {
        len: 0,
        items: [Prefix::ZERO; MAX_PREFIXES],
        v4_len: 0,
        v4: [V4Net::ZERO; MAX_PREFIXES],
    };

    /// Parse a list separated by commas and/or whitespace into `self`.
    /// On `None` (a bad entry, more than [`MAX_PREFIXES`], not UTF-8),
    /// `self` holds an unspecified partial list.
    pub fn parse_into(&mut self, text: &[u8]) -> Option<()> {
        let text = core::str::from_utf8(text).ok()?;
        self.len = 0;
        self.v4_len = 0;
        for entry in text.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
            if entry.is_empty() {
                continue;
            }
            let slot = self.items.get_mut(self.len)?;
            let p = Prefix::parse(entry)?;
            *slot = p;
            self.len += 1;
            if let Some(net) = p.v4_net() {
                // At most as many as `items`: the slot is there.
                *self.v4.get_mut(self.v4_len)? = net;
                self.v4_len += 1;
            }
        }
        // A list of only separators (",,") is as bad as any other typo;
        // nothing at all, or only whitespace, is the empty list.
        if self.len == 0 && text.contains(',') {
            return None;
        }
        Some(())
    }

    /// Whether [`PrefixList::parse_into`] would take `text` (without a list
    /// to parse into).
    pub fn valid(text: &[u8]) -> bool {
        let Ok(text) = core::str::from_utf8(text) else {
            return false;
        };
        let mut n = 0;
        for entry in text.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
            if entry.is_empty() {
                continue;
            }
            if n == MAX_PREFIXES || Prefix::parse(entry).is_none() {
                return false;
            }
            n += 1;
        }
        !(n == 0 && text.contains(','))
    }

    /// The prefixes.
    pub fn prefixes(&self) -> &[Prefix] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Whether the list has no prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `src` is in one of the prefixes.
    pub fn contains(&self, src: &Source) -> bool {
        self.prefixes().iter().any(|p| p.contains(src))
    }

    /// [`PrefixList::contains`] for an IPv4 source `addr`: the same answer
    /// (a property test holds them to it) with IPv4's arithmetic alone
    /// (every handshake ACK naming a client asks, on the quick path).
    #[inline]
    pub fn contains_v4(&self, addr: [u8; 4]) -> bool {
        let a = u32::from_be_bytes(addr);
        self.v4
            .get(..self.v4_len)
            .unwrap_or(&[])
            .iter()
            .any(|n| a & n.mask == n.net)
    }

    /// Write the list, space-separated, into `buf`; how many bytes were
    /// written (the text is cut if `buf` is too small).
    pub fn format(&self, buf: &mut [u8]) -> usize {
        let mut w = SliceWriter { buf, len: 0 };
        for (i, p) in self.prefixes().iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(w, "{sep}{p}");
        }
        w.len
    }
}

/// `fmt::Write` into a byte slice, cutting what does not fit.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().saturating_sub(self.len);
        let n = s.len().min(room);
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + n),
            s.as_bytes().get(..n),
        ) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_agrees_with_parse_into() {
        let many = (0..MAX_PREFIXES + 1)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect::<Vec<_>>()
            .join(",");
        for text in [
            "",
            " ",
            ",,",
            "10.0.0.0/8",
            "10.0.0.1/8",
            "10.0.0.0/8, fd00::/64",
            "::/0 0.0.0.0/0",
            "nonsense",
            "10.0.0.0/33",
            many.as_str(),
        ] {
            let mut l = PrefixList::EMPTY;
            assert_eq!(
                PrefixList::valid(text.as_bytes()),
                l.parse_into(text.as_bytes()).is_some(),
                "{text:?}"
            );
        }
        assert!(!PrefixList::valid(&[0xff, 0xfe]));
    }

    #[test]
    fn a_list_parsed_again_forgets_the_last_ones_ipv4_prefixes() {
        // Trust writes each new list into a slot that held an older one.
        let mut l = PrefixList::EMPTY;
        let full = (0..MAX_PREFIXES)
            .map(|i| format!("10.{i}.0.0/16"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(l.parse_into(full.as_bytes()).is_some());
        assert!(l.contains_v4([10, 63, 1, 1]));
        for (text, ins, outs) in [
            ("192.168.0.0/16 fd00::/8", [192, 168, 3, 4], [10, 0, 1, 1]),
            ("fd00::/8", [0, 0, 0, 0], [10, 0, 1, 1]),
            ("", [0, 0, 0, 0], [192, 168, 3, 4]),
            ("0.0.0.0/0", [10, 63, 1, 1], [0, 0, 0, 0]),
        ] {
            assert!(l.parse_into(text.as_bytes()).is_some(), "{text}");
            if ins != [0; 4] {
                assert!(l.contains_v4(ins), "{text}: {ins:?}");
            }
            if outs != [0; 4] {
                assert!(!l.contains_v4(outs), "{text}: {outs:?}");
            }
            for a in [ins, outs] {
                assert_eq!(
                    l.contains_v4(a),
                    l.contains(&Source::V4(a)),
                    "{text}: {a:?}"
                );
            }
        }
        // A refused list leaves a partial one; it is never put in force.
        assert!(l.parse_into(b"10.0.0.0/8 nonsense").is_none());
    }
    use proptest::prelude::*;

    fn list(text: &str) -> Option<PrefixList> {
        let mut l = PrefixList::EMPTY;
        l.parse_into(text.as_bytes()).map(|()| l)
    }

    fn v4(a: [u8; 4]) -> Source {
        Source::V4(a)
    }

    fn v6(s: &str) -> Source {
        Source::V6(s.parse::<Ipv6Addr>().unwrap().octets())
    }

    fn formatted(l: &PrefixList) -> String {
        let mut buf = [0u8; 4096];
        let n = l.format(&mut buf);
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn empty_and_blank_are_the_empty_list() {
        for t in ["", " ", "\n", " \t\n "] {
            assert_eq!(list(t), Some(PrefixList::EMPTY), "{t:?}");
        }
        assert_eq!(formatted(&PrefixList::EMPTY), "");
    }

    #[test]
    fn ipv4_and_ipv6_prefixes_match_their_members() {
        let l = list("10.0.0.0/8, 192.0.2.7 fd00::/64\n2001:db8::1").unwrap();
        assert_eq!(l.prefixes().len(), 4);
        assert!(l.contains(&v4([10, 1, 2, 3])));
        assert!(l.contains(&v4([192, 0, 2, 7])));
        assert!(!l.contains(&v4([192, 0, 2, 8])));
        assert!(!l.contains(&v4([11, 0, 0, 1])));
        assert!(l.contains(&v6("fd00::2")));
        assert!(l.contains(&v6("fd00::ffff:1:2:3")));
        assert!(!l.contains(&v6("fd00:0:0:1::2")));
        assert!(l.contains(&v6("2001:db8::1")));
        assert!(!l.contains(&v6("2001:db8::2")));
    }

    #[test]
    fn families_do_not_cross() {
        let l = list("0.0.0.0/0").unwrap();
        assert!(l.contains(&v4([1, 2, 3, 4])));
        assert!(!l.contains(&v6("::ffff:1.2.3.4")));
        let l = list("::/0").unwrap();
        assert!(l.contains(&v6("2001:db8::9")));
        assert!(!l.contains(&v4([1, 2, 3, 4])));
    }

    #[test]
    fn odd_prefix_lengths() {
        let l = list("10.0.0.128/25 fd00::8000/113").unwrap();
        assert!(l.contains(&v4([10, 0, 0, 200])));
        assert!(!l.contains(&v4([10, 0, 0, 127])));
        assert!(l.contains(&v6("fd00::ffff")));
        assert!(!l.contains(&v6("fd00::7fff")));
    }

    #[test]
    fn bad_entries_refuse_the_whole_list() {
        for t in [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0/8",
            "10.0.0.256",
            "010.0.0.1",
            "fd00::/129",
            "fd00::1/64",
            "fd00:::1",
            "example.com",
            "10.0.0.0/8, nonsense",
            ",",
            "10.0.0.1//32",
            "10.0.0.1/32/1",
        ] {
            assert_eq!(list(t), None, "{t:?}");
        }
        assert_eq!(PrefixList::EMPTY.clone().parse_into(&[0xff, 0xfe]), None);
    }

    #[test]
    fn at_most_max_prefixes() {
        let many: Vec<String> = (0..MAX_PREFIXES)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert_eq!(
            list(&many.join(",")).unwrap().prefixes().len(),
            MAX_PREFIXES
        );
        let too_many = format!("{},10.1.0.0/16", many.join(","));
        assert_eq!(list(&too_many), None);
    }

    #[test]
    fn formats_canonically() {
        let l = list("10.0.0.0/8,2001:0db8:0000::/32 192.0.2.1").unwrap();
        assert_eq!(formatted(&l), "10.0.0.0/8 2001:db8::/32 192.0.2.1/32");
        let mut small = [0u8; 5];
        assert_eq!(l.format(&mut small), 5);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut l = PrefixList::EMPTY;
            let _ = l.parse_into(&bytes);
        }

        #[test]
        fn formatted_lists_parse_back(
            v4s in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..20),
            v6s in proptest::collection::vec((any::<u128>(), 0u8..=128), 0..20),
        ) {
            let mut text = String::new();
            for (a, n) in v4s {
                let masked = if n == 0 { 0 } else { a & (u32::MAX << (32 - n)) };
                text += &format!("{}/{n} ", Ipv4Addr::from(masked));
            }
            for (a, n) in v6s {
                let masked = if n == 0 { 0 } else { a & (u128::MAX << (128 - n)) };
                text += &format!("{}/{n},", Ipv6Addr::from(masked));
            }
            let l = list(&text).expect("valid list");
            let again = list(&formatted(&l)).expect("formatted list parses");
            prop_assert_eq!(l, again);
        }

        #[test]
        fn a_prefix_contains_exactly_its_addresses(a: u32, b: u32, n in 0u8..=32) {
            let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
            let l = list(&format!("{}/{n}", Ipv4Addr::from(a & mask))).unwrap();
            prop_assert_eq!(l.contains(&Source::V4(b.to_be_bytes())), (a & mask) == (b & mask));
            prop_assert!(!l.contains(&Source::V6(u128::from(b).to_be_bytes())));
        }

        #[test]
        fn the_ipv4_answer_is_the_lists(
            v4s in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..6),
            v6s in proptest::collection::vec((any::<u128>(), 0u8..=128), 0..3),
            probe: u32,
            near in 0usize..8,
        ) {
            // Lists of both families in any order; the probe is any
            // address, or one sharing a listed prefix's first bits.
            let mut text = String::new();
            for (i, (a, n)) in v4s.iter().enumerate() {
                let masked = if *n == 0 { 0 } else { a & (u32::MAX << (32 - n)) };
                text += &format!("{}/{n} ", Ipv4Addr::from(masked));
                if let Some((b, m)) = v6s.get(i) {
                    let masked = if *m == 0 { 0 } else { b & (u128::MAX << (128 - m)) };
                    text += &format!("{}/{m},", Ipv6Addr::from(masked));
                }
            }
            let l = list(&text).expect("valid list");
            // Or the first bytes of a listed IPv6 prefix (no IPv4 source
            // is inside one).
            let probe = match (v4s.get(near), v6s.get(near % 4)) {
                (Some((a, n)), _) if *n > 0 => (a & (u32::MAX << (32 - n))) | (probe & !(u32::MAX << (32 - n))),
                (_, Some((b, m))) if near >= 4 => {
                    let masked = if *m == 0 { 0 } else { b & (u128::MAX << (128 - m)) };
                    (masked >> 96) as u32
                }
                _ => probe,
            };
            let addr = probe.to_be_bytes();
            prop_assert_eq!(l.contains_v4(addr), l.contains(&Source::V4(addr)));
        }

        #[test]
        fn an_ipv6_prefix_contains_exactly_its_addresses(a: u128, b: u128, n in 0u8..=128) {
            let mask = if n == 0 { 0 } else { u128::MAX << (128 - n) };
            let l = list(&format!("{}/{n}", Ipv6Addr::from(a & mask))).unwrap();
            prop_assert_eq!(l.contains(&Source::V6(b.to_be_bytes())), (a & mask) == (b & mask));
            // An address that shares the prefix's first bits.
            let inside = (a & mask) | (b & !mask);
            prop_assert!(l.contains(&Source::V6(inside.to_be_bytes())));
            prop_assert!(!l.contains(&Source::V4([0; 4])));
        }
    }
}
