// SPDX-License-Identifier: GPL-2.0

//! DPVS's UOA ("UDP option of address"): the client of a UDP flow, carried
//! by the first packets of the flow (DPVS: up to three; when a packet has
//! no room, an empty UDP datagram ahead of it carries the option instead).
//!
//! The option itself, as an IPv4 option:
//!
//! ```text
//! 0x1f | len | port (be16) | address        len 8: IPv4, 20: IPv6 client
//! ```
//!
//! It travels in one of two ways:
//!
//! - `ipo`: in the options of the IPv4 header of the UDP packet itself
//!   (IHL 7 for an IPv4 client); the protocol stays UDP;
//! - `opp` (DPVS's default): IP protocol (IPv6: next header) 248, then the
//!   "option protocol" header and IPv4-style options, then the UDP header:
//!
//! ```text
//! ver/rsvd (0x10: IPv4 client, 0x20: IPv6 client) | protocol (17) | length (be16)
//! options (length - 4 bytes, the UOA option among them)
//! ```
//!
//!   where `length` counts the header and the options (12 or 24 with just
//!   the option). The kernel has no handler for protocol 248: toa removes
//!   the header and the options and hands on plain UDP. NAT64: an IPv4
//!   packet whose option names an IPv6 client (length 20).
//!
//! Options are walked as RFC 791 says: End of Option List (0) ends them,
//! No-Operation (1) is one byte, any other option has a length byte that
//! counts itself and the type and must fit in what is left. The first UOA
//! option wins; the rest must still be well formed.
//!
//! Pure Rust, no kernel dependency: tested on the host by `toa-core`.

use crate::tcp::wire::ClientAddr;

/// The UOA option type.
pub const IPOPT_UOA: u8 = 0x1f;
/// Length of a UOA option with an IPv4 client.
pub const LEN_V4: u8 = 8;
/// Length of a UOA option with an IPv6 client.
pub const LEN_V6: u8 = 20;
/// The IP protocol number of the option protocol (`IPPROTO_OPT`).
pub const IPPROTO_OPP: u8 = 248;
/// Length of the option protocol's fixed header.
pub const OPP_HEADER: usize = 4;
/// The longest option protocol header toa reads (fixed part and 40 bytes of
/// options, as much as an IPv4 header can carry).
pub const OPP_MAX: usize = OPP_HEADER + 40;
/// The option protocol's version for an IPv4 client (first byte).
pub const OPP_VERSION_V4: u8 = 0x10;
/// The option protocol's version for an IPv6 client.
pub const OPP_VERSION_V6: u8 = 0x20;
/// The IP protocol number of UDP.
const IPPROTO_UDP: u8 = 17;

/// Why a UOA (or its option protocol header) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// The option list is not well formed (truncated, a length below 2 or
    /// running past the end).
    Options,
    /// A UOA option whose length is neither 8 nor 20.
    Length,
    /// A UOA option naming port 0 or the unspecified address.
    Unspecified,
    /// The option protocol header is truncated, its length is off, its
    /// version unknown, or its protocol not UDP.
    Header,
    /// The option protocol header carries no UOA option.
    Missing,
    /// The option protocol's version says one family, the option the other.
    Family,
}

/// What an option list holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Options {
    /// A well-formed list without a UOA option.
    Absent,
    /// A well-formed list whose first UOA option names this client.
    Found(ClientAddr),
    /// A list toa refuses.
    Bad(Bad),
}

/// The client in one whole UOA option (type and length included).
fn client(option: &[u8]) -> Result<ClientAddr, Bad> {
    let c = match *option {
        [IPOPT_UOA, LEN_V4, p0, p1, a0, a1, a2, a3] => ClientAddr::V4 {
            port: [p0, p1],
            addr: [a0, a1, a2, a3],
        },
        [IPOPT_UOA, LEN_V6, p0, p1, ref a @ ..] => {
            let mut addr = [0u8; 16];
            addr.copy_from_slice(a);
            ClientAddr::V6 {
                port: [p0, p1],
                addr,
            }
        }
        _ => return Err(Bad::Length),
    };
    let unspecified = match c {
        ClientAddr::V4 { port, addr } => port == [0; 2] || addr == [0; 4],
        ClientAddr::V6 { port, addr } => port == [0; 2] || addr == [0; 16],
    };
    if unspecified {
        return Err(Bad::Unspecified);
    }
    Ok(c)
}

/// Find the UOA option in IPv4-style options (an IPv4 header's options, or
/// an option protocol header's). Never panics, never reads outside `opts`.
pub fn scan(opts: &[u8]) -> Options {
    let mut found = None;
    let mut rest = opts;
    while let Some((&kind, after_kind)) = rest.split_first() {
        match kind {
            0 => break,
            1 => {
                rest = after_kind;
                continue;
            }
            _ => {}
        }
        let Some(&len) = after_kind.first() else {
            return Options::Bad(Bad::Options);
        };
        let len = usize::from(len);
        if len < 2 {
            return Options::Bad(Bad::Options);
        }
        let (Some(option), Some(after)) = (rest.get(..len), rest.get(len..)) else {
            return Options::Bad(Bad::Options);
        };
        if kind == IPOPT_UOA && found.is_none() {
            found = Some(client(option));
        }
        rest = after;
    }
    match found {
        None => Options::Absent,
        Some(Ok(c)) => Options::Found(c),
        Some(Err(why)) => Options::Bad(why),
    }
}

/// An option protocol header that was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opp {
    /// Bytes of header and options: what to remove before the UDP header.
    pub len: usize,
    /// The client.
    pub client: ClientAddr,
}

/// The declared length of the option protocol header starting `bytes`
/// (at least its 4 fixed bytes), to know how much to read.
pub fn opp_len(bytes: &[u8]) -> Option<usize> {
    match *bytes {
        [_, _, l0, l1, ..] => Some(usize::from(u16::from_be_bytes([l0, l1]))),
        _ => None,
    }
}

/// Read an option protocol header: `bytes` is exactly the header and its
/// options, as long as its length field says. Never panics.
pub fn parse_opp(bytes: &[u8]) -> Result<Opp, Bad> {
    let [version, proto, l0, l1, ref opts @ ..] = *bytes else {
        return Err(Bad::Header);
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len != bytes.len() || len > OPP_MAX || proto != IPPROTO_UDP {
        return Err(Bad::Header);
    }
    let v6 = match version {
        OPP_VERSION_V4 => false,
        OPP_VERSION_V6 => true,
        _ => return Err(Bad::Header),
    };
    match scan(opts) {
        Options::Found(client) => {
            if matches!(client, ClientAddr::V6 { .. }) != v6 {
                return Err(Bad::Family);
            }
            Ok(Opp { len, client })
        }
        Options::Absent => Err(Bad::Missing),
        Options::Bad(why) => Err(why),
    }
}

/// The UOA option bytes for `client` (the test balancer's half): the buffer
/// and how many of its bytes are the option.
pub fn encode(client: &ClientAddr) -> ([u8; LEN_V6 as usize], usize) {
    let mut o = [0u8; LEN_V6 as usize];
    o[0] = IPOPT_UOA;
    match client {
        ClientAddr::V4 { port, addr } => {
            o[1] = LEN_V4;
            o[2..4].copy_from_slice(port);
            o[4..8].copy_from_slice(addr);
            (o, usize::from(LEN_V4))
        }
        ClientAddr::V6 { port, addr } => {
            o[1] = LEN_V6;
            o[2..4].copy_from_slice(port);
            o[4..20].copy_from_slice(addr);
            (o, usize::from(LEN_V6))
        }
    }
}

/// The option protocol header DPVS puts before the UDP header for `client`
/// (the test balancer's half): the buffer and how many bytes it has.
pub fn encode_opp(client: &ClientAddr) -> ([u8; OPP_HEADER + LEN_V6 as usize], usize) {
    let mut h = [0u8; OPP_HEADER + LEN_V6 as usize];
    let (o, n) = encode(client);
    let len = OPP_HEADER + n;
    h[0] = match client {
        ClientAddr::V4 { .. } => OPP_VERSION_V4,
        ClientAddr::V6 { .. } => OPP_VERSION_V6,
    };
    h[1] = IPPROTO_UDP;
    h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    h[OPP_HEADER..len].copy_from_slice(&o[..n]);
    (h, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> ClientAddr {
        ClientAddr::V4 {
            port: [0x9c, 0x41],
            addr: [198, 51, 100, 7],
        }
    }

    fn v6() -> ClientAddr {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        addr[15] = 9;
        ClientAddr::V6 {
            port: [0xc3, 0x51],
            addr,
        }
    }

    #[test]
    fn ipo_options() {
        let (o, n) = encode(&v4());
        assert_eq!(scan(&o[..n]), Options::Found(v4()));
        assert_eq!(&o[..n], &[0x1f, 8, 0x9c, 0x41, 198, 51, 100, 7]);
        // Behind NOPs and another option, before EOL padding.
        let mut list = vec![1, 1, 7, 3, 4];
        list.extend_from_slice(&o[..n]);
        list.extend([0, 0, 0xff]);
        assert_eq!(scan(&list), Options::Found(v4()));
        let (o, n) = encode(&v6());
        assert_eq!(scan(&o[..n]), Options::Found(v6()));
        assert_eq!(scan(&[]), Options::Absent);
        assert_eq!(scan(&[1, 1, 1, 0]), Options::Absent);
        assert_eq!(scan(&[0x83, 3, 4, 0]), Options::Absent);
    }

    #[test]
    fn bad_options() {
        let (o, n) = encode(&v4());
        assert_eq!(scan(&o[..n - 1]), Options::Bad(Bad::Options));
        assert_eq!(scan(&[0x1f]), Options::Bad(Bad::Options));
        assert_eq!(scan(&[0x1f, 1, 0, 0]), Options::Bad(Bad::Options));
        assert_eq!(
            scan(&[0x1f, 9, 0, 0, 0, 0, 0, 0, 0]),
            Options::Bad(Bad::Length)
        );
        assert_eq!(
            scan(&[0x1f, 8, 0, 0, 1, 2, 3, 4]),
            Options::Bad(Bad::Unspecified)
        );
        assert_eq!(
            scan(&[0x1f, 8, 0, 1, 0, 0, 0, 0]),
            Options::Bad(Bad::Unspecified)
        );
        // A good option does not excuse a broken list behind it.
        let mut list = o[..n].to_vec();
        list.extend([7, 40]);
        assert_eq!(scan(&list), Options::Bad(Bad::Options));
    }

    #[test]
    fn opp_headers() {
        for c in [v4(), v6()] {
            let (h, n) = encode_opp(&c);
            assert_eq!(opp_len(&h[..n]), Some(n));
            assert_eq!(parse_opp(&h[..n]), Ok(Opp { len: n, client: c }));
        }
        let (h, n) = encode_opp(&v4());
        assert_eq!(&h[..4], &[0x10, 17, 0, 12]);
        assert_eq!(n, 12);
        let (h6, n6) = encode_opp(&v6());
        assert_eq!(&h6[..4], &[0x20, 17, 0, 24]);
        assert_eq!(n6, 24);
        // Padded with NOPs (a length a multiple of 4 with more options).
        let mut p = h[..n].to_vec();
        p.extend([1, 1, 1, 0]);
        p[3] = 16;
        assert_eq!(
            parse_opp(&p),
            Ok(Opp {
                len: 16,
                client: v4()
            })
        );
    }

    #[test]
    fn bad_opp_headers() {
        let (h, n) = encode_opp(&v4());
        let with = |i: usize, b: u8| {
            let mut x = h;
            x[i] = b;
            parse_opp(&x[..n])
        };
        assert_eq!(with(0, 0x20), Err(Bad::Family));
        assert_eq!(with(0, 0x11), Err(Bad::Header));
        assert_eq!(with(0, 0x30), Err(Bad::Header));
        assert_eq!(with(1, 6), Err(Bad::Header));
        assert_eq!(with(3, 13), Err(Bad::Header));
        assert_eq!(with(3, 11), Err(Bad::Header));
        assert_eq!(parse_opp(&h[..3]), Err(Bad::Header));
        assert_eq!(parse_opp(&[0x10, 17, 0, 4]), Err(Bad::Missing));
        assert_eq!(parse_opp(&[0x10, 17, 0, 8, 1, 1, 1, 1]), Err(Bad::Missing));
        let mut too_long = vec![0x10, 17, 0, 0];
        too_long.extend([1u8; 44]);
        too_long[3] = 48;
        assert_eq!(parse_opp(&too_long), Err(Bad::Header));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = scan(&b);
                let _ = parse_opp(&b);
                let _ = opp_len(&b);
            }

            #[test]
            fn found_clients_are_in_the_list(b in proptest::collection::vec(any::<u8>(), 0..48)) {
                if let Options::Found(c) = scan(&b) {
                    let (o, n) = encode(&c);
                    prop_assert!(b.windows(n).any(|w| w == &o[..n]));
                }
            }

            #[test]
            fn nops_in_front_change_nothing(b in proptest::collection::vec(any::<u8>(), 0..40), k in 0usize..4) {
                let mut p = vec![1u8; k];
                p.extend(&b);
                prop_assert_eq!(scan(&p), scan(&b));
            }
        }
    }
}
