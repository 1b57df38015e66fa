// SPDX-License-Identifier: GPL-2.0

//! The TOA wire format: finding the client address in a TCP option list.
//!
//! A FULLNAT balancer rewrites both addresses of a connection and carries the
//! client's in a TCP option of its own:
//!
//! ```text
//! kind (1) | length (1) | port (2, network order) | address (4 or 16)
//!            length 8 = IPv4 client, length 20 = IPv6 client
//! ```
//!
//! This file is pure Rust with no kernel dependency: the module compiles it as
//! its `wire` module and the host crate `toa-wire` compiles the very same file
//! for unit tests, property tests and fuzzing.
//!
//! The option list is walked as RFC 9293 section 3.1 says: End of Option List
//! (kind 0) ends it, No-Operation (kind 1) is one byte, every other option
//! has a length byte that counts itself and the kind and must fit in what is
//! left. The whole list must be well formed for an address to be taken from
//! it: a list that cannot be parsed cannot be trusted either.

/// End of Option List (RFC 9293).
const KIND_EOL: u8 = 0;
/// No-Operation (RFC 9293).
const KIND_NOP: u8 = 1;
/// Length of a TOA option carrying an IPv4 address.
pub const LEN_V4: u8 = 8;
/// Length of a TOA option carrying an IPv6 address.
pub const LEN_V6: u8 = 20;
/// Most option bytes a TCP header can carry (data offset 15 words).
pub const MAX_OPTIONS_LEN: usize = 40;

/// TCP option kinds the kernel itself sends or parses; configuring one of
/// them as a TOA kind would read the kernel's own options as addresses.
///
/// EOL, NOP, MSS, window scale, SACK permitted, SACK, timestamps, MD5 (19),
/// MPTCP (30), TCP-AO (29) and Fast Open (34).
pub const RESERVED_KINDS: [u8; 11] = [0, 1, 2, 3, 4, 5, 8, 19, 29, 30, 34];

/// Whether `kind` may be configured as a TOA option kind (0 disables).
pub const fn kind_is_configurable(kind: u32) -> bool {
    if kind == 0 {
        return true;
    }
    if kind > 255 {
        return false;
    }
    let mut i = 0;
    while i < RESERVED_KINDS.len() {
        if RESERVED_KINDS[i] as u32 == kind {
            return false;
        }
        i += 1;
    }
    true
}

/// The client address and port a balancer put in a TOA option.
///
/// Ports and addresses are kept as the bytes of the wire (network order), so
/// they can be copied into a `sockaddr` without conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    /// An IPv4 client (option length 8).
    V4 {
        /// TCP port, network byte order.
        port: [u8; 2],
        /// IPv4 address, network byte order.
        addr: [u8; 4],
    },
    /// An IPv6 client (option length 20).
    V6 {
        /// TCP port, network byte order.
        port: [u8; 2],
        /// IPv6 address, network byte order.
        addr: [u8; 16],
    },
}

impl ClientAddr {
    /// The port in host byte order.
    pub fn port(&self) -> u16 {
        match self {
            ClientAddr::V4 { port, .. } | ClientAddr::V6 { port, .. } => u16::from_be_bytes(*port),
        }
    }

    /// The client as an IPv6 port and address (both network order): an IPv4
    /// client as its IPv4-mapped address, `::ffff:a.b.c.d`.
    pub fn to_v6(self) -> ([u8; 2], [u8; 16]) {
        match self {
            ClientAddr::V4 { port, addr } => {
                let mut mapped = [0u8; 16];
                mapped[10] = 0xff;
                mapped[11] = 0xff;
                mapped[12..].copy_from_slice(&addr);
                (port, mapped)
            }
            ClientAddr::V6 { port, addr } => (port, addr),
        }
    }

    /// The option bytes a balancer would send for this address with `kind`.
    ///
    /// Returns the buffer and how many of its bytes are the option.
    pub fn encode(&self, kind: u8) -> ([u8; LEN_V6 as usize], usize) {
        let mut buf = [0u8; LEN_V6 as usize];
        buf[0] = kind;
        match self {
            ClientAddr::V4 { port, addr } => {
                buf[1] = LEN_V4;
                buf[2..4].copy_from_slice(port);
                buf[4..8].copy_from_slice(addr);
                (buf, LEN_V4 as usize)
            }
            ClientAddr::V6 { port, addr } => {
                buf[1] = LEN_V6;
                buf[2..4].copy_from_slice(port);
                buf[4..20].copy_from_slice(addr);
                (buf, LEN_V6 as usize)
            }
        }
    }
}

/// Why an option list yielded no address although it was not simply absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// An option's length byte is missing (the list ends after its kind).
    Truncated,
    /// An option's length is below 2, which cannot even hold kind and length.
    BadLength,
    /// An option's length runs past the end of the list.
    Overrun,
    /// An option of a configured TOA kind whose length is neither 8 nor 20.
    WrongTOALength,
    /// A TOA option naming port 0 or the unspecified address: no TCP client
    /// can have it, so it is a balancer's bug or a forgery.
    Unspecified,
}

/// What a scan of an option list found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A well-formed list whose first TOA option carries this client.
    Found(ClientAddr),
    /// A well-formed list without a TOA option.
    Absent,
    /// A list that is not well formed or whose TOA option is not usable.
    Malformed(Malformed),
}

/// The (up to two) option kinds taken as TOA options; 0 disables a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kinds(pub [u8; 2]);

impl Kinds {
    /// Whether `kind` is one of the configured TOA kinds.
    fn matches(&self, kind: u8) -> bool {
        kind != 0 && (kind == self.0[0] || kind == self.0[1])
    }
}

/// Find the client address in a TCP option list (the bytes between the fixed
/// 20-byte TCP header and the data offset).
///
/// The first option of a configured kind with length 8 or 20 wins; the rest of
/// the list must still be well formed. Never panics and never reads outside
/// `options`, whatever it holds.
pub fn scan(options: &[u8], kinds: Kinds) -> Scan {
    let mut found: Option<ClientAddr> = None;
    let mut wrong_length = false;
    let mut rest = options;
    while let Some((&kind, after_kind)) = rest.split_first() {
        match kind {
            KIND_EOL => break,
            KIND_NOP => {
                rest = after_kind;
                continue;
            }
            _ => {}
        }
        let Some(&len) = after_kind.first() else {
            return Scan::Malformed(Malformed::Truncated);
        };
        if len < 2 {
            return Scan::Malformed(Malformed::BadLength);
        }
        let len = usize::from(len);
        let (Some(option), Some(after)) = (rest.get(..len), rest.get(len..)) else {
            return Scan::Malformed(Malformed::Overrun);
        };
        if kinds.matches(kind) && found.is_none() {
            match parse_toa(option) {
                Some(addr) => found = Some(addr),
                None => wrong_length = true,
            }
        }
        rest = after;
    }
    match found {
        Some(addr) if is_unspecified(&addr) => Scan::Malformed(Malformed::Unspecified),
        Some(addr) => Scan::Found(addr),
        None if wrong_length => Scan::Malformed(Malformed::WrongTOALength),
        None => Scan::Absent,
    }
}

/// Decode one whole TOA option (kind and length included), if its length is
/// one of the two TOA lengths.
fn parse_toa(option: &[u8]) -> Option<ClientAddr> {
    match *option {
        [_, LEN_V4, p0, p1, a0, a1, a2, a3] => Some(ClientAddr::V4 {
            port: [p0, p1],
            addr: [a0, a1, a2, a3],
        }),
        [_, LEN_V6, p0, p1, ref addr @ ..] => Some(ClientAddr::V6 {
            port: [p0, p1],
            addr: addr.try_into().ok()?,
        }),
        _ => None,
    }
}

/// Whether the address or the port is zero.
fn is_unspecified(addr: &ClientAddr) -> bool {
    match addr {
        ClientAddr::V4 { port, addr } => *port == [0; 2] || *addr == [0; 4],
        ClientAddr::V6 { port, addr } => *port == [0; 2] || *addr == [0; 16],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Kinds = Kinds([200, 254]);
    const V4: ClientAddr = ClientAddr::V4 {
        port: [0x1f, 0x90],
        addr: [192, 0, 2, 7],
    };
    const V6: ClientAddr = ClientAddr::V6 {
        port: [0x04, 0xd2],
        addr: [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42,
        ],
    };

    fn opt(addr: ClientAddr, kind: u8) -> Vec<u8> {
        let (buf, n) = addr.encode(kind);
        buf[..n].to_vec()
    }

    fn list(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const MSS: &[u8] = &[2, 4, 0x05, 0xb4];
    const TS: &[u8] = &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

    #[test]
    fn empty_list_is_absent() {
        assert_eq!(scan(&[], K), Scan::Absent);
    }

    #[test]
    fn ipv4_option_alone() {
        assert_eq!(scan(&opt(V4, 200), K), Scan::Found(V4));
        assert_eq!(V4.port(), 8080);
    }

    #[test]
    fn to_v6_maps_ipv4_and_keeps_ipv6() {
        let mut mapped = [0u8; 16];
        mapped[10..].copy_from_slice(&[0xff, 0xff, 192, 0, 2, 7]);
        assert_eq!(V4.to_v6(), ([0x1f, 0x90], mapped));
        let ClientAddr::V6 { port, addr } = V6 else {
            unreachable!()
        };
        assert_eq!(V6.to_v6(), (port, addr));
    }

    #[test]
    fn ipv6_option_alone() {
        assert_eq!(scan(&opt(V6, 254), K), Scan::Found(V6));
        assert_eq!(V6.port(), 1234);
    }

    #[test]
    fn either_kind_takes_either_length() {
        assert_eq!(scan(&opt(V6, 200), K), Scan::Found(V6));
        assert_eq!(scan(&opt(V4, 254), K), Scan::Found(V4));
    }

    #[test]
    fn option_among_others() {
        let l = list(&[TS, &opt(V4, 254), &[1, 1, 1, 1]]);
        assert_eq!(scan(&l, K), Scan::Found(V4));
    }

    #[test]
    fn unconfigured_kind_is_ignored() {
        assert_eq!(scan(&opt(V4, 253), K), Scan::Absent);
        assert_eq!(scan(&opt(V4, 253), Kinds([253, 0])), Scan::Found(V4));
    }

    #[test]
    fn zero_kind_is_disabled() {
        let l = list(&[MSS, &[0]]);
        assert_eq!(scan(&l, Kinds([0, 0])), Scan::Absent);
        assert_eq!(scan(&opt(V4, 200), Kinds([0, 254])), Scan::Absent);
    }

    #[test]
    fn first_toa_option_wins() {
        let other = ClientAddr::V4 {
            port: [0, 1],
            addr: [10, 9, 8, 7],
        };
        let l = list(&[&opt(V4, 200), &opt(other, 254)]);
        assert_eq!(scan(&l, K), Scan::Found(V4));
        let l = list(&[&opt(other, 254), &opt(V4, 200)]);
        assert_eq!(scan(&l, K), Scan::Found(other));
    }

    #[test]
    fn option_after_eol_is_not_read() {
        let l = list(&[MSS, &[0, 0, 0, 0], &opt(V4, 200)]);
        assert_eq!(scan(&l, K), Scan::Absent);
    }

    #[test]
    fn garbage_after_eol_is_padding() {
        let l = list(&[&opt(V4, 200), &[0, 0xff, 0xff, 0xff]]);
        assert_eq!(scan(&l, K), Scan::Found(V4));
    }

    #[test]
    fn missing_length_byte_is_truncated() {
        let l = list(&[&[1, 1, 1], &[200]]);
        assert_eq!(scan(&l, K), Scan::Malformed(Malformed::Truncated));
    }

    #[test]
    fn option_running_past_the_end_is_an_overrun() {
        let full = opt(V4, 200);
        assert_eq!(scan(&full[..7], K), Scan::Malformed(Malformed::Overrun));
        let l = list(&[MSS, &[8, 10, 0, 0]]);
        assert_eq!(scan(&l, K), Scan::Malformed(Malformed::Overrun));
    }

    #[test]
    fn lengths_below_two_are_rejected() {
        assert_eq!(
            scan(&[200, 0, 1, 1], K),
            Scan::Malformed(Malformed::BadLength)
        );
        assert_eq!(
            scan(&[3, 1, 1, 1], K),
            Scan::Malformed(Malformed::BadLength)
        );
    }

    #[test]
    fn broken_list_after_a_good_option_discards_it() {
        let l = list(&[&opt(V4, 200), &[2, 9, 0]]);
        assert_eq!(scan(&l, K), Scan::Malformed(Malformed::Overrun));
    }

    #[test]
    fn toa_kind_with_other_length_is_malformed() {
        assert_eq!(
            scan(&[200, 6, 0, 80, 10, 0], K),
            Scan::Malformed(Malformed::WrongTOALength)
        );
        assert_eq!(
            scan(&[254, 10, 0, 80, 10, 0, 0, 1, 0, 0, 1, 1], K),
            Scan::Malformed(Malformed::WrongTOALength)
        );
    }

    #[test]
    fn wrong_length_then_good_option_takes_the_good_one() {
        let l = list(&[&[200, 4, 0, 80], &opt(V4, 254)]);
        assert_eq!(scan(&l, K), Scan::Found(V4));
    }

    #[test]
    fn unspecified_address_or_port_is_malformed() {
        let zero_addr = ClientAddr::V4 {
            port: [0, 80],
            addr: [0; 4],
        };
        let zero_port = ClientAddr::V6 {
            port: [0, 0],
            addr: [1; 16],
        };
        let unspec = Scan::Malformed(Malformed::Unspecified);
        assert_eq!(scan(&opt(zero_addr, 200), K), unspec);
        assert_eq!(scan(&opt(zero_port, 200), K), unspec);
    }

    #[test]
    fn kernel_kinds_cannot_be_configured() {
        for k in RESERVED_KINDS {
            assert!(!kind_is_configurable(k.into()) || k == 0, "kind {k}");
        }
        assert!(kind_is_configurable(0));
        assert!(kind_is_configurable(200));
        assert!(kind_is_configurable(253));
        assert!(kind_is_configurable(254));
        assert!(kind_is_configurable(255));
        assert!(!kind_is_configurable(256));
        assert!(!kind_is_configurable(u32::MAX));
    }

    #[test]
    fn a_full_forty_byte_list() {
        let l = list(&[&opt(V6, 254), TS, &[1, 1, 1, 1, 1, 1, 1, 1]]);
        assert_eq!(l.len(), MAX_OPTIONS_LEN);
        assert_eq!(scan(&l, K), Scan::Found(V6));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A well-formed option that is neither EOL nor a TOA kind.
    fn other_option() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![KIND_NOP]),
            (2u8..=255, 0usize..=10)
                .prop_filter("not a TOA kind", |(k, _)| *k != 200 && *k != 254)
                .prop_flat_map(|(kind, n)| {
                    proptest::collection::vec(any::<u8>(), n).prop_map(move |body| {
                        let mut o = vec![kind, (n + 2) as u8];
                        o.extend(body);
                        o
                    })
                }),
        ]
    }

    fn client_addr() -> impl Strategy<Value = ClientAddr> {
        prop_oneof![
            (1u16.., 1u32..).prop_map(|(p, a)| ClientAddr::V4 {
                port: p.to_be_bytes(),
                addr: a.to_be_bytes(),
            }),
            (1u16.., 1u128..).prop_map(|(p, a)| ClientAddr::V6 {
                port: p.to_be_bytes(),
                addr: a.to_be_bytes(),
            }),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), k0: u8, k1: u8) {
            let _ = scan(&bytes, Kinds([k0, k1]));
        }

        #[test]
        fn a_found_address_is_in_the_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            // Whatever is reported was read from inside the list: its option
            // bytes (with one of the kinds) occur in the input.
            if let Scan::Found(addr) = scan(&bytes, Kinds([200, 254])) {
                let seen = [200u8, 254].iter().any(|&k| {
                    let o = opt_bytes(addr, k);
                    bytes.windows(o.len()).any(|w| w == o.as_slice())
                });
                prop_assert!(seen);
            }
        }

        #[test]
        fn round_trips_anywhere_in_a_valid_list(
            before in proptest::collection::vec(other_option(), 0..4),
            after in proptest::collection::vec(other_option(), 0..4),
            addr in client_addr(),
            kind in prop_oneof![Just(200u8), Just(254u8)],
        ) {
            let mut l: Vec<u8> = before.concat();
            l.extend(opt_bytes(addr, kind));
            l.extend(after.concat());
            prop_assert_eq!(scan(&l, Kinds([200, 254])), Scan::Found(addr));
        }

        #[test]
        fn found_only_when_an_option_was_put_there(
            opts in proptest::collection::vec(other_option(), 0..6),
        ) {
            prop_assert_eq!(scan(&opts.concat(), Kinds([200, 254])), Scan::Absent);
        }

        #[test]
        fn a_cut_toa_option_is_never_found(addr in client_addr(), cut in 1usize..20) {
            let bytes = opt_bytes(addr, 200);
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(!matches!(scan(&bytes[..cut], Kinds([200, 254])), Scan::Found(_)));
        }
    }

    fn opt_bytes(addr: ClientAddr, kind: u8) -> Vec<u8> {
        let (buf, n) = addr.encode(kind);
        buf[..n].to_vec()
    }
}
