//! The test peer: plays the FULLNAT balancer on the tun device, performing
//! real TCP handshakes against listeners in the guest with whatever TCP
//! options a test puts into the SYN, the handshake ACK and later segments;
//! its addresses, and the TOA options it sends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use crate::sock::{self, Accept};
use crate::tun::Tun;

/// The balancer's IPv4 address, the source of the peer's IPv4 packets.
pub const LB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The guest's IPv4 address on the tun device.
pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The balancer's IPv6 address.
pub const LB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The guest's IPv6 address on the tun device.
pub const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The guest's addresses on the tun device, as [`Tun::create`] takes them
/// (the peer plays every other address of both subnets).
pub const GUEST_NETS: [&str; 2] = ["10.0.0.1/24", "fd00::1/64"];

/// A TOA option with an IPv4 client (length 8).
pub fn opt4(kind: u8, client: SocketAddrV4) -> Vec<u8> {
    let mut o = vec![kind, 8];
    o.extend(client.port().to_be_bytes());
    o.extend(client.ip().octets());
    o
}

/// A TOA option with an IPv6 client (length 20).
pub fn opt6(kind: u8, client: SocketAddrV6) -> Vec<u8> {
    let mut o = vec![kind, 20];
    o.extend(client.port().to_be_bytes());
    o.extend(client.ip().octets());
    o
}

/// The TCP options the peer puts in every SYN: MSS 1460.
pub const SYN_MSS: [u8; 4] = [2, 4, 0x05, 0xb4];

/// Which flags a segment carries.
#[derive(Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: bool,
    rst: bool,
    psh: bool,
    fin: bool,
}

/// A TCP segment the kernel sent.
#[derive(Debug)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack_no: u32,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    /// The TSval of a timestamps option, if the segment has one.
    pub tsval: Option<u32>,
}

/// Pad an option list with EOL bytes to a whole number of 32-bit words.
pub fn pad4(options: &[u8]) -> Vec<u8> {
    let mut v = options.to_vec();
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// A fresh source port for the peer's next connection.
pub fn next_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    20000 + (std::process::id() as u16 % 1000) * 40 + n % 20000
}

fn next_isn() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0x1000_0000);
    NEXT.fetch_add(0x0100_0000, Ordering::Relaxed)
}

/// Build one IPv4 or IPv6 TCP segment from `src` to `dst`.
fn build(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack_no: u32,
    flags: Flags,
    options: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>> {
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => bail!("mixed address families {src} -> {dst}"),
    };
    let mut b = builder.tcp(src.port(), dst.port(), seq, 64240);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(ack_no);
    }
    if flags.rst {
        b = b.rst();
    }
    if flags.psh {
        b = b.psh();
    }
    if flags.fin {
        b = b.fin();
    }
    let b = b
        .options_raw(options)
        .map_err(|e| anyhow!("options {options:?}: {e}"))?;
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)?;
    Ok(out)
}

/// Parse a packet the kernel sent, if it is a TCP segment.
pub fn parse(packet: &[u8]) -> Option<Segment> {
    let p = SlicedPacket::from_ip(packet).ok()?;
    let (s, d): (IpAddr, IpAddr) = match p.net? {
        NetSlice::Ipv4(h) => (
            h.header().source_addr().into(),
            h.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(h) => (
            h.header().source_addr().into(),
            h.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let TransportSlice::Tcp(t) = p.transport? else {
        return None;
    };
    let tsval = t.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::Timestamp(val, _)) => Some(val),
        _ => None,
    });
    Some(Segment {
        tsval,
        src: SocketAddr::new(s, t.source_port()),
        dst: SocketAddr::new(d, t.destination_port()),
        seq: t.sequence_number(),
        ack_no: t.acknowledgment_number(),
        syn: t.syn(),
        ack: t.ack(),
        rst: t.rst(),
    })
}

/// Where the peer puts a timestamps option relative to the test's own
/// options in the segments after the SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamps {
    /// Timestamps first, the test's options appended (JD Jupiter).
    First,
    /// The test's options first, timestamps behind (DPVS).
    Last,
}

/// NOP, NOP, timestamps (12 bytes).
fn ts_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend(tsval.to_be_bytes());
    o.extend(tsecr.to_be_bytes());
    o
}

/// What a test puts into a handshake.
#[derive(Clone, Default)]
pub struct Handshake {
    /// Options in the SYN before the MSS, right after the TCP header (as
    /// Alibaba LVS inserts its option).
    pub syn_prefix: Vec<u8>,
    /// Extra options in the SYN, after the MSS (padded to 32-bit words).
    pub syn_options: Vec<u8>,
    /// Data in the SYN (Fast Open).
    pub syn_payload: Vec<u8>,
    /// Negotiate timestamps, and place them so in later segments.
    pub timestamps: Option<Timestamps>,
    /// Options in the ACK that completes the handshake (padded to words).
    pub ack_options: Vec<u8>,
    /// Payload carried by the completing ACK.
    pub ack_payload: Vec<u8>,
    /// Do not send the handshake's ACK (it was lost): the test's next
    /// segment completes the handshake.
    pub lose_ack: bool,
}

/// Send one SYN from `local` to `remote` with sequence number `isn`, the
/// options as given (padded to words) and `payload`; no answer is awaited.
pub fn send_syn(
    tun: &Tun,
    local: SocketAddr,
    remote: SocketAddr,
    isn: u32,
    options: &[u8],
    payload: &[u8],
) -> Result<()> {
    let syn = Flags {
        syn: true,
        ..Flags::default()
    };
    tun.send(&build(local, remote, isn, 0, syn, &pad4(options), payload)?)
}

/// One connection the peer opened.
pub struct Conn<'t> {
    tun: &'t Tun,
    /// The peer's (balancer's) end.
    pub local: SocketAddr,
    /// The listener's end.
    pub remote: SocketAddr,
    snd_nxt: u32,
    rcv_nxt: u32,
    /// The peer's initial sequence number (the SYN's).
    pub isn: u32,
    /// Whether the SYN-ACK acknowledged the data of the SYN (Fast Open).
    pub syn_data_acked: bool,
    /// Timestamps: placement, the next TSval, and the listener's TSval to echo.
    ts: Option<(Timestamps, u32, u32)>,
}

impl<'t> Conn<'t> {
    /// Perform a handshake from `local` to the listener at `remote`.
    pub fn open(
        tun: &'t Tun,
        local: SocketAddr,
        remote: SocketAddr,
        hs: &Handshake,
    ) -> Result<Self> {
        let isn = next_isn();
        let mut syn_opts = hs.syn_prefix.clone();
        syn_opts.extend(SYN_MSS);
        if hs.timestamps.is_some() {
            syn_opts.extend(ts_option(1, 0));
        }
        syn_opts.extend(&hs.syn_options);
        send_syn(tun, local, remote, isn, &syn_opts, &hs.syn_payload)?;
        let synack = wait_for(tun, local, remote, Duration::from_secs(3), |s| {
            (s.syn && s.ack) || s.rst
        })?
        .ok_or_else(|| anyhow!("no SYN-ACK from {remote} to {local}"))?;
        if synack.rst {
            bail!("{remote} refused the connection (RST)");
        }
        let with_data = isn
            .wrapping_add(1)
            .wrapping_add(hs.syn_payload.len() as u32);
        if synack.ack_no != isn.wrapping_add(1) && synack.ack_no != with_data {
            bail!(
                "SYN-ACK acks {} instead of {}",
                synack.ack_no,
                isn.wrapping_add(1)
            );
        }
        let ts = match (hs.timestamps, synack.tsval) {
            (Some(place), Some(tsecr)) => Some((place, 2, tsecr)),
            (Some(_), None) => bail!("timestamps asked for, the SYN-ACK has none"),
            (None, _) => None,
        };
        let mut conn = Conn {
            tun,
            local,
            remote,
            snd_nxt: synack.ack_no,
            rcv_nxt: synack.seq.wrapping_add(1),
            isn,
            syn_data_acked: !hs.syn_payload.is_empty() && synack.ack_no == with_data,
            ts,
        };
        if !hs.lose_ack {
            conn.send(&hs.ack_options, &hs.ack_payload)?;
        }
        Ok(conn)
    }

    /// Send an ACK segment with `options` and `payload`.
    pub fn send(&mut self, options: &[u8], payload: &[u8]) -> Result<()> {
        self.send_flags(options, payload, false)
    }

    /// Send one segment with `options`, `payload` and FIN.
    pub fn send_fin(&mut self, options: &[u8], payload: &[u8]) -> Result<()> {
        self.send_flags(options, payload, true)
    }

    fn send_flags(&mut self, options: &[u8], payload: &[u8], fin: bool) -> Result<()> {
        let flags = Flags {
            ack: true,
            psh: !payload.is_empty(),
            fin,
            ..Flags::default()
        };
        let options = match &mut self.ts {
            None => options.to_vec(),
            Some((place, tsval, tsecr)) => {
                let ts = ts_option(*tsval, *tsecr);
                *tsval += 1;
                match place {
                    Timestamps::First => [&ts[..], options].concat(),
                    Timestamps::Last => [&pad4(options)[..], &ts[..]].concat(),
                }
            }
        };
        let pkt = build(
            self.local,
            self.remote,
            self.snd_nxt,
            self.rcv_nxt,
            flags,
            &pad4(&options),
            payload,
        )?;
        self.tun.send(&pkt)?;
        self.snd_nxt = self
            .snd_nxt
            .wrapping_add(payload.len() as u32)
            .wrapping_add(u32::from(fin));
        Ok(())
    }

    /// Abort the connection with a RST, so no state lingers in the guest.
    pub fn reset(&self) -> Result<()> {
        let flags = Flags {
            rst: true,
            ..Flags::default()
        };
        self.tun.send(&build(
            self.local,
            self.remote,
            self.snd_nxt,
            0,
            flags,
            &[],
            &[],
        )?)
    }
}

/// A handshake from `src` (any address on the tun's subnet of its family)
/// to the listener `l` on the guest's address of that family, accepted
/// with `how`: the peer's end, the accepted socket and the address accept
/// returned.
pub fn accept_from<'t>(
    tun: &'t Tun,
    l: &TcpListener,
    src: IpAddr,
    hs: &Handshake,
    how: Accept,
) -> Result<(Conn<'t>, OwnedFd, SocketAddr)> {
    let guest: IpAddr = if src.is_ipv4() {
        GUEST.into()
    } else {
        GUEST6.into()
    };
    let remote = SocketAddr::new(guest, l.local_addr()?.port());
    let local = SocketAddr::new(src, next_port());
    let conn = Conn::open(tun, local, remote, hs)?;
    let (fd, accepted) = sock::accept(l, how)?;
    Ok((conn, fd, accepted))
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let _ = self.reset();
    }
}

/// The first segment from `remote` to `local` that `want` accepts.
fn wait_for(
    tun: &Tun,
    local: SocketAddr,
    remote: SocketAddr,
    timeout: Duration,
    want: impl Fn(&Segment) -> bool,
) -> Result<Option<Segment>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(pkt) = tun.recv(left)? else {
            return Ok(None);
        };
        if let Some(seg) = parse(&pkt) {
            if seg.src == remote && seg.dst == local && want(&seg) {
                return Ok(Some(seg));
            }
        }
    }
}
