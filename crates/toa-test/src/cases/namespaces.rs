//! Containers share toa's tables with the host: an unprivileged user's own
//! network namespace (`unshare -rn`, as any container runtime makes one)
//! floods them with SYNs and announcements from a tun device of its own,
//! while the host's SYN-only handshakes and UDP flows wait; the host's keep
//! their clients, and the flood is bounded by the namespaces' share.
//!
//! The flooder is this program run again as nobody in a new user and
//! network namespace ([`attacker_main`], `--attacker syn|udp N`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::common::{client, opt4, GUEST, LB};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, Stats, SysctlGuard};
use toa_test::peer::{self, Conn, Handshake};
use toa_test::sock::{self, Accept};
use toa_test::tun::Tun;
use toa_test::udp::{self as wire, Announce};

/// The unprivileged user (nobody).
const NOBODY: &str = "65534";
/// SYNs and announcements of the floods (the numbers).
const SYNS: u32 = 5_000;
const ANNOUNCEMENTS: u32 = 20_000;
/// The host's handshakes and flows that must survive the floods.
const HOST_CONNS: u8 = 24;
const HOST_FLOWS: u16 = 24;

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "namespaces: 5000 SYNs with options from an unprivileged user's namespace: the host's SYN-only handshakes keep their clients",
            syn_flood,
        ),
        Case::new(
            "namespaces: 20 000 announcements from an unprivileged user's namespace: the host's UDP flows keep their clients",
            udp_flood,
        ),
        Case::new(
            "namespaces: a namespace's own trusted_sources decides for its packets (the host's until its root writes its own), its own toa_stats counts them; the host's list and counters unchanged, all_netns counts them",
            own_trust,
        ),
    ]
}

/// Run this program as nobody in a new user and network namespace, with
/// `args`; what it printed.
fn as_container(args: &[&str]) -> Result<String> {
    unprivileged_namespaces()?;
    // The tun device is open to everyone, as udev leaves it on every
    // Debian system (the test VM boots without udev).
    std::fs::set_permissions(
        "/dev/net/tun",
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )?;
    // This program where nobody may run it.
    let exe = "/tmp/toa-vmtest-attacker";
    std::fs::copy(std::env::current_exe()?, exe)?;
    std::fs::set_permissions(exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let out = Command::new("timeout")
        .arg("600")
        .arg("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "unshare",
            "-rn",
            exe,
            "--attacker",
        ])
        .args(args)
        .output()
        .context("setpriv unshare")?;
    if !out.status.success() {
        bail!(
            "the container's flood failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Skip where unprivileged users get no user namespace (a kernel without
/// `CONFIG_USER_NS`: Debian's have it).
pub fn unprivileged_namespaces() -> Result<()> {
    if !std::path::Path::new("/proc/self/ns/user").exists() {
        return Err(
            crate::Skip("this kernel has no user namespaces (CONFIG_USER_NS)".into()).into(),
        );
    }
    Ok(())
}

/// The flooder, in its own namespace: a tun device 10.9.0.1/24 (a
/// container's veth to its balancer, as far as toa can tell), then `n`
/// SYNs with options to a listener there, or `n` announcements of
/// distinct flows.
pub fn attacker_main(args: &[String]) -> ExitCode {
    match attack(args) {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("attacker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn attack(args: &[String]) -> Result<String> {
    let (Some(kind), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        bail!("usage: --attacker syn|udp N | peer 1 [trusted_sources]");
    };
    toa_test::sh("ip link set lo up")?;
    let tun = Tun::create("att0", &["10.9.0.1/24"])?;
    let me = Ipv4Addr::new(10, 9, 0, 1);
    let start = Instant::now();
    match kind.as_str() {
        "syn" => {
            let l = TcpListener::bind((me, 7001))?;
            let mut rng = fastrand::Rng::with_seed(0x5eed);
            for i in 0..n {
                let src = SocketAddr::new(
                    Ipv4Addr::new(10, 9, 0, 2 + (i / 60000) as u8).into(),
                    1024 + (i % 60000) as u16,
                );
                let c = SocketAddrV4::new(Ipv4Addr::from(0xc633_6400 | (i & 0xff)), 1 + i as u16);
                peer::send_syn(&tun, src, l.local_addr()?, rng.u32(..), &opt4(254, c), &[])?;
                if i % 64 == 63 {
                    tun.drain();
                }
            }
        }
        "udp" => {
            for i in 0..n {
                let lip = SocketAddrV4::new(
                    Ipv4Addr::new(10, 9, 0, 2 + (i / 60000) as u8),
                    1024 + (i % 60000) as u16,
                );
                let c =
                    SocketAddrV4::new(Ipv4Addr::from(0xc000_0000 | i), 1000 + (i % 1000) as u16);
                tun.send(&Announce::lvs(lip, SocketAddrV4::new(me, 53), c).packet())?;
                if i % 64 == 63 {
                    tun.drain();
                }
            }
        }
        "peer" => {
            // The namespace's own list, if one is given (as its root may).
            if let Some(list) = args.get(2) {
                std::fs::write("/proc/sys/net/toa/trusted_sources", list)
                    .context("the namespace's trusted_sources")?;
            }
            let list = std::fs::read_to_string("/proc/sys/net/toa/trusted_sources")?;
            let l = TcpListener::bind((me, 7002))?;
            let hs = Handshake {
                ack_options: opt4(254, SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 4242)),
                ..Handshake::default()
            };
            let local = SocketAddr::new(Ipv4Addr::new(10, 9, 0, 2).into(), 40000);
            let _conn = Conn::open(&tun, local, l.local_addr()?, &hs)?;
            let (fd, _) = sock::accept(&l, Accept::Accept)?;
            let peer = sock::getpeername(fd.as_raw_fd())?;
            // The namespace's own counters, as its /proc/net/toa_stats
            // shows them.
            let st = kmod::stats()?;
            let n = |k: &str| st.get(k).copied().unwrap_or(0);
            return Ok(format!(
                "list={} peer={peer} toa={} untrusted={}",
                list.trim(),
                n("syn_recv_sock_toa"),
                n("toa_untrusted")
            ));
        }
        k => bail!("no flood of kind {k}"),
    }
    tun.drain();
    Ok(format!("{n} {kind} in {:?}", start.elapsed()))
}

fn delta(b: &Stats, a: &Stats, k: &str) -> u64 {
    a.get(k)
        .copied()
        .unwrap_or(0)
        .wrapping_sub(b.get(k).copied().unwrap_or(0))
}

fn syn_flood(ctx: &Ctx) -> Result<()> {
    // A fresh module: an empty table, every counter from zero.
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    ctx.insmod(&[])?;
    // The host's half-open handshakes wait out the flood (a minute and a
    // half under KASAN on a busy machine): keep their request sockets
    // longer than the kernel's 63 s.
    let _r = SysctlGuard::set("/proc/sys/net/ipv4/tcp_synack_retries", "8")?;
    let l = sock::listen(SocketAddr::new(GUEST.into(), 0))?;
    let remote = SocketAddr::new(GUEST.into(), l.local_addr()?.port());
    // The host's balancer names each client in the SYN only (Alibaba
    // LVS); the handshakes wait for their ACKs through the flood.
    let mut pending = Vec::new();
    for i in 0..HOST_CONNS {
        let hs = Handshake {
            syn_options: opt4(254, client(100 + i)),
            lose_ack: true,
            ..Handshake::default()
        };
        let local = SocketAddr::new(LB.into(), peer::next_port());
        pending.push((Conn::open(&ctx.tun, local, remote, &hs)?, client(100 + i)));
    }
    let b = kmod::stats_all()?;
    let said = as_container(&["syn", &SYNS.to_string()])?;
    let a = kmod::stats_all()?;
    println!(
        "# container: {said}: {} recorded, {} evicted (its own), {} refused (share full), {} entries in the table",
        delta(&b, &a, "toa_syn_recorded"),
        delta(&b, &a, "toa_syn_evicted"),
        delta(&b, &a, "toa_syn_share_full"),
        a.get("syn_table_entries").copied().unwrap_or(0)
    );
    if delta(&b, &a, "toa_syn_recorded") + delta(&b, &a, "toa_syn_share_full")
        < u64::from(SYNS) * 9 / 10
    {
        bail!(
            "the container's SYNs did not reach toa: {:?}",
            kmod::delta(&b, &a)
        );
    }
    // The namespaces other than the host's hold at most half the table.
    let entries = a.get("syn_table_entries").copied().unwrap_or(0);
    if entries > 2048 + u64::from(HOST_CONNS) {
        bail!("{entries} entries: the container took more than its half");
    }
    // Each host handshake completes now and its socket shows its client.
    for (mut conn, want) in pending {
        conn.send(&[], b"")?;
        let (fd, _) = sock::accept(&l, Accept::Accept)?;
        ensure_eq!(
            sock::getpeername(fd.as_raw_fd())?,
            SocketAddr::from(want),
            "the host's SYN-only client after the container's flood"
        );
    }
    let end = kmod::stats_all()?;
    ensure_eq!(
        delta(&a, &end, "toa_syn_used"),
        u64::from(HOST_CONNS),
        "host entries used"
    );
    Ok(())
}

fn udp_flood(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let dev = &ctx.tun.name;
    toa_test::sh(&format!("ip route replace 198.51.100.0/24 dev {dev}"))?;
    let s = UdpSocket::bind((GUEST, 6031))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let flows: Vec<(SocketAddr, SocketAddr)> = (0..HOST_FLOWS)
        .map(|i| {
            (
                SocketAddrV4::new(LB, 41000 + i).into(),
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10 + i as u8), 42000 + i).into(),
            )
        })
        .collect();
    let rs = SocketAddrV4::new(GUEST, 6031);
    for (lip, c) in &flows {
        let (SocketAddr::V4(lip), SocketAddr::V4(c)) = (lip, c) else {
            unreachable!()
        };
        ctx.tun.send(&Announce::lvs(*lip, rs, *c).packet())?;
    }
    let b = kmod::stats_all()?;
    let said = as_container(&["udp", &ANNOUNCEMENTS.to_string()])?;
    let a = kmod::stats_all()?;
    println!(
        "# container: {said}: {} flows new, {} evicted (its own), {} refused (share full), {} flows in the table",
        delta(&b, &a, "udp_flow_new"),
        delta(&b, &a, "udp_flow_evicted"),
        delta(&b, &a, "udp_share_full"),
        a.get("udp_flows").copied().unwrap_or(0)
    );
    if delta(&b, &a, "ca_icmp_ok") < u64::from(ANNOUNCEMENTS) * 9 / 10 {
        bail!(
            "the container's announcements did not reach toa: {:?}",
            kmod::delta(&b, &a)
        );
    }
    // Every host flow still names its client, both ways.
    for (lip, c) in &flows {
        ctx.tun.send(&wire::datagram(*lip, rs.into(), b"ping"))?;
        let mut buf = [0u8; 64];
        let (_, from) = s.recv_from(&mut buf)?;
        ensure_eq!(
            from,
            *c,
            "the host flow's client after the container's flood"
        );
        s.send_to(b"pong", from)?;
        let sent = wire::expect_sent(&ctx.tun, *lip, Duration::from_secs(10))?;
        ensure_eq!(sent.src, SocketAddr::from(rs), "the reply's source");
    }
    Ok(())
}

fn own_trust(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    // The host trusts another balancer than the namespace's (10.9.0.2).
    let _g = SysctlGuard::set("/proc/sys/net/toa/trusted_sources", "192.0.2.1/32")?;
    let host_before = kmod::stats()?;
    let all_before = kmod::stats_all()?;
    let inherited = as_container(&["peer", "1"])?;
    ensure_eq!(
        inherited,
        "list=192.0.2.1/32 peer=10.9.0.2:40000 toa=0 untrusted=1",
        "a new namespace: the host's list, so its balancer is not trusted (its own counters)"
    );
    let own = as_container(&["peer", "1", "10.9.0.0/24"])?;
    ensure_eq!(
        own,
        "list=10.9.0.0/24 peer=198.51.100.7:4242 toa=1 untrusted=0",
        "the namespace trusts its balancer (its own counters)"
    );
    // The host's own counters did not move; its all_netns column keeps
    // what the two namespaces (gone now) counted.
    let host_after = kmod::stats()?;
    let all_after = kmod::stats_all()?;
    for k in ["syn_recv_sock_toa", "toa_untrusted"] {
        ensure_eq!(delta(&host_before, &host_after, k), 0, "the host's own {k}");
        ensure_eq!(delta(&all_before, &all_after, k), 1, "all_netns {k}");
    }
    ensure_eq!(
        kmod::sysctl("trusted_sources")?,
        "192.0.2.1/32",
        "the host's list"
    );
    Ok(())
}
