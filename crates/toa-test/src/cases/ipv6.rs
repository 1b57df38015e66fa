//! IPv6 clients, dual-stack and v6-only listeners, native IPv6 FULLNAT and
//! NAT64: every client family on every backend socket family, through
//! accept(), getpeername() and getsockopt(TOA_SO_GET_LOOKUP), plus the
//! lifetime of IPv6 client records.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::common::{
    client, client6, handshake_to, mapped, opt4, opt6, with_ack, Transport, GUEST,
};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, SysctlGuard};
use toa_test::peer::{self, Conn};
use toa_test::sock::{self, Accept, Server};

/// The backend's listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// AF_INET on 0.0.0.0.
    Inet,
    /// AF_INET6 on [::], IPv4 clients as ::ffff:a.b.c.d.
    Dual,
    /// AF_INET6 on [::] with IPV6_V6ONLY.
    V6Only,
}

impl Listener {
    /// Every listener with the transports it can be reached over.
    pub const COMBOS: [(Listener, Transport); 4] = [
        (Listener::Inet, Transport::V4),
        (Listener::Dual, Transport::V4),
        (Listener::Dual, Transport::V6),
        (Listener::V6Only, Transport::V6),
    ];

    pub fn open(self) -> Result<TcpListener> {
        let any6 = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0);
        match self {
            Listener::Inet => sock::listen("0.0.0.0:0".parse()?),
            Listener::Dual => sock::listen6(any6, false),
            Listener::V6Only => sock::listen6(any6, true),
        }
    }
}

/// The client family the balancer reports (option length 8 or 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    V4,
    V6,
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut n = 0u16;
    for (listener, transport) in Listener::COMBOS {
        for client in [Client::V4, Client::V6] {
            n += 1;
            let how = if n.is_multiple_of(2) {
                Accept::Accept4
            } else {
                Accept::Accept
            };
            v.push(Case::new(
                format!("ipv6: {client:?} client, {listener:?} listener over {transport:?}: {how:?}, getpeername, TOA_SO_GET_LOOKUP"),
                move |ctx: &Ctx| matrix(ctx, listener, transport, client, how, n, [200, 254]),
            ));
        }
    }
    v.extend([
        Case::new(
            "ipv6: getpeername()'s whole answer on every listener (length, sin_zero, flow information, scope), ENOTCONN once reset",
            whole_answer,
        ),
        Case::new(
            "ipv6: TOA_SO_GET_LOOKUP with a short buffer: EINVAL, len untouched",
            short_len,
        ),
        Case::new(
            "ipv6: TOA_SO_GET_LOOKUP without a client: ENOENT",
            no_client,
        ),
        Case::new(
            "ipv6: TOA_SO_GET_LOOKUP on a UDP socket: EOPNOTSUPP",
            not_tcp,
        ),
        Case::new(
            "ipv6: TOA_SO_GET_LOOKUP without toa loaded: ENOPROTOOPT",
            not_loaded,
        ),
        Case::new(
            "ipv6: forced syncookies over IPv6 -> the client",
            syncookies6,
        ),
        Case::new(
            "ipv6: Python on a dual-stack listener sees ::ffff:client",
            python_dual,
        ),
        Case::new(
            "ipv6: 300 IPv6-client connections, records allocated and freed 1:1",
            many6,
        ),
        Case::new(
            "ipv6: rmmod with IPv6-client sockets open, close them after, reload",
            rmmod_live6,
        ),
        Case::new(
            "ipv6: C example server (gcc) reports the NAT64 client",
            c_example,
        ),
        Case::new(
            "ipv6: Rust example server (toa-client) reports the NAT64 client",
            rust_example,
        ),
    ]);
    v
}

/// Wait until every IPv6 record allocated so far is freed again (sockets of
/// earlier cases are destroyed asynchronously after their RST).
pub fn settle() -> Result<kmod::Stats> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = kmod::stats()?;
        let (a, f) = (s["ip6_address_alloc"], s["ip6_address_free"]);
        if a == f {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("IPv6 records do not balance: {a} allocated, {f} freed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The expected TOA_SO_GET_LOOKUP answer for `client`.
fn lookup_of(client: SocketAddr) -> SocketAddr {
    match client {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}

/// A `family` client named with kind `kinds[0]` (IPv4) or `kinds[1]`
/// (IPv6) in the handshake's ACK, reaching `listener` over `transport`:
/// what accept/getpeername, TOA_SO_GET_LOOKUP and the counters say.
pub fn matrix(
    ctx: &Ctx,
    listener: Listener,
    transport: Transport,
    family: Client,
    how: Accept,
    n: u16,
    kinds: [u8; 2],
) -> Result<()> {
    ctx.require_loaded()?;
    let l = listener.open()?;
    let (option, real): (Vec<u8>, SocketAddr) = match family {
        Client::V4 => (
            opt4(kinds[0], client(100 + n as u8)),
            client(100 + n as u8).into(),
        ),
        Client::V6 => (opt6(kinds[1], client6(n)), client6(n).into()),
    };
    let before = settle()?;
    let a = handshake_to(ctx, &l, transport, &with_ack(option), how)?;
    // What the application sees through the socket's own address family.
    let shown = match (listener, real) {
        // NAT64: an IPv4 socket cannot show an IPv6 client.
        (Listener::Inet, SocketAddr::V6(_)) => a.conn.local,
        (Listener::Inet, r) => r,
        (_, r) => mapped(r),
    };
    ensure_eq!(a.accepted, shown, "{how:?}() address");
    ensure_eq!(a.peer, shown, "getpeername() address");
    let got = sock::toa_lookup(a.fd.as_raw_fd(), 20)?;
    ensure_eq!(got, Ok((lookup_of(real), 20)), "TOA_SO_GET_LOOKUP");
    let mut want = vec![("syn_recv_sock_toa", 1), ("lookup_toa_ok", 1)];
    if listener == Listener::Inet && family == Client::V6 {
        want.push(("getname_toa_bypass", 2));
    } else {
        want.push(("getname_toa_ok", 2));
    }
    if family == Client::V6 {
        want.push(("ip6_address_alloc", 1));
    }
    kmod::expect_delta(&before, &want)
}

/// The bytes getpeername() writes for a TOA socket, on every listener and
/// client family it can show, are those the kernel writes for a socket
/// connected from the client itself: the length, the family, `sin_zero`
/// zeroed, IPv6's flow information and scope (hook=direct answers these
/// calls in the kernel's function's place). Once the peer resets the
/// connection, ENOTCONN (the kernel's own answer), counted as before.
fn whole_answer(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let mut n = 20u16;
    for (listener, transport) in Listener::COMBOS {
        for family in [Client::V4, Client::V6] {
            // NAT64 (an IPv6 client on an IPv4 socket) shows the balancer:
            // the matrix's case.
            if listener == Listener::Inet && family == Client::V6 {
                continue;
            }
            n += 1;
            let (option, real): (Vec<u8>, SocketAddr) = match family {
                Client::V4 => (opt4(254, client(n as u8)), client(n as u8).into()),
                Client::V6 => (opt6(254, client6(n)), client6(n).into()),
            };
            let shown = match listener {
                Listener::Inet => real,
                _ => mapped(real),
            };
            let what = format!("{family:?} client, {listener:?} listener over {transport:?}");
            let l = listener.open()?;
            let before = settle()?;
            let a = handshake_to(ctx, &l, transport, &with_ack(option), Accept::Accept4)?;
            let fd = a.fd.as_raw_fd();
            ensure_eq!(
                sock::getpeername_bytes(fd)?,
                Ok(sock::sockaddr_bytes(shown)),
                "getpeername()'s bytes, {what}"
            );
            a.conn.reset()?;
            // accept4(), the handshake's getpeername() and ours, then each
            // call answered before the reset is taken in.
            let mut shown_calls = 3;
            let deadline = Instant::now() + Duration::from_secs(3);
            let after = loop {
                match sock::getpeername_bytes(fd)? {
                    Ok(_) if Instant::now() < deadline => {
                        shown_calls += 1;
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    other => break other,
                }
            };
            ensure_eq!(
                after,
                Err(libc::ENOTCONN),
                "getpeername() once reset, {what}"
            );
            let mut want = vec![("syn_recv_sock_toa", 1), ("getname_toa_ok", shown_calls)];
            if family == Client::V6 {
                want.push(("ip6_address_alloc", 1));
            }
            kmod::expect_delta(&before, &want).with_context(|| what.clone())?;
        }
    }
    Ok(())
}

fn short_len(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = Listener::Inet.open()?;
    let a = handshake_to(
        ctx,
        &l,
        Transport::V4,
        &with_ack(opt6(254, client6(20))),
        Accept::Accept,
    )?;
    for len in [0, 1, 16, 18, 19] {
        ensure_eq!(
            sock::toa_lookup(a.fd.as_raw_fd(), len)?,
            Err(libc::EINVAL),
            "len {len}"
        );
    }
    // A larger buffer is fine; len comes back as the struct's size.
    ensure_eq!(
        sock::toa_lookup(a.fd.as_raw_fd(), 64)?,
        Ok((client6(20).into(), 20)),
        "len 64"
    );
    // The socket is unchanged by the failed calls.
    ensure_eq!(
        sock::getpeername(a.fd.as_raw_fd())?,
        a.conn.local,
        "getpeername()"
    );
    Ok(())
}

/// Expect TOA_SO_GET_LOOKUP on `fd` to fail with `errno`.
fn expect_lookup_errno(fd: &impl AsRawFd, errno: i32, what: &str) -> Result<()> {
    ensure_eq!(sock::toa_lookup(fd.as_raw_fd(), 20)?, Err(errno), "{what}");
    Ok(())
}

fn no_client(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    for (listener, transport) in [
        (Listener::Inet, Transport::V4),
        (Listener::Dual, Transport::V6),
    ] {
        let l = listener.open()?;
        let a = handshake_to(ctx, &l, transport, &with_ack(vec![]), Accept::Accept)?;
        expect_lookup_errno(&a.fd, libc::ENOENT, &format!("{listener:?}"))?;
        expect_lookup_errno(&l, libc::ENOENT, &format!("{listener:?} listener itself"))?;
    }
    Ok(())
}

fn not_tcp(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    expect_lookup_errno(&UdpSocket::bind("127.0.0.1:0")?, libc::EOPNOTSUPP, "UDP")?;
    expect_lookup_errno(&UdpSocket::bind("[::1]:0")?, libc::EOPNOTSUPP, "UDPv6")
}

fn not_loaded(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = Listener::Inet.open()?;
    let a = handshake_to(
        ctx,
        &l,
        Transport::V4,
        &with_ack(opt6(254, client6(21))),
        Accept::Accept,
    )?;
    kmod::rmmod()?;
    let got = sock::toa_lookup(a.fd.as_raw_fd(), 20)?;
    ctx.insmod(&[])?;
    ensure_eq!(got, Err(libc::ENOPROTOOPT), "without toa");
    Ok(())
}

fn syncookies6(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set("/proc/sys/net/ipv4/tcp_syncookies", "2")?;
    let l = Listener::V6Only.open()?;
    let a = handshake_to(
        ctx,
        &l,
        Transport::V6,
        &with_ack(opt6(200, client6(22))),
        Accept::Accept,
    )?;
    ensure_eq!(a.peer, SocketAddr::from(client6(22)), "getpeername()");
    let b = handshake_to(
        ctx,
        &l,
        Transport::V6,
        &with_ack(opt4(254, client(122))),
        Accept::Accept,
    )?;
    ensure_eq!(b.peer, mapped(client(122).into()), "getpeername()");
    Ok(())
}

fn python_dual(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let port = peer::next_port();
    let py = sock::python_server(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;
    let local = SocketAddr::new(Transport::V4.balancer(), peer::next_port());
    let remote = SocketAddr::new(GUEST.into(), port);
    let _conn = Conn::open(&ctx.tun, local, remote, &with_ack(opt4(200, client(123))))?;
    let (accepted, peer) = sock::python_answers(py)?;
    let want = format!("::ffff:{} {}", client(123).ip(), client(123).port());
    ensure_eq!(accepted, want, "python accept()");
    ensure_eq!(peer, want, "python getpeername()");
    Ok(())
}

fn many6(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let before = settle()?;
    {
        let l = Listener::Dual.open()?;
        for i in 0..300u16 {
            let c = client6(1000 + i);
            let transport = if i % 2 == 0 {
                Transport::V6
            } else {
                Transport::V4
            };
            let a = handshake_to(ctx, &l, transport, &with_ack(opt6(254, c)), Accept::Accept4)?;
            ensure_eq!(a.peer, SocketAddr::from(c), "connection {i}");
            // Dropping `a` closes the socket and resets the connection.
        }
    }
    let after = settle()?;
    let d = kmod::delta(&before, &after);
    ensure_eq!(d.get("ip6_address_alloc"), Some(&300), "records allocated");
    ensure_eq!(d.get("ip6_address_free"), Some(&300), "records freed");
    Ok(())
}

fn rmmod_live6(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = Listener::Dual.open()?;
    let mut v6 = Vec::new();
    for i in 0..5u16 {
        let a = handshake_to(
            ctx,
            &l,
            Transport::V6,
            &with_ack(opt6(254, client6(30 + i))),
            Accept::Accept,
        )?;
        ensure_eq!(a.peer, SocketAddr::from(client6(30 + i)), "before rmmod");
        v6.push(a);
    }
    let mut v4 = handshake_to(
        ctx,
        &l,
        Transport::V6,
        &with_ack(opt4(200, client(130))),
        Accept::Accept,
    )?;
    let freed_before = kmod::log_count("TOA: freed 5 IPv6 client records")?;
    kmod::rmmod()?;
    ensure_eq!(
        kmod::log_count("TOA: freed 5 IPv6 client records")?,
        freed_before + 1,
        "unload log"
    );
    for a in &v6 {
        ensure_eq!(
            sock::getpeername(a.fd.as_raw_fd())?,
            a.conn.local,
            "without toa"
        );
    }
    v4.expect_data(b"after rmmod", "data without toa")?;
    ctx.insmod(&[])?;
    // The records went with the old module: the new one never reads them.
    for a in &v6 {
        ensure_eq!(
            sock::getpeername(a.fd.as_raw_fd())?,
            a.conn.local,
            "after reload"
        );
        expect_lookup_errno(&a.fd, libc::ENOENT, "lookup after reload")?;
    }
    // An IPv4 client lives in the socket word itself and is shown again.
    ensure_eq!(
        sock::getpeername(v4.fd.as_raw_fd())?,
        mapped(client(130).into()),
        "IPv4 client after reload"
    );
    drop(v6);
    drop(v4);
    settle()?;
    Ok(())
}

/// Run an example server on 10.0.0.1 (AF_INET: the NAT64 case), connect an
/// IPv6 client and an IPv4 client, return its two lines and the balancer
/// ends of the connections.
fn run_example(ctx: &Ctx, program: &std::path::Path) -> Result<(Vec<String>, Vec<SocketAddr>)> {
    ctx.require_loaded()?;
    let port = peer::next_port();
    let mut server = Server::start(
        &program.to_string_lossy(),
        &[GUEST.to_string(), port.to_string(), "2".into()],
    )?;
    let remote = SocketAddr::new(GUEST.into(), port);
    let mut lines = Vec::new();
    let mut locals = Vec::new();
    for option in [opt6(254, client6(40)), opt4(200, client(140))] {
        let local = SocketAddr::new(Transport::V4.balancer(), peer::next_port());
        let _conn = Conn::open(&ctx.tun, local, remote, &with_ack(option))?;
        lines.push(server.line()?);
        locals.push(local);
    }
    server.finish()?;
    Ok((lines, locals))
}

fn c_example(ctx: &Ctx) -> Result<()> {
    let Some(program) = &ctx.c_server else {
        bail!("no --c-server given");
    };
    let (lines, lb) = run_example(ctx, program)?;
    ensure_eq!(
        lines[0],
        format!(
            "accept={0} getpeername={0} lookup=[{1}]:{2}",
            lb[0],
            client6(40).ip(),
            client6(40).port()
        ),
        "IPv6 client on an IPv4 socket"
    );
    let c = client(140);
    ensure_eq!(
        lines[1],
        format!(
            "accept={c} getpeername={c} lookup=[::ffff:{}]:{}",
            c.ip(),
            c.port()
        ),
        "IPv4 client"
    );
    Ok(())
}

fn rust_example(ctx: &Ctx) -> Result<()> {
    let Some(program) = &ctx.rust_server else {
        bail!("no --rust-server given");
    };
    let (lines, lb) = run_example(ctx, program)?;
    ensure_eq!(
        lines[0],
        format!("accept={0} getpeername={0} real={1}", lb[0], client6(40)),
        "IPv6 client on an IPv4 socket"
    );
    let c = client(140);
    ensure_eq!(
        lines[1],
        format!("accept={c} getpeername={c} real={c}"),
        "IPv4 client"
    );
    Ok(())
}
