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

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
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
