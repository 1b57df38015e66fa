//! Other owners of `sk_user_data`: a kernel user of the field (DLM, the
//! iSCSI target, sunrpc keep their state there) sets it on its listener, so
//! each child the kernel makes for it carries the owner's word before toa
//! sees it. toa must leave the word alone, show the kernel user the
//! balancer (never a wrong client), count it (`toa_user_data_busy`), and
//! free every IPv6 record it made for nothing. The owner is played by
//! `tests/kmod/toa_owner.ko`, built beside `toa_claim.ko`.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::common::{opt6, GUEST, GUEST6, LB, LB6};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, SysctlGuard};
use toa_test::peer::{self, Conn, Handshake};

/// The kernel listener's port.
const PORT: u16 = 7100;

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "owners: a kernel user's sk_user_data on its listener (tests/kmod/toa_owner.ko): left alone, the kernel user sees the balancer over IPv4 and IPv6, counted busy, every IPv6 record freed",
        kernel_owner,
    )]
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
    for (local, remote) in [
        (
            SocketAddr::new(LB.into(), peer::next_port()),
            SocketAddr::new(GUEST.into(), PORT),
        ),
        (
            SocketAddr::new(LB6.into(), peer::next_port()),
            SocketAddr::new(GUEST6.into(), PORT),
        ),
    ] {
        let hs = Handshake {
            ack_options: opt6(254, client),
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
        if said.contains("2001:db8") {
            bail!("the kernel user saw the client: {said:?}");
        }
        if !said.ends_with("owner=kept") {
            bail!("the owner's sk_user_data was not kept: {said:?}");
        }
    }
    let a = kmod::stats()?;
    let d = |k: &str| {
        a.get(k)
            .copied()
            .unwrap_or(0)
            .wrapping_sub(b.get(k).copied().unwrap_or(0))
    };
    println!(
        "# owner: toa_user_data_busy +{}, ip6_address_alloc +{}, ip6_address_free +{}",
        d("toa_user_data_busy"),
        d("ip6_address_alloc"),
        d("ip6_address_free")
    );
    ensure_eq!(d("toa_user_data_busy"), 2, "toa_user_data_busy");
    ensure_eq!(d("syn_recv_sock_no_toa"), 2, "syn_recv_sock_no_toa");
    ensure_eq!(d("syn_recv_sock_toa"), 0, "syn_recv_sock_toa");
    ensure_eq!(
        d("ip6_address_alloc"),
        d("ip6_address_free"),
        "IPv6 records made for the owner's sockets, all freed"
    );
    Ok(())
}
