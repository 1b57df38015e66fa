// SPDX-License-Identifier: GPL-2.0

//! The TOA wire format: finding the client address in a TCP option list.
//!
//! A FULLNAT balancer rewrites both addresses of a connection and carries the
//! client's in a TCP option of its own. Three shapes are in the field:
//!
//! ```text
//! TOA       kind | len | port (2) | address (4 or 16)          len 8 / 20
//!           (any configured kind: 200, 253, 254 by default)
//! with VIP  kind | 16  | port (2) | IPv4 (4) | pad (2) | VIP port (2) | VIP IPv4 (4)
//!           (ByteDance; the client is the first six bytes, the VIP is not read)
//! CDN       28   | len | version 1 | address (4 or 16)          len 7 / 19
//!           (Alibaba Cloud CDN, in the SYN; no port: the client's port is
//!           the one the kernel saw in the TCP header)
//! ```
//!
//! This file is pure Rust with no kernel dependency: the module compiles it as
//! its `wire` module and the host crate `toa-core` compiles the very same file
//! for unit tests, property tests and fuzzing.
//!
//! The option list is walked as RFC 9293 section 3.1 says: End of Option List
//! (kind 0) ends it, No-Operation (kind 1) is one byte, every other option
//! has a length byte that counts itself and the kind and must fit in what is
//! left. The whole list must be well formed for an address to be taken from
//! it: a list that cannot be parsed cannot be trusted either.
//!
//! Which packet the list comes from matters for one kind: in a SYN, kind 254
//! whose first two data bytes are 0xF989 is RFC 7413's experimental Fast Open
//! option (cookie request or cookie), never a client; in any other segment
//! it is a TOA option whose port happens to be 63881.

use core::fmt;

/// End of Option List (RFC 9293).
const KIND_EOL: u8 = 0;
/// No-Operation (RFC 9293).
const KIND_NOP: u8 = 1;
/// TCP User Timeout (RFC 5482, length 4); Alibaba Cloud CDN reuses the kind
/// with lengths 7 and 19 for its client option.
pub const KIND_CDN: u8 = 28;
/// RFC 6994 experimental option kind that Fast Open's experimental form uses.
pub const KIND_EXP: u8 = 254;
/// RFC 7413's experiment identifier in a kind-254 option.
pub const FASTOPEN_EXID: [u8; 2] = [0xf9, 0x89];
/// Length of a TOA option carrying an IPv4 client.
pub const LEN_V4: u8 = 8;
/// Length of a TOA option carrying an IPv4 client and an IPv4 VIP.
pub const LEN_VIP: u8 = 16;
/// Length of a TOA option carrying an IPv6 client.
pub const LEN_V6: u8 = 20;
/// Length of a CDN option carrying an IPv4 client.
pub const LEN_CDN_V4: u8 = 7;
/// Length of a CDN option carrying an IPv6 client.
pub const LEN_CDN_V6: u8 = 19;
/// The only CDN option version there is.
pub const CDN_VERSION: u8 = 1;
/// Most option bytes a TCP header can carry (data offset 15 words).
pub const MAX_OPTIONS_LEN: usize = 40;

/// TCP option kinds the kernel itself sends or parses; configuring one of
/// them as a TOA kind would read the kernel's own options as addresses.
///
/// EOL, NOP, MSS, window scale, SACK permitted, SACK, timestamps, MD5 (19),
/// MPTCP (30), TCP-AO (29) and Fast Open (34).
pub const RESERVED_KINDS: [u8; 11] = [0, 1, 2, 3, 4, 5, 8, 19, 29, 30, 34];

/// Whether `kind` may be configured as a TOA option kind (0 disables a
/// slot). Refused: the kernel's own kinds ([`RESERVED_KINDS`]) and
/// [`KIND_CDN`], which is the User Timeout option and is taken only in its
/// CDN form, through the CDN switch.
pub const fn kind_is_configurable(kind: u32) -> bool {
    if kind == 0 {
        return true;
    }
    if kind > 255 || kind == KIND_CDN as u32 {
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
            // As one 128-bit value: element by element, rustc 1.85 wrote
            // both arms' 16 bytes one at a time.
            ClientAddr::V4 { port, addr } => (
                port,
                (0xffff_u128 << 32 | u128::from(u32::from_be_bytes(addr))).to_be_bytes(),
            ),
            ClientAddr::V6 { port, addr } => (port, addr),
        }
    }

    /// The client as the fixed-size fields tables keep: whether it is IPv6,
    /// its port and its address in 16 bytes (IPv4: the first four, the
    /// rest zero). [`ClientAddr::unpack`] is the inverse.
    pub fn pack(&self) -> (bool, [u8; 2], [u8; 16]) {
        match *self {
            ClientAddr::V4 { port, addr } => (
                false,
                port,
                (u128::from(u32::from_be_bytes(addr)) << 96).to_be_bytes(),
            ),
            ClientAddr::V6 { port, addr } => (true, port, addr),
        }
    }

    /// The client [`ClientAddr::pack`] made these fields of.
    pub fn unpack(v6: bool, port: [u8; 2], addr: &[u8; 16]) -> ClientAddr {
        if v6 {
            ClientAddr::V6 { port, addr: *addr }
        } else {
            ClientAddr::V4 {
                port,
                addr: [addr[0], addr[1], addr[2], addr[3]],
            }
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

/// The shape of option a client was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Format {
    /// A TOA option of a configured kind, length 8 or 20.
    Toa = 0,
    /// A TOA option of a configured kind, length 16: client and VIP.
    Vip = 1,
    /// Alibaba Cloud CDN's kind 28, length 7 or 19 (no port).
    Cdn = 2,
}

impl Format {
    /// The format stored as `byte` (unknown bytes read as [`Format::Toa`]).
    pub const fn from_byte(byte: u8) -> Format {
        match byte {
            1 => Format::Vip,
            2 => Format::Cdn,
            _ => Format::Toa,
        }
    }
}

/// A client found in an option list, and the shape it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Found {
    /// The client.
    pub client: ClientAddr,
    /// The option's shape.
    pub format: Format,
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
    /// An option of a configured TOA kind whose length is not 8, 16 or 20.
    WrongTOALength,
    /// A CDN-shaped option (kind 28, length 7 or 19) whose version is not 1.
    CdnVersion,
    /// A TOA option naming port 0 or the unspecified address: no TCP client
    /// can have it, so it is a balancer's bug or a forgery.
    Unspecified,
}

/// What a scan of an option list found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A well-formed list whose first client option carries this client.
    Found(Found),
    /// A well-formed list without a client option.
    Absent,
    /// A list that is not well formed or whose client option is not usable.
    Malformed(Malformed),
}

/// The packet an option list comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet {
    /// A SYN (no ACK flag): Fast Open's experimental option may be there.
    Syn,
    /// Any other segment: the handshake's ACK, data.
    Ack,
}

/// A set of option kinds (a 256-bit map).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kinds([u64; 4]);

impl Kinds {
    /// No kind.
    pub const EMPTY: Kinds = Kinds([0; 4]);
    /// The kinds toa takes out of the box: 200 (Tencent, LVS 2012, JD,
    /// UCloud, F5), 253 (Alibaba LVS and Tencent for IPv6 clients) and 254
    /// (Alibaba LVS, Huawei ELB, DPVS, ByteDance, F5).
    pub const DEFAULT: Kinds = Kinds::EMPTY.with(200).with(253).with(254);

    /// The set from its four 64-bit words (kind `k` is bit `k % 64` of word
    /// `k / 64`).
    pub const fn from_words(words: [u64; 4]) -> Kinds {
        Kinds(words)
    }

    /// The set's four 64-bit words.
    pub const fn words(&self) -> [u64; 4] {
        self.0
    }

    /// This set and `kind` (0 adds nothing).
    pub const fn with(self, kind: u8) -> Kinds {
        let mut w = self.0;
        if kind != 0 {
            w[(kind / 64) as usize] |= 1 << (kind % 64);
        }
        Kinds(w)
    }

    /// The union of two sets.
    pub const fn union(self, other: Kinds) -> Kinds {
        let (a, b) = (self.0, other.0);
        Kinds([a[0] | b[0], a[1] | b[1], a[2] | b[2], a[3] | b[3]])
    }

    /// Whether `kind` is in the set (0 never is): [`KindWords::has_kind`],
    /// the test the settings' words take too.
    pub fn contains(&self, kind: u8) -> bool {
        self.has_kind(kind)
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        self.0[0] | self.0[1] | self.0[2] | self.0[3] == 0
    }

    /// The kinds, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (1..=255u8).filter(move |k| self.contains(*k))
    }
}

/// Where a parser reads a set of kinds: a [`Kinds`] value, or a
/// namespace's settings, whose words it then loads in place (the paths
/// every handshake ACK passes copy no set; `policy::config::Options`).
pub trait KindWords {
    /// Word `i` (0 to 3) of the set: kind `k` is bit `k % 64` of word
    /// `k / 64`.
    fn kind_word(&self, i: usize) -> u64;

    /// Whether `kind` is in the set (0 never is).
    #[inline(always)]
    fn has_kind(&self, kind: u8) -> bool {
        kind != 0 && self.kind_word(usize::from(kind / 64)) & (1 << (kind % 64)) != 0
    }
}

impl KindWords for Kinds {
    #[inline(always)]
    fn kind_word(&self, i: usize) -> u64 {
        self.0[i & 3]
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The kinds in ascending order, separated by single spaces (`200 253 254`);
/// nothing for the empty set.
impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}")?;
        }
        Ok(())
    }
}

/// What a scan takes as a client option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// The TOA kinds (lengths 8, 16 and 20).
    pub kinds: Kinds,
    /// Whether Alibaba Cloud CDN's kind 28 (lengths 7 and 19) is taken.
    pub cdn: bool,
}

impl Rules {
    /// Out of the box: the default kinds, and the CDN option.
    pub const DEFAULT: Rules = Rules {
        kinds: Kinds::DEFAULT,
        cdn: true,
    };
}

/// What one option is, to the scan.
enum Seen {
    /// Not a client option.
    Other,
    /// A client option.
    Client(Found),
    /// A client option that cannot be used.
    Bad(Malformed),
}

/// Find the client address in a TCP option list (the bytes between the fixed
/// 20-byte TCP header and the data offset) of a `packet` whose TCP source
/// port is `port` (network order: the CDN option's client port).
///
/// The first client option wins; the rest of the list must still be well
/// formed. Never panics and never reads outside `options`, whatever it holds.
pub fn scan(options: &[u8], rules: &Rules, packet: Packet, port: [u8; 2]) -> Scan {
    scan_pick(options, rules, packet, port, Pick::First).scan
}

/// Which client option of a packet is the balancer's, when there are
/// several: where its producer puts its own, ahead of or behind the options
/// it forwards from the client (`net.toa.tcpopt_position`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The first (a balancer that inserts its option first: LVS, DPVS).
    First,
    /// The last (a balancer that appends its option: JD Jupiter).
    Last,
    /// The one client, if they all agree: a packet whose client options
    /// name different clients names nobody (one of them is not the
    /// balancer's, and which one depends on the producer).
    Only,
}

/// What [`scan_pick`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picked {
    /// As [`scan`] says, but with the picked client option.
    pub scan: Scan,
    /// Whether the list holds client options naming different clients (one
    /// of them is not the balancer's).
    pub conflict: bool,
}

/// [`scan`], taking the `pick` client option of a well-formed list, and
/// telling whether its client options disagree. Never panics and never
/// reads outside `options`, whatever it holds.
///
/// A list that is one IPv4 TOA option, alone or beside the timestamps a
/// client's ACK carries ([`lone_v4`]: what balancers send), is answered
/// without the walk ([`scan_pick_walk`]); property tests hold the two to
/// the same answers.
pub fn scan_pick(
    options: &[u8],
    rules: &Rules,
    packet: Packet,
    port: [u8; 2],
    pick: Pick,
) -> Picked {
    match lone_v4(options, &rules.kinds, packet) {
        // One client option in a well-formed list: every pick takes it,
        // and it cannot disagree with another.
        Some(client) => Picked {
            scan: if is_unspecified(&client) {
                Scan::Malformed(Malformed::Unspecified)
            } else {
                Scan::Found(Found {
                    client,
                    format: Format::Toa,
                })
            },
            conflict: false,
        },
        None => scan_pick_walk(options, rules, packet, port, pick),
    }
}

/// The client of `options` if the list is exactly one IPv4 TOA option
/// (length 8) of one of the `kinds`: alone (8 bytes), or beside the
/// NOP, NOP, timestamps of a Linux client's ACK, ahead of them or behind
/// (20 bytes). `None` for every other list, which the walk decides, and
/// for kinds that hold NOP's or the timestamps' kind (no configurable
/// rule set does), or for Fast Open's experimental option in a SYN. (The
/// CDN option has other lengths: the rules' `cdn` plays no part.)
#[inline]
fn lone_v4<K: KindWords + ?Sized>(options: &[u8], kinds: &K, packet: Packet) -> Option<ClientAddr> {
    /// NOP, NOP, timestamps' kind and length.
    const NOP_NOP_TS: [u8; 4] = [KIND_NOP, KIND_NOP, 8, 10];
    if kinds.kind_word(0) & (1 << KIND_NOP | 1 << 8) != 0 {
        return None;
    }
    let o: &[u8] = match options.len() {
        8 => options,
        20 if options[..4] == NOP_NOP_TS => &options[12..],
        20 if options[8..12] == NOP_NOP_TS => &options[..8],
        _ => return None,
    };
    let [kind, LEN_V4, p0, p1, a0, a1, a2, a3] = *o else {
        return None;
    };
    if !kinds.has_kind(kind)
        || (packet == Packet::Syn && kind == KIND_EXP && [p0, p1] == FASTOPEN_EXID)
    {
        return None;
    }
    Some(ClientAddr::V4 {
        port: [p0, p1],
        addr: [a0, a1, a2, a3],
    })
}

/// The client of a handshake ACK whose `options` are one IPv4 TOA option
/// ([`lone_v4`]'s shapes: what balancers send), as [`scan_pick`] finds it
/// on any port and with any pick (found, [`Format::Toa`], no conflict);
/// `None` for every other list and for an unspecified client (which
/// [`scan_pick`] calls malformed), which the whole path decides. The
/// glue's quick path for a new child (`tcp/handshake.rs`), which reads
/// `kinds` in its settings.
#[inline]
pub fn lone_ack_client_v4<K: KindWords + ?Sized>(options: &[u8], kinds: &K) -> Option<ClientAddr> {
    lone_v4(options, kinds, Packet::Ack).filter(|c| !is_unspecified(c))
}

/// [`scan_pick`]'s walk of the list, option by option.
fn scan_pick_walk(
    options: &[u8],
    rules: &Rules,
    packet: Packet,
    port: [u8; 2],
    pick: Pick,
) -> Picked {
    let mut first: Option<Found> = None;
    let mut last: Option<Found> = None;
    let mut conflict = false;
    let mut bad: Option<Malformed> = None;
    let scan = 'walk: {
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
                break 'walk Scan::Malformed(Malformed::Truncated);
            };
            if len < 2 {
                break 'walk Scan::Malformed(Malformed::BadLength);
            }
            let len = usize::from(len);
            let (Some(option), Some(after)) = (rest.get(..len), rest.get(len..)) else {
                break 'walk Scan::Malformed(Malformed::Overrun);
            };
            match classify(option, rules, packet, port) {
                Seen::Client(f) => {
                    conflict |= first.is_some_and(|g| g.client != f.client);
                    first = first.or(Some(f));
                    last = Some(f);
                }
                // Only a bad option before the first client option makes the
                // list's answer (as it always has): a client option is taken
                // whatever follows it, as long as the list is well formed.
                Seen::Bad(why) if first.is_none() => bad = bad.or(Some(why)),
                Seen::Bad(_) | Seen::Other => {}
            }
            rest = after;
        }
        let found = match pick {
            Pick::First => first,
            Pick::Last => last,
            Pick::Only if conflict => None,
            Pick::Only => first,
        };
        match (found, bad) {
            (Some(f), _) if is_unspecified(&f.client) => Scan::Malformed(Malformed::Unspecified),
            (Some(f), _) => Scan::Found(f),
            (None, Some(why)) => Scan::Malformed(why),
            (None, None) => Scan::Absent,
        }
    };
    Picked {
        // A malformed list names nobody: no conflict to speak of.
        conflict: conflict
            && match scan {
                Scan::Found(_) => true,
                Scan::Absent => pick == Pick::Only,
                Scan::Malformed(_) => false,
            },
        scan,
    }
}

/// Whether `options` may name anyone under rules within `any` (kinds
/// `any` holds, the CDN option only if `any` takes it): whether it holds an
/// option of one of `any`'s kinds (for kind 28, of a CDN length), or is not
/// well formed. When it is not, [`scan_pick`] answers [`Scan::Absent`] without
/// a conflict under every such rule set, and the packet needs nothing more
/// from toa: the quick test every handshake packet takes first (a SYN of a
/// host's ordinary client carries four or five options, none of them a
/// TOA kind). Never reads outside `options`.
#[inline]
pub fn may_name(options: &[u8], any: &Rules) -> bool {
    may_name_lazy(options, any.kinds.words()[0], || *any)
}

/// [`may_name`], given the first word of the rules' kinds (kinds 0 to 63)
/// and where to get the rules only when the list is not one of
/// [`ordinary`]'s: the rules are five words, which every handshake packet
/// would otherwise read and lay out for the walk it does not need.
#[inline(always)]
pub fn may_name_lazy(options: &[u8], kinds_word0: u64, any: impl FnOnce() -> Rules) -> bool {
    !ordinary(options, kinds_word0) && may_name_walk(options, &any())
}

/// The kinds of the option lists [`ordinary`] knows: maximum segment size
/// (2), window scale (3), SACK permitted (4) and timestamps (8).
const ORDINARY_KINDS: u64 = 1 << 2 | 1 << 3 | 1 << 4 | 1 << 8;

/// Whether `options` is one of the lists the common client stacks (and
/// Linux itself) put in a handshake, whatever the values, none of whose
/// kinds is one of the rules' (whose kinds 0 to 63 are `kinds_word0`):
/// then it names nobody, known in a few word compares instead of a walk
/// of about 20 instructions an option. Most connections a host makes to
/// itself and to its neighbours, and most SYNs balancers forward, carry
/// exactly these:
///
/// - Linux's completing ACK: NOP, NOP, timestamps (12 bytes);
/// - Linux's SYN: MSS, SACK permitted, timestamps, NOP, window scale (20
///   bytes); without SACK the SACK option's two bytes are two NOPs;
/// - Linux's SYN without timestamps: MSS, NOP, NOP, SACK permitted, NOP,
///   window scale (12 bytes);
/// - Windows' SYN: MSS, NOP, window scale, NOP, NOP, SACK permitted (12
///   bytes);
/// - macOS's and iOS's SYN: MSS, NOP, window scale, NOP, NOP, timestamps,
///   SACK permitted, two EOLs (24 bytes);
/// - a SYN with the MSS alone (4 bytes: a SYN proxy's, a stack without
///   extensions);
/// - no options at all.
#[inline(always)]
fn ordinary(options: &[u8], kinds_word0: u64) -> bool {
    // Four bytes from `at`, the first the most significant. The masks
    // below keep the bytes that are kinds and lengths (the others are
    // values).
    fn word<const N: usize>(o: &[u8; N], at: usize) -> u32 {
        u32::from_be_bytes([o[at], o[at + 1], o[at + 2], o[at + 3]])
    }
    const MSS: u32 = 0x0204_0000;
    const HEAD: u32 = 0xffff_0000;
    const NOP_WSCALE: u32 = 0x0103_0300;
    const TAIL: u32 = 0xffff_ff00;
    if kinds_word0 & ORDINARY_KINDS != 0 {
        return false;
    }
    match options.len() {
        0 => true,
        4 => matches!(*options, [2, 4, _, _]),
        12 => {
            let Ok(o) = <&[u8; 12]>::try_from(options) else {
                return false;
            };
            word(o, 0) == 0x0101_080a
                || (word(o, 0) & HEAD == MSS
                    && ((word(o, 4) == 0x0101_0402 && word(o, 8) & TAIL == NOP_WSCALE)
                        || (word(o, 4) & TAIL == NOP_WSCALE && word(o, 8) == 0x0101_0402)))
        }
        20 => {
            let Ok(o) = <&[u8; 20]>::try_from(options) else {
                return false;
            };
            word(o, 0) & HEAD == MSS
                && (word(o, 4) == 0x0402_080a || word(o, 4) == 0x0101_080a)
                && word(o, 16) & TAIL == NOP_WSCALE
        }
        24 => {
            let Ok(o) = <&[u8; 24]>::try_from(options) else {
                return false;
            };
            word(o, 0) & HEAD == MSS
                && word(o, 4) & TAIL == NOP_WSCALE
                && word(o, 8) == 0x0101_080a
                && word(o, 20) == 0x0402_0000
        }
        _ => false,
    }
}

/// [`ordinary`]'s lists, as patterns: what the word compares must agree
/// with (tests).
#[cfg(test)]
#[rustfmt::skip]
fn ordinary_by_pattern(options: &[u8]) -> bool {
    const NOP: u8 = KIND_NOP;
    matches!(
        *options,
        []
            | [2, 4, _, _]
            | [NOP, NOP, 8, 10, _, _, _, _, _, _, _, _]
            | [2, 4, _, _, 4, 2, 8, 10, _, _, _, _, _, _, _, _, NOP, 3, 3, _]
            | [2, 4, _, _, NOP, NOP, 8, 10, _, _, _, _, _, _, _, _, NOP, 3, 3, _]
            | [2, 4, _, _, NOP, NOP, 4, 2, NOP, 3, 3, _]
            | [2, 4, _, _, NOP, 3, 3, _, NOP, NOP, 4, 2]
            | [2, 4, _, _, NOP, 3, 3, _, NOP, NOP, 8, 10, _, _, _, _, _, _, _, _, 4, 2, 0, 0]
    )
}

/// [`may_name`]'s walk over every option.
fn may_name_walk(options: &[u8], any: &Rules) -> bool {
    let mut rest = options;
    while let [kind, after @ ..] = rest {
        match *kind {
            KIND_EOL => return false,
            KIND_NOP => {
                rest = after;
                continue;
            }
            _ => {}
        }
        let Some(&len) = after.first() else {
            return true;
        };
        let Some(next) = rest.get(usize::from(len)..).filter(|_| len >= 2) else {
            return true;
        };
        if any.kinds.contains(*kind)
            || (*kind == KIND_CDN && any.cdn && (len == LEN_CDN_V4 || len == LEN_CDN_V6))
        {
            return true;
        }
        rest = next;
    }
    false
}

/// What one whole, in-bounds option (kind and length included) is.
fn classify(option: &[u8], rules: &Rules, packet: Packet, port: [u8; 2]) -> Seen {
    let (kind, len) = match *option {
        [kind, len, ..] => (kind, len),
        _ => return Seen::Other,
    };
    if rules.kinds.contains(kind) {
        if packet == Packet::Syn && kind == KIND_EXP && option.get(2..4) == Some(&FASTOPEN_EXID[..])
        {
            // RFC 7413's experimental Fast Open option, whatever its length.
            return Seen::Other;
        }
        return match parse_toa(option) {
            Some(f) => Seen::Client(f),
            None => Seen::Bad(Malformed::WrongTOALength),
        };
    }
    if kind == KIND_CDN && rules.cdn && (len == LEN_CDN_V4 || len == LEN_CDN_V6) {
        return match parse_cdn(option, port) {
            Some(f) => Seen::Client(f),
            None => Seen::Bad(Malformed::CdnVersion),
        };
    }
    // Kind 28 of any other length (4: User Timeout) is not a client option.
    Seen::Other
}

/// Decode one whole TOA option (kind and length included), if its length is
/// one of the TOA lengths.
fn parse_toa(option: &[u8]) -> Option<Found> {
    let (client, format) = match *option {
        [_, LEN_V4, p0, p1, a0, a1, a2, a3] => (
            ClientAddr::V4 {
                port: [p0, p1],
                addr: [a0, a1, a2, a3],
            },
            Format::Toa,
        ),
        // The VIP (bytes 10..16) is the address the client dialled: not the
        // client, and not read.
        [_, LEN_VIP, p0, p1, a0, a1, a2, a3, ..] => (
            ClientAddr::V4 {
                port: [p0, p1],
                addr: [a0, a1, a2, a3],
            },
            Format::Vip,
        ),
        [_, LEN_V6, p0, p1, ref addr @ ..] => (
            ClientAddr::V6 {
                port: [p0, p1],
                addr: addr.try_into().ok()?,
            },
            Format::Toa,
        ),
        _ => return None,
    };
    Some(Found { client, format })
}

/// Decode one whole CDN option (length 7 or 19) of version 1; its client's
/// port is `port`.
fn parse_cdn(option: &[u8], port: [u8; 2]) -> Option<Found> {
    let client = match *option {
        [_, LEN_CDN_V4, CDN_VERSION, a0, a1, a2, a3] => ClientAddr::V4 {
            port,
            addr: [a0, a1, a2, a3],
        },
        [_, LEN_CDN_V6, CDN_VERSION, ref addr @ ..] => ClientAddr::V6 {
            port,
            addr: addr.try_into().ok()?,
        },
        _ => return None,
    };
    Some(Found {
        client,
        format: Format::Cdn,
    })
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

    /// Two kinds only (the first tests' world), and the CDN option off.
    const K: Rules = Rules {
        kinds: Kinds::EMPTY.with(200).with(254),
        cdn: false,
    };
    const D: Rules = Rules::DEFAULT;
    /// The TCP source port of the packets the scans read.
    const PORT: [u8; 2] = [0xc3, 0x50];
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

    fn scan(options: &[u8], rules: Rules) -> Scan {
        super::scan(options, &rules, Packet::Ack, PORT)
    }

    fn syn(options: &[u8], rules: Rules) -> Scan {
        super::scan(options, &rules, Packet::Syn, PORT)
    }

    fn toa(client: ClientAddr) -> Scan {
        Scan::Found(Found {
            client,
            format: Format::Toa,
        })
    }

    fn opt(addr: ClientAddr, kind: u8) -> Vec<u8> {
        let (buf, n) = addr.encode(kind);
        buf[..n].to_vec()
    }

    /// ByteDance's 16-byte option: client, 2 pad bytes, VIP port and VIP.
    fn vip_opt(kind: u8, port: [u8; 2], addr: [u8; 4], vport: [u8; 2], vip: [u8; 4]) -> Vec<u8> {
        let mut o = vec![kind, LEN_VIP];
        o.extend(port);
        o.extend(addr);
        o.extend([0, 0]);
        o.extend(vport);
        o.extend(vip);
        o
    }

    /// Alibaba Cloud CDN's option: kind 28, version, address.
    fn cdn_opt(version: u8, addr: &[u8]) -> Vec<u8> {
        let mut o = vec![KIND_CDN, 3 + addr.len() as u8, version];
        o.extend(addr);
        o
    }

    fn list(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const MSS: &[u8] = &[2, 4, 0x05, 0xb4];
    const TS: &[u8] = &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

    fn pick(options: &[u8], rules: Rules, pick: Pick) -> Picked {
        super::scan_pick(options, &rules, Packet::Ack, PORT, pick)
    }

    const OTHER: ClientAddr = ClientAddr::V4 {
        port: [0x00, 0x50],
        addr: [203, 0, 113, 9],
    };

    #[test]
    fn may_name_lets_ordinary_handshakes_go() {
        // A Linux client's SYN (MSS, SACK permitted, timestamps, NOP,
        // window scale) and ACK (NOP, NOP, timestamps).
        let syn = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let ack = [1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8];
        for o in [&syn[..], &ack[..], &[], &[0, 254, 8]] {
            assert!(!may_name(o, &D), "{o:?}");
        }
        // User Timeout (28/4) is not the CDN option.
        assert!(!may_name(&[28, 4, 0, 30], &D));
    }

    #[test]
    fn may_name_sends_candidates_and_bad_lists_on() {
        let v4 = [254, 8, 0x1f, 0x90, 192, 0, 2, 7];
        assert!(may_name(
            &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 254, 8, 0, 0, 0, 0, 0, 0],
            &D
        ));
        assert!(may_name(&v4, &D));
        assert!(!may_name(
            &v4,
            &Rules {
                kinds: Kinds::EMPTY.with(200),
                cdn: true
            }
        ));
        assert!(may_name(&[28, 7, 1, 192, 0, 2, 7], &D));
        assert!(!may_name(&[28, 7, 1, 192, 0, 2, 7], &K));
        // Truncated, too short, overrunning: scan_pick counts them.
        for o in [&[8][..], &[8, 1, 0], &[8, 12, 0, 0]] {
            assert!(may_name(o, &K), "{o:?}");
            assert!(matches!(scan(o, K), Scan::Malformed(_)));
        }
    }

    #[test]
    fn the_first_or_the_last_client_option_and_whether_they_disagree() {
        // A client's own option forwarded ahead of the balancer's appended
        // one (JD Jupiter's placement): First takes the client's, Last the
        // balancer's, both see the conflict.
        let l = list(&[&opt(OTHER, 200), TS, &opt(V4, 200)]);
        assert_eq!(
            pick(&l, K, Pick::First),
            Picked {
                scan: toa(OTHER),
                conflict: true
            }
        );
        assert_eq!(
            pick(&l, K, Pick::Last),
            Picked {
                scan: toa(V4),
                conflict: true
            }
        );
        // Only: options that disagree name nobody, and say so.
        assert_eq!(
            pick(&l, K, Pick::Only),
            Picked {
                scan: Scan::Absent,
                conflict: true
            }
        );
        // The same client twice (F5 in every packet, a v4 and a v6 form of
        // one client are different clients): no conflict.
        let same = list(&[&opt(V4, 200), MSS, &opt(V4, 254)]);
        assert!(!pick(&same, K, Pick::Last).conflict);
        assert_eq!(pick(&same, K, Pick::Last).scan, toa(V4));
        assert_eq!(pick(&same, K, Pick::Only).scan, toa(V4));
        // One option: every pick agrees, no conflict; none: absent.
        let one = list(&[MSS, &opt(V6, 254), TS]);
        for p in [Pick::First, Pick::Last, Pick::Only] {
            assert_eq!(
                pick(&one, K, p),
                Picked {
                    scan: toa(V6),
                    conflict: false
                }
            );
            assert_eq!(pick(TS, K, p).scan, Scan::Absent);
        }
        // A list that is not well formed names nobody, conflict or not.
        let broken = list(&[&opt(OTHER, 200), &opt(V4, 200), &[8, 10, 1]]);
        for p in [Pick::First, Pick::Last, Pick::Only] {
            assert_eq!(
                pick(&broken, K, p),
                Picked {
                    scan: Scan::Malformed(Malformed::Overrun),
                    conflict: false
                }
            );
        }
        // scan() is the first pick.
        assert_eq!(scan(&l, K), toa(OTHER));
    }

    #[test]
    fn empty_list_is_absent() {
        assert_eq!(scan(&[], K), Scan::Absent);
    }

    #[test]
    fn ipv4_option_alone() {
        assert_eq!(scan(&opt(V4, 200), K), toa(V4));
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
        assert_eq!(scan(&opt(V6, 254), K), toa(V6));
        assert_eq!(V6.port(), 1234);
    }

    #[test]
    fn either_kind_takes_either_length() {
        assert_eq!(scan(&opt(V6, 200), K), toa(V6));
        assert_eq!(scan(&opt(V4, 254), K), toa(V4));
    }

    #[test]
    fn option_among_others() {
        let l = list(&[TS, &opt(V4, 254), &[1, 1, 1, 1]]);
        assert_eq!(scan(&l, K), toa(V4));
    }

    #[test]
    fn unconfigured_kind_is_ignored() {
        assert_eq!(scan(&opt(V4, 253), K), Scan::Absent);
        let only_253 = Rules {
            kinds: Kinds::EMPTY.with(253),
            cdn: false,
        };
        assert_eq!(scan(&opt(V4, 253), only_253), toa(V4));
    }

    #[test]
    fn default_kinds_are_200_253_254() {
        for kind in [200, 253, 254] {
            assert_eq!(scan(&opt(V4, kind), D), toa(V4), "kind {kind}");
            assert_eq!(scan(&opt(V6, kind), D), toa(V6), "kind {kind}");
        }
        assert_eq!(scan(&opt(V4, 252), D), Scan::Absent);
        assert_eq!(Kinds::DEFAULT.iter().collect::<Vec<_>>(), [200, 253, 254]);
    }

    #[test]
    fn empty_kinds_take_nothing() {
        let none = Rules {
            kinds: Kinds::EMPTY,
            cdn: false,
        };
        assert_eq!(scan(&list(&[MSS, &[0]]), none), Scan::Absent);
        assert_eq!(scan(&opt(V4, 200), none), Scan::Absent);
        assert!(!Kinds::EMPTY.with(0).contains(0));
    }

    #[test]
    fn kinds_print_in_order() {
        assert_eq!(format!("{}", Kinds::DEFAULT), "200 253 254");
        assert_eq!(format!("{}", Kinds::EMPTY), "");
        assert_eq!(format!("{}", Kinds::EMPTY.with(255).with(6)), "6 255");
        assert_eq!(format!("{:?}", Kinds::EMPTY.with(7)), "{7}");
    }

    #[test]
    fn kinds_words_round_trip() {
        let k = Kinds::DEFAULT.with(1).with(64).with(127);
        assert_eq!(Kinds::from_words(k.words()), k);
        assert_eq!(k.words()[3], (1 << 8) | (1 << 61) | (1 << 62));
        assert_eq!(
            Kinds::EMPTY.with(3).union(Kinds::EMPTY.with(70)),
            Kinds::EMPTY.with(70).with(3)
        );
        assert!(Kinds::EMPTY.is_empty() && !Kinds::DEFAULT.is_empty());
    }

    #[test]
    fn first_toa_option_wins() {
        let other = ClientAddr::V4 {
            port: [0, 1],
            addr: [10, 9, 8, 7],
        };
        let l = list(&[&opt(V4, 200), &opt(other, 254)]);
        assert_eq!(scan(&l, K), toa(V4));
        let l = list(&[&opt(other, 254), &opt(V4, 200)]);
        assert_eq!(scan(&l, K), toa(other));
    }

    #[test]
    fn option_after_eol_is_not_read() {
        let l = list(&[MSS, &[0, 0, 0, 0], &opt(V4, 200)]);
        assert_eq!(scan(&l, K), Scan::Absent);
    }

    #[test]
    fn garbage_after_eol_is_padding() {
        let l = list(&[&opt(V4, 200), &[0, 0xff, 0xff, 0xff]]);
        assert_eq!(scan(&l, K), toa(V4));
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
        assert_eq!(scan(&l, K), toa(V4));
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
    fn kind_28_is_only_the_cdn_switch() {
        assert!(!kind_is_configurable(28));
        assert!(kind_is_configurable(27) && kind_is_configurable(31));
    }

    #[test]
    fn a_full_forty_byte_list() {
        let l = list(&[&opt(V6, 254), TS, &[1, 1, 1, 1, 1, 1, 1, 1]]);
        assert_eq!(l.len(), MAX_OPTIONS_LEN);
        assert_eq!(scan(&l, K), toa(V6));
    }

    // ---- Fast Open's experimental option in a SYN ----

    #[test]
    fn fast_open_experimental_option_in_a_syn_is_not_a_client() {
        // Cookie request (length 4), 4- and 16-byte cookies (8, 20), and an
        // odd length: all Fast Open, none a client, none malformed.
        for o in [
            vec![254, 4, 0xf9, 0x89],
            vec![254, 8, 0xf9, 0x89, 1, 2, 3, 4],
            [&[254, 20, 0xf9, 0x89][..], &[7; 16]].concat(),
            vec![254, 6, 0xf9, 0x89, 1, 2],
        ] {
            let l = list(&[MSS, &o]);
            assert_eq!(syn(&l, D), Scan::Absent, "{o:?}");
        }
    }

    #[test]
    fn fast_open_then_a_real_option_in_a_syn() {
        let l = list(&[&[254, 8, 0xf9, 0x89, 1, 2, 3, 4], &opt(V4, 254)]);
        assert_eq!(syn(&l, D), toa(V4));
        let l = list(&[&[254, 4, 0xf9, 0x89], &opt(V6, 200)]);
        assert_eq!(syn(&l, D), toa(V6));
    }

    #[test]
    fn port_63881_in_an_ack_is_a_client() {
        let c = ClientAddr::V4 {
            port: FASTOPEN_EXID,
            addr: [198, 51, 100, 1],
        };
        assert_eq!(c.port(), 63881);
        assert_eq!(scan(&opt(c, 254), D), toa(c));
        // ... and in a SYN it is Fast Open, for kind 254 only.
        assert_eq!(syn(&opt(c, 254), D), Scan::Absent);
        assert_eq!(syn(&opt(c, 200), D), toa(c));
        assert_eq!(syn(&opt(c, 253), D), toa(c));
    }

    #[test]
    fn a_syn_takes_the_same_options_otherwise() {
        for o in [opt(V4, 200), opt(V6, 253), opt(V4, 254)] {
            assert_eq!(syn(&o, D), scan(&o, D), "{o:?}");
        }
    }

    // ---- ByteDance's 16-byte option ----

    #[test]
    fn sixteen_bytes_client_then_vip() {
        let o = vip_opt(254, [0x1f, 0x90], [192, 0, 2, 7], [0, 80], [203, 0, 113, 9]);
        let want = Scan::Found(Found {
            client: V4,
            format: Format::Vip,
        });
        assert_eq!(scan(&o, D), want);
        assert_eq!(syn(&o, D), want);
        // Any configured kind may carry it; the VIP and pad are not read.
        let o = vip_opt(200, [0x1f, 0x90], [192, 0, 2, 7], [0; 2], [0; 4]);
        assert_eq!(scan(&o, D), want);
    }

    #[test]
    fn sixteen_bytes_with_port_or_address_zero_is_malformed() {
        let unspec = Scan::Malformed(Malformed::Unspecified);
        let o = vip_opt(254, [0, 0], [192, 0, 2, 7], [0, 80], [203, 0, 113, 9]);
        assert_eq!(scan(&o, D), unspec);
        let o = vip_opt(254, [0, 80], [0; 4], [0, 80], [203, 0, 113, 9]);
        assert_eq!(scan(&o, D), unspec);
    }

    #[test]
    fn sixteen_bytes_in_a_syn_with_the_fast_open_id_is_fast_open() {
        let o = vip_opt(254, FASTOPEN_EXID, [192, 0, 2, 7], [0, 80], [1; 4]);
        assert_eq!(syn(&o, D), Scan::Absent);
        assert!(matches!(scan(&o, D), Scan::Found(_)));
    }

    // ---- Alibaba Cloud CDN's kind 28 ----

    #[test]
    fn cdn_ipv4_takes_the_packets_port() {
        let o = cdn_opt(1, &[192, 0, 2, 7]);
        let want = Scan::Found(Found {
            client: ClientAddr::V4 {
                port: PORT,
                addr: [192, 0, 2, 7],
            },
            format: Format::Cdn,
        });
        assert_eq!(syn(&list(&[MSS, &o]), D), want);
        assert_eq!(scan(&o, D), want);
    }

    #[test]
    fn cdn_ipv6() {
        let ClientAddr::V6 { addr, .. } = V6 else {
            unreachable!()
        };
        let o = cdn_opt(1, &addr);
        assert_eq!(o.len(), usize::from(LEN_CDN_V6));
        assert_eq!(
            syn(&o, D),
            Scan::Found(Found {
                client: ClientAddr::V6 { port: PORT, addr },
                format: Format::Cdn,
            })
        );
    }

    #[test]
    fn user_timeout_is_never_a_client() {
        let uto = [KIND_CDN, 4, 0x80, 0x3c];
        assert_eq!(syn(&list(&[MSS, &uto]), D), Scan::Absent);
        assert_eq!(scan(&list(&[&uto, &opt(V4, 200)]), D), toa(V4));
        // Other lengths of kind 28 are not ours either.
        assert_eq!(scan(&[KIND_CDN, 8, 1, 1, 2, 3, 4, 5], D), Scan::Absent);
    }

    #[test]
    fn cdn_other_versions_are_malformed() {
        for v in [0, 2, 255] {
            assert_eq!(
                syn(&cdn_opt(v, &[192, 0, 2, 7]), D),
                Scan::Malformed(Malformed::CdnVersion),
                "version {v}"
            );
        }
        // ... unless a good client option follows.
        let l = list(&[&cdn_opt(2, &[192, 0, 2, 7]), &opt(V4, 200)]);
        assert_eq!(scan(&l, D), toa(V4));
    }

    #[test]
    fn cdn_address_zero_is_malformed() {
        assert_eq!(
            syn(&cdn_opt(1, &[0; 4]), D),
            Scan::Malformed(Malformed::Unspecified)
        );
        assert_eq!(
            syn(&cdn_opt(1, &[0; 16]), D),
            Scan::Malformed(Malformed::Unspecified)
        );
    }

    #[test]
    fn cdn_switched_off_is_ignored() {
        let off = Rules {
            cdn: false,
            ..Rules::DEFAULT
        };
        assert_eq!(syn(&cdn_opt(1, &[192, 0, 2, 7]), off), Scan::Absent);
        assert_eq!(syn(&cdn_opt(9, &[192, 0, 2, 7]), off), Scan::Absent);
    }

    #[test]
    fn first_client_option_wins_across_formats() {
        let l = list(&[&cdn_opt(1, &[10, 0, 0, 1]), &opt(V4, 200)]);
        assert!(matches!(
            syn(&l, D),
            Scan::Found(Found {
                format: Format::Cdn,
                ..
            })
        ));
        let l = list(&[&opt(V4, 200), &cdn_opt(1, &[10, 0, 0, 1])]);
        assert_eq!(syn(&l, D), toa(V4));
    }

    #[test]
    fn format_bytes_round_trip() {
        for f in [Format::Toa, Format::Vip, Format::Cdn] {
            assert_eq!(Format::from_byte(f as u8), f);
        }
        assert_eq!(Format::from_byte(77), Format::Toa);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const PORT: [u8; 2] = [0x30, 0x39];

    /// A well-formed option that is neither EOL nor a client option under
    /// the default rules.
    fn other_option() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![KIND_NOP]),
            Just(vec![KIND_CDN, 4, 0, 30]),
            (2u8..=255, 0usize..=10)
                .prop_filter("not a client kind", |(k, _)| {
                    !Kinds::DEFAULT.contains(*k) && *k != KIND_CDN
                })
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

    fn packet() -> impl Strategy<Value = Packet> {
        prop_oneof![Just(Packet::Syn), Just(Packet::Ack)]
    }

    /// A client option in any of the three shapes, and what it names.
    fn client_option() -> impl Strategy<Value = (Vec<u8>, Found)> {
        (client_addr(), 0u8..3, any::<[u8; 6]>()).prop_map(|(c, shape, vip)| {
            let kind = [200u8, 253, 254][usize::from(vip[0] % 3)];
            match (shape, c) {
                (0, _) => (opt_bytes(c, kind), found(c, Format::Toa)),
                (1, ClientAddr::V4 { port, addr }) => {
                    let mut o = vec![kind, LEN_VIP];
                    o.extend(port);
                    o.extend(addr);
                    o.extend([0, 0]);
                    o.extend(vip);
                    (o, found(c, Format::Vip))
                }
                (_, ClientAddr::V4 { addr, .. }) => {
                    let mut o = vec![KIND_CDN, LEN_CDN_V4, CDN_VERSION];
                    o.extend(addr);
                    (o, found(ClientAddr::V4 { port: PORT, addr }, Format::Cdn))
                }
                (_, ClientAddr::V6 { addr, .. }) => {
                    let mut o = vec![KIND_CDN, LEN_CDN_V6, CDN_VERSION];
                    o.extend(addr);
                    (o, found(ClientAddr::V6 { port: PORT, addr }, Format::Cdn))
                }
            }
        })
    }

    fn found(client: ClientAddr, format: Format) -> Found {
        Found { client, format }
    }

    fn rules() -> impl Strategy<Value = Rules> {
        (any::<[u64; 4]>(), any::<bool>()).prop_map(|(w, cdn)| Rules {
            kinds: Kinds::from_words(w),
            cdn,
        })
    }

    /// Whether the option names a port the Fast Open experiment owns in a SYN.
    fn is_fast_open(o: &[u8]) -> bool {
        o[0] == KIND_EXP && o.get(2..4) == Some(&FASTOPEN_EXID[..])
    }

    /// The number of handshake lists [`ordinary`] knows.
    const ORDINARY_LAYOUTS: usize = 8;

    /// A common stack's handshake list `layout` ([`ordinary`]'s), its
    /// values (the bytes that are no kind or length) taken from `values`.
    fn common_list(layout: usize, values: &[u8]) -> Vec<u8> {
        // 0xff: a value's byte (the EOLs' zeros are kinds).
        const V: u8 = 0xff;
        let mut o: Vec<u8> = match layout {
            0 => vec![1, 1, 8, 10, V, V, V, V, V, V, V, V],
            1 => vec![2, 4, V, V, 4, 2, 8, 10, V, V, V, V, V, V, V, V, 1, 3, 3, V],
            2 => vec![2, 4, V, V, 1, 1, 8, 10, V, V, V, V, V, V, V, V, 1, 3, 3, V],
            3 => vec![2, 4, V, V, 1, 1, 4, 2, 1, 3, 3, V],
            4 => vec![2, 4, V, V, 1, 3, 3, V, 1, 1, 4, 2],
            5 => vec![
                2, 4, V, V, 1, 3, 3, V, 1, 1, 8, 10, V, V, V, V, V, V, V, V, 4, 2, 0, 0,
            ],
            6 => vec![2, 4, V, V],
            _ => vec![],
        };
        for (i, b) in o.iter_mut().enumerate() {
            if *b == V {
                *b = values[i];
            }
        }
        o
    }

    proptest! {
        #[test]
        fn packed_clients_round_trip(v6: bool, port: [u8; 2], addr: [u8; 16]) {
            let c = if v6 {
                ClientAddr::V6 { port, addr }
            } else {
                ClientAddr::V4 { port, addr: [addr[0], addr[1], addr[2], addr[3]] }
            };
            let (pv6, pport, paddr) = c.pack();
            prop_assert_eq!(pv6, v6);
            if !v6 {
                prop_assert_eq!(&paddr[4..], &[0u8; 12][..]);
            }
            prop_assert_eq!(ClientAddr::unpack(pv6, pport, &paddr), c);
        }

        #[test]
        fn the_lone_option_is_the_walks_answer(
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
            mut values in proptest::collection::vec(any::<u8>(), 20),
            shape in 0usize..3,
            kind in prop_oneof![Just(KIND_EXP), Just(200), any::<u8>()],
            exid: bool,
            zero in 0usize..4,
            change in proptest::option::of((0usize..20, any::<u8>())),
            r in rules(),
            p in packet(),
            port: [u8; 2],
        ) {
            // The lone option's shapes with any values and kind (the kind
            // in the rules or not, the rules' low word as drawn; Fast Open's
            // experiment identifier or not), and any bytes; and the shapes
            // with one byte changed (`mutated`). The port or the address
            // is zero now and then (`zero`).
            match zero {
                1 => values[..2].fill(0),
                2 => values[2..6].fill(0),
                _ => {}
            }
            let mut toa = vec![kind, LEN_V4];
            toa.extend(if exid { &FASTOPEN_EXID[..] } else { &values[..2] });
            toa.extend(&values[2..6]);
            let mut ts = vec![KIND_NOP, KIND_NOP, 8, 10];
            ts.extend(&values[6..14]);
            let shaped = match shape {
                0 => toa,
                1 => [toa, ts].concat(),
                _ => [ts, toa].concat(),
            };
            let mut mutated = shaped.clone();
            if let Some((at, byte)) = change {
                let at = at % mutated.len();
                mutated[at] = byte;
            }
            let with = Rules { kinds: r.kinds.with(kind), cdn: r.cdn };
            for options in [&bytes, &shaped, &mutated] {
                for rules in [r, with, Rules::DEFAULT] {
                    // The ACK's quick answer is the walk's, where it gives one.
                    let quick = lone_ack_client_v4(options, &rules.kinds);
                    for pick in [Pick::First, Pick::Last, Pick::Only] {
                        let walked = scan_pick_walk(options, &rules, p, port, pick);
                        prop_assert_eq!(scan_pick(options, &rules, p, port, pick), walked);
                        if let Some(client) = quick {
                            prop_assert_eq!(
                                scan_pick_walk(options, &rules, Packet::Ack, port, pick),
                                Picked {
                                    scan: Scan::Found(Found { client, format: Format::Toa }),
                                    conflict: false,
                                }
                            );
                        }
                    }
                }
            }
            // It answers for every such ACK with a usable client.
            let d = Rules { kinds: Kinds::DEFAULT.with(kind), cdn: true };
            // (Fast Open's identifier is a port that is not zero.)
            let usable = values[2..6] != [0; 4] && (exid || values[..2] != [0; 2]);
            prop_assert_eq!(
                lone_ack_client_v4(&shaped, &d.kinds).is_some(),
                usable && ![KIND_EOL, KIND_NOP, 8].contains(&kind)
            );
            // The shapes are taken for every kind a rule set may hold.
            prop_assert_eq!(
                lone_v4(&shaped, &d.kinds, Packet::Ack).is_some(),
                ![KIND_EOL, KIND_NOP, 8].contains(&kind)
            );
            prop_assert_eq!(
                lone_v4(&shaped, &d.kinds, Packet::Syn).is_some(),
                !([KIND_EOL, KIND_NOP, 8].contains(&kind) || exid && kind == KIND_EXP)
            );
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), r in rules(), p in packet(), port: [u8; 2]) {
            let _ = scan(&bytes, &r, p, port);
        }

        #[test]
        fn may_name_misses_nothing(
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
            fill in proptest::collection::vec(other_option(), 0..4),
            r in rules(),
            extra in rules(),
            p in packet(),
            port: [u8; 2],
        ) {
            // Rules within the union the quick test is given.
            let any = Rules { kinds: r.kinds.union(extra.kinds), cdn: r.cdn || extra.cdn };
            for options in [bytes, fill.concat()] {
                if !may_name(&options, &any) {
                    let picked = scan_pick(&options, &r, p, port, Pick::Only);
                    prop_assert_eq!(picked.scan, Scan::Absent);
                    prop_assert!(!picked.conflict);
                    for pick in [Pick::First, Pick::Last] {
                        prop_assert_eq!(scan_pick(&options, &r, p, port, pick).scan, Scan::Absent);
                    }
                }
            }
        }

        #[test]
        fn the_ordinary_lists_agree_with_the_walk(
            layout in 0usize..ORDINARY_LAYOUTS,
            values in proptest::collection::vec(any::<u8>(), 24),
            small in 0u64..512,
            r in rules(),
        ) {
            // The common handshake lists with any values, under rule sets
            // that may hold their kinds too (the low word's low bits).
            let o = common_list(layout, &values);
            let mut w = r.kinds.words();
            w[0] = (w[0] & !0x1ff) | small;
            let r = Rules { kinds: Kinds::from_words(w), cdn: r.cdn };
            prop_assert_eq!(may_name(&o, &r), may_name_walk(&o, &r));
            prop_assert_eq!(may_name_lazy(&o, w[0], || r), may_name_walk(&o, &r));
            if w[0] & ORDINARY_KINDS == 0 {
                prop_assert!(ordinary(&o, w[0]));
            }
        }

        #[test]
        fn the_ordinary_words_are_the_patterns(
            layout in 0usize..ORDINARY_LAYOUTS,
            values in proptest::collection::vec(any::<u8>(), 24),
            at in 0usize..24,
            byte in any::<u8>(),
            mutate in any::<bool>(),
        ) {
            // The common lists with any values, and with one byte (kind,
            // length or value) changed to anything.
            let mut o = common_list(layout, &values);
            if mutate && !o.is_empty() {
                let i = at % o.len();
                o[i] = byte;
            }
            prop_assert_eq!(ordinary(&o, 0), ordinary_by_pattern(&o));
            prop_assert!(!ordinary(&o, ORDINARY_KINDS));
        }

        #[test]
        fn the_ordinary_words_are_the_patterns_on_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..28),
        ) {
            prop_assert_eq!(ordinary(&bytes, 0), ordinary_by_pattern(&bytes));
        }

        #[test]
        fn may_name_is_its_walk(bytes in proptest::collection::vec(any::<u8>(), 0..24), r in rules()) {
            prop_assert_eq!(may_name(&bytes, &r), may_name_walk(&bytes, &r));
            let w0 = r.kinds.words()[0];
            prop_assert_eq!(may_name_lazy(&bytes, w0, || r), may_name_walk(&bytes, &r));
        }

        #[test]
        fn a_found_address_is_in_the_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..48), p in packet()) {
            // Whatever is reported was read from inside the list: its
            // address bytes occur in the input, after its kind and length.
            if let Scan::Found(f) = scan(&bytes, &Rules::DEFAULT, p, PORT) {
                let (port, addr) = match f.client {
                    ClientAddr::V4 { port, addr } => (port, addr.to_vec()),
                    ClientAddr::V6 { port, addr } => (port, addr.to_vec()),
                };
                let needle: Vec<u8> = match f.format {
                    Format::Cdn => [&[CDN_VERSION][..], &addr].concat(),
                    _ => [&port[..], &addr].concat(),
                };
                prop_assert!(bytes.windows(needle.len()).any(|w| w == needle.as_slice()));
                if f.format == Format::Cdn {
                    prop_assert_eq!(port, PORT);
                }
            }
        }

        #[test]
        fn two_clients_first_or_last_and_a_conflict(
            fill in proptest::collection::vec(other_option(), 0..3),
            (a, fa) in client_option(),
            (b, fb) in client_option(),
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
            p in packet(),
        ) {
            // Random bytes: the first pick is scan()'s answer, and a
            // conflict is only ever reported with a client found.
            let r = scan_pick(&bytes, &Rules::DEFAULT, p, PORT, Pick::First);
            prop_assert_eq!(r.scan, scan(&bytes, &Rules::DEFAULT, p, PORT));
            let last = scan_pick(&bytes, &Rules::DEFAULT, p, PORT, Pick::Last);
            prop_assert!(!r.conflict || matches!(r.scan, Scan::Found(_)));
            prop_assert_eq!(r.conflict, last.conflict);
            // Two client options with other options around: First takes
            // the first, Last the last, and they conflict iff their
            // clients differ.
            prop_assume!(!(p == Packet::Syn && (is_fast_open(&a) || is_fast_open(&b))));
            let l = [fill.concat(), a, fill.concat(), b].concat();
            let first = scan_pick(&l, &Rules::DEFAULT, p, PORT, Pick::First);
            let last = scan_pick(&l, &Rules::DEFAULT, p, PORT, Pick::Last);
            let only = scan_pick(&l, &Rules::DEFAULT, p, PORT, Pick::Only);
            prop_assert_eq!(first.scan, Scan::Found(fa));
            prop_assert_eq!(last.scan, Scan::Found(fb));
            // Only: the client when both agree, nobody (and a conflict)
            // when they do not.
            if fa.client == fb.client {
                prop_assert_eq!(only, first);
            } else {
                prop_assert_eq!(only, Picked { scan: Scan::Absent, conflict: true });
            }
            prop_assert_eq!(first.conflict, fa.client != fb.client);
            prop_assert_eq!(last.conflict, fa.client != fb.client);
        }

        #[test]
        fn round_trips_anywhere_in_a_valid_list(
            before in proptest::collection::vec(other_option(), 0..4),
            after in proptest::collection::vec(other_option(), 0..4),
            (option, want) in client_option(),
            p in packet(),
        ) {
            let mut l: Vec<u8> = before.concat();
            l.extend(&option);
            l.extend(after.concat());
            let got = scan(&l, &Rules::DEFAULT, p, PORT);
            if p == Packet::Syn && is_fast_open(&option) {
                prop_assert_eq!(got, Scan::Absent);
            } else {
                prop_assert_eq!(got, Scan::Found(want));
            }
        }

        #[test]
        fn found_only_when_an_option_was_put_there(
            opts in proptest::collection::vec(other_option(), 0..6),
            p in packet(),
        ) {
            prop_assert_eq!(scan(&opts.concat(), &Rules::DEFAULT, p, PORT), Scan::Absent);
        }

        #[test]
        fn a_cut_client_option_is_never_found((option, _) in client_option(), cut in 1usize..20, p in packet()) {
            let cut = cut.min(option.len() - 1);
            prop_assert!(!matches!(scan(&option[..cut], &Rules::DEFAULT, p, PORT), Scan::Found(_)));
        }

        #[test]
        fn syn_and_ack_differ_only_by_fast_open(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Reading a list as a SYN can only lose a kind-254 0xF989 option.
            let (s, a) = (
                scan(&bytes, &Rules::DEFAULT, Packet::Syn, PORT),
                scan(&bytes, &Rules::DEFAULT, Packet::Ack, PORT),
            );
            if s != a {
                prop_assert!(bytes.windows(4).any(|w| w[0] == KIND_EXP && w[2..4] == FASTOPEN_EXID));
            }
        }

        #[test]
        fn unconfigured_rules_find_nothing(bytes in proptest::collection::vec(any::<u8>(), 0..40), p in packet()) {
            let none = Rules { kinds: Kinds::EMPTY, cdn: false };
            prop_assert_eq!(
                matches!(scan(&bytes, &none, p, PORT), Scan::Found(_)),
                false
            );
        }

        #[test]
        fn kinds_set_semantics(kinds in proptest::collection::vec(any::<u8>(), 0..10), probe: u8) {
            let set = kinds.iter().fold(Kinds::EMPTY, |s, k| s.with(*k));
            prop_assert_eq!(set.contains(probe), probe != 0 && kinds.contains(&probe));
            let listed: Vec<u8> = set.iter().collect();
            let mut want: Vec<u8> = kinds.iter().copied().filter(|k| *k != 0).collect();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(listed, want);
        }
    }

    fn opt_bytes(addr: ClientAddr, kind: u8) -> Vec<u8> {
        let (buf, n) = addr.encode(kind);
        buf[..n].to_vec()
    }
}
