//! How toa hooks getpeername()/accept(): the mechanism it reports and the
//! function tracer shows, the function tracer kept on while toa redirects,
//! and the fall back to kretprobes when another module already redirects
//! inet_getname (tests/kmod/toa_claim.c, standing in for a live patch).

use std::net::{SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};

use super::common::{client, client6, handshake_to, mapped, opt4, opt6, with_ack, Transport};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod;
use toa_test::sock::{self, Accept};

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "hooks: the load line names the getname hook, and the function tracer shows it",
            mechanism_shown,
        ),
        Case::new(
            "hooks: TOA sockets show the client, other sockets and getsockname() are untouched",
            only_toa_sockets,
        ),
        Case::new(
            "hooks: kernel.ftrace_enabled=0 is refused while toa redirects getname",
            ftrace_stays_on,
        ),
        Case::new(
            "hooks: getname already redirected by another module: kretprobes instead, said once",
            falls_back,
        ),
    ]
}

/// The getname mechanism a load with `ctx`'s parameters should end up with
/// when nothing else claims inet_getname.
fn expected(ctx: &Ctx) -> &str {
    match ctx.hook() {
        None | Some("auto") => {
            if cfg!(target_arch = "x86_64") {
                "direct"
            } else {
                "ftrace"
            }
        }
        Some(h) => h,
    }
}

/// Whether a mechanism redirects getname (as opposed to probing it).
fn redirects(mechanism: &str) -> bool {
    matches!(mechanism, "direct" | "ftrace")
}

/// The last `TOA: toa loaded` line's `hook=` value.
fn loaded_hook() -> Result<String> {
    let log = kmod::dmesg()?;
    let line = log
        .lines()
        .filter(|l| l.contains("TOA: toa loaded"))
        .next_back()
        .context("no 'TOA: toa loaded' line")?;
    let hook = line
        .split("hook=")
        .nth(1)
        .and_then(|r| r.split([',', ')']).next())
        .with_context(|| format!("no hook= in {line:?}"))?;
    Ok(hook.to_owned())
}

/// /sys/kernel/tracing/enabled_functions: what the function tracer has
/// attached to which function.
fn enabled_functions() -> Result<String> {
    let path = "/sys/kernel/tracing/enabled_functions";
    if !std::path::Path::new(path).exists() {
        toa_test::sh("mount -t tracefs nodev /sys/kernel/tracing")?;
    }
    std::fs::read_to_string(path).context(path)
}

/// The `enabled_functions` entry of `func` (its line and the lines under it).
fn tracer_entry(all: &str, func: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in all.lines() {
        if !line.starts_with(char::is_whitespace) {
            inside = line.split_whitespace().next() == Some(func);
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn reload(ctx: &Ctx) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    ctx.insmod(&[])
}

fn mechanism_shown(ctx: &Ctx) -> Result<()> {
    reload(ctx)?;
    let want = expected(ctx);
    ensure_eq!(loaded_hook()?, want, "hook= in the load line");
    let traced = enabled_functions()?;
    for (func, v6) in [("inet_getname", false), ("inet6_getname", true)] {
        let entry = tracer_entry(&traced, func);
        match want {
            "direct" => {
                let tramp = if v6 {
                    "toa_direct_inet6_getname"
                } else {
                    "toa_direct_inet_getname"
                };
                if !entry.contains(&format!("direct-->{tramp}")) {
                    bail!("{func} is not directed to {tramp}: {entry:?}");
                }
            }
            "ftrace" => {
                if !entry.contains("toa_ftrace_getname") {
                    bail!("{func} has no toa_ftrace_getname ops: {entry:?}");
                }
            }
            _ => {
                if entry.is_empty() {
                    bail!("{func} is not probed: {traced:?}");
                }
                if entry.contains("toa_direct_") || entry.contains("toa_ftrace_getname") {
                    bail!("{func} is redirected although hook={want}: {entry:?}");
                }
            }
        }
    }
    Ok(())
}

fn only_toa_sockets(ctx: &Ctx) -> Result<()> {
    reload(ctx)?;
    // A TOA connection over IPv4 to an AF_INET listener, and one over IPv6
    // to a dual-stack listener: accept() and getpeername() show the client,
    // getsockname() the listener's own address.
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    let a = handshake_to(
        ctx,
        &l,
        Transport::V4,
        &with_ack(opt4(200, client(71))),
        Accept::Accept,
    )?;
    ensure_eq!(a.accepted, SocketAddr::from(client(71)), "accept, IPv4");
    ensure_eq!(a.peer, SocketAddr::from(client(71)), "getpeername, IPv4");
    let local = std::net::TcpStream::from(a.fd.try_clone()?).local_addr()?;
    ensure_eq!(local.port(), l.local_addr()?.port(), "getsockname, IPv4");
    let l6 = sock::listen6(
        SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0),
        false,
    )?;
    let b = handshake_to(
        ctx,
        &l6,
        Transport::V6,
        &with_ack(opt6(254, client6(71))),
        Accept::Accept4,
    )?;
    ensure_eq!(b.accepted, SocketAddr::from(client6(71)), "accept, IPv6");
    ensure_eq!(b.peer, SocketAddr::from(client6(71)), "getpeername, IPv6");
    let c = handshake_to(
        ctx,
        &l6,
        Transport::V4,
        &with_ack(opt4(200, client(72))),
        Accept::Accept,
    )?;
    ensure_eq!(
        c.peer,
        mapped(client(72).into()),
        "getpeername, IPv4 client, dual stack"
    );
    // A loopback connection without TOA: the kernel's own answer.
    let plain = std::net::TcpListener::bind("127.0.0.1:0")?;
    let out = std::net::TcpStream::connect(plain.local_addr()?)?;
    let (inn, seen) = plain.accept()?;
    ensure_eq!(seen, out.local_addr()?, "accept, loopback");
    ensure_eq!(
        sock::getpeername(inn.as_raw_fd())?,
        out.local_addr()?,
        "getpeername, loopback"
    );
    Ok(())
}

fn ftrace_stays_on(ctx: &Ctx) -> Result<()> {
    reload(ctx)?;
    let path = "/proc/sys/kernel/ftrace_enabled";
    let mechanism = loaded_hook()?;
    let res = kmod::write_file(path, "0");
    let now = std::fs::read_to_string(path)?.trim().to_owned();
    if redirects(&mechanism) {
        let Err(e) = res else {
            let _ = kmod::write_file(path, "1");
            bail!("ftrace_enabled=0 was accepted while toa redirects getname ({mechanism})");
        };
        // EBUSY: a permanent ops is registered (6.12); EOPNOTSUPP: the
        // knob no longer turns the tracer off at all (7.x).
        let errno = e.raw_os_error();
        if errno != Some(libc::EBUSY) && errno != Some(libc::EOPNOTSUPP) {
            bail!("ftrace_enabled=0 failed with {e}, not EBUSY or EOPNOTSUPP");
        }
        ensure_eq!(now, "1", "ftrace_enabled after the refused write");
    } else {
        // Probes do not pin the function tracer: put it back.
        kmod::write_file(path, "1")?;
    }
    // Either way toa still shows clients.
    let l = sock::listen("0.0.0.0:0".parse()?)?;
    let a = handshake_to(
        ctx,
        &l,
        Transport::V4,
        &with_ack(opt4(200, client(73))),
        Accept::Accept,
    )?;
    ensure_eq!(a.peer, SocketAddr::from(client(73)), "getpeername");
    Ok(())
}

fn falls_back(ctx: &Ctx) -> Result<()> {
    let claim = ctx
        .claim_module
        .as_ref()
        .context("no --claim-module (tests/kmod/toa_claim.ko) given")?;
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    let line = "hooked with kretprobes instead";
    let before = kmod::log_count(line)?;
    let out = std::process::Command::new("insmod").arg(claim).output()?;
    if !out.status.success() {
        bail!(
            "insmod {}: {}",
            claim.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let result = (|| -> Result<()> {
        ctx.insmod(&[])?;
        let want = expected(ctx);
        let (got, lines) = if redirects(want) {
            ("kretprobe", 1)
        } else {
            (want, 0)
        };
        ensure_eq!(loaded_hook()?, got, "hook= in the load line");
        ensure_eq!(kmod::log_count(line)? - before, lines, "fall-back lines");
        let l = sock::listen("0.0.0.0:0".parse()?)?;
        let a = handshake_to(
            ctx,
            &l,
            Transport::V4,
            &with_ack(opt4(200, client(74))),
            Accept::Accept,
        )?;
        ensure_eq!(a.accepted, SocketAddr::from(client(74)), "accept");
        ensure_eq!(a.peer, SocketAddr::from(client(74)), "getpeername");
        kmod::rmmod()
    })();
    let out = std::process::Command::new("rmmod")
        .arg("toa_claim")
        .output()?;
    result?;
    if !out.status.success() {
        bail!(
            "rmmod toa_claim: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    ctx.insmod(&[])
}
