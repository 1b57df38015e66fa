//! Hostile input and load: thousands of random and mutated option lists
//! through real handshakes, judged by the module's own parser compiled for
//! userspace (`toa-core`) as the oracle; and unloading/reloading toa while
//! connections churn and threads keep asking for peers.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use toa_core::tcp::wire::{self, ClientAddr, Found, Packet, Pick, Rules, Scan};

use super::common::{client, client6, handshake_to, mapped, opt4, opt6, with_ack, Transport};
use super::ipv6::settle;
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod;
use toa_test::sock::{self, Accept};

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "stress: random and mutated option lists (3000; --lists), address only from a well-formed TOA",
            random_options,
        ),
        Case::new(
            "stress: rmmod/insmod cycles under connection churn and getpeername/getsockopt threads",
            unload_under_load,
        ),
    ]
}

/// Kinds the guest kernel acts on in a handshake ACK (timestamps trigger PAWS
/// checks, MD5/AO drop unsigned segments): a random list gets another kind
/// there, so that every handshake completes and only toa's answer is judged.
const KERNEL_KINDS: [u8; 9] = [2, 3, 4, 5, 8, 19, 29, 30, 34];

/// Replace kernel-meaningful kinds at the option boundaries the kernel's
/// own walk would see.
fn defuse(options: &mut [u8]) {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => break,
            1 => i += 1,
            k => {
                if KERNEL_KINDS.contains(&k) {
                    options[i] = 77;
                }
                match options.get(i + 1) {
                    Some(&l) if l >= 2 => i += usize::from(l),
                    _ => break,
                }
            }
        }
    }
}

/// One option list: random bytes, or a valid list with a TOA option,
/// mutated (bytes flipped, lengths changed, cut, EOL inserted).
fn option_list(rng: &mut fastrand::Rng, n: u32) -> Vec<u8> {
    let words = rng.usize(0..=10);
    let mut o: Vec<u8> = if rng.bool() {
        (0..words * 4).map(|_| rng.u8(..)).collect()
    } else {
        let mut v = vec![1; rng.usize(0..3)];
        let kind = [200, 254, 253][rng.usize(0..3)];
        if rng.bool() {
            v.extend(opt4(kind, client((n % 250) as u8 + 1)));
        } else {
            v.extend(opt6(kind, client6(n as u16)));
        }
        for _ in 0..rng.usize(0..4) {
            if v.is_empty() {
                break;
            }
            match rng.u8(0..4) {
                0 => {
                    let i = rng.usize(0..v.len());
                    v[i] = rng.u8(..);
                }
                1 => {
                    let i = rng.usize(0..v.len());
                    v[i] = [0, 1, 2, 7, 8, 9, 19, 20, 21, 40][rng.usize(0..10)];
                }
                2 => v.truncate(rng.usize(0..=v.len())),
                _ => v.insert(rng.usize(0..=v.len()), 0),
            }
        }
        v.truncate(wire::MAX_OPTIONS_LEN);
        while !v.len().is_multiple_of(4) {
            v.push(if rng.bool() { 0 } else { 1 });
        }
        v
    };
    defuse(&mut o);
    o
}

/// Whether a kernel built with TCP-MD5/TCP-AO drops a segment carrying
/// `options` before TCP looks at it (`tcp_do_parse_auth_options()`: an
/// option whose length is below 2 or runs past the list, while at least
/// 5 bytes are left). Distribution kernels are built so; the test kernels
/// are not.
fn auth_parser_rejects(options: &[u8]) -> bool {
    let mut rest = options;
    while rest.len() >= 5 {
        match rest[0] {
            0 => return false,
            1 => rest = &rest[1..],
            _ => {
                let len = usize::from(rest[1]);
                if len < 2 || len > rest.len() {
                    return true;
                }
                rest = &rest[len..];
            }
        }
    }
    false
}

/// Whether this kernel drops segments `auth_parser_rejects()` flags: one
/// handshake whose ACK carries such a list, accepted or not.
fn kernel_has_auth_parser(ctx: &Ctx, l: &std::net::TcpListener) -> Result<bool> {
    let options = vec![200, 208, 0, 156, 65, 198, 51, 100, 1, 0, 0, 0];
    Ok(handshake_to(ctx, l, Transport::V4, &with_ack(options), Accept::Accept4).is_err())
}

fn random_options(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let rules = Rules::DEFAULT;
    let mut rng = fastrand::Rng::with_seed(0x70a);
    let l = sock::listen6("[::]:0".parse()?, false)?;
    let drops = kernel_has_auth_parser(ctx, &l)?;
    let (mut found, mut malformed, mut dropped) = (0, 0, 0);
    let lists = ctx.lists.max(100);
    for n in 0..lists {
        let options = option_list(&mut rng, n);
        // What the kernel drops never reaches toa: nothing to judge.
        if drops && auth_parser_rejects(&options) {
            dropped += 1;
            continue;
        }
        let a = handshake_to(
            ctx,
            &l,
            Transport::V4,
            &with_ack(options.clone()),
            Accept::Accept4,
        )
        .map_err(|e| anyhow!("list {options:?}: {e:#}"))?;
        let port = a.conn.local.port().to_be_bytes();
        // The default position (only): client options that disagree name
        // nobody.
        let want = match wire::scan_pick(&options, &rules, Packet::Ack, port, Pick::Only).scan {
            Scan::Found(Found {
                client: ClientAddr::V4 { port, addr },
                ..
            }) => {
                found += 1;
                mapped(SocketAddr::new(
                    IpAddr::from(addr),
                    u16::from_be_bytes(port),
                ))
            }
            Scan::Found(Found {
                client: ClientAddr::V6 { port, addr },
                ..
            }) => {
                found += 1;
                SocketAddr::new(IpAddr::from(addr), u16::from_be_bytes(port))
            }
            Scan::Malformed(_) => {
                malformed += 1;
                mapped(a.conn.local)
            }
            Scan::Absent => mapped(a.conn.local),
        };
        ensure_eq!(a.peer, want, "getpeername() after options {options:?}");
    }
    println!(
        "# {lists} lists: {found} with a client, {malformed} malformed, {dropped} dropped by the kernel's TCP-AO/MD5 option check"
    );
    // (The lists the kernel drops are malformed ones too.) A tenth of each,
    // at least: the generator makes about a third of each.
    if found < lists / 10 || malformed + dropped < lists / 10 {
        bail!("the generator is off: {found} found, {malformed} malformed, {dropped} dropped");
    }
    settle()?;
    Ok(())
}

/// A connection some thread may ask about, and the answers that are right
/// whether or not toa is loaded at that instant.
struct Watched {
    fd: OwnedFd,
    /// getpeername(): the client, or the balancer's own address.
    peer_ok: [SocketAddr; 2],
    /// TOA_SO_GET_LOOKUP: the client (as IPv6).
    lookup: SocketAddr,
}

fn reader(
    pool: Arc<Mutex<Vec<Arc<Watched>>>>,
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
) -> Result<()> {
    let mut rng = fastrand::Rng::new();
    while !stop.load(Ordering::Relaxed) {
        let w = {
            let p = pool.lock().map_err(|_| anyhow!("pool poisoned"))?;
            if p.is_empty() {
                None
            } else {
                Some(p[rng.usize(0..p.len())].clone())
            }
        };
        let Some(w) = w else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        match sock::getpeername_errno(w.fd.as_raw_fd())? {
            Ok(peer) if w.peer_ok.contains(&peer) => {}
            // Reset by the churn while this thread still held it.
            Err(libc::ENOTCONN) => {}
            other => bail!("getpeername() gave {other:?}, want one of {:?}", w.peer_ok),
        }
        match sock::toa_lookup(w.fd.as_raw_fd(), 20)? {
            Ok((a, _)) if a == w.lookup => {}
            // Not loaded (ENOPROTOOPT), or a record of an unloaded instance
            // (ENOENT), or a module being unloaded under the call (EAGAIN).
            Err(libc::ENOPROTOOPT) | Err(libc::ENOENT) => {}
            other => bail!("TOA_SO_GET_LOOKUP gave {other:?}, want {}", w.lookup),
        }
        calls.fetch_add(2, Ordering::Relaxed);
        if rng.u8(0..8) == 0 {
            std::thread::yield_now();
        }
    }
    Ok(())
}

/// rmmod, retrying while a getsockopt caller holds the module.
fn rmmod_retrying() -> Result<()> {
    for _ in 0..200 {
        match kmod::rmmod() {
            Ok(()) => return Ok(()),
            Err(e)
                if format!("{e}").contains("in use") || format!("{e}").contains("temporarily") =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    bail!("toa stayed busy")
}

fn unload_under_load(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let pool: Arc<Mutex<Vec<Arc<Watched>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, stop, calls) = (pool.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || reader(pool, stop, calls))
        })
        .collect();
    let want_cycles = ctx.cycles;
    let cycler = {
        let stop = stop.clone();
        let (module, params) = (ctx.module.clone(), ctx.params.clone());
        std::thread::spawn(move || -> Result<u32> {
            let mut rng = fastrand::Rng::with_seed(7);
            let mut cycles = 0;
            while cycles < want_cycles && !stop.load(Ordering::Relaxed) {
                rmmod_retrying()?;
                std::thread::sleep(Duration::from_millis(rng.u64(0..15)));
                let p: Vec<&str> = params.iter().map(String::as_str).collect();
                kmod::insmod(&module, &p)?;
                std::thread::sleep(Duration::from_millis(rng.u64(0..15)));
                cycles += 1;
            }
            Ok(cycles)
        })
    };

    // Churn: connections of every client family on both listener families,
    // the newest few hundred kept open and watched.
    let listeners: [(TcpListener, Transport); 2] = [
        (sock::listen("0.0.0.0:0".parse()?)?, Transport::V4),
        (sock::listen6("[::]:0".parse()?, false)?, Transport::V6),
    ];
    let mut opened = 0u32;
    let mut open = std::collections::VecDeque::new();
    let churn = (|| -> Result<()> {
        while !cycler.is_finished() {
            let (l, transport) = &listeners[(opened % 2) as usize];
            let real: SocketAddr = if opened.is_multiple_of(3) {
                client6(opened as u16).into()
            } else {
                client((opened % 250) as u8 + 1).into()
            };
            let option = match real {
                SocketAddr::V4(c) => opt4(200, c),
                SocketAddr::V6(c) => opt6(254, c),
            };
            let a = handshake_to(ctx, l, *transport, &with_ack(option), Accept::Accept4)?;
            let balancer = a.conn.local;
            let (shown, lb) = match (transport, real) {
                (Transport::V4, SocketAddr::V6(_)) => (balancer, balancer),
                (Transport::V4, r) => (r, balancer),
                (Transport::V6, r) => (mapped(r), balancer),
            };
            if a.peer != shown && a.peer != lb {
                bail!(
                    "connection {opened}: getpeername() gave {}, want {shown} or {lb}",
                    a.peer
                );
            }
            let w = Arc::new(Watched {
                fd: a.fd.try_clone()?,
                peer_ok: [shown, lb],
                lookup: match real {
                    SocketAddr::V4(c) => SocketAddr::new(c.ip().to_ipv6_mapped().into(), c.port()),
                    v6 => v6,
                },
            });
            let mut p = pool.lock().map_err(|_| anyhow!("pool poisoned"))?;
            p.push(w);
            open.push_back(a);
            if p.len() > 300 {
                // The oldest leaves the pool, then its connection is reset.
                p.remove(0);
                open.pop_front();
            }
            opened += 1;
        }
        Ok(())
    })();
    drop(open);
    stop.store(true, Ordering::Relaxed);
    let cycles = cycler.join().map_err(|_| anyhow!("cycler panicked"))?;
    for r in readers {
        r.join().map_err(|_| anyhow!("reader panicked"))??;
    }
    churn?;
    let cycles = cycles?;
    pool.lock().map_err(|_| anyhow!("pool poisoned"))?.clear();
    ctx.require_loaded()?;
    println!(
        "# {cycles} unload/load cycles, {opened} connections, {} peer calls",
        calls.load(Ordering::Relaxed)
    );
    ensure_eq!(cycles, want_cycles, "cycles");
    if opened < 200 {
        bail!("only {opened} connections during the cycles");
    }
    // Whatever the last instance allocated is freed with its sockets.
    settle()?;
    Ok(())
}
