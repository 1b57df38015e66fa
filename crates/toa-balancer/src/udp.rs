//! The UDP half of the test balancer: a FULLNAT relay that tells the
//! backend who each client is the way LVS and DPVS do.
//!
//! ```text
//! toa-balancer udp MODE VIP:PORT RS:PORT LIP
//! ```
//!
//! Datagrams from a client to VIP:PORT go to RS:PORT from LIP and a port of
//! the client's own (LIP:lport, as FULLNAT does); the backend's answers to
//! LIP:lport go back to the client from VIP:PORT. MODE says how the backend
//! learns the client:
//!
//! - `icmp`: an ip_vs_ca announcement (ICMP echo request, LVS's 16-byte
//!   form, kind 254) before the client's first datagram (IPv4 only);
//! - `ipo`: DPVS's UOA as an IPv4 option (`IP_OPTIONS`) of the client's
//!   first three datagrams (IPv4 backends);
//! - `opp`: DPVS's UOA in an option protocol (248) header in front of the
//!   first three datagrams, sent on a raw socket (IPv4 or IPv6 backends; an
//!   IPv6 client of an IPv4 backend is NAT64).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use toa_test::udp::{self as wire, Announce};

/// How many datagrams of a flow carry the UOA (DPVS: `uoa_max_trail`).
const UOA_TRAIL: u32 = 3;

/// How the backend learns the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Icmp,
    Ipo,
    Opp,
}

/// One client's flow: its socket on the backend side, and how many
/// datagrams went.
struct Flow {
    sock: Arc<UdpSocket>,
    sent: u32,
}

/// A raw IP socket of protocol `proto` bound to `lip`.
fn raw_socket(lip: IpAddr, proto: i32) -> Result<OwnedFd> {
    let family = if lip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        bail!("raw socket {proto}: {}", io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (ss, len) = sockaddr(SocketAddr::new(lip, 0));
    // SAFETY: a valid sockaddr of `len` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    } < 0
    {
        bail!("bind raw socket to {lip}: {}", io::Error::last_os_error());
    }
    Ok(fd)
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage holds a sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage holds a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// sendto(2) of `bytes` on raw socket `fd` to `to` (port 0).
fn raw_send(fd: RawFd, bytes: &[u8], to: IpAddr) -> Result<()> {
    let (ss, len) = sockaddr(SocketAddr::new(to, 0));
    // SAFETY: `bytes` and the sockaddr are valid for the call.
    let n = unsafe {
        libc::sendto(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if n < 0 {
        bail!("raw sendto {to}: {}", io::Error::last_os_error());
    }
    Ok(())
}

/// Set (or with an empty `opts`, clear) the IPv4 options of `s`.
fn set_ip_options(s: &UdpSocket, opts: &[u8]) -> Result<()> {
    // SAFETY: `opts` is readable for its length.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            opts.as_ptr().cast(),
            opts.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        bail!("IP_OPTIONS: {}", io::Error::last_os_error());
    }
    Ok(())
}

pub fn run(mode: &str, vip: SocketAddr, rs: SocketAddr, lip: IpAddr) -> Result<()> {
    let mode = match mode {
        "icmp" => Mode::Icmp,
        "ipo" => Mode::Ipo,
        "opp" => Mode::Opp,
        m => bail!("unknown mode {m} (icmp, ipo, opp)"),
    };
    if mode != Mode::Opp && !rs.is_ipv4() {
        bail!("icmp and ipo need an IPv4 backend");
    }
    let front = Arc::new(UdpSocket::bind(vip).with_context(|| format!("bind {vip}"))?);
    let raw = match mode {
        Mode::Icmp => Some(raw_socket(lip, libc::IPPROTO_ICMP)?),
        Mode::Opp => Some(raw_socket(lip, i32::from(wire::OPP))?),
        Mode::Ipo => None,
    };
    eprintln!("toa-balancer: UDP {vip} -> {rs} from {lip}");
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = front.recv_from(&mut buf)?;
        let data = &buf[..n];
        if let std::collections::hash_map::Entry::Vacant(e) = flows.entry(client) {
            let sock = Arc::new(UdpSocket::bind(SocketAddr::new(lip, 0))?);
            sock.connect(rs)?;
            let lport = sock.local_addr()?.port();
            if let (Mode::Icmp, Some(raw), SocketAddr::V4(c), SocketAddr::V4(r), IpAddr::V4(l)) =
                (mode, &raw, client, rs, lip)
            {
                let a = Announce::lvs(std::net::SocketAddrV4::new(l, lport), r, c);
                raw_send(raw.as_raw_fd(), &a.message(), rs.ip())?;
            }
            // The backend's answers go back to the client from the VIP.
            let (back, front2) = (sock.clone(), front.clone());
            std::thread::spawn(move || {
                let mut b = vec![0u8; 65536];
                while let Ok(n) = back.recv(&mut b) {
                    let _ = front2.send_to(&b[..n], client);
                }
            });
            e.insert(Flow { sock, sent: 0 });
        }
        let Some(f) = flows.get_mut(&client) else {
            continue;
        };
        let lport = f.sock.local_addr()?.port();
        let tagged = f.sent < UOA_TRAIL;
        match (mode, tagged) {
            (Mode::Ipo, true) => {
                set_ip_options(&f.sock, &wire::ipo_options(client))?;
                f.sock.send(data)?;
                if f.sent + 1 == UOA_TRAIL {
                    set_ip_options(&f.sock, &[])?;
                }
            }
            (Mode::Opp, true) => {
                // The datagram as the backend would get it from LIP:lport,
                // behind the option protocol header; the kernel adds the
                // IP header on the raw socket.
                let ip = wire::opp(SocketAddr::new(lip, lport), rs, client, data);
                let hl = if lip.is_ipv4() {
                    usize::from(ip[0] & 0xf) * 4
                } else {
                    40
                };
                if let Some(raw) = &raw {
                    raw_send(raw.as_raw_fd(), &ip[hl..], rs.ip())?;
                }
            }
            _ => {
                f.sock.send(data)?;
            }
        }
        f.sent = f.sent.saturating_add(1);
    }
}
