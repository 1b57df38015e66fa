// SPDX-License-Identifier: GPL-2.0

//! The ip_vs_ca / LVS FULLNAT announcement: an ICMP echo request a balancer
//! sends to the backend once per new flow (UDP or TCP), before the flow's
//! first packet, naming the client of the flow it is about to forward.
//!
//! ```text
//! IP      src = the balancer's local address (LIP), dst = the backend (RS)
//! ICMP    type 8 (echo request), code 0, checksum,
//!         identifier 0x1234 (bytes 34 12 from an x86 sender; 12 34 taken too),
//!         sequence 0
//! payload 0      u8   magic     123
//!         1      u8   protocol  17 (UDP) or 6 (TCP)
//!         2      be16 lport     the balancer's local port
//!         4      be16 rsport    the backend's port
//!        [6      u8   pad[2]    in what LVS sends (16 bytes); not in
//!                               ip_vs_ca's packed form (14 bytes)]
//!         6|8    u8   opcode    a TOA option kind (LVS: 254, ip_vs_ca: 200)
//!         7|9    u8   opsize    8
//!         8|10   be16 cport     the client's port
//!        10|12   be32 caddr     the client's IPv4 address
//! ```
//!
//! Anything with the framing of an announcement (echo request, code 0, the
//! identifier, sequence 0, the magic byte) is an announcement attempt:
//! either it is taken whole or it is refused and counted. Any other echo
//! request is an ordinary ping and none of toa's business. Either way the
//! kernel answers the echo request as usual.
//!
//! Pure Rust, no kernel dependency: tested on the host by `toa-core`.

use crate::tcp::wire::{ClientAddr, Kinds};

/// ICMP type of an echo request.
pub const ICMP_ECHO: u8 = 8;
/// The first payload byte of an announcement.
pub const MAGIC: u8 = 123;
/// The identifier, as the bytes an x86 sender puts on the wire.
pub const IDENT_LE: [u8; 2] = [0x34, 0x12];
/// The identifier in network order.
pub const IDENT_BE: [u8; 2] = [0x12, 0x34];
/// Length of the ICMP header.
pub const ICMP_HEADER: usize = 8;
/// Payload length of ip_vs_ca's packed form.
pub const PAYLOAD_PACKED: usize = 14;
/// Payload length of what LVS sends (two pad bytes before the option).
pub const PAYLOAD_PADDED: usize = 16;
/// The longest announcement, in bytes of ICMP message.
pub const MAX_MESSAGE: usize = ICMP_HEADER + PAYLOAD_PADDED;
/// The option size an announcement carries (kind, size, port, IPv4).
pub const OPSIZE: u8 = 8;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// The transport protocol of an announced flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP (17).
    Udp,
    /// TCP (6): a client for a connection whose handshake names none.
    Tcp,
}

/// A flow announced by a balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The flow's protocol.
    pub proto: Proto,
    /// The balancer's local port (network order).
    pub lport: [u8; 2],
    /// The backend's port (network order).
    pub rsport: [u8; 2],
    /// The option kind the balancer used.
    pub kind: u8,
    /// The client.
    pub client: ClientAddr,
    /// Whether the payload was LVS's padded form (16 bytes).
    pub padded: bool,
}

/// Why an announcement attempt was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// The payload is neither 14 nor 16 bytes long.
    Length,
    /// The ICMP checksum does not add up.
    Checksum,
    /// The protocol is neither 17 nor 6.
    Protocol,
    /// The opcode is not one of the configured TOA kinds.
    Kind,
    /// The option size is not 8.
    OptionSize,
    /// A port is 0 or the client address is 0.0.0.0.
    Unspecified,
}

/// What an ICMP message is to toa.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not an announcement (an ordinary ping, another ICMP type...).
    NotOurs,
    /// An announcement, taken.
    Ok(Announcement),
    /// An announcement attempt that is refused.
    Bad(Bad),
}

/// The one's complement sum of `bytes` (16-bit big-endian words, an odd
/// last byte padded with zero), folded, not inverted.
pub fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Read the ICMP message `msg` (the whole IP payload, `len` bytes, of which
/// `msg` holds the first ones: at least `min(len, MAX_MESSAGE + 1)`), taking
/// `kinds` as the opcodes a balancer may use.
///
/// Never panics and never reads outside `msg`, whatever it holds.
pub fn parse(msg: &[u8], len: usize, kinds: &Kinds) -> Parsed {
    let framing = matches!(
        msg,
        [ICMP_ECHO, 0, _, _, i0, i1, 0, 0, MAGIC, ..]
            if [*i0, *i1] == IDENT_LE || [*i0, *i1] == IDENT_BE
    );
    if !framing {
        return Parsed::NotOurs;
    }
    let padded = match len.checked_sub(ICMP_HEADER) {
        Some(PAYLOAD_PACKED) => false,
        Some(PAYLOAD_PADDED) => true,
        _ => return Parsed::Bad(Bad::Length),
    };
    let Some(msg) = msg.get(..len) else {
        return Parsed::Bad(Bad::Length);
    };
    if ones_sum(msg) != 0xffff {
        return Parsed::Bad(Bad::Checksum);
    }
    let payload = &msg[ICMP_HEADER..];
    let opt = if padded { &payload[8..] } else { &payload[6..] };
    let proto = match payload[1] {
        IPPROTO_UDP => Proto::Udp,
        IPPROTO_TCP => Proto::Tcp,
        _ => return Parsed::Bad(Bad::Protocol),
    };
    let (lport, rsport) = ([payload[2], payload[3]], [payload[4], payload[5]]);
    let [kind, size, p0, p1, a0, a1, a2, a3] = *opt else {
        return Parsed::Bad(Bad::Length);
    };
    if !kinds.contains(kind) {
        return Parsed::Bad(Bad::Kind);
    }
    if size != OPSIZE {
        return Parsed::Bad(Bad::OptionSize);
    }
    let (cport, caddr) = ([p0, p1], [a0, a1, a2, a3]);
    if lport == [0, 0] || rsport == [0, 0] || cport == [0, 0] || caddr == [0; 4] {
        return Parsed::Bad(Bad::Unspecified);
    }
    Parsed::Ok(Announcement {
        proto,
        lport,
        rsport,
        kind,
        client: ClientAddr::V4 {
            port: cport,
            addr: caddr,
        },
        padded,
    })
}

/// The ICMP message a balancer sends for `a` (the test balancer's half),
/// with the identifier as `ident` and a correct checksum.
pub fn encode(a: &Announcement, ident: [u8; 2]) -> ([u8; MAX_MESSAGE], usize) {
    let mut m = [0u8; MAX_MESSAGE];
    m[0] = ICMP_ECHO;
    m[4..6].copy_from_slice(&ident);
    let p = &mut m[ICMP_HEADER..];
    p[0] = MAGIC;
    p[1] = match a.proto {
        Proto::Udp => IPPROTO_UDP,
        Proto::Tcp => IPPROTO_TCP,
    };
    p[2..4].copy_from_slice(&a.lport);
    p[4..6].copy_from_slice(&a.rsport);
    let o = if a.padded { 8 } else { 6 };
    p[o] = a.kind;
    p[o + 1] = OPSIZE;
    let (port, addr) = match a.client {
        ClientAddr::V4 { port, addr } => (port, addr),
        // An announcement carries IPv4 clients only: the unspecified
        // address stands for what cannot be sent.
        ClientAddr::V6 { port, .. } => (port, [0; 4]),
    };
    p[o + 2..o + 4].copy_from_slice(&port);
    p[o + 4..o + 8].copy_from_slice(&addr);
    let len = ICMP_HEADER
        + if a.padded {
            PAYLOAD_PADDED
        } else {
            PAYLOAD_PACKED
        };
    let sum = !ones_sum(&m[..len]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    (m, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Kinds {
        Kinds::DEFAULT
    }

    fn ann(padded: bool, kind: u8, proto: Proto) -> Announcement {
        Announcement {
            proto,
            lport: [0x13, 0x88],
            rsport: [0, 53],
            kind,
            client: ClientAddr::V4 {
                port: [0x9c, 0x41],
                addr: [198, 51, 100, 7],
            },
            padded,
        }
    }

    fn parse_all(m: &[u8]) -> Parsed {
        parse(m, m.len(), &kinds())
    }

    #[test]
    fn both_sizes_both_identifiers_both_protocols() {
        for padded in [false, true] {
            for ident in [IDENT_LE, IDENT_BE] {
                for kind in [200, 254] {
                    for proto in [Proto::Udp, Proto::Tcp] {
                        let a = ann(padded, kind, proto);
                        let (m, len) = encode(&a, ident);
                        assert_eq!(len, if padded { 24 } else { 22 });
                        assert_eq!(parse_all(&m[..len]), Parsed::Ok(a));
                    }
                }
            }
        }
    }

    #[test]
    fn the_lvs_wire_bytes() {
        // What LVS sends on x86: identifier bytes 34 12, padded payload.
        let m = [
            8, 0, 0, 0, 0x34, 0x12, 0, 0, // header (checksum filled below)
            123, 17, 0x13, 0x88, 0, 53, 0, 0, // magic, UDP, 5000 -> 53, pad
            254, 8, 0x9c, 0x41, 198, 51, 100, 7, // 254/8 198.51.100.7:40001
        ];
        let mut m = m;
        let sum = !ones_sum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_all(&m), Parsed::Ok(ann(true, 254, Proto::Udp)));
    }

    #[test]
    fn ordinary_pings_are_not_ours() {
        let (m, len) = encode(&ann(false, 200, Proto::Udp), IDENT_LE);
        let mut other = m;
        other[0] = 0; // echo reply
        assert_eq!(parse_all(&other[..len]), Parsed::NotOurs);
        let mut other = m;
        other[1] = 1; // code
        assert_eq!(parse_all(&other[..len]), Parsed::NotOurs);
        let mut other = m;
        other[4] = 0x35; // identifier
        assert_eq!(parse_all(&other[..len]), Parsed::NotOurs);
        let mut other = m;
        other[7] = 1; // sequence
        assert_eq!(parse_all(&other[..len]), Parsed::NotOurs);
        let mut other = m;
        other[8] = 124; // magic
        assert_eq!(parse_all(&other[..len]), Parsed::NotOurs);
        assert_eq!(parse_all(&m[..8]), Parsed::NotOurs);
        assert_eq!(parse_all(&[]), Parsed::NotOurs);
    }

    #[test]
    fn refused_attempts() {
        let (m, len) = encode(&ann(false, 200, Proto::Udp), IDENT_LE);
        // Truncated, or too long (the IP payload says how long).
        assert_eq!(parse_all(&m[..len - 1]), Parsed::Bad(Bad::Length));
        assert_eq!(parse(&m, 23, &kinds()), Parsed::Bad(Bad::Length));
        assert_eq!(parse(&m[..len], 40, &kinds()), Parsed::Bad(Bad::Length));
        // Checksum.
        let mut bad = m;
        bad[len - 1] ^= 1;
        assert_eq!(parse_all(&bad[..len]), Parsed::Bad(Bad::Checksum));
        // Fields, each with a fixed checksum.
        let fix = |mut b: [u8; MAX_MESSAGE]| {
            b[2] = 0;
            b[3] = 0;
            let s = !ones_sum(&b[..len]);
            b[2..4].copy_from_slice(&s.to_be_bytes());
            b
        };
        let mut b = m;
        b[9] = 1;
        assert_eq!(parse_all(&fix(b)[..len]), Parsed::Bad(Bad::Protocol));
        let mut b = m;
        b[14] = 99;
        assert_eq!(parse_all(&fix(b)[..len]), Parsed::Bad(Bad::Kind));
        let mut b = m;
        b[15] = 20;
        assert_eq!(parse_all(&fix(b)[..len]), Parsed::Bad(Bad::OptionSize));
        let mut b = m;
        b[18..22].fill(0);
        assert_eq!(parse_all(&fix(b)[..len]), Parsed::Bad(Bad::Unspecified));
        let mut b = m;
        b[10..12].fill(0);
        assert_eq!(parse_all(&fix(b)[..len]), Parsed::Bad(Bad::Unspecified));
    }

    #[test]
    fn only_configured_kinds() {
        let (m, len) = encode(&ann(true, 254, Proto::Udp), IDENT_BE);
        let only200 = Kinds::EMPTY.with(200);
        assert_eq!(parse(&m[..len], len, &only200), Parsed::Bad(Bad::Kind));
    }

    #[test]
    fn checksum_of_odd_lengths() {
        assert_eq!(ones_sum(&[0xff]), 0xff00);
        assert_eq!(ones_sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
        assert_eq!(ones_sum(&[]), 0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(m in proptest::collection::vec(any::<u8>(), 0..40), len in 0usize..64) {
                let _ = parse(&m, len, &Kinds::DEFAULT);
            }

            #[test]
            fn encoded_announcements_read_back(
                padded: bool, le: bool, tcp: bool, lport in 1u16.., rsport in 1u16..,
                cport in 1u16.., caddr in 1u32.., kind in prop_oneof![Just(200u8), Just(253), Just(254)],
            ) {
                let a = Announcement {
                    proto: if tcp { Proto::Tcp } else { Proto::Udp },
                    lport: lport.to_be_bytes(),
                    rsport: rsport.to_be_bytes(),
                    kind,
                    client: ClientAddr::V4 { port: cport.to_be_bytes(), addr: caddr.to_be_bytes() },
                    padded,
                };
                let (m, len) = encode(&a, if le { IDENT_LE } else { IDENT_BE });
                prop_assert_eq!(parse(&m[..len], len, &Kinds::DEFAULT), Parsed::Ok(a));
                // Any single flipped bit is refused or not ours, never another flow.
                for bit in 0..len * 8 {
                    let mut b = m;
                    b[bit / 8] ^= 1 << (bit % 8);
                    if let Parsed::Ok(other) = parse(&b[..len], len, &Kinds::DEFAULT) {
                        prop_assert_eq!(other, a, "bit {} flipped", bit);
                    }
                }
            }
        }
    }
}
