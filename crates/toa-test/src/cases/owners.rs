//! Other owners of `sk_user_data`: a kernel user of the field (DLM, the
//! iSCSI target, sunrpc keep their state there) sets it on its listener, so
//! each child the kernel makes for it carries the owner's word before toa
//! sees it. toa must leave the word alone, show the kernel user the
//! balancer (never a wrong client), count it (`toa_user_data_busy`), and
//! free every IPv6 record it made for nothing. The owner is played by
//! `tests/kmod/toa_owner.ko`, built beside `toa_claim.ko`.
//!
//! SMC owns the field the other way round: its listener's word is not
//! inherited (NOCOPY), and SMC clears each child's field right after the
//! kernel's `syn_recv_sock` returned, so a word toa stored there would
//! vanish and an IPv6 record with it. An `AF_SMC` listener (every
//! connection falls back to TCP: no RDMA or ISM device) needs `CONFIG_SMC`,
//! which only the debug test kernel has.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::common::{opt6, GUEST, GUEST6, LB, LB6};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, SysctlGuard};
use toa_test::peer::{self, Conn, Handshake};
use toa_test::sock::{self, Accept};

/// The kernel listener's port.
const PORT: u16 = 7100;

/// The SMC listeners' port.
const SMC_PORT: u16 = 7101;

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "owners: a kernel user's sk_user_data on its listener (tests/kmod/toa_owner.ko): left alone, the kernel user sees the balancer over IPv4 and IPv6 (IPv6 and IPv4 clients named), counted busy, every IPv6 record freed",
            kernel_owner,
        ),
        Case::new(
            "owners: AF_SMC listeners (SMC clears its children's sk_user_data) behind an IPv6 client option over IPv4 and IPv6, and an IPv4 one: the application sees the balancer, counted busy, no IPv6 record made or leaked",
            smc_listener,
        ),
    ]
}

/// The owner module, beside the claim module.
fn owner_module(ctx: &Ctx) -> Result<PathBuf> {
    let claim = ctx
        .claim_module
        .as_ref()
        .context("no --claim-module given (tests/kmod/ is built with it)")?;
    Ok(claim.with_file_name("toa_owner.ko"))
}

/// The owner module, unloaded when the case ends.
struct Owner;

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rmmod")
            .arg("toa_owner")
            .status();
    }
}

fn kernel_owner(ctx: &Ctx) -> Result<()> {
    let path = owner_module(ctx)?;
    ctx.require_loaded()?;
    let _t = SysctlGuard::set("/proc/sys/net/toa/trusted_sources", "0.0.0.0/0 ::/0")?;
    kmod::insmod(&path, &[&format!("port={PORT}")])?;
    let _owner = Owner;
    let b = kmod::stats()?;
    let client = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7), 4242, 0, 0);
    // And an IPv4 client in a lone option, as balancers send it: the word
    // decided at syn_recv_sock's entry finds the owner's word on the child.
    let client4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 42), 4243);
    for (local, remote, option) in [
        (
            SocketAddr::new(LB.into(), peer::next_port()),
            SocketAddr::new(GUEST.into(), PORT),
            opt6(254, client),
        ),
        (
            SocketAddr::new(LB6.into(), peer::next_port()),
            SocketAddr::new(GUEST6.into(), PORT),
            opt6(254, client),
        ),
        (
            SocketAddr::new(LB.into(), peer::next_port()),
            SocketAddr::new(GUEST.into(), PORT),
            peer::opt4(254, client4),
        ),
    ] {
        let hs = Handshake {
            ack_options: option,
            ..Handshake::default()
        };
        let _conn = Conn::open(&ctx.tun, local, remote, &hs)?;
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write("/sys/module/toa_owner/parameters/accept", "1")
            .context("toa_owner: accept")?;
        let said = std::fs::read_to_string("/sys/module/toa_owner/parameters/accept")?;
        let said = said.trim();
        let ip = local.ip().to_string();
        if !said.contains(&ip) || !said.contains(&local.port().to_string()) {
            bail!("the kernel user saw {said:?}, not the balancer {local}");
        }
        if said.contains("2001:db8") || said.contains(&client4.ip().to_string()) {
            bail!("the kernel user saw the client: {said:?}");
        }
        if !said.ends_with("owner=kept") {
            bail!("the owner's sk_user_data was not kept: {said:?}");
        }
    }
    let moved = kmod::delta(&b, &kmod::stats()?);
    let d = |k: &str| moved.get(k).copied().unwrap_or(0);
    println!(
        "# owner: toa_user_data_busy +{}, ip6_address_alloc +{}, ip6_address_free +{}",
        d("toa_user_data_busy"),
        d("ip6_address_alloc"),
        d("ip6_address_free")
    );
    ensure_eq!(d("toa_user_data_busy"), 3, "toa_user_data_busy");
    ensure_eq!(d("syn_recv_sock_no_toa"), 3, "syn_recv_sock_no_toa");
    ensure_eq!(d("syn_recv_sock_toa"), 0, "syn_recv_sock_toa");
    ensure_eq!(
        d("ip6_address_alloc"),
        d("ip6_address_free"),
        "IPv6 records made for the owner's sockets, all freed"
    );
    Ok(())
}

/// `AF_SMC` (not in the libc crate).
const AF_SMC: libc::c_int = 43;

/// An `AF_SMC` listener on `addr` (`SMCPROTO_SMC` for IPv4, `SMCPROTO_SMC6`
/// for IPv6), or `None` if the kernel has no SMC.
fn smc_listen(addr: SocketAddr) -> Result<Option<OwnedFd>> {
    let proto = if addr.is_ipv6() { 1 } else { 0 };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(AF_SMC, libc::SOCK_STREAM, proto) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EAFNOSUPPORT) {
            return Ok(None);
        }
        bail!("socket(AF_SMC): {err}");
    }
    // SAFETY: socket(2) returned a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (ss, len) = toa_test::udp::to_sockaddr(&addr);
    // SAFETY: `ss` holds a valid sockaddr of `len` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &ss as *const _ as *const libc::sockaddr,
            len,
        )
    } < 0
    {
        bail!("bind {addr} (AF_SMC): {}", std::io::Error::last_os_error());
    }
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), 16) } < 0 {
        bail!("listen (AF_SMC): {}", std::io::Error::last_os_error());
    }
    Ok(Some(fd))
}

fn smc_listener(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _t = SysctlGuard::set("/proc/sys/net/toa/trusted_sources", "0.0.0.0/0 ::/0")?;
    let client = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 8), 4343, 0, 0);
    // And an IPv4 client in a lone option, as balancers send it: the word
    // decided at syn_recv_sock's entry, not stored for SMC either.
    let client4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 43), 4344);
    let b = kmod::stats()?;
    let mut seen = Vec::new();
    for (local, listen, option) in [
        (
            SocketAddr::new(LB.into(), peer::next_port()),
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), SMC_PORT),
            opt6(254, client),
        ),
        (
            SocketAddr::new(LB6.into(), peer::next_port()),
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), SMC_PORT),
            opt6(254, client),
        ),
        (
            SocketAddr::new(LB.into(), peer::next_port()),
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), SMC_PORT),
            peer::opt4(254, client4),
        ),
    ] {
        let Some(l) = smc_listen(listen)? else {
            return Err(crate::Skip(
                "the kernel has no AF_SMC (CONFIG_SMC; only the debug test kernel has it)".into(),
            )
            .into());
        };
        let remote = match local {
            SocketAddr::V4(_) => SocketAddr::new(GUEST.into(), SMC_PORT),
            SocketAddr::V6(_) => SocketAddr::new(GUEST6.into(), SMC_PORT),
        };
        let hs = Handshake {
            ack_options: option,
            ..Handshake::default()
        };
        let conn = Conn::open(&ctx.tun, local, remote, &hs)?;
        let (fd, accepted) = sock::accept_fd(l.as_raw_fd(), Accept::Accept4)
            .with_context(|| format!("accept on the AF_SMC listener {listen}"))?;
        let peer = sock::getpeername(fd.as_raw_fd())?;
        for (what, got) in [("accept()", accepted), ("getpeername()", peer)] {
            if got.ip().to_string().contains("2001:db8") || got.ip() == *client4.ip() {
                bail!("{what} on the SMC socket returned the client {got}, which SMC's field could not keep");
            }
            ensure_eq!(got, local, "{what} on the SMC socket (the balancer)");
        }
        seen.push(peer);
        drop(fd);
        drop(conn);
        drop(l);
    }
    let moved = kmod::delta(&b, &kmod::stats()?);
    let d = |k: &str| moved.get(k).copied().unwrap_or(0);
    println!(
        "# smc: saw {seen:?}; toa_user_data_busy +{}, syn_recv_sock_no_toa +{}, ip6_address_alloc +{}, ip6_address_free +{}",
        d("toa_user_data_busy"),
        d("syn_recv_sock_no_toa"),
        d("ip6_address_alloc"),
        d("ip6_address_free")
    );
    ensure_eq!(d("toa_user_data_busy"), 3, "toa_user_data_busy");
    ensure_eq!(d("syn_recv_sock_no_toa"), 3, "syn_recv_sock_no_toa");
    ensure_eq!(d("syn_recv_sock_toa"), 0, "syn_recv_sock_toa");
    ensure_eq!(
        d("ip6_address_alloc"),
        0,
        "IPv6 records made for SMC's children"
    );
    ensure_eq!(d("ip6_address_free"), 0, "IPv6 records freed");
    Ok(())
}
