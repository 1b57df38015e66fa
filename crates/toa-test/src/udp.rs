//! UDP on the test wire: the balancer's packets (ip_vs_ca ICMP
//! announcements, DPVS UOA as an IPv4 option or in an option protocol
//! header, plain datagrams), the guest's datagrams read back and checked,
//! and the application's calls an unmodified UDP server makes (recvfrom,
//! recvmsg, recvmmsg, sendto, sendmsg, sendmmsg, UDP_SEGMENT) plus DPVS's
//! UOA getsockopt.
//!
//! Packets are built byte by byte (etherparse has no option protocol), with
//! the checksums a real sender computes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use toa_core::tcp::wire::ClientAddr;
use toa_core::udp::announce::{self, Announcement, Proto};
use toa_core::udp::uoa;

use crate::tun::Tun;

/// IP protocol numbers.
pub const ICMP: u8 = 1;
pub const UDP: u8 = 17;
pub const OPP: u8 = uoa::IPPROTO_OPP;

/// The one's complement checksum of `parts` concatenated (all but the last
/// of even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        sum += u32::from(announce::ones_sum(p));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The UDP checksum of `udp` (header with a zero checksum, and payload)
/// between `src` and `dst`.
pub fn udp_checksum(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    let len = udp.len() as u32;
    let c = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ph = Vec::new();
            ph.extend(s.octets());
            ph.extend(d.octets());
            ph.extend([0, UDP]);
            ph.extend((len as u16).to_be_bytes());
            checksum(&[&ph, udp])
        }
        (s, d) => {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (s, d) else {
                return 0;
            };
            let mut ph = Vec::new();
            ph.extend(s.octets());
            ph.extend(d.octets());
            ph.extend(len.to_be_bytes());
            ph.extend([0, 0, 0, UDP]);
            checksum(&[&ph, udp])
        }
    };
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// A UDP header and payload from `src` to `dst` (ports), checksummed over
/// the addresses of `src` and `dst`.
pub fn udp_segment(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend(src.port().to_be_bytes());
    u.extend(dst.port().to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    let c = udp_checksum(src.ip(), dst.ip(), &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// An IPv4 packet with `options` (a multiple of 4 bytes).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let hl = 20 + options.len();
    let mut h = vec![0u8; hl];
    h[0] = 0x40 | (hl / 4) as u8;
    h[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x7a7au16.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..].copy_from_slice(options);
    let c = checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

/// An IPv6 packet (no extension headers).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend(payload);
    h
}

fn ip(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, proto, &[], payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, proto, payload),
        _ => panic!("mixed families {src} {dst}"),
    }
}

/// A plain UDP datagram.
pub fn datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    ip(src.ip(), dst.ip(), UDP, &udp_segment(src, dst, payload))
}

/// The client as the wire formats name it.
pub fn client_addr(c: SocketAddr) -> ClientAddr {
    match c {
        SocketAddr::V4(a) => ClientAddr::V4 {
            port: a.port().to_be_bytes(),
            addr: a.ip().octets(),
        },
        SocketAddr::V6(a) => ClientAddr::V6 {
            port: a.port().to_be_bytes(),
            addr: a.ip().octets(),
        },
    }
}

/// The IPv4 options carrying a UOA for `client` (padded with EOL).
pub fn ipo_options(client: SocketAddr) -> Vec<u8> {
    let (o, n) = uoa::encode(&client_addr(client));
    let mut opts = o[..n].to_vec();
    while opts.len() % 4 != 0 {
        opts.push(0);
    }
    opts
}

/// A datagram carrying a UOA for `client` in its IPv4 options (`ipo`).
pub fn ipo(src: SocketAddrV4, dst: SocketAddrV4, client: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let opts = ipo_options(client);
    let seg = udp_segment(src.into(), dst.into(), payload);
    ipv4(*src.ip(), *dst.ip(), UDP, &opts, &seg)
}

/// A datagram with an option protocol header naming `client` (`opp`):
/// IP protocol 248, the header, then the UDP datagram as it would be
/// without it.
pub fn opp(src: SocketAddr, dst: SocketAddr, client: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (h, n) = uoa::encode_opp(&client_addr(client));
    opp_raw(src, dst, &h[..n], payload)
}

/// A datagram behind the option protocol bytes `header` (as given).
pub fn opp_raw(src: SocketAddr, dst: SocketAddr, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = header.to_vec();
    body.extend(udp_segment(src, dst, payload));
    ip(src.ip(), dst.ip(), OPP, &body)
}

/// An ip_vs_ca announcement from `lip` to `rs`: protocol, ports, client.
pub struct Announce {
    pub lip: Ipv4Addr,
    pub lport: u16,
    pub rs: Ipv4Addr,
    pub rsport: u16,
    pub client: SocketAddrV4,
    pub tcp: bool,
    /// LVS's 16-byte payload (two pad bytes), else ip_vs_ca's 14 bytes.
    pub padded: bool,
    pub kind: u8,
    /// The identifier bytes (34 12 as x86 sends, or 12 34).
    pub ident: [u8; 2],
}

impl Announce {
    /// A UDP announcement in LVS's form (254, 16 bytes, 34 12).
    pub fn lvs(lip: SocketAddrV4, rs: SocketAddrV4, client: SocketAddrV4) -> Announce {
        Announce {
            lip: *lip.ip(),
            lport: lip.port(),
            rs: *rs.ip(),
            rsport: rs.port(),
            client,
            tcp: false,
            padded: true,
            kind: 254,
            ident: announce::IDENT_LE,
        }
    }

    /// The ICMP message.
    pub fn message(&self) -> Vec<u8> {
        let a = Announcement {
            proto: if self.tcp { Proto::Tcp } else { Proto::Udp },
            lport: self.lport.to_be_bytes(),
            rsport: self.rsport.to_be_bytes(),
            kind: self.kind,
            client: ClientAddr::V4 {
                port: self.client.port().to_be_bytes(),
                addr: self.client.ip().octets(),
            },
            padded: self.padded,
        };
        let (m, n) = announce::encode(&a, self.ident);
        m[..n].to_vec()
    }

    /// The IP packet.
    pub fn packet(&self) -> Vec<u8> {
        ipv4(self.lip, self.rs, ICMP, &[], &self.message())
    }

    /// The IP packet with the ICMP message as `edit` leaves it.
    pub fn packet_with(&self, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut m = self.message();
        edit(&mut m);
        ipv4(self.lip, self.rs, ICMP, &[], &m)
    }
}

/// Recompute the checksum of an ICMP message.
pub fn fix_icmp_checksum(m: &mut [u8]) {
    m[2] = 0;
    m[3] = 0;
    let c = checksum(&[m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

/// A UDP datagram the guest sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
    /// The UDP checksum is right (or absent, IPv4).
    pub checksum_ok: bool,
}

/// Parse a packet from the guest, if it is a UDP datagram.
pub fn parse(p: &[u8]) -> Option<Sent> {
    let (src, dst, udp): (IpAddr, IpAddr, &[u8]) = match p.first()? >> 4 {
        4 => {
            let hl = usize::from(p[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
            if *p.get(9)? != UDP || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
                return None;
            }
            let s = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let d = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            (s.into(), d.into(), p.get(hl..total)?)
        }
        6 => {
            if *p.get(6)? != UDP {
                return None;
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(p.get(8..24)?);
            d.copy_from_slice(p.get(24..40)?);
            (
                Ipv6Addr::from(s).into(),
                Ipv6Addr::from(d).into(),
                p.get(40..)?,
            )
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let ulen = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    let udp = udp.get(..ulen)?;
    let sum = u16::from_be_bytes([udp[6], udp[7]]);
    let checksum_ok = (sum == 0 && src.is_ipv4()) || {
        let mut z = udp.to_vec();
        z[6] = 0;
        z[7] = 0;
        udp_checksum(src, dst, &z) == sum
    };
    Some(Sent {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload: udp[8..].to_vec(),
        checksum_ok,
    })
}

/// The next UDP datagram the guest sends to `dst` within `timeout`.
pub fn expect_sent(tun: &Tun, dst: SocketAddr, timeout: Duration) -> Result<Sent> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(p) = tun.recv(left)? else {
            bail!("no datagram to {dst} within {timeout:?}");
        };
        if let Some(s) = parse(&p) {
            if s.dst == dst {
                return Ok(s);
            }
        }
    }
}

/// Every UDP datagram the guest sends within `timeout`.
pub fn sent_within(tun: &Tun, timeout: Duration) -> Result<Vec<Sent>> {
    let deadline = Instant::now() + timeout;
    let mut v = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tun.recv(left)? {
            Some(p) => v.extend(parse(&p)),
            None => return Ok(v),
        }
    }
}

// ---- The application's side: the system calls of an unmodified server. ----

/// `a` as a C socket address and its length.
pub fn to_sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            // As the standard library writes them (as given).
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address a C socket address holds (IPv4 or IPv6).
pub fn from_sockaddr(ss: &libc::sockaddr_storage) -> Result<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Ok(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )
            .into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Ok(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                0,
                0,
            )
            .into())
        }
        f => bail!("family {f}"),
    }
}

fn wait_readable(fd: RawFd) -> Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 3000) } <= 0 {
        bail!("no datagram within 3 s");
    }
    Ok(())
}

/// recvmsg(2): one datagram and its source.
pub fn recvmsg(fd: RawFd) -> Result<(Vec<u8>, SocketAddr)> {
    wait_readable(fd)?;
    let mut buf = vec![0u8; 2048];
    // SAFETY: all-zero is valid for both.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: msg describes writable buffers that outlive the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        bail!("recvmsg: {}", std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok((buf, from_sockaddr(&ss)?))
}

/// sendmsg(2) of `payload` to `to`.
pub fn sendmsg(fd: RawFd, payload: &[u8], to: &SocketAddr) -> Result<()> {
    let (mut ss, len) = to_sockaddr(to);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: msg describes readable buffers that outlive the call.
    if unsafe { libc::sendmsg(fd, &msg, 0) } < 0 {
        bail!("sendmsg to {to}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// sendmsg(2) of `payload` to `to` with `flags` (`MSG_MORE`: corked), and
/// with an `IP_PKTINFO` control message choosing the source `pktinfo` if
/// given; the address as the caller's buffer reads after the call.
pub fn sendmsg_with(
    fd: RawFd,
    payload: &[u8],
    to: &SocketAddr,
    flags: libc::c_int,
    pktinfo: Option<Ipv4Addr>,
) -> Result<SocketAddr> {
    let (mut ss, len) = to_sockaddr(to);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // Room for one cmsg of a struct in_pktinfo, u64-aligned.
    let mut control = [0u64; 8];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(src) = pktinfo {
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(src).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let size = std::mem::size_of::<libc::in_pktinfo>() as u32;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(size) } as _;
        // SAFETY: the control buffer holds one cmsg of `size` bytes
        // (CMSG_SPACE of it is 32 of its 64 bytes); CMSG_FIRSTHDR of a
        // msghdr with that buffer is its start.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::IPPROTO_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(size) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
        }
    }
    // SAFETY: msg describes readable buffers that outlive the call.
    if unsafe { libc::sendmsg(fd, &msg, flags) } < 0 {
        bail!("sendmsg to {to}: {}", std::io::Error::last_os_error());
    }
    from_sockaddr(&ss)
}

/// recvmmsg(2) of up to `n` datagrams (waiting for the first).
pub fn recvmmsg(fd: RawFd, n: usize) -> Result<Vec<(Vec<u8>, SocketAddr)>> {
    wait_readable(fd)?;
    let mut bufs = vec![vec![0u8; 2048]; n];
    // SAFETY: all-zero is valid.
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; n];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; n];
    for i in 0..n {
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every buffer outlives the call.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as u32,
            libc::MSG_WAITFORONE as _,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        bail!("recvmmsg: {}", std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    for i in 0..got as usize {
        let mut b = bufs[i].clone();
        b.truncate(msgs[i].msg_len as usize);
        out.push((b, from_sockaddr(&names[i])?));
    }
    Ok(out)
}

/// sendmmsg(2): each payload to its address, in one call.
pub fn sendmmsg(fd: RawFd, msgs: &[(Vec<u8>, SocketAddr)]) -> Result<usize> {
    let mut names: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        msgs.iter().map(|(_, a)| to_sockaddr(a)).collect();
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|(p, _)| libc::iovec {
            iov_base: p.as_ptr() as *mut _,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; msgs.len()];
    for i in 0..msgs.len() {
        hdrs[i].msg_hdr.msg_name = (&mut names[i].0 as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen = names[i].1;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every buffer outlives the call.
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
    if n < 0 {
        bail!("sendmmsg: {}", std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// sendmsg(2) of `payload` to `to` as segments of `segment` bytes
/// (UDP_SEGMENT, GSO).
pub fn send_gso(fd: RawFd, payload: &[u8], to: &SocketAddr, segment: u16) -> Result<()> {
    let (mut ss, len) = to_sockaddr(to);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(2) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds one cmsg of 2 bytes of data.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::copy_nonoverlapping(segment.to_ne_bytes().as_ptr(), libc::CMSG_DATA(c), 2);
    }
    // SAFETY: msg describes buffers that outlive the call.
    if unsafe { libc::sendmsg(fd, &msg, 0) } < 0 {
        bail!("sendmsg UDP_SEGMENT: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// `UOA_SO_GET_LOOKUP`.
pub const UOA_SO_GET_LOOKUP: libc::c_int = 2048;

/// DPVS's UOA getsockopt: asked with `src` (what recvfrom gave) and the
/// local address `local` (unspecified: any), with a buffer of `len` bytes;
/// the client, or the errno.
pub fn uoa_lookup(
    fd: RawFd,
    src: SocketAddr,
    local: SocketAddr,
    len: usize,
) -> Result<std::result::Result<SocketAddr, i32>> {
    let mut m = vec![0u8; len.max(58)];
    let (af, s, d) = match (src, local) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => (
            libc::AF_INET,
            s.ip().octets().to_vec(),
            d.ip().octets().to_vec(),
        ),
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(x) => x.to_ipv6_mapped().octets().to_vec(),
                IpAddr::V6(x) => x.octets().to_vec(),
            };
            (libc::AF_INET6, v6(s), v6(d))
        }
    };
    m[0..2].copy_from_slice(&(af as u16).to_ne_bytes());
    m[2..2 + s.len()].copy_from_slice(&s);
    m[18..18 + d.len()].copy_from_slice(&d);
    m[34..36].copy_from_slice(&src.port().to_be_bytes());
    m[36..38].copy_from_slice(&local.port().to_be_bytes());
    uoa_raw(fd, &mut m, len)
}

/// The UOA getsockopt on the 58-byte struct `m` as given, `len` passed.
pub fn uoa_raw(
    fd: RawFd,
    m: &mut [u8],
    len: usize,
) -> Result<std::result::Result<SocketAddr, i32>> {
    let mut l = len as libc::socklen_t;
    // SAFETY: `m` is writable for at least `len` bytes (callers size it).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            UOA_SO_GET_LOOKUP,
            m.as_mut_ptr().cast(),
            &mut l,
        )
    };
    if rc != 0 {
        return Ok(Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(0)));
    }
    if l != 58 {
        bail!("UOA_SO_GET_LOOKUP returned len {l}");
    }
    let af = i32::from(u16::from_ne_bytes([m[38], m[39]]));
    let port = u16::from_be_bytes([m[56], m[57]]);
    let addr: IpAddr = match af {
        libc::AF_INET => Ipv4Addr::new(m[40], m[41], m[42], m[43]).into(),
        libc::AF_INET6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&m[40..56]);
            Ipv6Addr::from(a).into()
        }
        f => bail!("real_af {f}"),
    };
    Ok(Ok(SocketAddr::new(addr, port)))
}
