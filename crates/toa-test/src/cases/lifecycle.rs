//! Loading, configuring and unloading toa.ko.

use anyhow::{bail, Result};

use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod;

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "lifecycle: insmod loads toa and logs 'TOA: toa loaded'",
            loads,
        ),
        Case::new(
            "lifecycle: sysctls, parameters and toa_stats are present",
            interfaces,
        ),
        Case::new(
            "lifecycle: rmmod unloads and logs 'TOA: toa unloaded'",
            unloads,
        ),
        Case::new(
            "lifecycle: module parameters set the kinds at load time",
            parameters,
        ),
        Case::new(
            "lifecycle: invalid module parameters refuse the load",
            bad_parameters,
        ),
        Case::new("lifecycle: repeated load/unload cycles", cycles),
    ]
}

fn loads(ctx: &Ctx) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    let before = kmod::log_count("TOA: toa loaded")?;
    ctx.insmod(&[])?;
    ensure_eq!(kmod::loaded(), true);
    ensure_eq!(
        kmod::log_count("TOA: toa loaded")?,
        before + 1,
        "'TOA: toa loaded' lines"
    );
    Ok(())
}

/// The counters every deployment watches, in the order toa_stats lists them.
pub const COUNTERS: &[&str] = &[
    "syn_recv_sock_toa",
    "syn_recv_sock_no_toa",
    "getname_toa_ok",
    "getname_toa_mismatch",
    "getname_toa_bypass",
    "toa_malformed",
];

fn interfaces(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    ensure_eq!(kmod::sysctl("tcpopt_addr")?, "200");
    ensure_eq!(kmod::sysctl("tcpopt_addr_v6")?, "254");
    ensure_eq!(kmod::sysctl("tcpopt_kinds")?, "200 253 254");
    ensure_eq!(kmod::sysctl("tcpopt_cdn")?, "1");
    ensure_eq!(kmod::stats()?.get("syn_table_entries").copied(), Some(0));
    let p = std::fs::read_to_string("/sys/module/toa/parameters/tcpopt_addr")?;
    ensure_eq!(p.trim(), "200", "parameter tcpopt_addr");
    let stats = kmod::stats()?;
    for c in COUNTERS {
        if !stats.contains_key(*c) {
            bail!("toa_stats lacks {c}: {stats:?}");
        }
    }
    let text = std::fs::read_to_string("/proc/net/toa_stats")?;
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ensure_eq!(
        &names[..COUNTERS.len()],
        COUNTERS,
        "first rows of toa_stats"
    );
    Ok(())
}

fn unloads(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let before = kmod::log_count("TOA: toa unloaded")?;
    kmod::rmmod()?;
    ensure_eq!(kmod::loaded(), false);
    ensure_eq!(
        kmod::log_count("TOA: toa unloaded")?,
        before + 1,
        "'TOA: toa unloaded' lines"
    );
    ensure_eq!(
        std::path::Path::new("/proc/net/toa_stats").exists(),
        false,
        "toa_stats after rmmod"
    );
    ensure_eq!(
        std::path::Path::new("/proc/sys/net/toa").exists(),
        false,
        "net.toa after rmmod"
    );
    Ok(())
}

fn parameters(ctx: &Ctx) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    ctx.insmod(&["tcpopt_addr=253", "tcpopt_addr_v6=0"])?;
    let got = (
        kmod::sysctl("tcpopt_addr")?,
        kmod::sysctl("tcpopt_addr_v6")?,
        kmod::sysctl("tcpopt_kinds")?,
    );
    kmod::rmmod()?;
    ensure_eq!(got, ("253".into(), "0".into(), "253".into()));
    // Applied in the order given.
    ctx.insmod(&["tcpopt_kinds=200,254,99", "tcpopt_addr=0", "tcpopt_cdn=0"])?;
    let got = (kmod::sysctl("tcpopt_kinds")?, kmod::sysctl("tcpopt_cdn")?);
    kmod::rmmod()?;
    ensure_eq!(got, ("99 254".into(), "0".into()));
    Ok(())
}

fn bad_parameters(ctx: &Ctx) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    for bad in [
        "tcpopt_addr=256",
        "tcpopt_addr=8",
        "tcpopt_addr_v6=-1",
        "tcpopt_addr=abc",
        "tcpopt_addr=2",
        "hook=bogus",
        "hook=",
        "tcpopt_addr=28",
        "tcpopt_kinds=200,8",
        "tcpopt_kinds=0",
        "tcpopt_cdn=2",
        "udp_hooks=bogus",
        "udp_hooks=",
    ] {
        if ctx.insmod(&[bad]).is_ok() {
            kmod::rmmod()?;
            bail!("insmod toa {bad} succeeded");
        }
        ensure_eq!(kmod::loaded(), false, "loaded after insmod {bad}");
    }
    ctx.insmod(&[])
}

fn cycles(ctx: &Ctx) -> Result<()> {
    for _ in 0..ctx.cycles.min(20) {
        if kmod::loaded() {
            kmod::rmmod()?;
        }
        ctx.insmod(&[])?;
    }
    ensure_eq!(kmod::loaded(), true);
    Ok(())
}
