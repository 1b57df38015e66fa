//! UDP clients: the balancer (the tun peer, LIP 10.0.0.2 / fd00::2) sends
//! ip_vs_ca ICMP announcements and DPVS UOA (IPv4 option, option protocol
//! over IPv4 and IPv6, NAT64) the way LVS and DPVS do, then datagrams from
//! LIP:lport; applications in the guest receive and answer with every
//! system call, and the test reads what the guest sends back on the wire.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::common::{GUEST, GUEST6, LB, LB6};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, Stats, SysctlGuard};
use toa_test::peer::{self, Conn, Handshake};
use toa_test::sock::{self, Accept, Server};
use toa_test::udp::{self as wire, Announce};

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "udp: ip_vs_ca announcement, LVS's 16-byte form, opcode 254, id 34 12 -> recvfrom sees the client, sendto goes back to LIP:lport",
            announce_lvs,
        ),
        Case::new(
            "udp: ip_vs_ca announcement, ip_vs_ca's 14-byte form, opcode 200, id 12 34 -> recvmsg/sendmsg",
            announce_packed,
        ),
        Case::new(
            "udp: announcements refused: bad magic, bad checksum, truncated, unknown opcode, untrusted source; the ping is still answered",
            announce_refused,
        ),
        Case::new(
            "udp: a namespace that trusts nobody has no UDP hook (an announcement is not even counted) and loses its flows; trusting again brings the hooks back",
            hooks_follow_trust,
        ),
        Case::new(
            "udp: protocol-level hooks serve a namespace that does not forward; once it forwards (ip_forward=1), netfilter's from its next flow or trusted_sources write; clients seen throughout",
            hooks_follow_forwarding,
        ),
        Case::new(
            "udp: DPVS UOA as an IPv4 option (ipo) -> the client, also for the flow's later datagrams",
            uoa_ipo,
        ),
        Case::new(
            "udp: DPVS UOA in an option protocol header over IPv4 (opp) -> plain UDP, the client",
            uoa_opp_v4,
        ),
        Case::new(
            "udp: DPVS UOA opp over IPv6 -> the IPv6 client on an AF_INET6 socket",
            uoa_opp_v6,
        ),
        Case::new(
            "udp: DPVS NAT64 (opp with an IPv6 client in IPv4) -> the balancer on the socket, the IPv6 client from the UOA getsockopt",
            uoa_nat64,
        ),
        Case::new(
            "udp: UOA malformed (bad lengths, version, truncated header) -> refused and counted, nothing recorded",
            uoa_refused,
        ),
        Case::new(
            "udp: DPVS's empty datagram carrying only the UOA -> recorded, delivered empty from the client",
            uoa_empty_carrier,
        ),
        Case::new(
            "udp: dual-stack AF_INET6 socket sees ::ffff:client and answers it through the balancer",
            dual_stack,
        ),
        Case::new(
            "udp: recvmmsg and sendmmsg, three clients in one batch",
            mmsg,
        ),
        Case::new(
            "udp: connect() to the client, send(), getpeername() -> the client; datagrams go to LIP:lport",
            connected,
        ),
        Case::new(
            "udp: UDP_SEGMENT (GSO) reply -> every segment to LIP:lport, checksums right",
            gso,
        ),
        Case::new(
            "udp: UOA getsockopt asked with LIP:lport (udp_rewrite=0) or with the client; daddr any; EINVAL, ENOENT",
            uoa_getsockopt,
        ),
        Case::new(
            "udp: two RS ports sharing one LIP:lport -> each server sees its own client",
            shared_lport,
        ),
        Case::new(
            "udp: the balancer reuses LIP:lport for a new client -> replaced, the old client's replies are not diverted",
            port_reuse,
        ),
        Case::new(
            "udp: a client behind two LIPs -> replies go through the most recently seen, counted",
            two_lips,
        ),
        Case::new(
            "udp: replies from a socket bound to every address are named before they are built: sendto, corked (MSG_MORE), with IP_PKTINFO, over IPv4 and IPv6 -> each to LIP:lport, counted once; the caller's address unchanged; a client without a flow answered directly",
            named_replies,
        ),
        Case::new(
            "udp: an unprivileged local user cannot send as a flow's server: its datagrams to the flow's client from another port go to the client directly, nothing counted; the flow's port cannot be bound (EADDRINUSE), even with SO_REUSEADDR/SO_REUSEPORT",
            unprivileged_sender,
        ),

        Case::new(
            "udp: expiry with udp_timeout=3 -> the balancer again after 4.5 s unseen; traffic keeps a flow alive (gaps measured by the guest)",
            expiry,
        ),
        Case::new(
            "udp: TCP fallback: an announcement with protocol 6 names the client of a handshake without an option",
            tcp_fallback,
        ),
        Case::new(
            "udp: Python server (recvfrom/sendto), the C example server (recvfrom, recvmsg, recvmmsg) and the Rust one (toa-client, NAT64) see and answer the client",
            servers,
        ),
        Case::new(
            "udp: /proc/net/toa_udp lists the namespace's flows; a namespace's flows go with it",
            procfs_and_netns,
        ),
        Case::new(
            "udp: sysctls and parameters: udp_rewrite, udp_timeout, udp_max_flows (resize keeps flows), bad writes EINVAL",
            settings,
        ),
        Case::new(
            "udp: a flood of announcements (100 000; --flood) against udp_max_flows=1024 -> bounded, counters balanced, nothing allocated",
            flood,
        ),
        Case::new(
            "udp: rmmod/insmod with live flows and a receiving socket",
            unload_with_flows,
        ),
        Case::new(
            "udp: io_uring RecvMsg sees the client, SendMsg to the client goes to LIP:lport",
            io_uring_paths,
        ),
        Case::new(
            "udp: udp=0 -> no hook: announcements ignored, no /proc/net/toa_udp, UOA getsockopt ENOPROTOOPT; TCP still served",
            udp_off,
        ),
    ]
}

/// How long a datagram, reply or echo the case waits for may take (only
/// what must come is waited for: a loaded machine under emulation can be
/// seconds late).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The datagrams the guest sends until `done` says the awaited ones are all
/// there (then 300 ms more, for any extra ones right behind them), or
/// until TIMEOUT.
fn sent_until(ctx: &Ctx, done: impl Fn(&[wire::Sent]) -> bool) -> Result<Vec<wire::Sent>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut v = Vec::new();
    while !done(&v) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(v);
        }
        match ctx.tun.recv(left)? {
            Some(p) => v.extend(wire::parse(&p)),
            None => return Ok(v),
        }
    }
    v.extend(wire::sent_within(&ctx.tun, Duration::from_millis(300))?);
    Ok(v)
}

/// A flow: the balancer's address, the backend's, the client's.
#[derive(Clone, Copy, Debug)]
struct Flow {
    lip: SocketAddr,
    rs: SocketAddr,
    client: SocketAddr,
}

/// A fresh number, so that no two cases share a flow.
fn fresh() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    N.fetch_add(1, Ordering::Relaxed) + 1
}

/// An IPv4 flow to the guest's port `rsport`.
fn flow4(rsport: u16) -> Flow {
    let n = fresh();
    Flow {
        lip: SocketAddrV4::new(LB, 20000 + n).into(),
        rs: SocketAddrV4::new(GUEST, rsport).into(),
        client: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, (n % 200 + 20) as u8), 30000 + n)
            .into(),
    }
}

/// An IPv6 flow.
fn flow6(rsport: u16) -> Flow {
    let n = fresh();
    Flow {
        lip: SocketAddrV6::new(LB6, 20000 + n, 0, 0).into(),
        rs: SocketAddrV6::new(GUEST6, rsport, 0, 0).into(),
        client: SocketAddrV6::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x77, n),
            30000 + n,
            0,
            0,
        )
        .into(),
    }
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(x) => x,
        SocketAddr::V6(x) => panic!("{x} is not IPv4"),
    }
}

impl Flow {
    fn announce(&self) -> Announce {
        Announce::lvs(v4(self.lip), v4(self.rs), v4(self.client))
    }
}

/// toa loaded, and the clients' networks routed to the wire (so that a
/// datagram toa does not send back through the balancer is seen going to
/// the client itself).
fn setup(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let dev = &ctx.tun.name;
    toa_test::sh(&format!(
        "ip route replace 198.51.100.0/24 dev {dev} && ip -6 route replace 2001:db8::/32 dev {dev}"
    ))?;
    Ok(())
}

/// A UDP socket bound to `addr`, reads time out.
fn bind(addr: SocketAddr) -> Result<UdpSocket> {
    let s = UdpSocket::bind(addr).with_context(|| format!("bind {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    Ok(s)
}

/// The next datagram on `s`: payload and source.
fn recv(s: &UdpSocket) -> Result<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).context("recv_from")?;
    Ok((buf[..n].to_vec(), from))
}

/// `::ffff:a.b.c.d` as an AF_INET6 socket shows an IPv4 address.
fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(x) => SocketAddr::new(x.ip().to_ipv6_mapped().into(), x.port()),
        x => x,
    }
}

/// Check the guest's next datagram to `to`: from `from`, with `payload`,
/// its checksum right.
fn expect_back(ctx: &Ctx, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Result<()> {
    let s = wire::expect_sent(&ctx.tun, to, TIMEOUT)?;
    ensure_eq!(s.src, from, "source of the reply to {to}");
    ensure_eq!(s.payload, payload.to_vec(), "payload of the reply to {to}");
    ensure_eq!(s.checksum_ok, true, "UDP checksum of the reply to {to}");
    Ok(())
}

/// Check that the listed counters moved by exactly these amounts.
fn counts(before: &Stats, want: &[(&str, u64)]) -> Result<()> {
    let d = kmod::delta(before, &kmod::stats()?);
    for (name, n) in want {
        let got = d.get(*name).copied().unwrap_or(0);
        if got != *n {
            bail!("counter {name} moved by {got}, want {n} (all moves: {d:?})");
        }
    }
    Ok(())
}

/// Send `first` (an announcement, or a datagram carrying a UOA), then a
/// datagram "ping"; check the app sees every datagram from the client,
/// answer "pong", check the answer goes back to LIP:lport.
fn roundtrip(ctx: &Ctx, s: &UdpSocket, f: &Flow, first: &[u8]) -> Result<()> {
    ctx.tun.send(first)?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"ping"))?;
    let want = if s.local_addr()?.is_ipv6() && f.client.is_ipv4() {
        mapped(f.client)
    } else {
        f.client
    };
    let from = loop {
        let (p, from) = recv(s)?;
        ensure_eq!(
            from,
            want,
            "recvfrom() source of {:?}",
            String::from_utf8_lossy(&p)
        );
        if p == b"ping" {
            break from;
        }
    };
    s.send_to(b"pong", from)?;
    expect_back(ctx, f.rs, f.lip, b"pong")
}

fn announce_lvs(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6001);
    let s = bind(f.rs)?;
    let before = kmod::stats()?;
    roundtrip(ctx, &s, &f, &f.announce().packet())?;
    counts(
        &before,
        &[
            ("ca_icmp_ok", 1),
            ("ca_icmp_bad", 0),
            ("udp_flow_new", 1),
            ("udp_rx_rewrite", 1),
            ("udp_tx_rewrite", 1),
        ],
    )?;
    // The flow's later datagrams too, and the echo request was answered.
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"again"))?;
    ensure_eq!(recv(&s)?.1, f.client, "second datagram's source");
    Ok(())
}

fn announce_packed(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6002);
    let s = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 6002))?;
    let mut a = f.announce();
    a.padded = false;
    a.kind = 200;
    a.ident = [0x12, 0x34];
    ctx.tun.send(&a.packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"ping"))?;
    let (p, from) = wire::recvmsg(s.as_raw_fd())?;
    ensure_eq!((p, from), (b"ping".to_vec(), f.client), "recvmsg()");
    wire::sendmsg(s.as_raw_fd(), b"pong", &from)?;
    expect_back(ctx, f.rs, f.lip, b"pong")
}

/// An announcement made into a packet toa must refuse.
type Spoil = Box<dyn Fn(&Announce) -> Vec<u8>>;

fn announce_refused(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let s = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 6003))?;
    // Each refused announcement leaves its datagram from the balancer.
    let tries: Vec<(&str, Spoil, &str)> = vec![
        (
            "bad magic",
            Box::new(|a: &Announce| {
                a.packet_with(|m| {
                    m[8] = 124;
                    wire::fix_icmp_checksum(m)
                })
            }),
            "",
        ),
        (
            "bad checksum",
            Box::new(|a: &Announce| a.packet_with(|m| m[2] ^= 0x10)),
            "ca_icmp_bad",
        ),
        (
            "truncated",
            Box::new(|a: &Announce| {
                a.packet_with(|m| {
                    m.truncate(m.len() - 3);
                    wire::fix_icmp_checksum(m)
                })
            }),
            "ca_icmp_bad",
        ),
        (
            "unknown opcode",
            Box::new(|a: &Announce| {
                let mut b = Announce { kind: 99, ..*a };
                b.padded = true;
                b.packet()
            }),
            "ca_icmp_bad",
        ),
        (
            "bad option size",
            Box::new(|a: &Announce| {
                a.packet_with(|m| {
                    m[17] = 20;
                    wire::fix_icmp_checksum(m)
                })
            }),
            "ca_icmp_bad",
        ),
    ];
    for (what, make, counter) in tries {
        let f = flow4(6003);
        let before = kmod::stats()?;
        ctx.tun.send(&make(&f.announce()))?;
        ctx.tun.send(&wire::datagram(f.lip, f.rs, b"ping"))?;
        ensure_eq!(recv(&s)?.1, f.lip, "{what}: source");
        let mut want = vec![("ca_icmp_ok", 0), ("udp_flow_new", 0)];
        if !counter.is_empty() {
            want.push((counter, 1));
        }
        counts(&before, &want).with_context(|| what.to_owned())?;
    }
    // An untrusted balancer.
    let f = flow4(6003);
    {
        let _g = SysctlGuard::set("/proc/sys/net/toa/trusted_sources", "10.0.0.99/32")?;
        let before = kmod::stats()?;
        ctx.tun.send(&f.announce().packet())?;
        ctx.tun.send(&wire::datagram(f.lip, f.rs, b"ping"))?;
        ensure_eq!(recv(&s)?.1, f.lip, "untrusted: source");
        counts(&before, &[("udp_untrusted", 1), ("udp_flow_new", 0)])?;
    }
    // The echo request of an announcement is answered as usual.
    let f = flow4(6003);
    ctx.tun.drain();
    ctx.tun.send(&f.announce().packet())?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let Some(p) = ctx
            .tun
            .recv(deadline.saturating_duration_since(Instant::now()))?
        else {
            bail!("no echo reply to the announcement");
        };
        if p.len() >= 28 && p[0] >> 4 == 4 && p[9] == wire::ICMP && p[20] == 0 {
            ensure_eq!(&p[16..20], &LB.octets()[..], "echo reply destination");
            break;
        }
    }
    Ok(())
}

fn hooks_follow_trust(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6004);
    let s = bind(f.rs)?;
    // A flow while the balancer is trusted.
    roundtrip(ctx, &s, &f, &f.announce().packet())?;
    let trust = "/proc/sys/net/toa/trusted_sources";
    {
        let _g = SysctlGuard::set(trust, "\n")?;
        ensure!(
            !std::fs::read_to_string("/proc/net/toa_udp")?.contains(&f.client.ip().to_string()),
            "the flow of {} outlived the trust",
            f.client
        );
        // The flow's datagram, and a new announcement: no hook sees them.
        let before = kmod::stats()?;
        ctx.tun.send(&wire::datagram(f.lip, f.rs, b"ping"))?;
        ensure_eq!(recv(&s)?.1, f.lip, "trusting nobody: the flow's datagram");
        let g = flow4(6004);
        ctx.tun.send(&g.announce().packet())?;
        ctx.tun.send(&wire::datagram(g.lip, g.rs, b"ping"))?;
        ensure_eq!(recv(&s)?.1, g.lip, "trusting nobody: a new announcement");
        counts(
            &before,
            &[("udp_untrusted", 0), ("ca_icmp_ok", 0), ("udp_flow_new", 0)],
        )?;
    }
    // Trusted again (the guard put the list back): the hooks are back.
    let f = flow4(6004);
    roundtrip(ctx, &s, &f, &f.announce().packet())
}

/// What serves the namespace's UDP clients (`net.toa.udp_hooks`).
fn udp_hooks() -> Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/net/toa/udp_hooks")?
        .trim()
        .to_owned())
}

/// Wait (a few seconds at most) until `udp_hooks` reads `want`: a new flow
/// has work queued that chooses the hooks again.
fn udp_hooks_become(want: &str, why: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let got = udp_hooks()?;
        if got == want {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            bail!("udp_hooks is {got}, want {want}: {why}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hooks_follow_forwarding(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let s = bind(flow4(6032).rs)?;
    // Whatever the namespace's udp_hooks= says: this pass's own choice.
    let netfilter_only = ctx.params.iter().any(|p| p == "udp_hooks=netfilter");
    let (quiet, forwarding) = if netfilter_only {
        ("netfilter", "netfilter")
    } else {
        ("protocol", "netfilter")
    };
    ensure_eq!(
        udp_hooks()?,
        quiet,
        "a namespace that trusts and does not forward"
    );
    let f = flow4(6032);
    roundtrip(ctx, &s, &f, &f.announce().packet())?;
    let trust = "/proc/sys/net/toa/trusted_sources";
    let list = std::fs::read_to_string(trust)?;
    {
        let _fwd = SysctlGuard::set("/proc/sys/net/ipv4/ip_forward", "1")?;
        // The next flow notices (and is served either way).
        let f = flow4(6032);
        roundtrip(ctx, &s, &f, &f.announce().packet())?;
        udp_hooks_become(forwarding, "the namespace forwards and had a new flow")?;
        // Served by the netfilter hooks: a new flow, and the old one.
        let g = flow4(6032);
        roundtrip(ctx, &s, &g, &g.announce().packet())?;
        ctx.tun.send(&wire::datagram(f.lip, f.rs, b"ping"))?;
        ensure_eq!(
            recv(&s)?,
            (b"ping".to_vec(), f.client),
            "an older flow, netfilter's hooks"
        );
    }
    // Forwarding off again: the next flow brings the protocol-level
    // hooks back.
    let f = flow4(6032);
    roundtrip(ctx, &s, &f, &f.announce().packet())?;
    udp_hooks_become(quiet, "the namespace stopped forwarding and had a new flow")?;
    let g = flow4(6032);
    roundtrip(ctx, &s, &g, &g.announce().packet())?;
    // A trusted_sources write chooses at once.
    {
        let _fwd = SysctlGuard::set("/proc/sys/net/ipv4/ip_forward", "1")?;
        kmod::write_file(trust, list.trim())?;
        ensure_eq!(udp_hooks()?, forwarding, "a write while forwarding");
        let f = flow4(6032);
        roundtrip(ctx, &s, &f, &f.announce().packet())?;
    }
    kmod::write_file(trust, list.trim())?;
    ensure_eq!(udp_hooks()?, quiet, "a write after forwarding stopped");
    // Trusting nobody: no hook.
    let _g = SysctlGuard::set(trust, "\n")?;
    ensure_eq!(udp_hooks()?, "none", "trusting nobody");
    Ok(())
}

fn uoa_ipo(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6004);
    let s = bind(f.rs)?;
    let before = kmod::stats()?;
    roundtrip(
        ctx,
        &s,
        &f,
        &wire::ipo(v4(f.lip), v4(f.rs), f.client, b"first"),
    )?;
    // The option's own datagram came first, from the client too.
    counts(
        &before,
        &[("uoa_ipo", 1), ("udp_flow_new", 1), ("udp_rx_rewrite", 2)],
    )?;
    Ok(())
}

fn uoa_opp_v4(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6005);
    let s = bind(f.rs)?;
    let before = kmod::stats()?;
    for (i, p) in [
        wire::opp(f.lip, f.rs, f.client, b"first"),
        wire::datagram(f.lip, f.rs, b"plain"),
        wire::opp(f.lip, f.rs, f.client, b"third"),
    ]
    .iter()
    .enumerate()
    {
        ctx.tun.send(p)?;
        let got = recv(&s).with_context(|| {
            format!(
                "datagram {i}: moves {:?}",
                kmod::delta(&before, &kmod::stats().unwrap_or_default())
            )
        })?;
        ensure_eq!(got.1, f.client, "datagram {i} source");
    }
    s.send_to(b"pong", f.client)?;
    expect_back(ctx, f.rs, f.lip, b"pong")?;
    counts(
        &before,
        &[("uoa_opp", 2), ("udp_flow_new", 1), ("uoa_bad", 0)],
    )?;
    Ok(())
}

fn uoa_opp_v6(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow6(6006);
    let s = bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 6006))?;
    let before = kmod::stats()?;
    ctx.tun.send(&wire::opp(f.lip, f.rs, f.client, b"first"))?;
    ensure_eq!(recv(&s)?, (b"first".to_vec(), f.client), "the opp datagram");
    roundtrip(ctx, &s, &f, &wire::datagram(f.lip, f.rs, b"plain"))?;
    counts(
        &before,
        &[("uoa_opp", 1), ("udp_flow_new", 1), ("udp_tx_rewrite", 1)],
    )?;
    Ok(())
}

fn uoa_nat64(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let mut f = flow4(6007);
    f.client = flow6(0).client;
    let s = bind(f.rs)?;
    let before = kmod::stats()?;
    ctx.tun.send(&wire::opp(f.lip, f.rs, f.client, b"nat64"))?;
    let (p, from) = recv(&s)?;
    ensure_eq!(
        (p, from),
        (b"nat64".to_vec(), f.lip),
        "an IPv4 socket cannot show an IPv6 client"
    );
    let got = wire::uoa_lookup(s.as_raw_fd(), from, f.rs, 58)?;
    ensure_eq!(got, Ok(f.client), "UOA_SO_GET_LOOKUP");
    s.send_to(b"back", from)?;
    expect_back(ctx, f.rs, f.lip, b"back")?;
    counts(
        &before,
        &[
            ("uoa_opp", 1),
            ("udp_rx_nat64", 1),
            ("udp_rx_rewrite", 0),
            ("uoa_lookup_ok", 1),
        ],
    )?;
    Ok(())
}

fn uoa_refused(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let s = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 6008))?;
    // ipo: a UOA of length 9 (options still well formed for the kernel).
    let f = flow4(6008);
    let before = kmod::stats()?;
    let mut opts = vec![0x1f, 12, 0x9c, 0x41, 198, 51, 100, 7, 0, 0, 0, 0];
    let seg = wire::udp_segment(f.lip, f.rs, b"x");
    ctx.tun.send(&wire::ipv4(
        *v4(f.lip).ip(),
        *v4(f.rs).ip(),
        wire::UDP,
        &opts,
        &seg,
    ))?;
    ensure_eq!(recv(&s)?.1, f.lip, "ipo with a bad length: source");
    counts(&before, &[("uoa_bad", 1), ("udp_flow_new", 0)])?;
    // ipo: a zero client address.
    opts = vec![0x1f, 8, 0x9c, 0x41, 0, 0, 0, 0];
    ctx.tun.send(&wire::ipv4(
        *v4(f.lip).ip(),
        *v4(f.rs).ip(),
        wire::UDP,
        &opts,
        &seg,
    ))?;
    ensure_eq!(recv(&s)?.1, f.lip, "ipo with address 0: source");
    // opp: bad version, wrong protocol, length past the packet: never
    // delivered (the kernel has no protocol 248), counted.
    let before = kmod::stats()?;
    for hdr in [
        vec![0x30, 17, 0, 12, 0x1f, 8, 0x9c, 0x41, 198, 51, 100, 7],
        vec![0x10, 6, 0, 12, 0x1f, 8, 0x9c, 0x41, 198, 51, 100, 7],
        vec![0x10, 17, 0, 60, 0x1f, 8, 0x9c, 0x41, 198, 51, 100, 7],
        vec![0x20, 17, 0, 12, 0x1f, 8, 0x9c, 0x41, 198, 51, 100, 7],
    ] {
        ctx.tun.send(&wire::opp_raw(f.lip, f.rs, &hdr, b"bad"))?;
    }
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"plain"))?;
    let (p, from) = recv(&s)?;
    ensure_eq!(
        (p, from),
        (b"plain".to_vec(), f.lip),
        "only the plain datagram arrives"
    );
    counts(
        &before,
        &[("uoa_bad", 4), ("uoa_opp", 0), ("udp_flow_new", 0)],
    )?;
    Ok(())
}

fn uoa_empty_carrier(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6009);
    let s = bind(f.rs)?;
    // DPVS's standalone UOA: an empty datagram ahead of a full one.
    ctx.tun.send(&wire::opp(f.lip, f.rs, f.client, b""))?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"full"))?;
    ensure_eq!(recv(&s)?, (Vec::new(), f.client), "the carrier");
    ensure_eq!(recv(&s)?, (b"full".to_vec(), f.client), "the datagram");
    Ok(())
}

fn dual_stack(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6010);
    let s = bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 6010))?;
    roundtrip(ctx, &s, &f, &f.announce().packet())?;
    // An IPv6 flow on the same socket.
    let f6 = flow6(6010);
    roundtrip(ctx, &s, &f6, &wire::opp(f6.lip, f6.rs, f6.client, b"hi"))
        .context("an IPv6 flow on the dual-stack socket")
}

fn mmsg(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let s = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 6011))?;
    let flows: Vec<Flow> = (0..3).map(|_| flow4(6011)).collect();
    for f in &flows {
        ctx.tun.send(&f.announce().packet())?;
    }
    for (i, f) in flows.iter().enumerate() {
        ctx.tun
            .send(&wire::datagram(f.lip, f.rs, format!("m{i}").as_bytes()))?;
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(wire::recvmmsg(s.as_raw_fd(), 8)?);
    }
    for (i, f) in flows.iter().enumerate() {
        ensure_eq!(
            got[i].clone(),
            (format!("m{i}").into_bytes(), f.client),
            "recvmmsg() datagram {i}"
        );
    }
    let replies: Vec<(Vec<u8>, SocketAddr)> = got
        .iter()
        .map(|(p, a)| ([b"re:", &p[..]].concat(), *a))
        .collect();
    ensure_eq!(
        wire::sendmmsg(s.as_raw_fd(), &replies)?,
        3,
        "sendmmsg() sent"
    );
    let reply = |sent: &[wire::Sent], i: usize, f: &Flow| {
        let want = format!("re:m{i}").into_bytes();
        sent.iter()
            .any(|x| x.dst == f.lip && x.src == f.rs && x.payload == want && x.checksum_ok)
    };
    let sent = sent_until(ctx, |v| {
        flows.iter().enumerate().all(|(i, f)| reply(v, i, f))
    })?;
    for (i, f) in flows.iter().enumerate() {
        if !reply(&sent, i, f) {
            bail!("no reply {i} to {}: {sent:?}", f.lip);
        }
    }
    Ok(())
}

fn connected(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6012);
    ctx.tun.send(&f.announce().packet())?;
    // A datagram first: the flow is seen, then a connected socket answers.
    let s = bind(f.rs)?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"hello"))?;
    ensure_eq!(recv(&s)?.1, f.client, "recvfrom");
    drop(s);
    let c = bind(f.rs)?;
    c.connect(f.client)?;
    ensure_eq!(c.peer_addr()?, f.client, "getpeername()");
    ensure_eq!(
        sock::getpeername(c.as_raw_fd())?,
        f.client,
        "getpeername() through libc"
    );
    c.send(b"via connect")?;
    expect_back(ctx, f.rs, f.lip, b"via connect")?;
    // The connected socket receives the client's datagrams (shown as the
    // client, so they match its peer).
    ctx.tun
        .send(&wire::datagram(f.lip, f.rs, b"to connected"))?;
    let mut buf = [0u8; 64];
    let n = c.recv(&mut buf)?;
    ensure_eq!(&buf[..n], b"to connected", "recv() on the connected socket");
    Ok(())
}

fn gso(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6013);
    let s = bind(f.rs)?;
    roundtrip(ctx, &s, &f, &f.announce().packet())?;
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    // To a client without a flow, then with one.
    let stranger: SocketAddr = "198.51.100.199:1999".parse()?;
    for (to, via) in [(stranger, stranger), (f.client, f.lip)] {
        wire::send_gso(s.as_raw_fd(), &payload, &to, 1000)?;
        let sent = sent_until(ctx, |v| v.iter().filter(|x| x.dst == via).count() >= 3)?;
        let segs: Vec<_> = sent.iter().filter(|x| x.dst == via).collect();
        ensure_eq!(segs.len(), 3, "segments to {via} ({sent:?})");
        for (i, x) in segs.iter().enumerate() {
            ensure_eq!(
                x.payload,
                payload[i * 1000..(i + 1) * 1000].to_vec(),
                "segment {i} to {via}"
            );
            ensure_eq!(x.checksum_ok, true, "segment {i} to {via} checksum");
            ensure_eq!(x.src, f.rs, "segment {i} to {via} source");
        }
    }
    Ok(())
}

fn uoa_getsockopt(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6014);
    let s = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 6014))?;
    let fd = s.as_raw_fd();
    let any: SocketAddr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 6014).into();
    ctx.tun.send(&f.announce().packet())?;
    {
        // Rewriting off: the application sees the balancer and asks.
        let _g = SysctlGuard::set("/proc/sys/net/toa/udp_rewrite", "0")?;
        ctx.tun.send(&wire::datagram(f.lip, f.rs, b"a"))?;
        let from = recv(&s)?.1;
        ensure_eq!(from, f.lip, "recvfrom with udp_rewrite=0");
        ensure_eq!(
            wire::uoa_lookup(fd, from, f.rs, 58)?,
            Ok(f.client),
            "asked with LIP:lport"
        );
        ensure_eq!(
            wire::uoa_lookup(fd, from, any, 58)?,
            Ok(f.client),
            "asked with daddr any"
        );
        ensure_eq!(
            wire::uoa_lookup(fd, mapped(from), mapped(any), 58)?,
            Ok(f.client),
            "asked as AF_INET6 with ::ffff:"
        );
        // Its reply goes to LIP:lport as addressed.
        s.send_to(b"r", from)?;
        expect_back(ctx, f.rs, f.lip, b"r")?;
    }
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"b"))?;
    let from = recv(&s)?.1;
    ensure_eq!(from, f.client, "recvfrom with udp_rewrite=1");
    ensure_eq!(
        wire::uoa_lookup(fd, from, f.rs, 58)?,
        Ok(f.client),
        "asked with the client"
    );
    ensure_eq!(
        wire::uoa_lookup(fd, from, any, 64)?,
        Ok(f.client),
        "a longer buffer"
    );
    ensure_eq!(
        wire::uoa_lookup(fd, from, f.rs, 57)?,
        Err(libc::EINVAL),
        "len 57"
    );
    let mut m = [0u8; 58];
    m[0..2].copy_from_slice(&99u16.to_ne_bytes());
    ensure_eq!(wire::uoa_raw(fd, &mut m, 58)?, Err(libc::EINVAL), "af 99");
    let stranger: SocketAddr = "192.0.2.77:4444".parse()?;
    ensure_eq!(
        wire::uoa_lookup(fd, stranger, f.rs, 58)?,
        Err(libc::ENOENT),
        "no flow"
    );
    Ok(())
}

fn shared_lport(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let a = flow4(6015);
    let mut b = flow4(6016);
    b.lip = a.lip;
    let (sa, sb) = (bind(a.rs)?, bind(b.rs)?);
    ctx.tun.send(&a.announce().packet())?;
    ctx.tun.send(&b.announce().packet())?;
    ctx.tun.send(&wire::datagram(a.lip, a.rs, b"to a"))?;
    ctx.tun.send(&wire::datagram(b.lip, b.rs, b"to b"))?;
    ensure_eq!(recv(&sa)?.1, a.client, "server on port {}", a.rs.port());
    ensure_eq!(recv(&sb)?.1, b.client, "server on port {}", b.rs.port());
    sb.send_to(b"from b", b.client)?;
    expect_back(ctx, b.rs, b.lip, b"from b")?;
    sa.send_to(b"from a", a.client)?;
    expect_back(ctx, a.rs, a.lip, b"from a")
}

fn port_reuse(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let old = flow4(6017);
    let mut new = flow4(6017);
    new.lip = old.lip;
    let s = bind(old.rs)?;
    ctx.tun.send(&old.announce().packet())?;
    ctx.tun.send(&wire::datagram(old.lip, old.rs, b"old"))?;
    ensure_eq!(recv(&s)?.1, old.client, "before the reuse");
    let before = kmod::stats()?;
    ctx.tun.send(&new.announce().packet())?;
    ctx.tun.send(&wire::datagram(new.lip, new.rs, b"new"))?;
    ensure_eq!(recv(&s)?.1, new.client, "after the reuse");
    counts(&before, &[("udp_flow_replaced", 1), ("udp_flow_new", 1)])?;
    // A late reply to the old client is not sent to the new one's port.
    s.send_to(b"late", old.client)?;
    expect_back(ctx, old.rs, old.client, b"late")?;
    s.send_to(b"fresh", new.client)?;
    expect_back(ctx, new.rs, new.lip, b"fresh")
}

fn two_lips(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let a = flow4(6018);
    let mut b = flow4(6018);
    b.client = a.client;
    b.lip = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), v4(b.lip).port()).into();
    let s = bind(a.rs)?;
    ctx.tun.send(&a.announce().packet())?;
    ctx.tun.send(&wire::datagram(a.lip, a.rs, b"via a"))?;
    ensure_eq!(recv(&s)?.1, a.client, "through LIP a");
    std::thread::sleep(Duration::from_millis(1100));
    ctx.tun.send(&b.announce().packet())?;
    ctx.tun.send(&wire::datagram(b.lip, b.rs, b"via b"))?;
    ensure_eq!(recv(&s)?.1, a.client, "through LIP b");
    let before = kmod::stats()?;
    s.send_to(b"which", a.client)?;
    expect_back(ctx, a.rs, b.lip, b"which")?;
    counts(&before, &[("udp_tx_ambiguous", 1), ("udp_tx_rewrite", 1)])
}

fn named_replies(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6031);
    // Bound to every address: the socket does not know its source before
    // the kernel routes the datagram (the flow is found by its port).
    let s = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), f.rs.port()))?;
    let fd = s.as_raw_fd();
    ctx.tun.send(&f.announce().packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"hello"))?;
    ensure_eq!(recv(&s)?.1, f.client, "the datagram's source");
    let before = kmod::stats()?;
    let after = wire::sendmsg_with(fd, b"named", &f.client, 0, None)?;
    ensure_eq!(after, f.client, "the caller's address after sendmsg");
    expect_back(ctx, f.rs, f.lip, b"named")?;
    counts(&before, &[("udp_tx_rewrite", 1), ("udp_tx_ambiguous", 0)])?;
    // Corked: the first part names the client, the rest is appended.
    let before = kmod::stats()?;
    wire::sendmsg_with(fd, b"cor", &f.client, libc::MSG_MORE, None)?;
    wire::sendmsg_with(fd, b"ked", &f.client, 0, None)?;
    expect_back(ctx, f.rs, f.lip, b"corked")?;
    counts(&before, &[("udp_tx_rewrite", 1)])?;
    // IP_PKTINFO chooses the source: left to the datagram's own hook.
    let before = kmod::stats()?;
    wire::sendmsg_with(fd, b"pktinfo", &f.client, 0, Some(GUEST))?;
    expect_back(ctx, f.rs, f.lip, b"pktinfo")?;
    counts(&before, &[("udp_tx_rewrite", 1)])?;
    // A client no flow names: answered directly, nothing counted.
    let other = flow4(6031).client;
    let before = kmod::stats()?;
    s.send_to(b"direct", other)?;
    expect_back(ctx, f.rs, other, b"direct")?;
    counts(&before, &[("udp_tx_rewrite", 0)])?;
    // IPv6 (the flow a DPVS UOA named), from an AF_INET6 socket bound to
    // every address.
    let f6 = flow6(6032);
    let s6 = bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), f6.rs.port()))?;
    let fd6 = s6.as_raw_fd();
    ctx.tun
        .send(&wire::opp(f6.lip, f6.rs, f6.client, b"first"))?;
    ensure_eq!(recv(&s6)?.1, f6.client, "the IPv6 datagram's source");
    let before = kmod::stats()?;
    let after = wire::sendmsg_with(fd6, b"named6", &f6.client, 0, None)?;
    ensure_eq!(after, f6.client, "the caller's IPv6 address after sendmsg");
    expect_back(ctx, f6.rs, f6.lip, b"named6")?;
    wire::sendmsg_with(fd6, b"cor", &f6.client, libc::MSG_MORE, None)?;
    wire::sendmsg_with(fd6, b"ked6", &f6.client, 0, None)?;
    expect_back(ctx, f6.rs, f6.lip, b"corked6")?;
    let other6 = flow6(6032).client;
    s6.send_to(b"direct6", other6)?;
    expect_back(ctx, f6.rs, other6, b"direct6")?;
    counts(&before, &[("udp_tx_rewrite", 2), ("udp_tx_ambiguous", 0)])
}

/// What a local user (`nobody`, no capabilities) can make the send hooks
/// do with a flow's client: a socket of its own (its own port) sending to
/// the client through `sendto()` (the sendmsg hook) is not named to the
/// balancer (the flow is the server's socket's port); and it cannot bind
/// the server's port to send from it, whatever socket options it sets
/// (the kernel shares a port only between sockets of one user that all
/// ask for it).
fn unprivileged_sender(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6033);
    let s = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), f.rs.port()))?;
    ctx.tun.send(&f.announce().packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"hello"))?;
    ensure_eq!(recv(&s)?.1, f.client, "the datagram's source");
    // A port that shares the flow's bit in the trampolines' bitmap of
    // ports with flows (2048 bits): the hook's own lookup says no.
    let port = f.rs.port() + 2048;
    let nobody: u32 = super::common::NOBODY.parse()?;
    let before = kmod::stats()?;
    let binds = sock::udp_as_user(nobody, port, v4(f.client), b"from nobody", f.rs.port())?;
    expect_back(
        ctx,
        SocketAddr::new(GUEST.into(), port),
        f.client,
        b"from nobody",
    )?;
    counts(&before, &[("udp_tx_rewrite", 0), ("udp_tx_ambiguous", 0)])?;
    ensure_eq!(
        binds,
        [libc::EADDRINUSE; 3],
        "binding the flow's port as nobody: plainly, with SO_REUSEADDR, with SO_REUSEPORT"
    );
    // The server's own socket still answers through the balancer.
    s.send_to(b"server", f.client)?;
    expect_back(ctx, f.rs, f.lip, b"server")
}

fn expiry(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    // A flow is gone once unseen for more than the timeout (3 s); its
    // packets refresh it at most once a second (flow_table::REFRESH_MS),
    // and a socket keeps its flows a second longer (live_jiffies). Only
    // what the guest's own clock allows is asserted: a datagram sent at
    // least REFRESH after the previous one was received refreshes the
    // flow, and one received at most ALIVE after the previous one was sent
    // (the kernel saw both in between) finds it; a gap longer than ALIVE
    // (a busy machine) proves nothing, and the flow is tried afresh.
    const REFRESH: Duration = Duration::from_millis(1100);
    const ALIVE: Duration = Duration::from_millis(2900);
    // Traffic keeps it alive this long after its first datagram: more
    // than the timeout and its second of grace.
    const SPAN: Duration = Duration::from_millis(4500);
    let _g = SysctlGuard::set("/proc/sys/net/toa/udp_timeout", "3")?;
    let mut too_slow = Vec::new();
    let (f, s) = 'attempt: loop {
        if too_slow.len() == 5 {
            bail!("every attempt had a gap over {ALIVE:?} between two datagrams (the guest is too busy): {too_slow:?}");
        }
        let f = flow4(6019);
        let s = bind(f.rs)?;
        let mut prev_sent = Instant::now();
        ctx.tun.send(&f.announce().packet())?;
        let mut first = None;
        for i in 0.. {
            let sent = Instant::now();
            ctx.tun.send(&wire::datagram(f.lip, f.rs, b"alive"))?;
            let got = recv(&s)?.1;
            let received = Instant::now();
            let gap = received - prev_sent;
            if gap > ALIVE {
                too_slow.push(format!("datagram {i}: {gap:?}"));
                continue 'attempt;
            }
            ensure_eq!(
                got,
                f.client,
                "datagram {i}, at most {gap:?} after the one before"
            );
            let first = *first.get_or_insert(received);
            if sent.saturating_duration_since(first) > SPAN {
                break 'attempt (f, s);
            }
            prev_sent = sent;
            std::thread::sleep(REFRESH);
        }
        unreachable!();
    };
    if !too_slow.is_empty() {
        println!("# expiry: attempts given up for gaps over {ALIVE:?}: {too_slow:?}");
    }
    // Unseen for longer than the timeout and its grace: gone (a gap that
    // only a busier machine makes longer).
    std::thread::sleep(Duration::from_millis(4500));
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"late"))?;
    ensure_eq!(recv(&s)?.1, f.lip, "after 4.5 s unseen");
    s.send_to(b"to client", f.client)?;
    expect_back(ctx, f.rs, f.client, b"to client")?;
    let before = kmod::stats()?;
    ctx.tun.send(&f.announce().packet())?;
    counts(&before, &[("udp_flow_new", 1), ("udp_flow_expired", 1)])?;
    Ok(())
}

fn tcp_fallback(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    let port = l.local_addr()?.port();
    let lip = SocketAddrV4::new(LB, peer::next_port());
    let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 250), 40250);
    let mut a = Announce::lvs(lip, SocketAddrV4::new(GUEST, port), client);
    a.tcp = true;
    ctx.tun.send(&a.packet())?;
    let before = kmod::stats()?;
    let remote = SocketAddr::new(GUEST.into(), port);
    let _conn = Conn::open(&ctx.tun, lip.into(), remote, &Handshake::default())?;
    let (fd, accepted) = sock::accept(&l, Accept::Accept4)?;
    ensure_eq!(accepted, SocketAddr::from(client), "accept()");
    ensure_eq!(
        sock::getpeername(fd.as_raw_fd())?,
        SocketAddr::from(client),
        "getpeername()"
    );
    counts(&before, &[("toa_icmp_used", 1), ("syn_recv_sock_toa", 1)])?;
    // A handshake's own option wins over the announcement.
    let lip2 = SocketAddrV4::new(LB, peer::next_port());
    let mut a2 = Announce::lvs(lip2, SocketAddrV4::new(GUEST, port), client);
    a2.tcp = true;
    ctx.tun.send(&a2.packet())?;
    let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 251), 40251);
    let hs = Handshake {
        ack_options: super::common::opt4(200, other),
        ..Handshake::default()
    };
    let _conn2 = Conn::open(&ctx.tun, lip2.into(), remote, &hs)?;
    let (_fd2, accepted2) = sock::accept(&l, Accept::Accept4)?;
    ensure_eq!(accepted2, SocketAddr::from(other), "the option's client");
    Ok(())
}

const PY_UDP_SERVER: &str = r#"
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
data, addr = s.recvfrom(2048)
print("from", addr[0], addr[1], flush=True)
s.sendto(b"py:" + data, addr)
"#;

fn servers(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    // Python.
    let f = flow4(6020);
    let mut py = Server::start(
        "python3",
        &[
            "-c".into(),
            PY_UDP_SERVER.into(),
            "0.0.0.0".into(),
            "6020".into(),
        ],
    )?;
    ctx.tun.send(&f.announce().packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"hi"))?;
    let c = f.client;
    ensure_eq!(
        py.line()?,
        format!("from {} {}", c.ip(), c.port()),
        "Python recvfrom"
    );
    expect_back(ctx, f.rs, f.lip, b"py:hi")?;
    py.finish()?;
    // The C example, each receive call, the UOA lookup beside it.
    let Some(server) = &ctx.c_udp_server else {
        bail!("--c-udp-server not given");
    };
    for (mode, port) in [("recvfrom", 6021), ("recvmsg", 6022), ("recvmmsg", 6023)] {
        let f = flow4(port);
        let mut srv = Server::start(
            &server.display().to_string(),
            &["0.0.0.0".into(), port.to_string(), "1".into(), mode.into()],
        )?;
        ctx.tun
            .send(&wire::ipo(v4(f.lip), v4(f.rs), f.client, b"c"))?;
        ensure_eq!(
            srv.line()?,
            format!("from={} uoa={} len=1", f.client, f.client),
            "C server with {mode}"
        );
        expect_back(ctx, f.rs, f.lip, b"c")?;
        srv.finish()?;
    }
    // The Rust example (toa-client), a NAT64 flow: the datagram shows the
    // balancer, the lookup the IPv6 client.
    let Some(rust) = &ctx.rust_server else {
        bail!("--rust-server not given");
    };
    let rust = rust.with_file_name("toa_udp_server");
    let mut f = flow4(6028);
    f.client = flow6(0).client;
    let mut srv = Server::start(
        &rust.display().to_string(),
        &["0.0.0.0".into(), "6028".into(), "1".into()],
    )?;
    ctx.tun.send(&wire::opp(f.lip, f.rs, f.client, b"r"))?;
    ensure_eq!(
        srv.line()?,
        format!("from={} real={}", f.lip, f.client),
        "Rust example server, NAT64"
    );
    expect_back(ctx, f.rs, f.lip, b"r")?;
    srv.finish()
}

const PY_RAW_ANNOUNCE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 0))
"#;

fn procfs_and_netns(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6024);
    ctx.tun.send(&f.announce().packet())?;
    let f6 = flow6(6024);
    ctx.tun.send(&wire::opp(f6.lip, f6.rs, f6.client, b""))?;
    // Both announcements are taken in the kernel's time: wait for them.
    let want = format!("udp {} {} {} icmp ", f.lip, f.client, f.rs);
    let want6 = format!("udp {} {} {} opp ", f6.lip, f6.client, f6.rs);
    let deadline = Instant::now() + TIMEOUT;
    let text = loop {
        let text = std::fs::read_to_string("/proc/net/toa_udp")?;
        let has = |w: &str| text.lines().any(|l| l.starts_with(w));
        if (has(&want) && has(&want6)) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure_eq!(
        text.lines().next(),
        Some("proto balancer client backend via age idle"),
        "header"
    );
    if !text.lines().any(|l| l.starts_with(&want)) {
        bail!("/proc/net/toa_udp has no line {want:?}:\n{text}");
    }
    if !text.lines().any(|l| l.starts_with(&want6)) {
        bail!("/proc/net/toa_udp has no line {want6:?}:\n{text}");
    }
    // Another namespace: its own (empty) list, then a flow of its own from
    // a balancer in a third namespace (through a veth: the namespace's own
    // loopback would be the host itself, which names no client), which
    // goes when the namespace does.
    let ns = "toa-udp-test";
    let lb = "toa-udp-lb";
    let _ = toa_test::sh(&format!(
        "ip netns del {ns} 2>/dev/null; ip netns del {lb} 2>/dev/null"
    ));
    toa_test::sh(&format!(
        "ip netns add {ns} && ip netns add {lb} && \
         ip link add tu0 netns {ns} type veth peer name tu1 netns {lb} && \
         ip -n {ns} addr add 192.0.2.1/24 dev tu0 && ip -n {lb} addr add 192.0.2.2/24 dev tu1 && \
         ip -n {ns} link set tu0 up && ip -n {lb} link set tu1 up && \
         ip -n {ns} link set lo up && ip -n {lb} link set lo up"
    ))?;
    let result = (|| -> Result<()> {
        let there = toa_test::sh(&format!("ip netns exec {ns} cat /proc/net/toa_udp"))?;
        ensure_eq!(
            there.lines().count(),
            1,
            "a new namespace's list: {there:?}"
        );
        let a = Announce::lvs(
            "192.0.2.2:5353".parse()?,
            "192.0.2.1:53".parse()?,
            "198.51.100.99:9999".parse()?,
        );
        let hex: String = a.message().iter().map(|b| format!("{b:02x}")).collect();
        // The veth may take a moment to carry packets: announce until the
        // flow shows (an announcement of the same flow only refreshes it).
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            toa_test::sh(&format!(
                "ip netns exec {lb} python3 -c '{PY_RAW_ANNOUNCE}' {hex} 192.0.2.1"
            ))?;
            std::thread::sleep(Duration::from_millis(200));
            let there = toa_test::sh(&format!("ip netns exec {ns} cat /proc/net/toa_udp"))?;
            let line = there
                .lines()
                .nth(1)
                .map(|l| l.split(' ').take(5).collect::<Vec<_>>().join(" "));
            if line.is_some() || Instant::now() > deadline {
                break line;
            }
        };
        ensure_eq!(
            line,
            Some("udp 192.0.2.2:5353 198.51.100.99:9999 192.0.2.1:53 icmp".to_owned()),
            "the namespace's flow"
        );
        let here = std::fs::read_to_string("/proc/net/toa_udp")?;
        if here.contains("198.51.100.99:9999") {
            bail!("the init namespace lists another namespace's flow");
        }
        Ok(())
    })();
    let _ = toa_test::sh(&format!("ip netns del {lb}"));
    let before = kmod::stats()?;
    toa_test::sh(&format!("ip netns del {ns}"))?;
    result?;
    // Namespaces are torn down by a worker: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while kmod::delta(&before, &kmod::stats()?)
        .get("udp_flow_expired")
        .copied()
        .unwrap_or(0)
        < 1
    {
        if Instant::now() > deadline {
            bail!("the namespace's flow was not dropped with it");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn settings(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    for (name, value) in [
        ("udp_rewrite", "1"),
        ("udp_timeout", "330"),
        ("udp_max_flows", "8192"),
    ] {
        ensure_eq!(kmod::sysctl(name)?, value, "default {name}");
        let p = std::fs::read_to_string(format!("/sys/module/toa/parameters/{name}"))?;
        ensure_eq!(p.trim(), value, "parameter {name}");
    }
    for (name, bad) in [
        ("udp_rewrite", "2"),
        ("udp_rewrite", "yes"),
        ("udp_timeout", "0"),
        ("udp_timeout", "86401"),
        ("udp_timeout", "-1"),
        ("udp_max_flows", "1048577"),
        ("udp_max_flows", "many"),
    ] {
        let before = kmod::sysctl(name)?;
        match kmod::set_sysctl(name, bad) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => bail!("{name} = {bad}: {other:?}"),
        }
        ensure_eq!(kmod::sysctl(name)?, before, "{name} after a bad write");
    }
    // A resize keeps the live flows.
    let f = flow4(6025);
    let s = bind(f.rs)?;
    ctx.tun.send(&f.announce().packet())?;
    {
        let _g = SysctlGuard::set("/proc/sys/net/toa/udp_max_flows", "100000")?;
        ensure_eq!(kmod::sysctl("udp_max_flows")?, "100000", "resized");
        ctx.tun.send(&wire::datagram(f.lip, f.rs, b"kept"))?;
        ensure_eq!(recv(&s)?.1, f.client, "after growing the table");
    }
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"kept"))?;
    ensure_eq!(recv(&s)?.1, f.client, "after shrinking it back");
    // 0: no table, no UDP clients; the module still loads so.
    {
        let _g = SysctlGuard::set("/proc/sys/net/toa/udp_max_flows", "0")?;
        ensure_eq!(
            kmod::stats()?.get("udp_flows").copied(),
            Some(0),
            "no table, no flows"
        );
        ctx.tun.send(&wire::datagram(f.lip, f.rs, b"off"))?;
        ensure_eq!(recv(&s)?.1, f.lip, "without a table");
    }
    kmod::rmmod()?;
    ctx.insmod(&["udp_max_flows=64", "udp_timeout=5", "udp_rewrite=0"])?;
    let got = (
        kmod::sysctl("udp_max_flows")?,
        kmod::sysctl("udp_timeout")?,
        kmod::sysctl("udp_rewrite")?,
    );
    kmod::rmmod()?;
    ensure_eq!(
        got,
        ("64".into(), "5".into(), "0".into()),
        "set by parameters"
    );
    for bad in ["udp_timeout=0", "udp_rewrite=3", "udp_max_flows=-5"] {
        if ctx.insmod(&[bad]).is_ok() {
            kmod::rmmod()?;
            bail!("insmod toa {bad} succeeded");
        }
    }
    ctx.insmod(&[])
}

/// The `i`-th flow of a flood: distinct balancer ports and clients.
fn flood_flow(i: u32, rsport: u16) -> Flow {
    Flow {
        lip: SocketAddrV4::new(
            Ipv4Addr::new(10, 0, 0, 2 + (i / 60000) as u8),
            1024 + (i % 60000) as u16,
        )
        .into(),
        rs: SocketAddrV4::new(GUEST, rsport).into(),
        client: SocketAddrV4::new(Ipv4Addr::from(0xc000_0000 | i), 1000 + (i % 1000) as u16).into(),
    }
}

fn meminfo(key: &str) -> Result<u64> {
    let m = std::fs::read_to_string("/proc/meminfo")?;
    m.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("{key} in /proc/meminfo"))
}

fn flood(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let _g = SysctlGuard::set("/proc/sys/net/toa/udp_max_flows", "1024")?;
    let before = kmod::stats()?;
    let slab = meminfo("Slab:")?;
    let start = Instant::now();
    let n = ctx.flood.max(4096);
    for i in 0..n {
        ctx.tun.send(&flood_flow(i, 6026).announce().packet())?;
    }
    let took = start.elapsed();
    // The last flow works.
    let f = flood_flow(n - 1, 6026);
    let s = bind(f.rs)?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"last"))?;
    ensure_eq!(recv(&s)?.1, f.client, "the flood's last flow");
    let after = kmod::stats()?;
    let d = kmod::delta(&before, &after);
    let g = |k: &str| d.get(k).copied().unwrap_or(0);
    let flows = after.get("udp_flows").copied().unwrap_or(0);
    let flows_before = before.get("udp_flows").copied().unwrap_or(0);
    println!(
        "# flood: {n} announcements in {took:?}: ok {}, new {}, replaced {}, expired {}, evicted {}, flows {flows_before} -> {flows}, slab {slab} -> {} kB",
        g("ca_icmp_ok"), g("udp_flow_new"), g("udp_flow_replaced"), g("udp_flow_expired"), g("udp_flow_evicted"), meminfo("Slab:")?
    );
    ensure_eq!(g("ca_icmp_ok"), u64::from(n), "announcements taken");
    ensure_eq!(g("udp_flow_new"), u64::from(n), "flows recorded");
    // Every flow recorded is still there or left by exactly one door.
    ensure_eq!(
        g("udp_flow_new") + flows_before,
        g("udp_flow_replaced") + g("udp_flow_expired") + g("udp_flow_evicted") + flows,
        "flows in = flows out + flows left"
    );
    // 1024 flows: 2048 slots.
    if !(512..=2048).contains(&flows) {
        bail!("{flows} flows in a table for 1024");
    }
    let listed = std::fs::read_to_string("/proc/net/toa_udp")?
        .lines()
        .count()
        - 1;
    if listed as u64 > flows {
        bail!("/proc/net/toa_udp lists {listed} flows, the table holds {flows}");
    }
    // Nothing allocated per announcement (the echo replies come and go).
    let grew = meminfo("Slab:")?.saturating_sub(slab);
    if grew > 4096 {
        bail!("slab grew by {grew} kB during the flood");
    }
    Ok(())
}

fn unload_with_flows(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let f = flow4(6027);
    let s = bind(f.rs)?;
    ctx.tun.send(&f.announce().packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"1"))?;
    ensure_eq!(recv(&s)?.1, f.client, "before rmmod");
    kmod::rmmod()?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"2"))?;
    ensure_eq!(
        recv(&s)?,
        (b"2".to_vec(), f.lip),
        "without toa: the balancer"
    );
    s.send_to(b"r", f.lip)?;
    expect_back(ctx, f.rs, f.lip, b"r")?;
    ctx.insmod(&[])?;
    ensure_eq!(
        std::fs::read_to_string("/proc/net/toa_udp")?
            .lines()
            .count(),
        1,
        "a fresh table"
    );
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"3"))?;
    ensure_eq!(
        recv(&s)?.1,
        f.lip,
        "after insmod, before a new announcement"
    );
    ctx.tun.send(&f.announce().packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"4"))?;
    ensure_eq!(recv(&s)?.1, f.client, "after a new announcement");
    Ok(())
}

fn udp_off(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    kmod::rmmod()?;
    ctx.insmod(&["udp=0"])?;
    let result = udp_off_checks(ctx);
    kmod::rmmod()?;
    ctx.insmod(&[])?;
    result
}

fn udp_off_checks(ctx: &Ctx) -> Result<()> {
    ensure_eq!(
        kmod::dmesg()?.contains("UDP clients off (udp=0)"),
        true,
        "the load line for udp=0"
    );
    ensure_eq!(
        std::path::Path::new("/proc/net/toa_udp").exists(),
        false,
        "/proc/net/toa_udp with udp=0"
    );
    ensure_eq!(udp_hooks()?, "none", "net.toa.udp_hooks with udp=0");
    let before = kmod::stats()?;
    let f = flow4(6029);
    let s = bind(f.rs)?;
    ctx.tun.send(&f.announce().packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"1"))?;
    ensure_eq!(recv(&s)?, (b"1".to_vec(), f.lip), "udp=0: the balancer");
    ensure_eq!(
        wire::uoa_lookup(s.as_raw_fd(), f.lip, f.rs, 58)?,
        Err(libc::ENOPROTOOPT),
        "UOA_SO_GET_LOOKUP with udp=0"
    );
    kmod::expect_delta(&before, &[])?;
    // TCP is still served.
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 252), 40252);
    let hs = Handshake {
        ack_options: super::common::opt4(200, client),
        ..Handshake::default()
    };
    let lip = SocketAddr::new(LB.into(), peer::next_port());
    let _conn = Conn::open(&ctx.tun, lip, remote, &hs)?;
    let (_fd, accepted) = sock::accept(&l, Accept::Accept4)?;
    ensure_eq!(accepted, SocketAddr::from(client), "TCP with udp=0");
    Ok(())
}

/// One io_uring operation on `ring`, waited for; its result.
fn uring_one(ring: &mut io_uring::IoUring, sqe: &io_uring::squeue::Entry) -> Result<i32> {
    // SAFETY: the buffers `sqe` points to belong to the caller and outlive
    // this call, which waits for the completion.
    unsafe { ring.submission().push(sqe) }.context("io_uring queue full")?;
    ring.submit_and_wait(1)?;
    let cqe = ring.completion().next().context("no io_uring completion")?;
    Ok(cqe.result())
}

fn io_uring_paths(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    let mut ring = match io_uring::IoUring::new(4) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            return Err(crate::Skip("this kernel is built without io_uring".into()).into());
        }
        Err(e) => return Err(e).context("io_uring_setup"),
    };
    let f = flow4(6031);
    let s = bind(f.rs)?;
    ctx.tun.send(&f.announce().packet())?;
    ctx.tun.send(&wire::datagram(f.lip, f.rs, b"uring"))?;
    // Wait for the datagram (a lost one fails here, not in a hung ring).
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    ensure_eq!(
        unsafe { libc::poll(&mut pfd, 1, 3000) },
        1,
        "datagram arrived"
    );

    let mut buf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::addr_of_mut!(name).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let fd = io_uring::types::Fd(s.as_raw_fd());
    let n = uring_one(
        &mut ring,
        &io_uring::opcode::RecvMsg::new(fd, &mut msg).build(),
    )?;
    ensure_eq!(n, 5, "io_uring RecvMsg length");
    ensure_eq!(&buf[..5], b"uring", "io_uring RecvMsg data");
    let from = wire::from_sockaddr(&name)?;
    ensure_eq!(from, f.client, "io_uring RecvMsg source");

    // The answer to the client, through io_uring, goes to LIP:lport.
    let mut out = *b"back";
    let mut oiov = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let (mut to, to_len) = wire::to_sockaddr(&f.client);
    // SAFETY: all-zero is a valid msghdr.
    let mut omsg: libc::msghdr = unsafe { std::mem::zeroed() };
    omsg.msg_name = std::ptr::addr_of_mut!(to).cast();
    omsg.msg_namelen = to_len;
    omsg.msg_iov = &mut oiov;
    omsg.msg_iovlen = 1;
    let n = uring_one(
        &mut ring,
        &io_uring::opcode::SendMsg::new(fd, &omsg).build(),
    )?;
    ensure_eq!(n, 4, "io_uring SendMsg length");
    expect_back(ctx, f.rs, f.lip, b"back")
}
