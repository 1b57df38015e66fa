//! Trusted sources: a TOA option names a client only when the packet comes
//! from a balancer in `net.toa.trusted_sources` (empty, the default: from
//! nobody; `0.0.0.0/0 ::/0`: from anyone).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};

use super::common::{
    client, client6, handshake_from, mapped, opt4, opt6, unprivileged_trust_write_refused,
    with_ack, LB, LB6,
};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, SysctlGuard};
use toa_test::sock::{self, Accept};

const TRUSTED: &str = "/proc/sys/net/toa/trusted_sources";
/// A host on the backend's network that is not a balancer.
const FORGER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const FORGER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 1, 0, 3);

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "trust: empty list (default) trusts nobody and hooks no connection; naming a balancer hooks them (once), and a client ignored then is logged",
            default_trusts_nobody,
        ),
        Case::new(
            "trust: 0.0.0.0/0 ::/0 trusts every source",
            any_trusts_all,
        ),
        Case::new(
            "trust: forged option from an untrusted IPv4 source is ignored and counted",
            forged_v4,
        ),
        Case::new(
            "trust: IPv6 prefixes decide for IPv6 balancers",
            prefixes_v6,
        ),
        Case::new(
            "trust: bad lists get EINVAL and keep the old list",
            bad_lists,
        ),
        Case::new(
            "trust: module parameter trusted_sources sets the list at load",
            parameter,
        ),
        Case::new(
            "trust: list replaced at runtime under traffic",
            replaced_under_traffic,
        ),
    ]
}

/// Connect from `src` with `option` to a fresh dual-stack or IPv4 listener
/// and return what getpeername() says.
fn seen_from(ctx: &Ctx, src: IpAddr, option: Vec<u8>) -> Result<(SocketAddr, SocketAddr)> {
    let l = if src.is_ipv4() {
        sock::listen("0.0.0.0:0".parse()?)?
    } else {
        sock::listen6("[::]:0".parse()?, true)?
    };
    let a = handshake_from(ctx, &l, src, &with_ack(option), Accept::Accept)?;
    Ok((a.peer, a.conn.local))
}

fn default_trusts_nobody(ctx: &Ctx) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    let load_line = "no balancer is trusted yet";
    let hooked_line = "new connections hooked: a balancer is trusted";
    let ignored_line = "client named by 10.0.0.2 ignored: no balancer is trusted yet";
    let loads = kmod::log_count(load_line)?;
    let hooked = kmod::log_count(hooked_line)?;
    ctx.insmod_default_trust(&[])?;
    let result = (|| -> Result<()> {
        ensure_eq!(kmod::sysctl("trusted_sources")?, "", "default list");
        ensure_eq!(kmod::log_count(load_line)?, loads + 1, "the load says so");
        ensure_eq!(kmod::log_count(hooked_line)?, hooked, "nothing hooked yet");
        // Nobody trusted: new connections are not hooked at all, so
        // nothing is counted, and nothing is shown.
        let ignored = kmod::log_count(ignored_line)?;
        let before = kmod::stats()?;
        let (seen, lb) = seen_from(ctx, LB.into(), opt4(200, client(50)))?;
        ensure_eq!(seen, lb, "not even the balancer, until it is named");
        kmod::expect_delta(&before, &[])?;
        // An unprivileged write is refused and hooks nothing.
        unprivileged_trust_write_refused("10.0.0.2")?;
        ensure_eq!(
            kmod::sysctl("trusted_sources")?,
            "",
            "after the refused write"
        );
        ensure_eq!(
            kmod::log_count(hooked_line)?,
            hooked,
            "still nothing hooked"
        );
        // Named: new connections are hooked (said once), and the client
        // is taken.
        kmod::set_sysctl("trusted_sources", "10.0.0.2")?;
        ensure_eq!(
            kmod::log_count(hooked_line)?,
            hooked + 1,
            "hooked when named"
        );
        let (seen, _) = seen_from(ctx, LB.into(), opt4(200, client(53)))?;
        ensure_eq!(seen, SocketAddr::from(client(53)), "once named");
        kmod::set_sysctl("trusted_sources", "10.0.0.0/24")?;
        ensure_eq!(kmod::log_count(hooked_line)?, hooked + 1, "hooked once");
        // Cleared again: the hooks stay, and a client named while nobody
        // is trusted is ignored, counted and logged.
        kmod::set_sysctl("trusted_sources", "\n")?;
        let before = kmod::stats()?;
        let (seen, lb) = seen_from(ctx, LB.into(), opt4(200, client(54)))?;
        ensure_eq!(seen, lb, "nobody trusted again");
        kmod::expect_delta(
            &before,
            &[("syn_recv_sock_no_toa", 1), ("toa_untrusted", 1)],
        )?;
        ensure_eq!(
            kmod::log_count(ignored_line)?,
            ignored + 1,
            "the ignored client is logged"
        );
        Ok(())
    })();
    kmod::rmmod()?;
    ctx.insmod(&[])?;
    result
}

fn any_trusts_all(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set(TRUSTED, "0.0.0.0/0,::/0")?;
    ensure_eq!(kmod::sysctl("trusted_sources")?, "0.0.0.0/0 ::/0", "any");
    let (seen, _) = seen_from(ctx, FORGER.into(), opt4(200, client(50)))?;
    ensure_eq!(seen, SocketAddr::from(client(50)), "from any source");
    let (seen, _) = seen_from(ctx, FORGER6.into(), opt6(254, client6(50)))?;
    ensure_eq!(seen, SocketAddr::from(client6(50)), "from any IPv6 source");
    Ok(())
}

fn forged_v4(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set(TRUSTED, "10.0.0.2/32")?;
    ensure_eq!(kmod::sysctl("trusted_sources")?, "10.0.0.2/32");
    let before = kmod::stats()?;
    let (seen, forger) = seen_from(ctx, FORGER.into(), opt4(200, client(51)))?;
    ensure_eq!(seen, forger, "forged option: the real source shows");
    kmod::expect_delta(
        &before,
        &[("syn_recv_sock_no_toa", 1), ("toa_untrusted", 1)],
    )?;
    let (seen, _) = seen_from(ctx, LB.into(), opt4(200, client(52)))?;
    ensure_eq!(
        seen,
        SocketAddr::from(client(52)),
        "from the trusted balancer"
    );
    // An untrusted source without any option is simply not TOA.
    let before = kmod::stats()?;
    let (seen, forger) = seen_from(ctx, FORGER.into(), vec![])?;
    ensure_eq!(seen, forger, "no option");
    kmod::expect_delta(&before, &[("syn_recv_sock_no_toa", 1)])
}

fn prefixes_v6(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set(TRUSTED, "192.0.2.0/24, fd00::/112")?;
    ensure_eq!(kmod::sysctl("trusted_sources")?, "192.0.2.0/24 fd00::/112");
    let (seen, _) = seen_from(ctx, LB6.into(), opt6(254, client6(60)))?;
    ensure_eq!(
        seen,
        SocketAddr::from(client6(60)),
        "fd00::2 is in fd00::/112"
    );
    let (seen, forger) = seen_from(ctx, FORGER6.into(), opt6(254, client6(61)))?;
    ensure_eq!(seen, forger, "fd00::1:0:3 is not");
    let (seen, lb) = seen_from(ctx, LB.into(), opt4(200, client(62)))?;
    ensure_eq!(seen, lb, "10.0.0.2 is not in an IPv6-and-192.0.2 list");
    drop(_g);
    let _g = SysctlGuard::set(TRUSTED, "fd00::2")?;
    let (seen, _) = seen_from(ctx, LB6.into(), opt4(200, client(63)))?;
    ensure_eq!(seen, mapped(client(63).into()), "bare address is a /128");
    Ok(())
}

fn bad_lists(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set(TRUSTED, "10.0.0.0/24")?;
    for bad in [
        "10.0.0.0/33",
        "10.0.0.1/24",
        "10.0.0.0/24,bogus",
        "fd00::/129",
        "300.1.1.1",
        ",",
        "10.0.0.0/24;10.1.0.0/16",
    ] {
        match kmod::set_sysctl("trusted_sources", bad) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => bail!("writing {bad:?}: {other:?}, want EINVAL"),
        }
        ensure_eq!(
            kmod::sysctl("trusted_sources")?,
            "10.0.0.0/24",
            "after {bad:?}"
        );
    }
    let many: Vec<String> = (0..65).map(|i| format!("10.{i}.0.0/16")).collect();
    match kmod::set_sysctl("trusted_sources", &many.join(" ")) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        other => bail!("65 prefixes: {other:?}, want EINVAL"),
    }
    kmod::set_sysctl("trusted_sources", &many[..64].join(","))?;
    ensure_eq!(
        kmod::sysctl("trusted_sources")?,
        many[..64].join(" "),
        "64 prefixes"
    );
    kmod::set_sysctl("trusted_sources", "\n")?;
    ensure_eq!(kmod::sysctl("trusted_sources")?, "", "cleared");
    // Cleared: nobody is trusted.
    let (seen, lb) = seen_from(ctx, LB.into(), opt4(200, client(54)))?;
    ensure_eq!(seen, lb, "an empty list trusts nobody");
    Ok(())
}

fn parameter(ctx: &Ctx) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    ctx.insmod(&["trusted_sources=10.0.0.2/32,fd00::2"])?;
    let text = kmod::sysctl("trusted_sources")?;
    let param = std::fs::read_to_string("/sys/module/toa/parameters/trusted_sources")?;
    let (seen, forger) = seen_from(ctx, FORGER.into(), opt4(200, client(64)))?;
    kmod::rmmod()?;
    ensure_eq!(text, "10.0.0.2/32 fd00::2/128", "sysctl after load");
    ensure_eq!(
        param.trim(),
        "10.0.0.2/32 fd00::2/128",
        "parameter after load"
    );
    ensure_eq!(seen, forger, "untrusted source");
    if ctx.insmod(&["trusted_sources=10.0.0.2/33"]).is_ok() {
        kmod::rmmod()?;
        bail!("insmod with a bad trusted_sources succeeded");
    }
    ctx.insmod(&[])
}

fn replaced_under_traffic(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set(TRUSTED, "10.0.0.2/32")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flipped = Arc::new(AtomicU32::new(0));
    let flipper = {
        let (stop, flipped) = (stop.clone(), flipped.clone());
        std::thread::spawn(move || -> Result<u32> {
            let mut flips = 0;
            while !stop.load(Ordering::Relaxed) {
                let list = if flips % 2 == 0 {
                    "10.0.0.3/32"
                } else {
                    "10.0.0.2/32 fd00::/64"
                };
                kmod::set_sysctl("trusted_sources", list)?;
                flips += 1;
                flipped.store(flips, Ordering::Relaxed);
            }
            Ok(flips)
        })
    };
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    let mut taken = [0u32; 2];
    // At least 400 connections and 10 replacements during them, however
    // slowly a loaded machine runs either (a replacement waits for an RCU
    // grace period: slow under emulation), within a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let result = (|| -> Result<()> {
        let mut i = 0u32;
        while i < 400
            || (flipped.load(Ordering::Relaxed) < 10 && std::time::Instant::now() < deadline)
        {
            i += 1;
            let src: IpAddr = if i.is_multiple_of(2) {
                LB.into()
            } else {
                FORGER.into()
            };
            let c = client(200 + (i % 50) as u8);
            let a = handshake_from(ctx, &l, src, &with_ack(opt4(200, c)), Accept::Accept4)?;
            // Either the client (trusted at that instant) or the packet's
            // own source: never anything else.
            if a.peer == SocketAddr::from(c) {
                taken[(i % 2) as usize] += 1;
            } else if a.peer != a.conn.local {
                bail!("connection {i} from {src} shows {}", a.peer);
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let flips = flipper
        .join()
        .map_err(|_| anyhow::anyhow!("flipper panicked"))??;
    result?;
    if flips < 10 {
        bail!("only {flips} list replacements during the traffic");
    }
    println!(
        "# {flips} replacements; taken from 10.0.0.2: {}, from 10.0.0.3: {}",
        taken[0], taken[1]
    );
    // Settled: the last list decides.
    kmod::set_sysctl("trusted_sources", "10.0.0.3/32")?;
    let (seen, _) = seen_from(ctx, FORGER.into(), opt4(200, client(70)))?;
    ensure_eq!(seen, SocketAddr::from(client(70)), "10.0.0.3 now trusted");
    let (seen, lb) = seen_from(ctx, LB.into(), opt4(200, client(71)))?;
    ensure_eq!(seen, lb, "10.0.0.2 now untrusted");
    Ok(())
}
