//! toa-bench: what toa costs, measured in a test VM (`make bench`).
//!
//! A/B against the same kernel without the module, for each hook mechanism,
//! in interleaved repetitions (the order rotates every repetition, so drift
//! in the host's speed spreads over all variants):
//!
//! 1. connection setup: TOA-carrying handshakes from the tun test peer,
//!    accepted, one getpeername() each, closed;
//! 2. getpeername() on a loopback TCP socket without TOA (what every other
//!    service on the host pays);
//! 3. getpeername() on a TOA socket;
//! 4. memory: toa's allocations per connection, from its own counters.
//!
//! Each rate is a ratio loaded / unloaded (1.0 = free); the last lines print
//! the median ratio and its spread (min..max) over the repetitions.
//!
//! `toa-bench --module toa.ko [--reps N] [--hooks kretprobe,fprobe]`

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use toa_test::peer::{self, Conn, Handshake};
use toa_test::sock::{self, Accept};
use toa_test::{kmod, tun::Tun};

const LB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// A module state to measure: unloaded, or loaded with a hook mechanism.
#[derive(Clone, Debug)]
struct Variant {
    name: String,
    hook: Option<String>,
}

/// The measurements of one variant in one repetition.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Accepted connections per second.
    setup: f64,
    /// getpeername() per second, socket without TOA.
    peer_plain: f64,
    /// getpeername() per second, TOA socket.
    peer_toa: f64,
}

fn toa_option(client: SocketAddrV4) -> Vec<u8> {
    let mut o = vec![200, 8];
    o.extend(client.port().to_be_bytes());
    o.extend(client.ip().octets());
    o
}

/// Connections per second: handshake with a TOA option, accept4,
/// getpeername once, close.
fn setup_rate(tun: &Tun, l: &TcpListener, n: u32) -> Result<f64> {
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    let start = Instant::now();
    for i in 0..n {
        let client =
            SocketAddrV4::new(Ipv4Addr::from(0xc633_6400 + (i % 250) + 1), 1024 + i as u16);
        let hs = Handshake {
            ack_options: toa_option(client),
            ..Handshake::default()
        };
        let local = SocketAddr::new(LB.into(), peer::next_port());
        let conn = Conn::open(tun, local, remote, &hs)?;
        let (fd, _) = sock::accept(l, Accept::Accept4)?;
        sock::getpeername(fd.as_raw_fd())?;
        drop(fd);
        drop(conn);
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
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
        kmod::insmod(module, &[&format!("hook={hook}")])?;
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

/// Per-connection allocations by toa for IPv4 and IPv6 clients, from
/// toa_stats (ip6_address_alloc) over `n` connections each.
fn allocations(tun: &Tun, module: &PathBuf, n: u32) -> Result<(f64, f64)> {
    set_state(
        module,
        &Variant {
            name: "kretprobe".into(),
            hook: Some("kretprobe".into()),
        },
    )?;
    let l = sock::listen6(
        SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0),
        false,
    )?;
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    let mut per = [0.0; 2];
    for (k, v6) in [false, true].into_iter().enumerate() {
        let before = kmod::stats()?;
        let mut open = Vec::new();
        for i in 0..n {
            let option = if v6 {
                let mut o = vec![254, 20];
                o.extend((2000 + i as u16).to_be_bytes());
                o.extend(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, i as u16).octets());
                o
            } else {
                toa_option(SocketAddrV4::new(
                    Ipv4Addr::new(198, 51, 100, 1),
                    2000 + i as u16,
                ))
            };
            let hs = Handshake {
                ack_options: option,
                ..Handshake::default()
            };
            let conn = Conn::open(
                tun,
                SocketAddr::new(LB.into(), peer::next_port()),
                remote,
                &hs,
            )?;
            let (fd, _) = sock::accept(&l, Accept::Accept4)?;
            open.push((conn, fd));
        }
        let d = kmod::delta(&before, &kmod::stats()?);
        if d.get("syn_recv_sock_toa") != Some(&u64::from(n)) {
            bail!("not every connection carried a client: {d:?}");
        }
        per[k] = *d.get("ip6_address_alloc").unwrap_or(&0) as f64 / f64::from(n);
    }
    Ok((per[0], per[1]))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut module, mut reps, mut hooks) = (None, 7u32, "kretprobe,fprobe".to_owned());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--module" => module = args.next().map(PathBuf::from),
            "--reps" => {
                reps = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .context("--reps N")?
            }
            "--hooks" => hooks = args.next().context("--hooks LIST")?,
            other => bail!("unknown argument {other}"),
        }
    }
    let module =
        module.context("usage: toa-bench --module toa.ko [--reps N] [--hooks kretprobe,fprobe]")?;
    let tun = Tun::create("toa0", &["10.0.0.1/24", "fd00::1/64"])?;
    let mut variants = vec![Variant {
        name: "unloaded".into(),
        hook: None,
    }];
    for h in hooks.split(',') {
        variants.push(Variant {
            name: h.to_owned(),
            hook: Some(h.to_owned()),
        });
    }

    // A loopback connection without TOA, and a TOA connection.
    let plain_l = TcpListener::bind("127.0.0.1:0")?;
    let _plain_c = TcpStream::connect(plain_l.local_addr()?)?;
    let plain: OwnedFd = plain_l.accept()?.0.into();
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    // A TOA connection, made with toa loaded. An IPv4 client lives in the
    // socket's word itself, so every later load of toa shows it again.
    set_state(&module, &variants[1])?;
    let hs = Handshake {
        ack_options: toa_option(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 999)),
        ..Handshake::default()
    };
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    let _toa_conn = Conn::open(
        &tun,
        SocketAddr::new(LB.into(), peer::next_port()),
        remote,
        &hs,
    )?;
    let (toa_fd, _) = sock::accept(&l, Accept::Accept4)?;
    if sock::getpeername(toa_fd.as_raw_fd())?
        != SocketAddr::from(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 999))
    {
        bail!("the TOA connection shows no client");
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    let (n_setup, n_peer) = (300, 100_000);

    println!(
        "# {reps} repetitions of {} variants: {n_setup} connections, {n_peer} getpeername() each",
        variants.len()
    );
    for rep in 0..reps {
        for k in 0..variants.len() {
            let i = (k + rep as usize) % variants.len();
            set_state(&module, &variants[i])?;
            let s = Sample {
                setup: setup_rate(&tun, &l, n_setup)?,
                peer_plain: peer_rate(&plain, n_peer)?,
                peer_toa: peer_rate(&toa_fd, n_peer)?,
            };
            println!(
                "rep {rep} {:<10} setup {:>8.0}/s  getpeername plain {:>9.0}/s  toa {:>9.0}/s",
                variants[i].name, s.setup, s.peer_plain, s.peer_toa
            );
            samples[i].push(s);
        }
    }

    let (v4, v6) = allocations(&tun, &module, 200)?;
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    println!();
    println!("allocations per connection (toa_stats ip6_address_alloc): IPv4 client {v4:.2}, IPv6 client {v6:.2}");
    let metrics: [(&str, fn(&Sample) -> f64); 3] = [
        ("connection setup", |s| s.setup),
        ("getpeername, socket without TOA", |s| s.peer_plain),
        ("getpeername, TOA socket", |s| s.peer_toa),
    ];
    for (name, f) in metrics {
        for (v, vs) in variants.iter().zip(&samples).skip(1) {
            let ratios: Vec<f64> = vs
                .iter()
                .zip(&samples[0])
                .map(|(l, u)| f(l) / f(u))
                .collect();
            let (m, lo, hi) = median_and_range(ratios);
            println!(
                "ratio {name:<34} {:<10} median {m:.3}  range {lo:.3}..{hi:.3}",
                v.name
            );
        }
    }
    Ok(())
}
