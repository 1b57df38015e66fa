//! Every balancer in the field, one case per producer: the option kinds,
//! lengths, packets and placement each producer's own code uses (see the
//! README's table), played by the test peer against real listeners. Then
//! the handshake shapes around them: Fast Open, syncookies, a lost
//! handshake ACK, data and FIN in one segment, forged options, SYN floods.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::AsRawFd;

use anyhow::{bail, Result};

use super::common::{
    cdn4, cdn6, client, client6, mapped, opt16, opt4, opt6, with_ack, Accepted, Transport,
};
use super::ipv6::{matrix, settle, Client, Listener};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, Stats, SysctlGuard};
use toa_test::peer::{self, Conn, Handshake, Timestamps};
use toa_test::sock::{self, Accept};

pub fn cases() -> Vec<Case> {
    let mut v = vec![
        Case::new(
            "producers: Alibaba/yubo LVS FULLNAT, 254/8 right after the TCP header of the SYN only -> the client",
            lvs_syn_only,
        ),
        Case::new(
            "producers: Alibaba LVS with fullnat_toa_entry on, SYN and ACK both -> the client; when they differ nobody (agree) or the ACK's (any)",
            lvs_syn_and_ack,
        ),
        Case::new(
            "producers: Alibaba LVS IPv6 client, 253/20 in the SYN only, every listener and the NAT64 lookup",
            lvs_ipv6_syn,
        ),
        Case::new(
            "producers: DPVS, 254/8 first with timestamps behind it, in the ACK and the data -> the client",
            dpvs_first,
        ),
        Case::new(
            "producers: DPVS, handshake ACK lost, the first data segment carries the option -> the client",
            dpvs_ack_lost,
        ),
        Case::new(
            "producers: DPVS NAT64, 254/20 in IPv4 packets -> TOA_SO_GET_LOOKUP",
            dpvs_nat64,
        ),
        Case::new(
            "producers: JD Jupiter, 200/8 appended after timestamps in the first ACK only -> the client",
            jupiter,
        ),
        Case::new(
            "producers: JD Jupiter behind a TCP_DEFER_ACCEPT listener -> the held-back ACK's client",
            jupiter_defer_accept,
        ),
        Case::new(
            "producers: F5 BIG-IP, 200/8 and 254/20 in every packet, SYN included -> the client",
            f5,
        ),
        Case::new(
            "producers: Tencent CLB, 200/8 in the ACK; NAT64 253/20 with default settings",
            tencent,
        ),
        Case::new(
            "producers: UCloud, 200/8 with the default kinds -> the client",
            ucloud,
        ),
        Case::new(
            "producers: Alibaba Cloud CDN, 28/7 in the SYN -> the client with the kernel's port",
            cdn_v4,
        ),
        Case::new(
            "producers: Alibaba Cloud CDN, 28/19 in the SYN -> the IPv6 client, every listener",
            cdn_v6,
        ),
        Case::new(
            "producers: Alibaba Cloud CDN, 28/4 User Timeout is no client, version 2 is malformed, tcpopt_cdn=0 switches it off",
            cdn_not_taken,
        ),
        Case::new(
            "producers: ByteDance, 254/16 client and VIP -> the client; 254/8 and 254/20 too",
            bytedance,
        ),
    ];
    let mut n = 60u16;
    for (listener, transport) in Listener::COMBOS {
        for family in [Client::V4, Client::V6] {
            n += 1;
            v.push(Case::new(
                format!("producers: default kind 253 ({family:?} client, {listener:?} listener over {transport:?})"),
                move |ctx: &Ctx| matrix(ctx, listener, transport, family, Accept::Accept4, n, [253, 253]),
            ));
        }
    }
    v.extend([
        Case::new(
            "producers: a client's own option in its ACK behind a SYN-only balancer (Alibaba LVS): nobody by default (agree), the client's with any, the balancer's with syn; counted toa_conflict",
            client_option_in_ack,
        ),
        Case::new(
            "producers: a client's own option in its SYN behind an ACK-only balancer (DPVS): nobody by default when the ACK names another, taken when alone; tcpopt_packet=ack never takes it",
            client_option_in_syn,
        ),
        Case::new(
            "producers: a client's own option ahead of the one JD Jupiter appends: nobody by default (only), the client's with first, the balancer's with last; counted toa_conflict",
            client_option_ahead,
        ),
        Case::new(
            "producers: tcpopt_packet and tcpopt_position: defaults, bad writes EINVAL, parameters at load",
            packet_and_position_settings,
        ),
        Case::new(
            "handshakes: Fast Open, data and the option in the SYN -> the SYN's client",
            fast_open,
        ),
        Case::new(
            "handshakes: Fast Open's experimental option (254, 0xF989) in a SYN is no client; port 63881 in an ACK is",
            fast_open_option,
        ),
        Case::new(
            "handshakes: forced syncookies with the option in the SYN only -> the client (the table survives them)",
            syncookies_syn_only,
        ),
        Case::new(
            "handshakes: one segment with data and FIN completes the handshake -> the client",
            data_and_fin,
        ),
        Case::new(
            "handshakes: a forged option behind the real one -> nobody (only), the real one with tcpopt_position=first",
            forged_behind,
        ),
        Case::new(
            "handshakes: counters after the producer and handshake cases (printed), IPv6 records balanced",
            report,
        ),
        Case::new(
            "handshakes: a flood of SYNs with options -> table bounded, counters balanced, nothing allocated",
            syn_flood,
        ),
    ]);
    v
}

/// What every connection whose client was shown once by accept and once
/// by getpeername moves.
const SHOWN: &[(&str, u64)] = &[("syn_recv_sock_toa", 1), ("getname_toa_ok", 2)];
/// ... whose client came from the handshake table.
const FROM_TABLE: &[(&str, u64)] = &[
    ("syn_recv_sock_toa", 1),
    ("getname_toa_ok", 2),
    ("toa_syn_recorded", 1),
    ("toa_syn_used", 1),
];
/// ... whose SYN and ACK named different clients (`agree`): nobody.
const DISAGREED: &[(&str, u64)] = &[
    ("syn_recv_sock_no_toa", 1),
    ("toa_syn_recorded", 1),
    ("toa_conflict", 1),
];
/// ... whose SYN's client was replaced by the ACK's.
const ACK_WON: &[(&str, u64)] = &[
    ("syn_recv_sock_toa", 1),
    ("getname_toa_ok", 2),
    ("toa_syn_recorded", 1),
    ("toa_syn_replaced", 1),
];

fn with(base: &[(&'static str, u64)], extra: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&str, u64)> = base.to_vec();
    for (k, n) in extra {
        match v.iter_mut().find(|(name, _)| name == k) {
            Some(e) => e.1 += n,
            None => v.push((k, *n)),
        }
    }
    v
}

/// Open a connection from the balancer over `transport` to `l` with `hs`,
/// run `then` on it (segments after the handshake), accept it and ask
/// getpeername.
fn connect<'t>(
    ctx: &'t Ctx,
    l: &TcpListener,
    transport: Transport,
    hs: &Handshake,
    then: impl FnOnce(&mut Conn<'t>) -> Result<()>,
) -> Result<Accepted<'t>> {
    let remote = SocketAddr::new(transport.guest(), l.local_addr()?.port());
    let local = SocketAddr::new(transport.balancer(), peer::next_port());
    let mut conn = Conn::open(&ctx.tun, local, remote, hs)?;
    then(&mut conn)?;
    let (fd, accepted) = sock::accept(l, Accept::Accept4)?;
    let peer = sock::getpeername(fd.as_raw_fd())?;
    Ok(Accepted {
        accepted,
        peer,
        fd,
        conn,
    })
}

fn nothing(_: &mut Conn<'_>) -> Result<()> {
    Ok(())
}

fn inet() -> Result<TcpListener> {
    sock::listen("0.0.0.0:0".parse()?)
}

fn expect_seen(a: &Accepted<'_>, want: SocketAddr) -> Result<()> {
    ensure_eq!(a.accepted, want, "accept() address");
    ensure_eq!(a.peer, want, "getpeername() address");
    Ok(())
}

/// TOA_SO_GET_LOOKUP's answer for `client`.
fn lookup_of(client: SocketAddr) -> SocketAddr {
    match client {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}

fn expect_lookup(a: &Accepted<'_>, want: SocketAddr) -> Result<()> {
    ensure_eq!(
        sock::toa_lookup(a.fd.as_raw_fd(), 20)?,
        Ok((lookup_of(want), 20)),
        "TOA_SO_GET_LOOKUP"
    );
    Ok(())
}

fn syn_only(option: Vec<u8>) -> Handshake {
    Handshake {
        syn_prefix: option,
        ..Handshake::default()
    }
}

/// The counters before a step, once the IPv6 records of earlier steps'
/// sockets are freed.
fn before() -> Result<Stats> {
    settle()
}

// ---- Alibaba / yubo LVS FULLNAT ----------------------------------------

fn lvs_syn_only(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let a = connect(
        ctx,
        &l,
        Transport::V4,
        &syn_only(opt4(254, client(150))),
        nothing,
    )?;
    expect_seen(&a, client(150).into())?;
    kmod::expect_delta(&b, FROM_TABLE)
}

fn lvs_syn_and_ack(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    // They differ: one is not the balancer's; out of the box nobody, with
    // the older rule (any) the ACK's.
    let hs = Handshake {
        ack_options: opt4(254, client(152)),
        ..syn_only(opt4(254, client(151)))
    };
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    let balancer = a.conn.local;
    expect_seen(&a, balancer)?;
    kmod::expect_delta(&b, DISAGREED)?;
    {
        let _g = SysctlGuard::set(PACKET, "any")?;
        let b = before()?;
        let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
        expect_seen(&a, client(152).into())?;
        kmod::expect_delta(&b, &with(ACK_WON, &[("toa_conflict", 1)]))?;
    }
    // The same client in both (what LVS sends).
    let b = before()?;
    let hs = Handshake {
        ack_options: opt4(254, client(153)),
        ..syn_only(opt4(254, client(153)))
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(153).into())?;
    kmod::expect_delta(&b, ACK_WON)
}

fn lvs_ipv6_syn(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    for (i, (listener, transport)) in Listener::COMBOS.into_iter().enumerate() {
        let c = client6(150 + i as u16);
        let l = listener.open()?;
        let b = before()?;
        let a = connect(ctx, &l, transport, &syn_only(opt6(253, c)), nothing)?;
        let (shown, getname) = match listener {
            // NAT64: an IPv4 socket cannot show it; the lookup does.
            Listener::Inet => (a.conn.local, "getname_toa_bypass"),
            _ => (SocketAddr::from(c), "getname_toa_ok"),
        };
        expect_seen(&a, shown)?;
        expect_lookup(&a, c.into())?;
        kmod::expect_delta(
            &b,
            &[
                ("syn_recv_sock_toa", 1),
                (getname, 2),
                ("toa_syn_recorded", 1),
                ("toa_syn_used", 1),
                ("ip6_address_alloc", 1),
                ("lookup_toa_ok", 1),
            ],
        )?;
    }
    Ok(())
}

// ---- DPVS ----------------------------------------------------------------

fn dpvs_first(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let option = opt4(254, client(154));
    let hs = Handshake {
        timestamps: Some(Timestamps::Last),
        ack_options: option.clone(),
        ..Handshake::default()
    };
    let mut a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(154).into())?;
    // Client segments keep carrying it until server data is acknowledged.
    a.conn.send(&option, b"GET / HTTP/1.1\r\n\r\n")?;
    ensure_eq!(
        sock::read_some(a.fd.as_raw_fd(), 100)?,
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        "data"
    );
    kmod::expect_delta(&b, SHOWN)
}

fn dpvs_ack_lost(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let option = opt4(254, client(155));
    let hs = Handshake {
        timestamps: Some(Timestamps::Last),
        ack_options: option.clone(),
        lose_ack: true,
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, |c| {
        c.send(&option, b"first data")
    })?;
    expect_seen(&a, client(155).into())?;
    ensure_eq!(
        sock::read_some(a.fd.as_raw_fd(), 100)?,
        b"first data".to_vec(),
        "data"
    );
    kmod::expect_delta(&b, SHOWN)
}

fn dpvs_nat64(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let c = client6(155);
    let hs = Handshake {
        timestamps: Some(Timestamps::Last),
        ack_options: opt6(254, c),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, a.conn.local)?;
    expect_lookup(&a, c.into())?;
    kmod::expect_delta(
        &b,
        &[
            ("syn_recv_sock_toa", 1),
            ("getname_toa_bypass", 2),
            ("ip6_address_alloc", 1),
            ("lookup_toa_ok", 1),
        ],
    )
}

// ---- JD Jupiter --------------------------------------------------------

fn jupiter(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let hs = Handshake {
        timestamps: Some(Timestamps::First),
        ack_options: opt4(200, client(156)),
        ..Handshake::default()
    };
    let mut a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(156).into())?;
    a.expect_data(b"later segments carry no option", "data")?;
    kmod::expect_delta(&b, SHOWN)
}

fn jupiter_defer_accept(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    sock::set_defer_accept(&l, 5)?;
    let b = before()?;
    let hs = Handshake {
        timestamps: Some(Timestamps::First),
        ack_options: opt4(200, client(157)),
        ..Handshake::default()
    };
    // The listener drops the bare ACK; the data creates the socket.
    let a = connect(ctx, &l, Transport::V4, &hs, |c| c.send(&[], b"request"))?;
    expect_seen(&a, client(157).into())?;
    ensure_eq!(
        sock::read_some(a.fd.as_raw_fd(), 100)?,
        b"request".to_vec(),
        "data"
    );
    kmod::expect_delta(&b, &with(FROM_TABLE, &[("toa_ack_deferred", 1)]))
}

// ---- F5 BIG-IP ---------------------------------------------------------

fn f5(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let option = opt4(200, client(158));
    let hs = Handshake {
        syn_options: option.clone(),
        ack_options: option.clone(),
        ..Handshake::default()
    };
    let mut a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(158).into())?;
    a.conn.send(&option, b"data")?;
    ensure_eq!(sock::read_some(a.fd.as_raw_fd(), 100)?, b"data".to_vec());
    kmod::expect_delta(&b, ACK_WON)?;
    // IPv6 clients as 254/20, IPv6 balancer, v6-only listener.
    let l = Listener::V6Only.open()?;
    let c = client6(158);
    let b = before()?;
    let option = opt6(254, c);
    let hs = Handshake {
        syn_options: option.clone(),
        ack_options: option,
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V6, &hs, nothing)?;
    expect_seen(&a, c.into())?;
    kmod::expect_delta(&b, &with(ACK_WON, &[("ip6_address_alloc", 1)]))
}

// ---- Tencent CLB, UCloud -------------------------------------------------

fn tencent(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let hs = Handshake {
        ack_options: opt4(200, client(159)),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(159).into())?;
    kmod::expect_delta(&b, SHOWN)?;
    // NAT64: an IPv6 client in 253/20 to an IPv4 socket.
    let c = client6(159);
    let b = before()?;
    let hs = Handshake {
        ack_options: opt6(253, c),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, a.conn.local)?;
    expect_lookup(&a, c.into())?;
    kmod::expect_delta(
        &b,
        &[
            ("syn_recv_sock_toa", 1),
            ("getname_toa_bypass", 2),
            ("ip6_address_alloc", 1),
            ("lookup_toa_ok", 1),
        ],
    )
}

fn ucloud(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    ensure_eq!(
        kmod::sysctl("tcpopt_kinds")?,
        "200 253 254",
        "default kinds"
    );
    let l = Listener::Dual.open()?;
    let b = before()?;
    let hs = Handshake {
        ack_options: opt4(200, client(160)),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, mapped(client(160).into()))?;
    kmod::expect_delta(&b, SHOWN)
}

// ---- Alibaba Cloud CDN ---------------------------------------------------

/// A CDN client: its address, with the port the balancer's connection has.
fn cdn_client(addr: IpAddr, a: &Accepted<'_>) -> SocketAddr {
    SocketAddr::new(addr, a.conn.local.port())
}

fn cdn_v4(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let addr = Ipv4Addr::new(203, 0, 113, 28);
    let b = before()?;
    // After MSS, as a client's own options would be.
    let hs = Handshake {
        syn_options: cdn4(addr),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, cdn_client(addr.into(), &a))?;
    kmod::expect_delta(&b, &with(FROM_TABLE, &[("toa_cdn", 1)]))
}

fn cdn_v6(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcd, 0, 0, 0, 0, 28);
    for (listener, transport) in Listener::COMBOS {
        let l = listener.open()?;
        let b = before()?;
        let hs = Handshake {
            syn_options: cdn6(addr),
            ..Handshake::default()
        };
        let a = connect(ctx, &l, transport, &hs, nothing)?;
        let real = cdn_client(addr.into(), &a);
        let (shown, getname) = match listener {
            Listener::Inet => (a.conn.local, "getname_toa_bypass"),
            _ => (real, "getname_toa_ok"),
        };
        expect_seen(&a, shown)?;
        expect_lookup(&a, real)?;
        kmod::expect_delta(
            &b,
            &[
                ("syn_recv_sock_toa", 1),
                (getname, 2),
                ("toa_syn_recorded", 1),
                ("toa_syn_used", 1),
                ("toa_cdn", 1),
                ("ip6_address_alloc", 1),
                ("lookup_toa_ok", 1),
            ],
        )?;
    }
    Ok(())
}

fn cdn_not_taken(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let empty: &[(&str, u64)] = &[("syn_recv_sock_no_toa", 1)];
    // User Timeout (28/4) in the SYN: the kernel's business, not a client.
    let b = before()?;
    let hs = Handshake {
        syn_options: vec![28, 4, 0x80, 0x3c],
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, a.conn.local)?;
    kmod::expect_delta(&b, empty)?;
    // A version toa does not know: malformed.
    let b = before()?;
    let mut bad = cdn4(Ipv4Addr::new(203, 0, 113, 29));
    bad[2] = 2;
    let a = connect(ctx, &l, Transport::V4, &syn_only(bad), nothing)?;
    expect_seen(&a, a.conn.local)?;
    kmod::expect_delta(&b, &with(empty, &[("toa_malformed", 1)]))?;
    // Switched off: ignored.
    ensure_eq!(kmod::sysctl("tcpopt_cdn")?, "1", "default");
    let _g = SysctlGuard::set("/proc/sys/net/toa/tcpopt_cdn", "0")?;
    let b = before()?;
    let a = connect(
        ctx,
        &l,
        Transport::V4,
        &syn_only(cdn4(Ipv4Addr::new(203, 0, 113, 30))),
        nothing,
    )?;
    expect_seen(&a, a.conn.local)?;
    kmod::expect_delta(&b, empty)?;
    for bad in ["2", "-1", "on", ""] {
        match kmod::set_sysctl("tcpopt_cdn", bad) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => bail!("writing {bad:?} to tcpopt_cdn: {other:?}, want EINVAL"),
        }
    }
    ensure_eq!(kmod::sysctl("tcpopt_cdn")?, "0", "after bad writes");
    Ok(())
}

// ---- ByteDance -----------------------------------------------------------

fn bytedance(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let vip = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 80), 443);
    let b = before()?;
    let hs = Handshake {
        ack_options: opt16(254, client(161), vip),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(161).into())?;
    kmod::expect_delta(&b, &with(SHOWN, &[("toa_vip", 1)]))?;
    let b = before()?;
    let hs = Handshake {
        ack_options: opt4(254, client(162)),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(162).into())?;
    kmod::expect_delta(&b, SHOWN)?;
    let c = client6(162);
    let b = before()?;
    let hs = Handshake {
        ack_options: opt6(254, c),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_lookup(&a, c.into())?;
    kmod::expect_delta(
        &b,
        &[
            ("syn_recv_sock_toa", 1),
            ("getname_toa_bypass", 2),
            ("ip6_address_alloc", 1),
            ("lookup_toa_ok", 1),
        ],
    )
}

// ---- Handshake shapes ------------------------------------------------------

fn fast_open(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    // Server side on, no cookie required (TFO_SERVER_COOKIE_NOT_REQD).
    let _g = SysctlGuard::set("/proc/sys/net/ipv4/tcp_fastopen", "515")?;
    for (listener, transport, real) in [
        (Listener::Inet, Transport::V4, SocketAddr::from(client(163))),
        (
            Listener::V6Only,
            Transport::V6,
            SocketAddr::from(client6(163)),
        ),
    ] {
        let l = listener.open()?;
        sock::set_fastopen(&l, 16)?;
        let option = match real {
            SocketAddr::V4(c) => opt4(200, c),
            SocketAddr::V6(c) => opt6(254, c),
        };
        let b = before()?;
        let hs = Handshake {
            syn_options: option,
            syn_payload: b"GET /fast HTTP/1.1\r\n\r\n".to_vec(),
            ..Handshake::default()
        };
        let a = connect(ctx, &l, transport, &hs, nothing)?;
        if !a.conn.syn_data_acked {
            bail!("the SYN-ACK did not acknowledge the SYN's data: no Fast Open");
        }
        expect_seen(&a, real)?;
        ensure_eq!(
            sock::read_some(a.fd.as_raw_fd(), 100)?,
            hs.syn_payload,
            "the SYN's data"
        );
        let mut want = with(FROM_TABLE, &[("toa_fastopen", 1)]);
        if real.is_ipv6() {
            want.push(("ip6_address_alloc", 1));
        }
        kmod::expect_delta(&b, &want)?;
    }
    Ok(())
}

fn fast_open_option(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set("/proc/sys/net/ipv4/tcp_fastopen", "3")?;
    let l = inet()?;
    sock::set_fastopen(&l, 16)?;
    let empty: &[(&str, u64)] = &[("syn_recv_sock_no_toa", 1)];
    // A cookie request, and a 4-byte cookie shaped like a 254/8 option
    // naming 1.2.3.4 port 63881: Fast Open both, no client.
    for option in [
        vec![254, 4, 0xf9, 0x89],
        vec![254, 8, 0xf9, 0x89, 1, 2, 3, 4],
    ] {
        let b = before()?;
        let hs = Handshake {
            syn_options: option.clone(),
            ..Handshake::default()
        };
        let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
        expect_seen(&a, a.conn.local)?;
        kmod::expect_delta(&b, empty)?;
    }
    // In an ACK, port 63881 is a port.
    let c = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 164), 63881);
    let b = before()?;
    let hs = Handshake {
        syn_options: vec![254, 4, 0xf9, 0x89],
        ack_options: opt4(254, c),
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, c.into())?;
    kmod::expect_delta(&b, SHOWN)
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
        .ok_or_else(|| anyhow::anyhow!("TcpExt {name}"))
}

fn syncookies_syn_only(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set("/proc/sys/net/ipv4/tcp_syncookies", "2")?;
    let recv = tcp_ext("SyncookiesRecv")?;
    let l = inet()?;
    let b = before()?;
    let a = connect(
        ctx,
        &l,
        Transport::V4,
        &syn_only(opt4(254, client(165))),
        nothing,
    )?;
    expect_seen(&a, client(165).into())?;
    kmod::expect_delta(&b, FROM_TABLE)?;
    // An IPv6 client over IPv6.
    let l6 = Listener::V6Only.open()?;
    let c = client6(165);
    let b = before()?;
    let a = connect(ctx, &l6, Transport::V6, &syn_only(opt6(253, c)), nothing)?;
    expect_seen(&a, c.into())?;
    kmod::expect_delta(&b, &with(FROM_TABLE, &[("ip6_address_alloc", 1)]))?;
    drop(a);
    // No client anywhere: counted.
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &Handshake::default(), nothing)?;
    expect_seen(&a, a.conn.local)?;
    kmod::expect_delta(
        &b,
        &[("syn_recv_sock_no_toa", 1), ("toa_syncookie_no_toa", 1)],
    )?;
    ensure_eq!(
        tcp_ext("SyncookiesRecv")? - recv,
        3,
        "handshakes completed by syncookie"
    );
    Ok(())
}

fn data_and_fin(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let b = before()?;
    let hs = Handshake {
        lose_ack: true,
        ..Handshake::default()
    };
    let a = connect(ctx, &l, Transport::V4, &hs, |c| {
        c.send_fin(&opt4(200, client(166)), b"GET / HTTP/1.0\r\n\r\n")
    })?;
    expect_seen(&a, client(166).into())?;
    ensure_eq!(
        sock::read_some(a.fd.as_raw_fd(), 100)?,
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        "data"
    );
    ensure_eq!(
        sock::read_some(a.fd.as_raw_fd(), 100)?,
        Vec::<u8>::new(),
        "end of stream (FIN)"
    );
    kmod::expect_delta(&b, SHOWN)
}

fn forged_behind(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    let forged = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 6666);
    // In the ACK: the balancer's first (DPVS), the client's own behind.
    let mut options = opt4(254, client(167));
    options.extend(opt4(200, forged));
    let in_ack = Handshake {
        ack_options: options,
        ..Handshake::default()
    };
    // In the SYN: the balancer's right after the header (LVS), the
    // client's own after its MSS.
    let in_syn = Handshake {
        syn_options: opt4(254, forged),
        ..syn_only(opt4(254, client(168)))
    };
    // Out of the box (only): they disagree, nobody; counted.
    for hs in [&in_ack, &in_syn] {
        let b = before()?;
        let a = connect(ctx, &l, Transport::V4, hs, nothing)?;
        let balancer = a.conn.local;
        expect_seen(&a, balancer)?;
        kmod::expect_delta(&b, &[("syn_recv_sock_no_toa", 1), ("toa_conflict", 1)])?;
    }
    // The producer's position (first): the real one.
    let _g = SysctlGuard::set(POSITION, "first")?;
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &in_ack, nothing)?;
    expect_seen(&a, client(167).into())?;
    kmod::expect_delta(&b, &with(SHOWN, &[("toa_conflict", 1)]))?;
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &in_syn, nothing)?;
    expect_seen(&a, client(168).into())?;
    kmod::expect_delta(&b, &with(FROM_TABLE, &[("toa_conflict", 1)]))
}

/// Print `/proc/net/toa_stats` (since the module's last load: the trust
/// cases, then every producer and handshake case) once the IPv6 records of
/// closed sockets are freed, and check they balance.
fn report(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let s = settle()?;
    let text = std::fs::read_to_string("/proc/net/toa_stats")?;
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let (Some(name), Some(total)) = (cols.first(), cols.last()) {
            println!("# toa_stats {name:<24} {total}");
        }
    }
    ensure_eq!(
        s["ip6_address_alloc"],
        s["ip6_address_free"],
        "ip6_address_alloc/free"
    );
    if s["ip6_address_alloc"] == 0 || s["toa_syn_used"] == 0 {
        bail!("the cases before this one recorded nothing: {s:?}");
    }
    Ok(())
}

/// Slots in toa's handshake table (syn_table.rs).
const TABLE_SLOTS: u64 = 4096;

fn syn_flood(ctx: &Ctx) -> Result<()> {
    // A fresh module: an empty table.
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    ctx.insmod(&[])?;
    let l = Listener::Dual.open()?;
    let port = l.local_addr()?.port();
    let b = before()?;
    let flooder = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7);
    let remote = SocketAddr::new(Transport::V6.guest(), port);
    let mut rng = fastrand::Rng::with_seed(0xf100d);
    // Enough SYNs that some buckets overflow and entries must be evicted
    // (2000 into 1024 buckets of 4 overflow about 50 of them): 5000, or
    // 2000 where `--flood` asks for fewer (the debug kernel, where each SYN
    // costs 65 ms).
    let n = (ctx.flood / 20).clamp(2000, 5000);
    for i in 0..n {
        let local = SocketAddr::new(flooder.into(), 1024 + (i % 60000) as u16);
        let c = SocketAddrV6::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0xf1, 0, 0, 0, (i >> 16) as u16, i as u16),
            1 + (i % 60000) as u16,
            0,
            0,
        );
        peer::send_syn(&ctx.tun, local, remote, rng.u32(..), &opt6(254, c), &[])?;
        if i % 64 == 63 {
            ctx.tun.drain();
        }
    }
    ctx.tun.drain();
    let after = kmod::stats()?;
    let d = |k: &str| after[k].wrapping_sub(b[k]);
    let entries = after["syn_table_entries"];
    println!(
        "# {n} SYNs: {} recorded, {} evicted, {} expired, {entries} in the table",
        d("toa_syn_recorded"),
        d("toa_syn_evicted"),
        d("toa_syn_expired")
    );
    if entries > TABLE_SLOTS {
        bail!("{entries} entries in a table of {TABLE_SLOTS}");
    }
    // Every SYN reached the listener (the tun hands packets to the stack
    // synchronously; a few lost to a full backlog would not matter).
    if d("toa_syn_recorded") < u64::from(n) * 99 / 100 {
        bail!("only {} of {n} SYNs recorded", d("toa_syn_recorded"));
    }
    if d("toa_syn_evicted") == 0 {
        bail!("no entry was evicted by {n} SYNs into {TABLE_SLOTS} slots");
    }
    ensure_eq!(d("ip6_address_alloc"), 0, "IPv6 records allocated by SYNs");
    // A real connection still gets its SYN's client.
    let c = client6(169);
    let a = connect(ctx, &l, Transport::V6, &syn_only(opt6(254, c)), nothing)?;
    expect_seen(&a, c.into())?;
    let end = kmod::stats()?;
    let d = |k: &str| end[k].wrapping_sub(b[k]);
    // Every entry put in left by one door, or is still there.
    ensure_eq!(
        d("toa_syn_recorded"),
        d("toa_syn_used")
            + d("toa_syn_replaced")
            + d("toa_syn_expired")
            + d("toa_syn_evicted")
            + end["syn_table_entries"]
            - b["syn_table_entries"],
        "table counters balanced: {:?}",
        kmod::delta(&b, &end)
    );
    ensure_eq!(d("toa_syn_used"), 1, "the real connection's entry");
    ensure_eq!(
        d("ip6_address_alloc"),
        1,
        "one record: the real connection's"
    );
    drop(a);
    drop(l);
    // Leave an empty table to the cases after this one.
    kmod::rmmod()?;
    ctx.insmod(&[])
}

// ---- A client naming itself: which packet, which position ----------------

const PACKET: &str = "/proc/sys/net/toa/tcpopt_packet";
const POSITION: &str = "/proc/sys/net/toa/tcpopt_position";

fn client_option_in_ack(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    // Alibaba LVS names the client (161) in the SYN only; the client puts
    // an option naming 160 in its ACK, which the balancer forwards.
    let hs = Handshake {
        ack_options: opt4(254, client(160)),
        ..syn_only(opt4(254, client(161)))
    };
    // Out of the box (agree): the two disagree, nobody; counted.
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    let balancer = a.conn.local;
    expect_seen(&a, balancer)?;
    kmod::expect_delta(&b, DISAGREED)?;
    // The older modules' rule (any): the completing packet's, the client's
    // choice; counted.
    {
        let _g = SysctlGuard::set(PACKET, "any")?;
        let b = before()?;
        let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
        expect_seen(&a, client(160).into())?;
        kmod::expect_delta(&b, &with(ACK_WON, &[("toa_conflict", 1)]))?;
    }
    // Pinned to the SYN: the balancer's.
    let _g = SysctlGuard::set(PACKET, "syn")?;
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(161).into())?;
    kmod::expect_delta(&b, &with(FROM_TABLE, &[("toa_conflict", 1)]))?;
    // The same client in both (fullnat_toa_entry): no conflict.
    let b = before()?;
    let same = Handshake {
        ack_options: opt4(254, client(162)),
        ..syn_only(opt4(254, client(162)))
    };
    let a = connect(ctx, &l, Transport::V4, &same, nothing)?;
    expect_seen(&a, client(162).into())?;
    kmod::expect_delta(&b, FROM_TABLE)?;
    // An option in the ACK only: not the balancer's, nobody.
    let b = before()?;
    let a = connect(
        ctx,
        &l,
        Transport::V4,
        &with_ack(opt4(254, client(163))),
        nothing,
    )?;
    let balancer = a.conn.local;
    expect_seen(&a, balancer)?;
    kmod::expect_delta(&b, &[("syn_recv_sock_no_toa", 1), ("toa_conflict", 1)])
}

fn client_option_in_syn(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    // DPVS names the client in the ACK and the data, never in the SYN; the
    // client puts an option naming 164 in its SYN, and the balancer's
    // option does not reach this connection's completing packet (it lost
    // track of it, or a retransmission went untagged).
    let forged_only = Handshake {
        syn_options: opt4(254, client(164)),
        ..Handshake::default()
    };
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &forged_only, nothing)?;
    expect_seen(&a, client(164).into())?;
    kmod::expect_delta(&b, FROM_TABLE)?;
    // Both: out of the box (agree) nobody, the conflict counted; with
    // `any` the ACK's (the balancer's) wins, counted.
    let both = Handshake {
        syn_options: opt4(254, client(165)),
        ack_options: opt4(254, client(166)),
        ..Handshake::default()
    };
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &both, nothing)?;
    let balancer = a.conn.local;
    expect_seen(&a, balancer)?;
    kmod::expect_delta(&b, DISAGREED)?;
    {
        let _g = SysctlGuard::set(PACKET, "any")?;
        let b = before()?;
        let a = connect(ctx, &l, Transport::V4, &both, nothing)?;
        expect_seen(&a, client(166).into())?;
        kmod::expect_delta(&b, &with(ACK_WON, &[("toa_conflict", 1)]))?;
    }
    // Pinned to the ACK: a SYN's option never names the client.
    let _g = SysctlGuard::set(PACKET, "ack")?;
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &forged_only, nothing)?;
    let balancer = a.conn.local;
    expect_seen(&a, balancer)?;
    kmod::expect_delta(&b, &[("syn_recv_sock_no_toa", 1)])?;
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &both, nothing)?;
    expect_seen(&a, client(166).into())?;
    kmod::expect_delta(&b, SHOWN)
}

fn client_option_ahead(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let l = inet()?;
    // JD Jupiter appends its option (167) after the options it forwards,
    // the client's own (168) among them.
    let hs = Handshake {
        timestamps: Some(Timestamps::First),
        ack_options: [opt4(200, client(168)), opt4(200, client(167))].concat(),
        ..Handshake::default()
    };
    // Out of the box (only): nobody, counted.
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    let balancer = a.conn.local;
    expect_seen(&a, balancer)?;
    kmod::expect_delta(&b, &[("syn_recv_sock_no_toa", 1), ("toa_conflict", 1)])?;
    // first: the client's, counted; last: the balancer's, counted.
    {
        let _g = SysctlGuard::set(POSITION, "first")?;
        let b = before()?;
        let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
        expect_seen(&a, client(168).into())?;
        kmod::expect_delta(&b, &with(SHOWN, &[("toa_conflict", 1)]))?;
    }
    let _g = SysctlGuard::set(POSITION, "last")?;
    let b = before()?;
    let a = connect(ctx, &l, Transport::V4, &hs, nothing)?;
    expect_seen(&a, client(167).into())?;
    kmod::expect_delta(&b, &with(SHOWN, &[("toa_conflict", 1)]))?;
    // One option: the same either way, no conflict.
    let b = before()?;
    let a = connect(
        ctx,
        &l,
        Transport::V4,
        &with_ack(opt4(200, client(169))),
        nothing,
    )?;
    expect_seen(&a, client(169).into())?;
    kmod::expect_delta(&b, SHOWN)
}

fn packet_and_position_settings(ctx: &Ctx) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    ctx.insmod(&[])?;
    ensure_eq!(kmod::sysctl("tcpopt_packet")?, "agree", "default packet");
    ensure_eq!(kmod::sysctl("tcpopt_position")?, "only", "default position");
    for (name, good, bad) in [
        (
            "tcpopt_packet",
            &["syn", "ack", "any", "agree"][..],
            &["SYN", "both", "0", "", "syn ack"][..],
        ),
        (
            "tcpopt_position",
            &["last", "first", "only"][..],
            &["LAST", "middle", "1", ""][..],
        ),
    ] {
        for g in good {
            kmod::set_sysctl(name, g)?;
            ensure_eq!(kmod::sysctl(name)?, *g, "{name} after {g:?}");
        }
        for b in bad {
            match kmod::set_sysctl(name, b) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                other => bail!("{name} = {b:?}: {other:?}, want EINVAL"),
            }
            ensure_eq!(
                kmod::sysctl(name)?,
                *good.last().unwrap_or(&""),
                "{name} after {b:?}"
            );
        }
    }
    kmod::rmmod()?;
    ctx.insmod(&["tcpopt_packet=ack", "tcpopt_position=last"])?;
    let packet = kmod::sysctl("tcpopt_packet")?;
    let position = std::fs::read_to_string("/sys/module/toa/parameters/tcpopt_position")?;
    kmod::rmmod()?;
    ensure_eq!(packet, "ack", "tcpopt_packet=ack at load");
    ensure_eq!(position.trim(), "last", "tcpopt_position=last at load");
    if ctx.insmod(&["tcpopt_packet=both"]).is_ok() {
        kmod::rmmod()?;
        bail!("insmod with tcpopt_packet=both succeeded");
    }
    ctx.insmod(&[])
}
