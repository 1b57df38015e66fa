//! The real client of a TCP connection that came through a FULLNAT load
//! balancer, as the toa kernel module recorded it.
//!
//! With toa loaded, `accept()` and `getpeername()` already return the client
//! wherever the socket can hold its address. An IPv4 socket cannot hold an
//! IPv6 client (NAT64); [`real_peer`] asks toa directly
//! (`getsockopt(IPPROTO_IP, TOA_SO_GET_LOOKUP)`, see `include/uapi/linux/toa.h`)
//! and falls back to the socket's own peer address:
//!
//! ```no_run
//! let listener = std::net::TcpListener::bind("0.0.0.0:8080")?;
//! let (stream, _) = listener.accept()?;
//! let client = toa_client::real_peer(&stream)?;
//! println!("client {client}");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! UDP: with toa loaded, `recv_from()` already returns the client of a
//! balancer's flow and `send_to()` that client goes back through the
//! balancer. Where the datagram cannot show it (an IPv6 client on an IPv4
//! socket, or `net.toa.udp_rewrite=0`), [`real_source`] asks toa with
//! DPVS's `UOA_SO_GET_LOOKUP` and falls back to the source as received:
//!
//! ```no_run
//! let socket = std::net::UdpSocket::bind("0.0.0.0:5353")?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = socket.recv_from(&mut buf)?;
//! let client = toa_client::real_source(&socket, from)?;
//! println!("{n} bytes from {client}");
//! socket.send_to(&buf[..n], from)?; // answer where it came from
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// `getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, ...)`.
pub const TOA_SO_GET_LOOKUP: libc::c_int = 4096;

/// `struct toa_nat64_peer` of `<linux/toa.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Nat64Peer {
    saddr: [u8; 16],
    sport: [u8; 2],
    _pad: [u8; 2],
}

/// The client toa recorded on the socket `fd`:
///
/// - `Ok(Some(addr))`: the client (an IPv4 client as `SocketAddr::V4`);
/// - `Ok(None)`: toa is not loaded (`ENOPROTOOPT`) or recorded no client on
///   this socket (`ENOENT`: a direct connection, no or an untrusted option);
/// - `Err(_)`: anything else (`EOPNOTSUPP`: not a TCP socket, `EBADF`, ...).
pub fn lookup_fd(fd: RawFd) -> io::Result<Option<SocketAddr>> {
    let mut peer = Nat64Peer::default();
    let mut len = std::mem::size_of::<Nat64Peer>() as libc::socklen_t;
    // SAFETY: `peer` and `len` describe a writable buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            TOA_SO_GET_LOOKUP,
            (&mut peer as *mut Nat64Peer).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOPROTOOPT) => Ok(None),
            _ => Err(err),
        };
    }
    let addr = Ipv6Addr::from(peer.saddr);
    let ip = match addr.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(addr),
    };
    Ok(Some(SocketAddr::new(ip, u16::from_be_bytes(peer.sport))))
}

/// The client toa recorded on `stream`, if any (see [`lookup_fd`]).
pub fn lookup(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    lookup_fd(stream.as_raw_fd())
}

/// The real client of `stream`: what toa recorded, or else the socket's
/// peer address.
pub fn real_peer(stream: &TcpStream) -> io::Result<SocketAddr> {
    match lookup(stream)? {
        Some(addr) => Ok(addr),
        None => stream.peer_addr(),
    }
}

/// `getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP, ...)` (DPVS's number).
pub const UOA_SO_GET_LOOKUP: libc::c_int = 2048;

/// `struct uoa_param_map` of `<linux/toa.h>` (packed, 58 bytes): every
/// field as bytes, so it needs no packing.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct UoaParamMap {
    af: [u8; 2],
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: [u8; 2],
    dport: [u8; 2],
    real_af: [u8; 2],
    real_saddr: [u8; 16],
    real_sport: [u8; 2],
}

/// An address as the struct holds it: the family, and IPv4 in the first
/// four bytes.
fn uoa_addr(a: &SocketAddr) -> (u16, [u8; 16]) {
    let mut b = [0u8; 16];
    match a.ip() {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (libc::AF_INET as u16, b)
        }
        IpAddr::V6(v6) => (libc::AF_INET6 as u16, v6.octets()),
    }
}

/// The client of the UDP flow a datagram from `from` to the local `local`
/// (an unspecified address: any) belongs to, as toa recorded it:
///
/// - `Ok(Some(addr))`: the client;
/// - `Ok(None)`: toa is not loaded (`ENOPROTOOPT`) or knows no live flow
///   for it (`ENOENT`);
/// - `Err(_)`: anything else.
pub fn uoa_lookup_fd(
    fd: RawFd,
    from: SocketAddr,
    local: SocketAddr,
) -> io::Result<Option<SocketAddr>> {
    let (af, saddr) = uoa_addr(&from);
    let (_, mut daddr) = uoa_addr(&local);
    if local.is_ipv4() != from.is_ipv4() {
        daddr = [0; 16];
    }
    let mut map = UoaParamMap {
        af: af.to_ne_bytes(),
        saddr,
        daddr,
        sport: from.port().to_be_bytes(),
        dport: local.port().to_be_bytes(),
        ..UoaParamMap::default()
    };
    let mut len = std::mem::size_of::<UoaParamMap>() as libc::socklen_t;
    // SAFETY: `map` and `len` describe a writable buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            UOA_SO_GET_LOOKUP,
            (&mut map as *mut UoaParamMap).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOPROTOOPT) => Ok(None),
            _ => Err(err),
        };
    }
    let port = u16::from_be_bytes(map.real_sport);
    let ip = match i32::from(u16::from_ne_bytes(map.real_af)) {
        libc::AF_INET => IpAddr::from([
            map.real_saddr[0],
            map.real_saddr[1],
            map.real_saddr[2],
            map.real_saddr[3],
        ]),
        _ => IpAddr::V6(Ipv6Addr::from(map.real_saddr)),
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

/// The client of a datagram `socket` received from `from` (see
/// [`uoa_lookup_fd`]; the local address is the socket's).
pub fn uoa_lookup(socket: &UdpSocket, from: SocketAddr) -> io::Result<Option<SocketAddr>> {
    uoa_lookup_fd(socket.as_raw_fd(), from, socket.local_addr()?)
}

/// The real client of a datagram `socket` received from `from`: what toa
/// recorded, or else `from`.
pub fn real_source(socket: &UdpSocket, from: SocketAddr) -> io::Result<SocketAddr> {
    Ok(uoa_lookup(socket, from)?.unwrap_or(from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn struct_matches_the_c_layout() {
        assert_eq!(std::mem::size_of::<Nat64Peer>(), 20);
    }

    #[test]
    fn without_toa_the_peer_address_is_the_answer() {
        // On a machine without toa (the build host), a loopback connection
        // has no recorded client: real_peer() is getpeername().
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(lookup(&s).unwrap(), None);
        assert_eq!(real_peer(&s).unwrap(), c.local_addr().unwrap());
    }

    #[test]
    fn uoa_struct_matches_the_c_layout() {
        assert_eq!(std::mem::size_of::<UoaParamMap>(), 58);
    }

    #[test]
    fn without_toa_a_datagram_source_is_the_answer() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 4];
        let (_, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(uoa_lookup(&b, from).unwrap(), None);
        assert_eq!(real_source(&b, from).unwrap(), a.local_addr().unwrap());
    }

    #[test]
    fn not_a_tcp_socket_is_an_error_or_nothing() {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Without toa: ENOPROTOOPT (Ok(None)); with toa: EOPNOTSUPP.
        match lookup_fd(u.as_raw_fd()) {
            Ok(None) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP)),
            Ok(Some(a)) => panic!("a UDP socket has client {a}"),
        }
    }
}
