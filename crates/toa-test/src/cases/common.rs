//! What the cases share: the addresses on the wire, TOA options, and one
//! connection from the balancer to a listener, accepted and asked about.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::Result;

use crate::{ensure_eq, Ctx};
use toa_test::peer::{self, Conn, Handshake};
use toa_test::sock::{self, Accept};

/// The addresses on the wire and the TOA options, shared with toa-bench.
pub use toa_test::peer::{opt4, opt6, GUEST, GUEST6, LB, LB6};

/// The network between balancer and backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    V4,
    V6,
}

impl Transport {
    pub fn balancer(self) -> IpAddr {
        match self {
            Transport::V4 => LB.into(),
            Transport::V6 => LB6.into(),
        }
    }

    pub fn guest(self) -> IpAddr {
        match self {
            Transport::V4 => GUEST.into(),
            Transport::V6 => GUEST6.into(),
        }
    }
}

/// A 16-byte option (ByteDance): the client, two pad bytes, the VIP.
pub fn opt16(kind: u8, client: SocketAddrV4, vip: SocketAddrV4) -> Vec<u8> {
    let mut o = vec![kind, 16];
    o.extend(client.port().to_be_bytes());
    o.extend(client.ip().octets());
    o.extend([0, 0]);
    o.extend(vip.port().to_be_bytes());
    o.extend(vip.ip().octets());
    o
}

/// Alibaba Cloud CDN's option with an IPv4 client: 28, 7, version 1.
pub fn cdn4(client: Ipv4Addr) -> Vec<u8> {
    let mut o = vec![28, 7, 1];
    o.extend(client.octets());
    o
}

/// Alibaba Cloud CDN's option with an IPv6 client: 28, 19, version 1.
pub fn cdn6(client: Ipv6Addr) -> Vec<u8> {
    let mut o = vec![28, 19, 1];
    o.extend(client.octets());
    o
}

/// A distinct IPv4 client for case `n`.
pub fn client(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, n), 40000 + u16::from(n))
}

/// A distinct IPv6 client for case `n`.
pub fn client6(n: u16) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x42, n),
        50000 + n,
        0,
        0,
    )
}

/// `::ffff:a.b.c.d:port`, how an AF_INET6 socket shows an IPv4 address.
pub fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}

/// A handshake whose ACK carries `ack_options`.
pub fn with_ack(ack_options: Vec<u8>) -> Handshake {
    Handshake {
        ack_options,
        ..Handshake::default()
    }
}

/// One accepted connection: what the app saw, and both ends kept open.
pub struct Accepted<'t> {
    pub accepted: SocketAddr,
    pub peer: SocketAddr,
    pub fd: OwnedFd,
    pub conn: Conn<'t>,
}

impl Accepted<'_> {
    /// Send `payload` from the peer and expect the accepted socket to read
    /// exactly it: the connection still carries data.
    pub fn expect_data(&mut self, payload: &[u8], what: &str) -> Result<()> {
        self.conn.send(&[], payload)?;
        ensure_eq!(
            sock::read_some(self.fd.as_raw_fd(), 100)?,
            payload.to_vec(),
            "{what}"
        );
        Ok(())
    }
}

/// Handshake from the balancer over `transport` to listener `l`, accept it
/// with `how`, and ask getpeername.
pub fn handshake_to<'t>(
    ctx: &'t Ctx,
    l: &TcpListener,
    transport: Transport,
    hs: &Handshake,
    how: Accept,
) -> Result<Accepted<'t>> {
    handshake_from(ctx, l, transport.balancer(), hs, how)
}

/// Handshake from `src` (any address on the tun's subnet of its family) to
/// listener `l`, accept it with `how`, and ask getpeername.
pub fn handshake_from<'t>(
    ctx: &'t Ctx,
    l: &TcpListener,
    src: IpAddr,
    hs: &Handshake,
    how: Accept,
) -> Result<Accepted<'t>> {
    let (conn, fd, accepted) = peer::accept_from(&ctx.tun, l, src, hs, how)?;
    let peer = sock::getpeername(fd.as_raw_fd())?;
    Ok(Accepted {
        accepted,
        peer,
        fd,
        conn,
    })
}

/// Handshake over IPv4 to a fresh AF_INET listener on `listen`.
pub fn connect<'t>(
    ctx: &'t Ctx,
    listen: SocketAddr,
    hs: &Handshake,
    how: Accept,
) -> Result<Accepted<'t>> {
    let l = sock::listen(listen)?;
    handshake_to(ctx, &l, Transport::V4, hs, how)
}

/// The unprivileged user the cases act as (`nobody`).
pub const NOBODY: &str = "65534";

/// As an unprivileged user (`nobody`) in the host's namespace, write
/// `list` to the host's `trusted_sources`: an error unless the write was
/// refused.
pub fn unprivileged_trust_write_refused(list: &str) -> Result<()> {
    let out = toa_test::sh(&format!(
        "setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups sh -c \
         'echo {list} > /proc/sys/net/toa/trusted_sources' 2>&1; echo status=$?"
    ))?;
    if out.contains("status=0") {
        anyhow::bail!("an unprivileged user wrote the host's list: {out:?}");
    }
    Ok(())
}
