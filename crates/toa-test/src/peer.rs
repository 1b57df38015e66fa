//! The test peer: plays the FULLNAT balancer on the tun device, performing
//! real TCP handshakes against listeners in the guest with whatever TCP
//! options a test puts into the SYN, the handshake ACK and later segments.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use crate::tun::Tun;

/// The TCP options the peer puts in every SYN: MSS 1460.
pub const SYN_MSS: [u8; 4] = [2, 4, 0x05, 0xb4];

/// Which flags a segment carries.
#[derive(Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: bool,
    rst: bool,
    psh: bool,
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
}

/// Pad an option list with EOL bytes to a whole number of 32-bit words.
pub fn pad4(options: &[u8]) -> Vec<u8> {
    let mut v = options.to_vec();
    while v.len() % 4 != 0 {
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
    Some(Segment {
        src: SocketAddr::new(s, t.source_port()),
        dst: SocketAddr::new(d, t.destination_port()),
        seq: t.sequence_number(),
        ack_no: t.acknowledgment_number(),
        syn: t.syn(),
        ack: t.ack(),
        rst: t.rst(),
    })
}

/// What a test puts into a handshake.
#[derive(Clone, Default)]
pub struct Handshake {
    /// Extra options in the SYN, after the MSS (padded to 32-bit words).
    pub syn_options: Vec<u8>,
    /// Options in the ACK that completes the handshake (padded to words).
    pub ack_options: Vec<u8>,
    /// Payload carried by the completing ACK.
    pub ack_payload: Vec<u8>,
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
        let mut syn_opts = SYN_MSS.to_vec();
        syn_opts.extend(pad4(&hs.syn_options));
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        tun.send(&build(local, remote, isn, 0, syn, &syn_opts, &[])?)?;
        let synack = wait_for(tun, local, remote, Duration::from_secs(3), |s| {
            (s.syn && s.ack) || s.rst
        })?
        .ok_or_else(|| anyhow!("no SYN-ACK from {remote} to {local}"))?;
        if synack.rst {
            bail!("{remote} refused the connection (RST)");
        }
        if synack.ack_no != isn.wrapping_add(1) {
            bail!(
                "SYN-ACK acks {} instead of {}",
                synack.ack_no,
                isn.wrapping_add(1)
            );
        }
        let mut conn = Conn {
            tun,
            local,
            remote,
            snd_nxt: isn.wrapping_add(1),
            rcv_nxt: synack.seq.wrapping_add(1),
        };
        conn.send(&pad4(&hs.ack_options), &hs.ack_payload)?;
        Ok(conn)
    }

    /// Send an ACK segment with `options` and `payload`.
    pub fn send(&mut self, options: &[u8], payload: &[u8]) -> Result<()> {
        let flags = Flags {
            ack: true,
            psh: !payload.is_empty(),
            ..Flags::default()
        };
        let pkt = build(
            self.local,
            self.remote,
            self.snd_nxt,
            self.rcv_nxt,
            flags,
            &pad4(options),
            payload,
        )?;
        self.tun.send(&pkt)?;
        self.snd_nxt = self.snd_nxt.wrapping_add(payload.len() as u32);
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
