//! toa-bench: what toa costs, measured in a test VM (`make bench`).
//!
//! A/B against the same kernel without the module, for each hook mechanism,
//! in interleaved repetitions (the order rotates every repetition, so drift
//! in the host's speed spreads over all variants):
//!
//! 1. connection setup: TOA-carrying handshakes from the tun test peer,
//!    accepted, one getpeername() each, closed: the time in the kernel
//!    (the system calls of the peer and of the application, not the peer's
//!    packet building); and, inside it, the accept4() + getpeername()
//!    calls alone;
//! 2. getpeername() on a loopback TCP socket without TOA (what every other
//!    service on the host pays);
//! 3. getpeername() on a TOA socket with an IPv4 client, and on one with an
//!    IPv6 client (the record lookup);
//! 4. memory: toa's allocations per connection, from its own counters;
//! 5. (`--scaling`) getpeername() on IPv6 TOA sockets from 1 and from 2
//!    threads: how the rate scales with CPUs;
//! 6. UDP: request/response round trips between two loopback sockets
//!    (sendto, recvfrom, sendto, recvfrom): in a namespace without flows
//!    (what every UDP service pays), between sockets without a flow while
//!    the namespace has one (each datagram looked up and missed), and on a
//!    flow an ip_vs_ca announcement named (each datagram rewritten: the
//!    request shown from the client, the response sent back to the
//!    balancer's address).
//!
//! Two clocks (`--clock`):
//!
//! - `wall`: the guest's clock under multi-threaded TCG; noisy, reported as
//!   the median and range of the per-repetition ratios;
//! - `icount`: the VM runs with QEMU's `-icount shift=0,sleep=off` on one
//!   vCPU, where the guest clock advances one nanosecond per emulated
//!   instruction: a timed loop counts instructions, deterministically. The
//!   bench prints instructions per operation and their ratio.
//!
//! Each ratio is rate loaded / rate unloaded (1.0 = free); the last lines
//! print them.
//!
//! `toa-bench --module toa.ko [--clock wall|icount] [--reps N]
//!  [--hooks ftrace,kretprobe,...] [--scaling]`; a variant may carry more
//! module parameters after `+` (`direct+udp=0`).

use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use toa_test::peer::{self, Conn, Handshake};
use toa_test::sock::{self, Accept};
use toa_test::{kmod, tun::Tun};

const LB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const LB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

/// A module state to measure: unloaded, or loaded with a hook mechanism.
#[derive(Clone, Debug)]
struct Variant {
    name: String,
    hook: Option<String>,
    /// More module parameters (`--hooks direct+udp=0`: `udp=0`).
    params: Vec<String>,
}

impl Variant {
    /// Whether toa serves UDP in this variant (loaded, without `udp=0`).
    fn udp(&self) -> bool {
        self.hook.is_some() && !self.params.iter().any(|p| p == "udp=0")
    }
}

/// The measurements of one variant in one repetition, as rates (operations
/// per second of the guest clock: with icount, per 10^9 instructions).
/// Connection rates come from the median connection; getpeername() rates
/// from a loop of calls.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Accepted connections per second (handshake, accept4, getpeername, close).
    setup: f64,
    /// accept4() + getpeername() pairs per second (the calls alone).
    accept: f64,
    /// getpeername() per second, socket without TOA.
    peer_plain: f64,
    /// getpeername() per second, TOA socket with an IPv4 client.
    peer_toa: f64,
    /// getpeername() per second, TOA socket with an IPv6 client.
    peer_toa6: f64,
    /// UDP round trips per second, the namespace without flows.
    udp_plain: f64,
    /// UDP round trips per second without a flow, the namespace with one.
    udp_miss: f64,
    /// UDP round trips per second without a flow, to a backend port that
    /// has one (each datagram looked up and missed).
    udp_port: f64,
    /// UDP round trips per second on a flow (rewritten both ways).
    udp_flow: f64,
}

/// The metrics, in the order they are printed.
const METRICS: [(&str, fn(&Sample) -> f64); 9] = [
    ("connection setup", |s| s.setup),
    ("accept4 + getpeername, TOA connection", |s| s.accept),
    ("getpeername, socket without TOA", |s| s.peer_plain),
    ("getpeername, TOA socket (IPv4 client)", |s| s.peer_toa),
    ("getpeername, TOA socket (IPv6 client)", |s| s.peer_toa6),
    ("UDP round trip, no flow in the namespace", |s| s.udp_plain),
    ("UDP round trip, no flow (namespace has)", |s| s.udp_miss),
    ("UDP round trip, no flow, port with flows", |s| s.udp_port),
    ("UDP round trip on a flow (rewritten)", |s| s.udp_flow),
];

/// The client a bench flow names.
const UDP_CLIENT: &str = "198.51.100.9:4242";

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

/// Announce, on the loopback and the way LVS does, that datagrams from
/// `lip` to `rs` come from `client`.
fn announce(lip: SocketAddr, rs: SocketAddr, client: SocketAddr) -> Result<()> {
    let (SocketAddr::V4(l), SocketAddr::V4(r), SocketAddr::V4(c)) = (lip, rs, client) else {
        bail!("IPv4 only");
    };
    let msg = toa_test::udp::Announce::lvs(l, r, c).message();
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        bail!("raw socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from(*r.ip()).to_be();
    // SAFETY: `msg` and `sin` are valid for the call; `fd` is ours.
    let n = unsafe {
        let n = libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        libc::close(fd);
        n
    };
    if n < 0 {
        bail!("announce: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The UDP rates of one variant: without flows, without a flow (another
/// port has), without a flow to a port with one, on a flow.
fn udp_rates(n: u32, loaded: bool, verify: bool) -> Result<(f64, f64, f64, f64)> {
    let bind = || -> Result<UdpSocket> {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(s)
    };
    let (a, b) = (bind()?, bind()?);
    let plain = udp_rate(&a, &b, n)?;
    // A flow for another pair makes the namespace one with flows.
    let (fa, fb) = (bind()?, bind()?);
    announce(fa.local_addr()?, fb.local_addr()?, UDP_CLIENT.parse()?)?;
    let miss = udp_rate(&a, &b, n)?;
    if verify && loaded {
        let mut buf = [0u8; 8];
        fa.send_to(b"v", fb.local_addr()?)?;
        let (_, from) = fb.recv_from(&mut buf)?;
        if from != UDP_CLIENT.parse()? {
            bail!("the flow's datagram came from {from}, not the client");
        }
        fb.send_to(b"v", from)?;
        fa.recv_from(&mut buf)?;
    }
    let port = udp_rate(&a, &fb, n)?;
    let flow = udp_rate(&fa, &fb, n)?;
    Ok((plain, miss, port, flow))
}

fn toa_option(client: SocketAddrV4) -> Vec<u8> {
    let mut o = vec![200, 8];
    o.extend(client.port().to_be_bytes());
    o.extend(client.ip().octets());
    o
}

fn toa_option6(port: u16, addr: Ipv6Addr) -> Vec<u8> {
    let mut o = vec![254, 20];
    o.extend(port.to_be_bytes());
    o.extend(addr.octets());
    o
}

/// Connections per second and accept4+getpeername pairs per second, each
/// from the median connection (a timer interrupt or an idle wait landing
/// in a few connections does not move it). A connection's time is the
/// kernel's part of it: the system calls that hand the test peer's packets
/// (SYN, ACK, RST) to the kernel and take its SYN-ACK back, accept4(),
/// getpeername() and close(), not the peer's own work of building and
/// parsing packets in userspace.
fn setup_rate(tun: &Tun, l: &TcpListener, n: u32) -> Result<(f64, f64)> {
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    let (mut whole, mut calls) = (Vec::new(), Vec::new());
    for i in 0..n {
        let client =
            SocketAddrV4::new(Ipv4Addr::from(0xc633_6400 + (i % 250) + 1), 1024 + i as u16);
        let hs = Handshake {
            ack_options: toa_option(client),
            ..Handshake::default()
        };
        let local = SocketAddr::new(LB.into(), peer::next_port());
        let io_before = tun.io_time();
        let conn = Conn::open(tun, local, remote, &hs)?;
        let t = Instant::now();
        let (fd, _) = sock::accept(l, Accept::Accept4)?;
        std::hint::black_box(sock::getpeername(fd.as_raw_fd())?);
        let accepted = t.elapsed();
        let t = Instant::now();
        drop(fd);
        let closed = t.elapsed();
        drop(conn);
        calls.push(accepted.as_secs_f64());
        whole.push((tun.io_time() - io_before + accepted + closed).as_secs_f64());
    }
    Ok((
        1.0 / median_and_range(whole).0,
        1.0 / median_and_range(calls).0,
    ))
}

/// getpeername() calls per second on `fd`.
fn peer_rate(fd: &OwnedFd, n: u32) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sock::getpeername(fd.as_raw_fd())?);
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

fn set_state(module: &PathBuf, v: &Variant) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    if let Some(hook) = &v.hook {
        // The bench's peer is the balancer, on every address.
        let mut params = vec![
            format!("hook={hook}"),
            "trusted_sources=0.0.0.0/0,::/0".to_owned(),
        ];
        params.extend(v.params.iter().cloned());
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        kmod::insmod(module, &params)?;
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

/// A TOA connection accepted from the tun peer: the peer's end (kept open)
/// and the accepted socket.
fn toa_connection<'t>(
    tun: &'t Tun,
    l: &TcpListener,
    v6: bool,
    option: Vec<u8>,
) -> Result<(Conn<'t>, OwnedFd)> {
    let port = l.local_addr()?.port();
    let (local, remote) = if v6 {
        (
            SocketAddr::new(LB6.into(), peer::next_port()),
            SocketAddr::new(GUEST6.into(), port),
        )
    } else {
        (
            SocketAddr::new(LB.into(), peer::next_port()),
            SocketAddr::new(GUEST.into(), port),
        )
    };
    let hs = Handshake {
        ack_options: option,
        ..Handshake::default()
    };
    let conn = Conn::open(tun, local, remote, &hs)?;
    let (fd, _) = sock::accept(l, Accept::Accept4)?;
    Ok((conn, fd))
}

/// Per-connection allocations by toa for IPv4 and IPv6 clients, from
/// toa_stats (ip6_address_alloc) over `n` connections each.
fn allocations(tun: &Tun, module: &PathBuf, hook: &Variant, n: u32) -> Result<(f64, f64)> {
    set_state(module, hook)?;
    let l = sock::listen6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0), false)?;
    let mut per = [0.0; 2];
    for (k, v6) in [false, true].into_iter().enumerate() {
        let before = kmod::stats()?;
        let mut open = Vec::new();
        for i in 0..n {
            let option = if v6 {
                toa_option6(
                    2000 + i as u16,
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, i as u16),
                )
            } else {
                toa_option(SocketAddrV4::new(
                    Ipv4Addr::new(198, 51, 100, 1),
                    2000 + i as u16,
                ))
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

/// How getpeername() on IPv6 TOA sockets scales from 1 to 2 threads, per
/// variant: the ratio rate(2 threads) / rate(1 thread), median of `reps`.
fn scaling(tun: &Tun, module: &PathBuf, variants: &[Variant], reps: u32) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        println!("scaling: skipped, {cpus} CPU");
        return Ok(());
    }
    let l = sock::listen6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0), false)?;
    // The unloaded kernel first: how far getpeername() scales on this VM
    // at all (the same sockets, made with toa loaded, then asked without).
    for v in variants {
        set_state(module, v.hook.as_ref().map_or(&variants[1], |_| v))?;
        let mut open = Vec::new();
        for i in 0..2u16 {
            let option = toa_option6(3000 + i, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 9, i));
            open.push(toa_connection(tun, &l, true, option)?);
        }
        let want: SocketAddr =
            SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 9, 0), 3000, 0, 0).into();
        let got = sock::getpeername(open[0].1.as_raw_fd())?;
        if got != want {
            bail!("{}: IPv6 TOA socket shows {got}, want {want}", v.name);
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
            "ratio getpeername IPv6 TOA, 2 threads / 1 thread {:<10} median {m:.3}  range {lo:.3}..{hi:.3}",
            v.name
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let usage = "usage: toa-bench --module toa.ko [--clock wall|icount] [--reps N] [--hooks LIST] [--scaling]";
    let mut args = std::env::args().skip(1);
    let (mut module, mut reps, mut hooks) = (None, None, "ftrace,kretprobe,fprobe".to_owned());
    let (mut icount, mut with_scaling, mut verify) = (false, false, true);
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
            // For experiments with hooks that deliberately show nothing.
            "--no-verify" => verify = false,
            other => bail!("unknown argument {other}\n{usage}"),
        }
    }
    let module = module.context(usage)?;
    // Instruction counts repeat exactly: three repetitions show that they do.
    let reps: u32 = reps.unwrap_or(if icount { 3 } else { 7 });
    let tun = Tun::create("toa0", &["10.0.0.1/24", "fd00::1/64"])?;
    let mut variants = vec![Variant {
        name: "unloaded".into(),
        hook: None,
        params: Vec::new(),
    }];
    for h in hooks.split(',') {
        let mut parts = h.split('+');
        variants.push(Variant {
            name: h.to_owned(),
            hook: parts.next().map(str::to_owned),
            params: parts.map(str::to_owned).collect(),
        });
    }

    // A loopback connection without TOA, and TOA connections with an IPv4
    // and an IPv6 client, made with toa loaded. An IPv4 client lives in the
    // socket's word itself, so every later load of toa shows it again; an
    // IPv6 client's record is freed at unload, so its connection is made
    // again after every load.
    let plain_l = TcpListener::bind("127.0.0.1:0")?;
    let _plain_c = TcpStream::connect(plain_l.local_addr()?)?;
    let plain: OwnedFd = plain_l.accept()?.0.into();
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    let l6 = sock::listen6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0), false)?;
    set_state(&module, &variants[1])?;
    let client4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 999);
    let (_toa_conn, toa_fd) = toa_connection(&tun, &l, false, toa_option(client4))?;
    if verify && sock::getpeername(toa_fd.as_raw_fd())? != SocketAddr::from(client4) {
        bail!("the TOA connection shows no client");
    }
    let client6 = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 6, 9), 998, 0, 0);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    let (n_setup, n_peer, n_udp) = if icount {
        (100, 20_000, 3_000)
    } else {
        (300, 100_000, 20_000)
    };
    // The client of the UDP flows is routed somewhere (answers to it are
    // sent back through the balancer's loopback address by toa).
    toa_test::sh("ip route replace 198.51.100.0/24 dev lo")?;

    println!(
        "# clock {}: {reps} repetitions of {} variants: {n_setup} connections, {n_peer} getpeername() each",
        if icount { "icount (guest ns = instructions)" } else { "wall (TCG)" },
        variants.len()
    );
    for rep in 0..reps {
        for k in 0..variants.len() {
            let i = (k + rep as usize) % variants.len();
            set_state(&module, &variants[i])?;
            let (conn6, fd6) =
                toa_connection(&tun, &l6, true, toa_option6(client6.port(), *client6.ip()))?;
            if verify
                && variants[i].hook.is_some()
                && sock::getpeername(fd6.as_raw_fd())? != SocketAddr::from(client6)
            {
                bail!(
                    "{}: the IPv6 TOA connection shows no client",
                    variants[i].name
                );
            }
            let (setup, accept) = setup_rate(&tun, &l, n_setup)?;
            let (peer_plain, peer_toa, peer_toa6) = (
                peer_rate(&plain, n_peer)?,
                peer_rate(&toa_fd, n_peer)?,
                peer_rate(&fd6, n_peer)?,
            );
            // Whatever a module load left to background work is done by
            // now; let it finish before the UDP loops are timed.
            std::thread::sleep(Duration::from_millis(300));
            let (udp_plain, udp_miss, udp_port, udp_flow) =
                udp_rates(n_udp, variants[i].udp(), verify)?;
            let s = Sample {
                setup,
                accept,
                peer_plain,
                peer_toa,
                peer_toa6,
                udp_plain,
                udp_miss,
                udp_port,
                udp_flow,
            };
            drop((conn6, fd6));
            if icount {
                // Guest nanoseconds per operation = instructions.
                println!(
                    "rep {rep} {:<10} instructions: setup {:>9.0}  accept4+getpeername {:>7.0}  getpeername plain {:>5.0}  toa {:>5.0}  toa6 {:>5.0}  udp {:>6.0} miss {:>6.0} port {:>6.0} flow {:>6.0}",
                    variants[i].name,
                    1e9 / s.setup,
                    1e9 / s.accept,
                    1e9 / s.peer_plain,
                    1e9 / s.peer_toa,
                    1e9 / s.peer_toa6,
                    1e9 / s.udp_plain,
                    1e9 / s.udp_miss,
                    1e9 / s.udp_port,
                    1e9 / s.udp_flow
                );
            } else {
                println!(
                    "rep {rep} {:<10} setup {:>6.0}/s  accept4+getpeername {:>7.0}/s  getpeername plain {:>8.0}/s  toa {:>8.0}/s  toa6 {:>8.0}/s  udp {:>7.0}/s miss {:>7.0}/s port {:>7.0}/s flow {:>7.0}/s",
                    variants[i].name, s.setup, s.accept, s.peer_plain, s.peer_toa, s.peer_toa6, s.udp_plain, s.udp_miss, s.udp_port, s.udp_flow
                );
            }
            samples[i].push(s);
        }
    }

    let (v4, v6) = allocations(&tun, &module, &variants[1], 200)?;
    if with_scaling {
        scaling(&tun, &module, &variants, reps.min(5))?;
    }
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    println!();
    println!("allocations per connection (toa_stats ip6_address_alloc): IPv4 client {v4:.2}, IPv6 client {v6:.2}");
    let clock = if icount { "instructions" } else { "wall" };
    for (name, f) in METRICS {
        for (v, vs) in variants.iter().zip(&samples).skip(1) {
            let ratios: Vec<f64> = vs
                .iter()
                .zip(&samples[0])
                .map(|(l, u)| f(l) / f(u))
                .collect();
            let (m, lo, hi) = median_and_range(ratios);
            let per_op = |s: &[Sample]| median_and_range(s.iter().map(|x| 1e9 / f(x)).collect()).0;
            if icount {
                println!(
                    "ratio {clock} {name:<38} {:<10} {m:.3} (range {lo:.3}..{hi:.3}; {:.0} vs {:.0} instructions)",
                    v.name,
                    per_op(vs),
                    per_op(&samples[0])
                );
            } else {
                println!(
                    "ratio {clock} {name:<38} {:<10} median {m:.3}  range {lo:.3}..{hi:.3}",
                    v.name
                );
            }
        }
    }
    Ok(())
}
