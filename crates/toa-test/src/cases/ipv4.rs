//! The IPv4 core: real handshakes from the test peer (the balancer, at
//! 10.0.0.2) to listeners on 10.0.0.1, carrying IPv4 TOA options in every
//! shape the wire can hold; what accept(), accept4() and getpeername() return.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};

use super::common::{client, connect, opt4, with_ack, Accepted, GUEST, LB};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, SysctlGuard};
use toa_test::peer::{self, Conn, Handshake};
use toa_test::sock::{self, Accept};

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "ipv4: kind 200 -> accept() and getpeername() return the client",
            kind_200,
        ),
        Case::new(
            "ipv4: kind 254 -> accept4() and getpeername() return the client",
            kind_254,
        ),
        Case::new(
            "ipv4: no option -> the balancer's address, counted empty",
            no_option,
        ),
        Case::new(
            "ipv4: option only in the SYN -> the client (handshake table)",
            only_in_syn,
        ),
        Case::new("ipv4: duplicate options -> the first one wins", duplicates),
        Case::new(
            "ipv4: wrong TOA lengths -> balancer, counted malformed",
            wrong_lengths,
        ),
        Case::new(
            "ipv4: truncated option list -> balancer, counted malformed",
            truncated,
        ),
        Case::new(
            "ipv4: over-long option -> balancer, counted malformed",
            over_long,
        ),
        Case::new(
            "ipv4: option after EOL -> balancer, not malformed",
            after_eol,
        ),
        Case::new(
            "ipv4: port 0 or address 0.0.0.0 -> balancer, counted malformed",
            unspecified,
        ),
        Case::new(
            "ipv4: option in an ACK carrying data -> the client",
            with_data,
        ),
        Case::new(
            "ipv4: other options around the TOA option -> the client",
            among_others,
        ),
        Case::new("ipv4: getsockname() keeps the local address", sockname),
        Case::new(
            "ipv4: kinds changed at runtime through sysctl",
            runtime_kinds,
        ),
        Case::new("ipv4: kind 0 disables a slot", disabled),
        Case::new(
            "ipv4: tcpopt_kinds is the whole set; tcpopt_addr/_v6 replace their own kind",
            kinds_list,
        ),
        Case::new(
            "ipv4: invalid sysctl writes get EINVAL and change nothing",
            bad_sysctl,
        ),
        Case::new(
            "ipv4: forced syncookies (tcp_syncookies=2) -> the client",
            syncookies,
        ),
        Case::new(
            "ipv4: Python accept() and getpeername() see the client",
            python,
        ),
        Case::new("ipv4: 200 connections, each sees its own client", many),
        Case::new(
            "ipv4: rmmod with live TOA sockets, they keep working, reload",
            rmmod_live,
        ),
    ]
}

fn guest_any() -> SocketAddr {
    SocketAddr::new(GUEST.into(), 0)
}

/// Expect the app to see `want` from both calls.
fn expect_seen(a: &Accepted<'_>, want: SocketAddr) -> Result<()> {
    ensure_eq!(a.accepted, want, "accept() address");
    ensure_eq!(a.peer, want, "getpeername() address");
    Ok(())
}

/// Connect with `ack_options`, expect the balancer's own address and the
/// counters `counters`.
fn expect_balancer(ctx: &Ctx, ack_options: Vec<u8>, counters: &[(&str, u64)]) -> Result<()> {
    ctx.require_loaded()?;
    let before = kmod::stats()?;
    let a = connect(ctx, guest_any(), &with_ack(ack_options), Accept::Accept)?;
    expect_seen(&a, a.conn.local)?;
    kmod::expect_delta(&before, counters)
}

/// Connect with `ack_options`, expect client `want`.
fn expect_client(ctx: &Ctx, ack_options: Vec<u8>, how: Accept, want: SocketAddrV4) -> Result<()> {
    expect_client_counted(ctx, ack_options, how, want, &[])
}

/// As [`expect_client`], with `extra` counters moving too.
fn expect_client_counted(
    ctx: &Ctx,
    ack_options: Vec<u8>,
    how: Accept,
    want: SocketAddrV4,
    extra: &[(&str, u64)],
) -> Result<()> {
    ctx.require_loaded()?;
    let before = kmod::stats()?;
    let a = connect(ctx, guest_any(), &with_ack(ack_options), how)?;
    expect_seen(&a, want.into())?;
    let mut want_delta = vec![("syn_recv_sock_toa", 1), ("getname_toa_ok", 2)];
    want_delta.extend_from_slice(extra);
    kmod::expect_delta(&before, &want_delta)
}

const NO_TOA_EMPTY: &[(&str, u64)] = &[("syn_recv_sock_no_toa", 1)];
const MALFORMED: &[(&str, u64)] = &[("syn_recv_sock_no_toa", 1), ("toa_malformed", 1)];

fn kind_200(ctx: &Ctx) -> Result<()> {
    expect_client(ctx, opt4(200, client(1)), Accept::Accept, client(1))
}

fn kind_254(ctx: &Ctx) -> Result<()> {
    expect_client(ctx, opt4(254, client(2)), Accept::Accept4, client(2))
}

fn no_option(ctx: &Ctx) -> Result<()> {
    expect_balancer(ctx, vec![], NO_TOA_EMPTY)
}

fn only_in_syn(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let before = kmod::stats()?;
    let hs = Handshake {
        syn_options: opt4(200, client(3)),
        ..Handshake::default()
    };
    let a = connect(ctx, guest_any(), &hs, Accept::Accept)?;
    expect_seen(&a, client(3).into())?;
    kmod::expect_delta(
        &before,
        &[
            ("syn_recv_sock_toa", 1),
            ("getname_toa_ok", 2),
            ("toa_syn_recorded", 1),
            ("toa_syn_used", 1),
        ],
    )
}

fn duplicates(ctx: &Ctx) -> Result<()> {
    // Two clients: out of the box (tcpopt_position=only) nobody, since
    // one of them is not the balancer's; the disagreement is counted.
    let nobody = [("syn_recv_sock_no_toa", 1), ("toa_conflict", 1)];
    let mut o = opt4(200, client(4));
    o.extend(opt4(200, client(5)));
    expect_balancer(ctx, o.clone(), &nobody)?;
    // Placed by the producer (first): the first one, counted.
    let conflict = [("toa_conflict", 1)];
    {
        let _g = SysctlGuard::set("/proc/sys/net/toa/tcpopt_position", "first")?;
        expect_client_counted(ctx, o, Accept::Accept, client(4), &conflict)?;
        let mut o = opt4(254, client(6));
        o.extend(opt4(200, client(7)));
        expect_client_counted(ctx, o, Accept::Accept, client(6), &conflict)?;
    }
    // The same client twice: no conflict.
    let mut o = opt4(254, client(8));
    o.extend(opt4(200, client(8)));
    expect_client(ctx, o, Accept::Accept, client(8))
}

fn wrong_lengths(ctx: &Ctx) -> Result<()> {
    // A configured kind whose length is neither 8 nor 20, well formed.
    expect_balancer(ctx, vec![200, 6, 0x9c, 0x41, 198, 51], MALFORMED)?;
    expect_balancer(
        ctx,
        vec![254, 12, 0x9c, 0x41, 198, 51, 100, 9, 0, 0, 0, 0],
        MALFORMED,
    )
}

fn truncated(ctx: &Ctx) -> Result<()> {
    // Three NOPs, then a TOA kind whose length byte is past the end.
    expect_balancer(ctx, vec![1, 1, 1, 200], MALFORMED)?;
    // The TOA option cut short by the end of the header.
    expect_balancer(ctx, vec![1, 1, 1, 1, 200, 8, 0x9c, 0x41], MALFORMED)
}

fn over_long(ctx: &Ctx) -> Result<()> {
    // A length that runs 32 bytes past the end of a 12-byte list.
    let mut o = opt4(200, client(8));
    o.extend([3, 40, 7, 1]);
    expect_balancer(ctx, o, MALFORMED)?;
    // Length 1 cannot hold kind and length.
    expect_balancer(ctx, vec![200, 1, 0, 0], MALFORMED)
}

fn after_eol(ctx: &Ctx) -> Result<()> {
    let mut o = vec![1, 1, 0, 0];
    o.extend(opt4(200, client(9)));
    expect_balancer(ctx, o, NO_TOA_EMPTY)
}

fn unspecified(ctx: &Ctx) -> Result<()> {
    expect_balancer(
        ctx,
        opt4(200, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000)),
        MALFORMED,
    )?;
    expect_balancer(
        ctx,
        opt4(200, SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 0)),
        MALFORMED,
    )
}

fn with_data(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let hs = Handshake {
        ack_options: opt4(200, client(11)),
        ack_payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        ..Handshake::default()
    };
    let a = connect(ctx, guest_any(), &hs, Accept::Accept)?;
    expect_seen(&a, client(11).into())?;
    ensure_eq!(
        sock::read_some(a.fd.as_raw_fd(), 100)?,
        hs.ack_payload,
        "data read"
    );
    Ok(())
}

fn among_others(ctx: &Ctx) -> Result<()> {
    // NOPs + a timestamp-shaped option of an unknown kind + TOA + NOPs.
    let mut o = vec![1, 1, 77, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    o.extend(opt4(254, client(12)));
    o.extend([1, 1, 1, 1]);
    expect_client(ctx, o, Accept::Accept4, client(12))
}

fn sockname(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let a = connect(
        ctx,
        guest_any(),
        &with_ack(opt4(200, client(13))),
        Accept::Accept,
    )?;
    let l = std::net::TcpStream::from(a.fd.try_clone()?);
    ensure_eq!(l.local_addr()?, a.conn.remote, "getsockname()");
    ensure_eq!(
        l.peer_addr()?,
        SocketAddr::from(client(13)),
        "std peer_addr()"
    );
    Ok(())
}

fn runtime_kinds(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set("/proc/sys/net/toa/tcpopt_addr", "253")?;
    expect_client(ctx, opt4(253, client(14)), Accept::Accept, client(14))?;
    expect_balancer(ctx, opt4(200, client(15)), NO_TOA_EMPTY)?;
    expect_client(ctx, opt4(254, client(16)), Accept::Accept, client(16))?;
    let _g6 = SysctlGuard::set("/proc/sys/net/toa/tcpopt_addr_v6", "200")?;
    expect_client(ctx, opt4(200, client(17)), Accept::Accept, client(17))?;
    expect_balancer(ctx, opt4(254, client(18)), NO_TOA_EMPTY)
}

fn disabled(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set("/proc/sys/net/toa/tcpopt_addr", "0")?;
    expect_balancer(ctx, opt4(200, client(19)), NO_TOA_EMPTY)?;
    expect_client(ctx, opt4(254, client(20)), Accept::Accept, client(20))?;
    let _g6 = SysctlGuard::set("/proc/sys/net/toa/tcpopt_addr_v6", "0")?;
    expect_balancer(ctx, opt4(254, client(21)), NO_TOA_EMPTY)
}

fn kinds_list(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let kinds = || kmod::sysctl("tcpopt_kinds");
    ensure_eq!(kinds()?, "200 253 254", "default");
    // Put back in reverse: the slots, then the list (which gives the
    // listed slot kinds back to the slots).
    let _g = SysctlGuard::set("/proc/sys/net/toa/tcpopt_kinds", "200 253 254")?;
    let _g0 = SysctlGuard::set("/proc/sys/net/toa/tcpopt_addr", "200")?;
    let _g1 = SysctlGuard::set("/proc/sys/net/toa/tcpopt_addr_v6", "254")?;
    // Huawei ELB's guide: tcpopt_addr=254 (200 goes, as it always did).
    kmod::set_sysctl("tcpopt_addr", "254")?;
    ensure_eq!(kinds()?, "253 254", "after tcpopt_addr=254");
    expect_balancer(ctx, opt4(200, client(27)), NO_TOA_EMPTY)?;
    kmod::set_sysctl("tcpopt_addr", "200")?;
    ensure_eq!(kinds()?, "200 253 254", "after tcpopt_addr=200");
    // The whole set, written.
    kmod::set_sysctl("tcpopt_kinds", "7, 253")?;
    ensure_eq!(kinds()?, "7 253");
    ensure_eq!(kmod::sysctl("tcpopt_addr")?, "0", "tcpopt_addr not listed");
    ensure_eq!(
        kmod::sysctl("tcpopt_addr_v6")?,
        "0",
        "tcpopt_addr_v6 not listed"
    );
    expect_client(ctx, opt4(7, client(28)), Accept::Accept, client(28))?;
    expect_balancer(ctx, opt4(254, client(29)), NO_TOA_EMPTY)?;
    kmod::set_sysctl("tcpopt_addr_v6", "254")?;
    ensure_eq!(kinds()?, "7 253 254");
    kmod::set_sysctl("tcpopt_kinds", "")?;
    ensure_eq!(kinds()?, "");
    expect_balancer(ctx, opt4(253, client(30)), NO_TOA_EMPTY)?;
    for bad in ["0", "8", "28", "200,,254", "200 256", "abc", "200;254"] {
        match kmod::set_sysctl("tcpopt_kinds", bad) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => bail!("writing {bad:?} to tcpopt_kinds: {other:?}, want EINVAL"),
        }
        ensure_eq!(kinds()?, "", "after writing {bad:?}");
    }
    let p = std::fs::read_to_string("/sys/module/toa/parameters/tcpopt_kinds")?;
    ensure_eq!(p.trim(), "", "parameter");
    Ok(())
}

fn bad_sysctl(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    for name in ["tcpopt_addr", "tcpopt_addr_v6"] {
        let old = kmod::sysctl(name)?;
        for bad in [
            "256",
            "-1",
            "8",
            "19",
            "28",
            "34",
            "0",
            "abc",
            "200 254",
            "",
            "\n",
            "0x10",
            "99999999999",
        ] {
            if bad == "0" {
                continue;
            }
            match kmod::set_sysctl(name, bad) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                other => bail!("writing {bad:?} to {name}: {other:?}, want EINVAL"),
            }
            ensure_eq!(kmod::sysctl(name)?, old, "{name} after writing {bad:?}");
        }
    }
    Ok(())
}

/// `TcpExt` counter `name` from /proc/net/netstat.
fn tcp_ext(name: &str) -> Result<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat")?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .with_context(|| format!("TcpExt {name}"))
}

fn syncookies(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set("/proc/sys/net/ipv4/tcp_syncookies", "2")?;
    let recv = tcp_ext("SyncookiesRecv")?;
    expect_client(ctx, opt4(200, client(22)), Accept::Accept, client(22))?;
    expect_client(ctx, opt4(254, client(23)), Accept::Accept4, client(23))?;
    ensure_eq!(
        tcp_ext("SyncookiesRecv")? - recv,
        2,
        "handshakes completed by syncookie"
    );
    Ok(())
}

fn python(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let port = peer::next_port();
    let py = sock::python_server(SocketAddr::new(GUEST.into(), port))?;
    let local = SocketAddr::new(LB.into(), peer::next_port());
    let remote = SocketAddr::new(GUEST.into(), port);
    let _conn = Conn::open(&ctx.tun, local, remote, &with_ack(opt4(200, client(24))))?;
    let (accepted, peer) = sock::python_answers(py)?;
    let want = format!("{} {}", client(24).ip(), client(24).port());
    ensure_eq!(accepted, want, "python accept()");
    ensure_eq!(peer, want, "python getpeername()");
    Ok(())
}

fn many(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = sock::listen(guest_any())?;
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    let before = kmod::stats()?;
    let mut open = Vec::new();
    for i in 0..200u32 {
        let c = SocketAddrV4::new(Ipv4Addr::from(0xc633_6400 + i), 1024 + i as u16);
        let local = SocketAddr::new(LB.into(), peer::next_port());
        let conn = Conn::open(&ctx.tun, local, remote, &with_ack(opt4(200, c)))?;
        open.push((c, conn));
    }
    // Accept in order; the accept queue keeps the handshakes' order.
    for (c, _conn) in &open {
        let (fd, accepted) = sock::accept(&l, Accept::Accept4)?;
        ensure_eq!(accepted, SocketAddr::from(*c), "accept() in the batch");
        ensure_eq!(
            sock::getpeername(fd.as_raw_fd())?,
            SocketAddr::from(*c),
            "getpeername() in the batch"
        );
    }
    kmod::expect_delta(
        &before,
        &[("syn_recv_sock_toa", 200), ("getname_toa_ok", 400)],
    )
}

fn rmmod_live(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let mut a = connect(
        ctx,
        guest_any(),
        &with_ack(opt4(200, client(25))),
        Accept::Accept,
    )?;
    expect_seen(&a, client(25).into())?;
    kmod::rmmod()?;
    // The socket works on; without toa the kernel's own answer shows.
    ensure_eq!(
        sock::getpeername(a.fd.as_raw_fd())?,
        a.conn.local,
        "getpeername() after rmmod"
    );
    a.expect_data(b"still here", "data after rmmod")?;
    ctx.insmod(&[])?;
    // What toa recorded stays on the socket: a reloaded toa shows it again.
    ensure_eq!(
        sock::getpeername(a.fd.as_raw_fd())?,
        SocketAddr::from(client(25)),
        "getpeername() after reload"
    );
    let b = connect(
        ctx,
        guest_any(),
        &with_ack(opt4(200, client(26))),
        Accept::Accept,
    )?;
    expect_seen(&b, client(26).into())
}
