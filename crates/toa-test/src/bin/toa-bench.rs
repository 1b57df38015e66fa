//! toa-bench: what toa costs, measured in a test VM (`make bench`).
//!
//! A/B against the same kernel without the module, for each hook mechanism,
//! in interleaved repetitions (the order rotates every repetition, so drift
//! in the host's speed spreads over all variants). Every client comes from
//! the balancer: the test peer on the tun device (10.0.0.2, fd00::2), the
//! only trusted source (`trusted_sources`); toa never takes a client from
//! the host itself (loopback, a local source address). Each repetition
//! measures, per variant:
//!
//! 1. getpeername() on a loopback TCP socket without a client (what every
//!    other service on the host pays), on a socket whose handshake named an
//!    IPv4 client, and on one with an IPv6 client (the record lookup);
//! 2. one loopback connection without an option: connect(), accept4(),
//!    close() of both ends (what every connection of the host pays);
//! 3. one connection from the balancer whose handshake ACK names an IPv4
//!    client, accepted with accept4(), asked getpeername() once, closed:
//!    the time in the kernel (the system calls that hand the peer's
//!    packets to the kernel and take its SYN-ACK back, accept4(),
//!    getpeername(), close(); not the peer's packet building); and, inside
//!    it, the accept4() + getpeername() calls alone;
//! 4. UDP: request/response round trips between two loopback sockets (in a
//!    namespace without flows, then with one); and round trips from the
//!    balancer (its datagram handed to the kernel on the tun, recvfrom(),
//!    sendto() back to where it came from, the answer taken off the tun):
//!    in a namespace without flows, to a port without flows, to a port with
//!    a flow from another source (looked up, missed), and on the flow an
//!    ip_vs_ca announcement from the balancer named (the request shown from
//!    the client, the answer sent back to the balancer's LIP:lport);
//! 5. memory: toa's allocations per connection, from its own counters;
//! 6. (`--scaling`) getpeername() on IPv6 sockets with a client from 1 and
//!    from 2 threads: how the rate scales with CPUs.
//!
//! Two clocks (`--clock`):
//!
//! - `wall`: the guest's clock under multi-threaded TCG; noisy, reported as
//!   the median and range of the per-repetition ratios;
//! - `icount`: the VM runs with QEMU's `-icount shift=0,sleep=off` on one
//!   vCPU, where the guest clock advances one nanosecond per emulated
//!   instruction: a timed loop counts instructions, deterministically. The
//!   bench prints instructions per operation.
//!
//! Each ratio is rate loaded / rate unloaded (1.0 = free). The last lines
//! are a table: per operation, the cost unloaded and, per variant, the
//! cost, its delta over unloaded and the ratio.
//!
//! `toa-bench --module toa.ko [--clock wall|icount] [--reps N]
//!  [--hooks ftrace,kretprobe,...] [--scaling] [--netfilter]`
//! (`--netfilter`: with empty nftables chains on the hooks toa uses, as on
//! a host that already uses netfilter); a variant may carry more
//! module parameters after `+` (`direct+udp=0`), and another build of the
//! module after `@` (`direct+udp=0@/tmp/toa-omit.ko`: the breakdowns of
//! `BENCH_OMIT`, scripts/bench.sh).
//!
//! `--profile conn4|loop|gp4|gp6|udp-flow N` measures nothing: with the first
//! variant loaded it runs that operation N times and unloads the module.
//! For one-off instrumented builds that count their own instructions
//! (under icount the guest's TSC counts instructions) and print them at
//! unload; docs/performance.md says how.

use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
    UdpSocket,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use toa_test::peer::{self, opt4, opt6, Conn, Handshake, GUEST, LB, LB6};
use toa_test::sock::{self, Accept};
use toa_test::udp::{self as wire, Announce};
use toa_test::{kmod, tun::Tun};

/// TOA's option kinds: an IPv4 client, an IPv6 client.
const KIND4: u8 = 200;
const KIND6: u8 = 254;

/// A module state to measure: unloaded, or loaded with a hook mechanism.
#[derive(Clone, Debug)]
struct Variant {
    name: String,
    hook: Option<String>,
    /// More module parameters (`--hooks direct+udp=0`: `udp=0`).
    params: Vec<String>,
    /// Another build of the module to load (`--hooks direct@PATH`).
    module: Option<PathBuf>,
}

impl Variant {
    /// Whether toa serves UDP in this variant (loaded, without `udp=0`).
    fn udp(&self) -> bool {
        self.hook.is_some() && !self.params.iter().any(|p| p == "udp=0") && self.trusts()
    }

    /// Whether the balancer is trusted: not with `+trusted_sources=`, the
    /// defaults (nobody trusted: no client is shown, no UDP hook is
    /// registered and no new connection is hooked), measured as they are.
    fn trusts(&self) -> bool {
        !self.params.iter().any(|p| p == "trusted_sources=")
    }
}

/// The measurements of one variant in one repetition, as rates (operations
/// per second of the guest clock: with icount, per 10^9 instructions).
/// Connection rates and the UDP rates from the balancer come from the
/// median operation; the others from a loop.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// getpeername() per second, loopback socket without a client.
    peer_plain: f64,
    /// getpeername() per second, socket with an IPv4 client.
    peer_toa: f64,
    /// getpeername() per second, socket with an IPv6 client.
    peer_toa6: f64,
    /// Loopback connections per second (connect, accept4, close both ends).
    loopback: f64,
    /// Connections per second from the balancer naming an IPv4 client
    /// (handshake, accept4, getpeername, close).
    setup: f64,
    /// accept4() + getpeername() pairs per second (the calls alone).
    accept: f64,
    /// UDP loopback round trips per second, the namespace without flows.
    udp_lo: f64,
    /// UDP loopback round trips per second, the namespace with a flow.
    udp_lo_ns: f64,
    /// UDP round trips per second from the balancer, no flow in the
    /// namespace.
    udp_plain: f64,
    /// ... to a port without flows, the namespace with one.
    udp_miss: f64,
    /// ... to a backend port with a flow from another source (each
    /// datagram looked up and missed).
    udp_port: f64,
    /// ... on a flow (rewritten both ways).
    udp_flow: f64,
}

/// The metrics, in the order they are printed: short label (per-repetition
/// lines), name (ratios and table).
#[allow(clippy::type_complexity)]
const METRICS: [(&str, &str, fn(&Sample) -> f64); 12] = [
    ("gp", "getpeername, socket without a client", |s| {
        s.peer_plain
    }),
    ("gp4", "getpeername, socket with an IPv4 client", |s| {
        s.peer_toa
    }),
    ("gp6", "getpeername, socket with an IPv6 client", |s| {
        s.peer_toa6
    }),
    (
        "lo-conn",
        "loopback connection, no option: connect+accept+close",
        |s| s.loopback,
    ),
    (
        "conn4",
        "connection naming an IPv4 client (+getpeername, close)",
        |s| s.setup,
    ),
    ("accept", "  its accept4 + getpeername", |s| s.accept),
    (
        "udp-lo",
        "UDP loopback round trip, no flow in the namespace",
        |s| s.udp_lo,
    ),
    (
        "udp-lo-ns",
        "UDP loopback round trip, the namespace has a flow",
        |s| s.udp_lo_ns,
    ),
    (
        "udp",
        "UDP round trip, balancer, no flow in the namespace",
        |s| s.udp_plain,
    ),
    (
        "udp-miss",
        "UDP round trip, balancer, port without flows",
        |s| s.udp_miss,
    ),
    (
        "udp-port",
        "UDP round trip, balancer, port with another's flow",
        |s| s.udp_port,
    ),
    (
        "udp-flow",
        "UDP round trip on a flow (client shown, answer to LIP)",
        |s| s.udp_flow,
    ),
];

/// The client the bench's UDP flow names.
const UDP_CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 4242);
/// The balancer's ports (LIP:lport) for UDP: to a port without flows, the
/// flow's, and another source to the flow's backend port.
const LPORT_PLAIN: u16 = 5001;
const LPORT_FLOW: u16 = 5002;
const LPORT_OTHER: u16 = 5003;

/// UDP request/response round trips per second between `a` and `b` (`a`
/// sends to `b`, `b` answers where the request came from).
fn udp_rate(a: &UdpSocket, b: &UdpSocket, n: u32) -> Result<f64> {
    let to_b = b.local_addr()?;
    let mut buf = [0u8; 64];
    // Warm up first: the first datagrams of a fresh socket (and of a
    // namespace whose hooks just changed) cost more.
    for _ in 0..n / 10 {
        a.send_to(b"q", to_b)?;
        let (_, from) = b.recv_from(&mut buf)?;
        b.send_to(b"r", from)?;
        a.recv_from(&mut buf)?;
    }
    let start = Instant::now();
    for _ in 0..n {
        a.send_to(b"q", to_b)?;
        let (_, from) = b.recv_from(&mut buf)?;
        b.send_to(b"r", from)?;
        a.recv_from(&mut buf)?;
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

/// UDP round trips per second from the balancer's `lip` to the backend
/// socket `s`, from the median round trip, counting the kernel's part: the
/// write that hands the balancer's datagram to the kernel on the tun,
/// recvfrom() on `s`, sendto() of the answer to where recvfrom() said the
/// request came from, and the read that takes the answer off the tun (not
/// the peer's packet building and parsing). With `shown`, recvfrom() must
/// give that source, and every answer must go back to `lip` from `s`.
fn udp_wire_rate(
    tun: &Tun,
    s: &UdpSocket,
    lip: SocketAddr,
    shown: Option<SocketAddr>,
    n: u32,
) -> Result<f64> {
    let rs = SocketAddr::new(GUEST.into(), s.local_addr()?.port());
    let request = wire::datagram(lip, rs, b"q");
    let mut buf = [0u8; 64];
    tun.drain();
    let mut times = Vec::with_capacity(n as usize);
    // The first tenth warms up and is not counted.
    for i in 0..n + n / 10 {
        let io = tun.io_time();
        tun.send(&request)?;
        let t = Instant::now();
        let (_, from) = s.recv_from(&mut buf)?;
        s.send_to(b"r", from)?;
        let app = t.elapsed();
        let answer = loop {
            let Some(p) = tun.recv(Duration::from_secs(5))? else {
                bail!("no answer on the wire to {lip}'s datagram");
            };
            if let Some(sent) = wire::parse(&p) {
                break sent;
            }
        };
        let kernel = tun.io_time() - io + app;
        if let Some(want) = shown {
            if from != want {
                bail!("{lip}'s datagram came from {from}, not {want}");
            }
            if (answer.src, answer.dst) != (rs, lip) {
                bail!(
                    "the answer to {lip}'s datagram went {} -> {}, not {rs} -> {lip}",
                    answer.src,
                    answer.dst
                );
            }
        }
        if i >= n / 10 {
            times.push(kernel.as_secs_f64());
        }
    }
    Ok(1.0 / median_and_range(times).0)
}

/// The UDP rates of one variant, in the namespace toa (if loaded) was just
/// loaded into: (loopback: no flow in the namespace, with one; from the
/// balancer: no flow in the namespace, to a port without flows, to a port
/// with another source's flow, on the flow).
fn udp_rates(tun: &Tun, n: u32, v: &Variant, verify: bool) -> Result<[f64; 6]> {
    let bind = |addr: &str| -> Result<UdpSocket> {
        let s = UdpSocket::bind(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(s)
    };
    let (a, b) = (bind("127.0.0.1:0")?, bind("127.0.0.1:0")?);
    // Backends on every address, as servers bind: one on a port without
    // flows, one on the flow's port.
    let (plain, flowed) = (bind("0.0.0.0:0")?, bind("0.0.0.0:0")?);
    let lip = |port| SocketAddr::new(LB.into(), port);
    let check = |at: SocketAddr| verify.then_some(at);
    let lo = udp_rate(&a, &b, n)?;
    let wire_plain = udp_wire_rate(tun, &plain, lip(LPORT_PLAIN), check(lip(LPORT_PLAIN)), n)?;
    // The balancer announces the flow (ip_vs_ca, an ICMP echo request from
    // its LIP: the kernel's echo reply goes out on the wire and is thrown
    // away by the next measurement). From here the namespace has a flow.
    let rs = SocketAddrV4::new(GUEST, flowed.local_addr()?.port());
    let announce = Announce::lvs(SocketAddrV4::new(LB, LPORT_FLOW), rs, UDP_CLIENT);
    tun.send(&announce.packet())?;
    let lo_ns = udp_rate(&a, &b, n)?;
    let miss = udp_wire_rate(tun, &plain, lip(LPORT_PLAIN), check(lip(LPORT_PLAIN)), n)?;
    let port = udp_wire_rate(tun, &flowed, lip(LPORT_OTHER), check(lip(LPORT_OTHER)), n)?;
    let client = if v.udp() {
        UDP_CLIENT.into()
    } else {
        lip(LPORT_FLOW)
    };
    let flow = udp_wire_rate(tun, &flowed, lip(LPORT_FLOW), check(client), n)?;
    Ok([lo, lo_ns, wire_plain, miss, port, flow])
}

/// Connections per second and accept4+getpeername pairs per second, each
/// from the median connection (a timer interrupt or an idle wait landing
/// in a few connections does not move it): handshakes from the balancer
/// whose ACK names an IPv4 client. A connection's time is the kernel's
/// part of it: the system calls that hand the test peer's packets (SYN,
/// ACK, RST) to the kernel and take its SYN-ACK back, accept4(),
/// getpeername() and close(), not the peer's own work of building and
/// parsing packets in userspace. With `verify`, every connection must show
/// its client.
fn setup_rate(tun: &Tun, l: &TcpListener, n: u32, verify: bool) -> Result<(f64, f64)> {
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    let (mut whole, mut calls) = (Vec::new(), Vec::new());
    for i in 0..n {
        let client =
            SocketAddrV4::new(Ipv4Addr::from(0xc633_6400 + (i % 250) + 1), 1024 + i as u16);
        let hs = Handshake {
            ack_options: opt4(KIND4, client),
            ..Handshake::default()
        };
        let local = SocketAddr::new(LB.into(), peer::next_port());
        let io_before = tun.io_time();
        let conn = Conn::open(tun, local, remote, &hs)?;
        let t = Instant::now();
        let (fd, _) = sock::accept(l, Accept::Accept4)?;
        let shown = std::hint::black_box(sock::getpeername(fd.as_raw_fd())?);
        let accepted = t.elapsed();
        let t = Instant::now();
        drop(fd);
        let closed = t.elapsed();
        drop(conn);
        if verify && shown != SocketAddr::from(client) {
            bail!("a connection naming {client} shows {shown}");
        }
        calls.push(accepted.as_secs_f64());
        whole.push((tun.io_time() - io_before + accepted + closed).as_secs_f64());
    }
    Ok((
        1.0 / median_and_range(whole).0,
        1.0 / median_and_range(calls).0,
    ))
}

/// Loopback connections per second, from the median connection: connect()
/// to `l` (on 127.0.0.1, blocking), accept4(), close() of the accepted
/// socket, then of the connecting one. No option, no client: what every
/// connection on the host pays.
fn loopback_rate(l: &TcpListener, n: u32) -> Result<f64> {
    let to = l.local_addr()?;
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        let c = TcpStream::connect(to)?;
        let (a, _) = l.accept()?;
        drop(a);
        drop(c);
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(1.0 / median_and_range(times).0)
}

/// getpeername() calls per second on `fd`.
fn peer_rate(fd: &OwnedFd, n: u32) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sock::getpeername(fd.as_raw_fd())?);
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

fn set_state(module: &Path, v: &Variant) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    if let Some(hook) = &v.hook {
        // The bench's peer is the balancer, and the only one.
        let mut params = vec![
            format!("hook={hook}"),
            format!("trusted_sources={LB}/32,{LB6}/128"),
        ];
        params.extend(v.params.iter().cloned());
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        kmod::insmod(v.module.as_deref().unwrap_or(module), &params)?;
    }
    Ok(())
}

fn median_and_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// A connection from the balancer (over IPv4 or IPv6) whose handshake ACK
/// carries `option`, accepted: the peer's end (kept open) and the accepted
/// socket.
fn toa_connection<'t>(
    tun: &'t Tun,
    l: &TcpListener,
    v6: bool,
    option: Vec<u8>,
) -> Result<(Conn<'t>, OwnedFd)> {
    let src: IpAddr = if v6 { LB6.into() } else { LB.into() };
    let hs = Handshake {
        ack_options: option,
        ..Handshake::default()
    };
    let (conn, fd, _) = peer::accept_from(tun, l, src, &hs, Accept::Accept4)?;
    Ok((conn, fd))
}

/// Per-connection allocations by toa for IPv4 and IPv6 clients, from
/// toa_stats (ip6_address_alloc) over `n` connections each.
fn allocations(tun: &Tun, module: &Path, hook: &Variant, n: u32) -> Result<(f64, f64)> {
    set_state(module, hook)?;
    let l = sock::listen6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0), false)?;
    let mut per = [0.0; 2];
    for (k, v6) in [false, true].into_iter().enumerate() {
        let before = kmod::stats()?;
        let mut open = Vec::new();
        for i in 0..n {
            let option = if v6 {
                opt6(
                    KIND6,
                    SocketAddrV6::new(
                        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, i as u16),
                        2000 + i as u16,
                        0,
                        0,
                    ),
                )
            } else {
                opt4(
                    KIND4,
                    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 2000 + i as u16),
                )
            };
            open.push(toa_connection(tun, &l, false, option)?);
        }
        let d = kmod::delta(&before, &kmod::stats()?);
        if d.get("syn_recv_sock_toa") != Some(&u64::from(n)) {
            bail!("not every connection carried a client: {d:?}");
        }
        per[k] = *d.get("ip6_address_alloc").unwrap_or(&0) as f64 / f64::from(n);
    }
    Ok((per[0], per[1]))
}

/// getpeername() per second on each of `fds`, one thread per socket, all
/// running for `dur`: the summed rate.
fn threaded_rate(fds: &[OwnedFd], dur: Duration) -> Result<f64> {
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = fds
            .iter()
            .map(|fd| {
                s.spawn(move || -> Result<u64> {
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < dur {
                        for _ in 0..1000 {
                            std::hint::black_box(sock::getpeername(fd.as_raw_fd())?);
                        }
                        n += 1000;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
            })
            .collect()
    });
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok(total as f64 / dur.as_secs_f64())
}

/// `--profile OP N`: operation `op` run `n` times with variant `v` loaded,
/// then the module unloaded (an instrumented build reports at unload).
fn run_profile(
    (op, n): (&str, u32),
    tun: &Tun,
    (l, l6): (&TcpListener, &TcpListener),
    (toa_fd, client6): (&OwnedFd, SocketAddrV6),
    module: &Path,
    v: &Variant,
) -> Result<()> {
    set_state(module, v)?;
    let (conn6, fd6) = toa_connection(tun, l6, true, opt6(KIND6, client6))?;
    match op {
        "conn4" => drop(setup_rate(tun, l, n, false)?),
        "loop" => drop(loopback_rate(l, n)?),
        "gp4" => drop(peer_rate(toa_fd, n)?),
        "gp6" => drop(peer_rate(&fd6, n)?),
        "udp-flow" => {
            // The flow alone: announced, then round trips on it.
            let flowed = UdpSocket::bind("0.0.0.0:0")?;
            flowed.set_read_timeout(Some(Duration::from_secs(5)))?;
            let rs = SocketAddrV4::new(GUEST, flowed.local_addr()?.port());
            let announce = Announce::lvs(SocketAddrV4::new(LB, LPORT_FLOW), rs, UDP_CLIENT);
            tun.send(&announce.packet())?;
            let lip = SocketAddr::new(LB.into(), LPORT_FLOW);
            udp_wire_rate(tun, &flowed, lip, None, n)?;
        }
        other => bail!("--profile {other}: conn4, loop, gp4, gp6 or udp-flow"),
    }
    drop((conn6, fd6));
    kmod::rmmod()?;
    println!("profile: {op} x {n} done");
    Ok(())
}

/// How getpeername() on IPv6 sockets with a client scales from 1 to 2
/// threads, per variant: the ratio rate(2 threads) / rate(1 thread), median
/// of `reps`.
fn scaling(tun: &Tun, module: &Path, variants: &[Variant], reps: u32) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        println!("scaling: skipped, {cpus} CPU");
        return Ok(());
    }
    let l = sock::listen6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0), false)?;
    let client = |i: u16| {
        SocketAddrV6::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 9, i),
            3000 + i,
            0,
            0,
        )
    };
    // The unloaded kernel first: how far getpeername() scales on this VM
    // at all (the same sockets, made with toa loaded, then asked without).
    for v in variants {
        set_state(module, v.hook.as_ref().map_or(&variants[1], |_| v))?;
        let mut open = Vec::new();
        for i in 0..2u16 {
            open.push(toa_connection(tun, &l, true, opt6(KIND6, client(i)))?);
        }
        let want = SocketAddr::from(client(0));
        let got = sock::getpeername(open[0].1.as_raw_fd())?;
        if got != want {
            bail!(
                "{}: IPv6 socket with a client shows {got}, want {want}",
                v.name
            );
        }
        if v.hook.is_none() {
            set_state(module, v)?;
        }
        let fds: Vec<OwnedFd> = open
            .iter()
            .map(|(_, fd)| fd.try_clone())
            .collect::<std::io::Result<_>>()?;
        let mut ratios = Vec::new();
        for _ in 0..reps {
            let one = threaded_rate(&fds[..1], Duration::from_millis(1500))?;
            let two = threaded_rate(&fds, Duration::from_millis(1500))?;
            println!(
                "scaling {:<10} 1 thread {one:>9.0}/s  2 threads {two:>9.0}/s",
                v.name
            );
            ratios.push(two / one);
        }
        let (m, lo, hi) = median_and_range(ratios);
        println!(
            "ratio getpeername IPv6 client, 2 threads / 1 thread {:<10} median {m:.3}  range {lo:.3}..{hi:.3}",
            v.name
        );
    }
    Ok(())
}

/// The summary: per metric and variant the ratio's median and range over
/// the repetitions; then a table of the cost per operation (median over the
/// repetitions), unloaded and per variant with its delta and ratio.
fn report(variants: &[Variant], samples: &[Vec<Sample>], icount: bool) {
    let unit = if icount { "instructions" } else { "ns" };
    let clock = if icount { "instructions" } else { "wall" };
    let per_op = |s: &[Sample], f: fn(&Sample) -> f64| {
        median_and_range(s.iter().map(|x| 1e9 / f(x)).collect()).0
    };
    for (_, name, f) in METRICS {
        for (v, vs) in variants.iter().zip(samples).skip(1) {
            let ratios: Vec<f64> = vs
                .iter()
                .zip(&samples[0])
                .map(|(l, u)| f(l) / f(u))
                .collect();
            let (m, lo, hi) = median_and_range(ratios);
            if icount {
                println!(
                    "ratio {clock} {name:<56} {:<10} {m:.3} (range {lo:.3}..{hi:.3}; {:.0} vs {:.0} instructions)",
                    v.name,
                    per_op(vs, f),
                    per_op(&samples[0], f)
                );
            } else {
                println!(
                    "ratio {clock} {name:<56} {:<10} median {m:.3}  range {lo:.3}..{hi:.3}",
                    v.name
                );
            }
        }
    }
    println!();
    println!(
        "# {unit} per operation, median of {} repetitions; per variant: {unit}, delta over unloaded, ratio (rate loaded / unloaded, 1.000 = free)",
        samples[0].len()
    );
    let mut head = format!("| {:<56} | {:>10} |", "operation", "unloaded");
    let mut rule = format!("| {} | {}: |", "-".repeat(56), "-".repeat(9));
    for v in &variants[1..] {
        head += &format!(" {:>22} |", v.name);
        rule += &format!(" {}: |", "-".repeat(21));
    }
    println!("{head}");
    println!("{rule}");
    for (_, name, f) in METRICS {
        let base = per_op(&samples[0], f);
        let mut row = format!("| {name:<56} | {base:>10.0} |");
        for vs in &samples[1..] {
            let cost = per_op(vs, f);
            let cell = format!("{cost:.0} {:+.0} ({:.3})", cost - base, base / cost);
            row += &format!(" {cell:>22} |");
        }
        println!("{row}");
    }
}

fn main() -> Result<()> {
    let usage = "usage: toa-bench --module toa.ko [--clock wall|icount] [--reps N] [--hooks LIST] [--scaling] [--netfilter]";
    let mut args = std::env::args().skip(1);
    let (mut module, mut reps, mut hooks) = (None, None, "ftrace,kretprobe,fprobe".to_owned());
    let (mut icount, mut with_scaling, mut verify) = (false, false, true);
    let (mut netfilter, mut profile) = (false, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--module" => module = args.next().map(PathBuf::from),
            "--reps" => {
                reps = Some(
                    args.next()
                        .and_then(|r| r.parse().ok())
                        .context("--reps N")?,
                )
            }
            "--hooks" => hooks = args.next().context("--hooks LIST")?,
            "--clock" => match args.next().as_deref() {
                Some("wall") => icount = false,
                Some("icount") => icount = true,
                _ => bail!("--clock wall|icount"),
            },
            "--scaling" => with_scaling = true,
            "--netfilter" => netfilter = true,
            "--profile" => {
                let op = args.next().context("--profile OP N")?;
                let n = args.next().and_then(|n| n.parse().ok());
                profile = Some((op, n.context("--profile OP N")?));
            }
            // For experiments with hooks that deliberately show nothing.
            "--no-verify" => verify = false,
            other => bail!("unknown argument {other}\n{usage}"),
        }
    }
    let module = module.context(usage)?;
    // Instruction counts repeat exactly: three repetitions show that they do.
    let reps: u32 = reps.unwrap_or(if icount { 3 } else { 7 });
    let tun = Tun::create("toa0", &peer::GUEST_NETS)?;
    if netfilter {
        // A host that already uses netfilter (a firewall, conntrack,
        // Docker, kube-proxy): empty base chains where toa hooks, so that
        // netfilter's dispatch runs with and without toa, and the bench
        // counts what toa's own hooks add to it.
        toa_test::sh(
            "nft -f - <<'EOF'\ntable inet toa_bench {\n\tchain pre { type filter hook prerouting priority 0; }\n\tchain out { type filter hook output priority 0; }\n}\nEOF",
        )?;
        println!("# netfilter: empty prerouting and output chains (inet) loaded");
    }
    let mut variants = vec![Variant {
        name: "unloaded".into(),
        hook: None,
        params: Vec::new(),
        module: None,
    }];
    for h in hooks.split(',') {
        let (h, other) = match h.split_once('@') {
            Some((h, path)) => (h, Some(PathBuf::from(path))),
            None => (h, None),
        };
        let mut parts = h.split('+');
        // Another build is named by its file (toa-omit-destruct.ko: omit-destruct).
        let name = match &other {
            Some(p) => format!(
                "{h}@{}",
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("other")
                    .trim_start_matches("toa-")
            ),
            None => h.to_owned(),
        };
        variants.push(Variant {
            name,
            hook: parts.next().map(str::to_owned),
            params: parts.map(str::to_owned).collect(),
            module: other,
        });
    }

    // A loopback connection without a client (its listener also takes the
    // loopback connections measured), and connections from the balancer
    // with an IPv4 and an IPv6 client, made with toa loaded. An IPv4
    // client lives in the socket's word itself, so every later load of toa
    // shows it again; an IPv6 client's record is freed at unload, so its
    // connection is made again after every load.
    let plain_l = TcpListener::bind("127.0.0.1:0")?;
    let _plain_c = TcpStream::connect(plain_l.local_addr()?)?;
    let plain: OwnedFd = plain_l.accept()?.0.into();
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    let l6 = sock::listen6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0), false)?;
    // Made by a load that trusts the balancer: the first loaded variant's,
    // without its `trusted_sources=` (a load that trusts nobody names no
    // client).
    let mut setup = variants[1].clone();
    setup.params.retain(|p| p != "trusted_sources=");
    set_state(&module, &setup)?;
    let client4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 999);
    let (_toa_conn, toa_fd) = toa_connection(&tun, &l, false, opt4(KIND4, client4))?;
    if verify && sock::getpeername(toa_fd.as_raw_fd())? != SocketAddr::from(client4) {
        bail!("the connection naming {client4} shows no client");
    }
    let client6 = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 6, 9), 998, 0, 0);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    let (n_setup, n_peer, n_udp) = if icount {
        (100, 20_000, 3_000)
    } else {
        (300, 100_000, 20_000)
    };
    // The UDP flow's client is routed to the wire: an answer toa did not
    // send back through the balancer would be seen going to the client.
    toa_test::sh(&format!(
        "ip route replace 198.51.100.0/24 dev {}",
        tun.name
    ))?;
    if let Some((op, n)) = profile {
        let op = (op.as_str(), n);
        return run_profile(op, &tun, (&l, &l6), (&toa_fd, client6), &module, &setup);
    }

    println!(
        "# clock {}: {reps} repetitions of {} variants: {n_setup} connections of each kind, {n_peer} getpeername() per socket, {n_udp} UDP round trips per kind",
        if icount { "icount (guest ns = instructions)" } else { "wall (TCG)" },
        variants.len()
    );
    for rep in 0..reps {
        for k in 0..variants.len() {
            let i = (k + rep as usize) % variants.len();
            let v = &variants[i];
            set_state(&module, v)?;
            // A breakdown's build lacks hooks, the defaults trust nobody:
            // they show no client.
            let verify = verify && v.module.is_none() && v.trusts();
            let (conn6, fd6) = toa_connection(&tun, &l6, true, opt6(KIND6, client6))?;
            if verify
                && v.hook.is_some()
                && sock::getpeername(fd6.as_raw_fd())? != SocketAddr::from(client6)
            {
                bail!(
                    "{}: the connection naming {client6} shows no client",
                    v.name
                );
            }
            let (setup, accept) = setup_rate(&tun, &l, n_setup, verify && v.hook.is_some())?;
            let (peer_plain, peer_toa, peer_toa6) = (
                peer_rate(&plain, n_peer)?,
                peer_rate(&toa_fd, n_peer)?,
                peer_rate(&fd6, n_peer)?,
            );
            let loopback = loopback_rate(&plain_l, n_setup)?;
            // Whatever a module load left to background work is done by
            // now; let it finish before the UDP loops are timed.
            std::thread::sleep(Duration::from_millis(300));
            let [udp_lo, udp_lo_ns, udp_plain, udp_miss, udp_port, udp_flow] =
                udp_rates(&tun, n_udp, v, verify)?;
            let s = Sample {
                peer_plain,
                peer_toa,
                peer_toa6,
                loopback,
                setup,
                accept,
                udp_lo,
                udp_lo_ns,
                udp_plain,
                udp_miss,
                udp_port,
                udp_flow,
            };
            drop((conn6, fd6));
            let mut line = format!("rep {rep} {:<10}", v.name);
            for (label, _, f) in METRICS {
                if icount {
                    // Guest nanoseconds per operation = instructions.
                    line += &format!(" {label} {:.0}", 1e9 / f(&s));
                } else {
                    line += &format!(" {label} {:.0}/s", f(&s));
                }
            }
            println!("{line}");
            samples[i].push(s);
        }
    }

    let (v4, v6) = allocations(&tun, &module, &setup, 200)?;
    if with_scaling {
        scaling(&tun, &module, &variants, reps.min(5))?;
    }
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    println!();
    println!("allocations per connection (toa_stats ip6_address_alloc): IPv4 client {v4:.2}, IPv6 client {v6:.2}");
    report(&variants, &samples, icount);
    Ok(())
}
