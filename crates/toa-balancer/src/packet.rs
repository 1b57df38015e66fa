//! Rewriting TCP/IP packets the way a FULLNAT balancer does for toa: adding
//! the TOA option, clamping the MSS, translating IPv6 to IPv4 and back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{
    Ipv4Header, Ipv6Header, NetHeaders, PacketHeaders, PayloadSlice, TcpHeader, TransportHeader,
};

/// A parsed TCP/IP packet without IP options or extension headers.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub ip: Ip,
    pub tcp: TcpHeader,
    pub payload: Vec<u8>,
}

/// The IP header of a [`Tcp`] packet.
#[derive(Clone, Debug)]
pub enum Ip {
    V4(Ipv4Header),
    V6(Ipv6Header),
}

impl Tcp {
    /// Parse a raw IP packet; `None` unless it is plain TCP.
    pub fn parse(packet: &[u8]) -> Option<Tcp> {
        let h = PacketHeaders::from_ip_slice(packet).ok()?;
        let ip = match h.net? {
            NetHeaders::Ipv4(v4, ext)
                if ext.is_empty() && v4.options.is_empty() && !v4.is_fragmenting_payload() =>
            {
                Ip::V4(v4)
            }
            NetHeaders::Ipv6(v6, ext) if ext.is_empty() => Ip::V6(v6),
            _ => return None,
        };
        let TransportHeader::Tcp(tcp) = h.transport? else {
            return None;
        };
        let PayloadSlice::Tcp(payload) = h.payload else {
            return None;
        };
        Some(Tcp {
            ip,
            tcp,
            payload: payload.to_vec(),
        })
    }

    pub fn src(&self) -> SocketAddr {
        let ip: IpAddr = match &self.ip {
            Ip::V4(h) => Ipv4Addr::from(h.source).into(),
            Ip::V6(h) => Ipv6Addr::from(h.source).into(),
        };
        SocketAddr::new(ip, self.tcp.source_port)
    }

    pub fn dst(&self) -> SocketAddr {
        let ip: IpAddr = match &self.ip {
            Ip::V4(h) => Ipv4Addr::from(h.destination).into(),
            Ip::V6(h) => Ipv6Addr::from(h.destination).into(),
        };
        SocketAddr::new(ip, self.tcp.destination_port)
    }

    /// Serialize, with lengths and checksums computed afresh.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut tcp = self.tcp.clone();
        let mut out = Vec::with_capacity(60 + tcp.header_len() + self.payload.len());
        let len = tcp.header_len() + self.payload.len();
        match &self.ip {
            Ip::V4(h) => {
                let mut h = h.clone();
                h.set_payload_len(len).expect("TCP segment fits IPv4");
                h.header_checksum = h.calc_header_checksum();
                tcp.checksum = tcp.calc_checksum_ipv4(&h, &self.payload).expect("checksum");
                h.write(&mut out).expect("write to Vec");
            }
            Ip::V6(h) => {
                let mut h = h.clone();
                h.set_payload_length(len).expect("TCP segment fits IPv6");
                tcp.checksum = tcp.calc_checksum_ipv6(&h, &self.payload).expect("checksum");
                h.write(&mut out).expect("write to Vec");
            }
        }
        tcp.write(&mut out).expect("write to Vec");
        out.extend_from_slice(&self.payload);
        out
    }

    /// Append `option` (a whole number of 32-bit words) to the TCP options;
    /// false if the header has no room for it or its options are not well
    /// formed.
    pub fn add_option(&mut self, option: &[u8]) -> bool {
        let mut opts = self.tcp.options.as_slice().to_vec();
        // An end-of-list and its padding would hide what follows: cut the
        // list there. Only a kind byte can be an end-of-list: zero bytes
        // inside an option (a timestamp ending in 0x00) are its value.
        let Some(end) = options_end(&opts) else {
            return false;
        };
        opts.truncate(end);
        while !opts.len().is_multiple_of(4) {
            opts.push(1);
        }
        opts.extend_from_slice(option);
        self.tcp.set_options_raw(&opts).is_ok()
    }

    /// Lower the MSS option by `by` bytes (if there is one).
    pub fn clamp_mss(&mut self, by: u16) {
        let mut opts = self.tcp.options.as_slice().to_vec();
        let mut i = 0;
        while i + 1 < opts.len() {
            match opts[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let len = usize::from(opts[i + 1]);
                    if len < 2 || i + len > opts.len() {
                        break;
                    }
                    if kind == 2 && len == 4 {
                        let mss = u16::from_be_bytes([opts[i + 2], opts[i + 3]]).saturating_sub(by);
                        opts[i + 2..i + 4].copy_from_slice(&mss.to_be_bytes());
                    }
                    i += len;
                }
            }
        }
        let _ = self.tcp.set_options_raw(&opts);
    }
}

/// Where the options' list ends: at its end-of-list (kind 0), or after its
/// last option; `None` if an option's length is wrong.
fn options_end(opts: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return Some(i),
            1 => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                i += len;
            }
        }
    }
    Some(i)
}

/// The TOA option carrying `client` with option kind `kind`.
pub fn toa_option(kind: u8, client: SocketAddr) -> Vec<u8> {
    let mut o = vec![kind, 0];
    o.extend(client.port().to_be_bytes());
    match client.ip() {
        IpAddr::V4(a) => o.extend(a.octets()),
        IpAddr::V6(a) => o.extend(a.octets()),
    }
    o[1] = o.len() as u8;
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn segment(v6: bool, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let b = if v6 {
            PacketBuilder::ipv6(
                [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                64,
            )
        } else {
            PacketBuilder::ipv4([10, 1, 0, 2], [10, 1, 0, 1], 64)
        };
        let b = b
            .tcp(40000, 80, 1, 1000)
            .ack(2)
            .options_raw(options)
            .unwrap();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn checksums_ok(bytes: &[u8]) -> bool {
        let p = Tcp::parse(bytes).unwrap();
        match &p.ip {
            Ip::V4(h) => {
                h.header_checksum == h.calc_header_checksum()
                    && p.tcp.checksum == p.tcp.calc_checksum_ipv4(h, &p.payload).unwrap()
            }
            Ip::V6(h) => p.tcp.checksum == p.tcp.calc_checksum_ipv6(h, &p.payload).unwrap(),
        }
    }

    #[test]
    fn adds_the_option_and_fixes_lengths_and_checksums() {
        for v6 in [false, true] {
            let client: SocketAddr = if v6 {
                "[2001:db8::7]:5555".parse().unwrap()
            } else {
                "198.51.100.7:5555".parse().unwrap()
            };
            let mut p = Tcp::parse(&segment(
                v6,
                &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
                b"hello",
            ))
            .unwrap();
            assert!(p.add_option(&toa_option(254, client)));
            let bytes = p.to_bytes();
            assert!(checksums_ok(&bytes));
            let q = Tcp::parse(&bytes).unwrap();
            assert_eq!(q.payload, b"hello");
            let scan = toa_scan(q.tcp.options.as_slice());
            assert_eq!(scan, Some(client), "v6 {v6}");
        }
    }

    #[test]
    fn keeps_a_timestamp_that_ends_in_zero_bytes() {
        // NOP NOP TS(TSval, TSecr = 0x12340000): the zeros are the echoed
        // value, not padding (the balancer once cut them, the backend's
        // handshake refused the TSecr, and the packets the option was in
        // never completed the handshake).
        let ts = [1, 1, 8, 10, 0, 0, 0, 7, 0x12, 0x34, 0, 0];
        let client: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        let mut p = Tcp::parse(&segment(false, &ts, b"")).unwrap();
        assert!(p.add_option(&toa_option(254, client)));
        let q = Tcp::parse(&p.to_bytes()).unwrap();
        let opts = q.tcp.options.as_slice();
        assert_eq!(&opts[..12], &ts, "the timestamp option as it was");
        assert_eq!(&opts[12..], &toa_option(254, client)[..]);
        assert_eq!(toa_scan(opts), Some(client));
    }

    #[test]
    fn cuts_the_list_at_its_end_and_refuses_a_malformed_one() {
        let client: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        // MSS, EOL, padding: the option goes where the EOL was.
        let mut p = Tcp::parse(&segment(false, &[2, 4, 5, 0xb4, 0, 0, 0, 0], b"")).unwrap();
        assert!(p.add_option(&toa_option(254, client)));
        let opts = p.tcp.options.as_slice().to_vec();
        assert_eq!(&opts[..4], &[2, 4, 5, 0xb4]);
        assert_eq!(&opts[4..], &toa_option(254, client)[..]);
        // An option running past the end.
        let mut p = Tcp::parse(&segment(false, &[1, 8, 12, 0], b"")).unwrap();
        assert!(!p.add_option(&toa_option(254, client)));
        assert_eq!(
            options_end(&[1, 1, 8, 10, 0, 0, 0, 7, 1, 0, 0, 0]),
            Some(12)
        );
        assert_eq!(options_end(&[1, 0, 8, 10]), Some(1));
        assert_eq!(options_end(&[3, 1]), None);
    }

    #[test]
    fn refuses_when_the_header_is_full() {
        let mut p = Tcp::parse(&segment(false, &[1; 36], b"")).unwrap();
        assert!(!p.add_option(&toa_option(200, "198.51.100.7:1".parse().unwrap())));
    }

    #[test]
    fn clamps_mss() {
        let mut p = Tcp::parse(&segment(false, &[2, 4, 0x05, 0xb4], b"")).unwrap();
        p.clamp_mss(8);
        assert_eq!(p.tcp.options.as_slice(), &[2, 4, 0x05, 0xac]);
        assert!(checksums_ok(&p.to_bytes()));
    }

    /// The client in a TOA option of kind 254, as toa.ko itself reads it.
    fn toa_scan(options: &[u8]) -> Option<SocketAddr> {
        use toa_core::tcp::wire::{scan, ClientAddr, Found, Kinds, Packet, Rules, Scan};
        let rules = Rules {
            kinds: Kinds::EMPTY.with(254),
            cdn: false,
        };
        let client = match scan(options, &rules, Packet::Ack, [0, 1]) {
            Scan::Found(Found { client, .. }) => Some(client),
            _ => None,
        };
        match client {
            Some(ClientAddr::V4 { port, addr }) => Some(SocketAddr::new(
                Ipv4Addr::from(addr).into(),
                u16::from_be_bytes(port),
            )),
            Some(ClientAddr::V6 { port, addr }) => Some(SocketAddr::new(
                Ipv6Addr::from(addr).into(),
                u16::from_be_bytes(port),
            )),
            _ => None,
        }
    }
}
