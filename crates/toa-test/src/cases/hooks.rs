//! How toa hooks getpeername()/accept(): the mechanism it reports and the
//! function tracer shows, the function tracer kept on while toa redirects,
//! and the fall back to kretprobes when another module already redirects
//! inet_getname (tests/kmod/toa_claim.c, standing in for a live patch).
//! Sharing the functions (`hooks: shared:`): a tracefs kretprobe placed
//! before or after toa, the function and function_graph tracers, each call
//! rewritten exactly once and seen by the other tool as many times as it
//! passes the function's entry (`entries_per_call`); the claimer loaded
//! after toa refused as a whole, and free to load once toa is gone; a BPF
//! fexit program (bpftrace, where the kernel has bpf() and BTF) attached
//! before toa loads and after.

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
        Case::new(
            "hooks: shared: a tracefs kretprobe placed before toa loads: each call rewritten once, the probe misses none",
            |ctx: &Ctx| shared_kretprobe(ctx, ProbeOrder::BeforeToa),
        ),
        Case::new(
            "hooks: shared: a tracefs kretprobe placed after toa loaded: each call rewritten once, the probe misses none",
            |ctx: &Ctx| shared_kretprobe(ctx, ProbeOrder::AfterToa),
        ),
        Case::new(
            "hooks: shared: the function_graph tracer on getname, toa rewrites each call once",
            |ctx: &Ctx| shared_tracer(ctx, "function_graph"),
        ),
        Case::new(
            "hooks: shared: the function tracer on getname, toa rewrites each call once",
            |ctx: &Ctx| shared_tracer(ctx, "function"),
        ),
        Case::new(
            "hooks: shared: a live-patch-like claimer after toa is refused cleanly, then loads once toa is gone",
            shared_claim_after,
        ),
        Case::new(
            "hooks: shared: a BPF fexit on getname (bpftrace) attached before toa loads and after: \
             each call rewritten once and seen by the program, or the attach refused with nothing changed",
            shared_bpf,
        ),
    ]
}

/// The getname mechanism a load with `ctx`'s parameters should end up with
/// when nothing else claims inet_getname.
fn expected(ctx: &Ctx) -> &str {
    match ctx.hook() {
        None | Some("auto") => {
            if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
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
        .rfind(|l| l.contains("TOA: toa loaded"))
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

/// Whether the kprobes list (debugfs) has a probe in `func` (at its start,
/// or where the architecture moves a probe on a function's start).
fn kprobed(func: &str) -> Result<bool> {
    let path = "/sys/kernel/debug/kprobes/list";
    if !std::path::Path::new(path).exists() {
        toa_test::sh("mount -t debugfs nodev /sys/kernel/debug")?;
    }
    let list = std::fs::read_to_string(path).context(path)?;
    let at = format!("{func}+0x");
    Ok(list
        .lines()
        .any(|l| l.split_whitespace().any(|w| w.starts_with(&at))))
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
                // Where kprobes are not users of the tracer's call site
                // (arm64 has no KPROBES_ON_FTRACE), a kretprobe is in the
                // kprobes list only.
                if entry.is_empty() && !(want == "kretprobe" && kprobed(func)?) {
                    bail!("{func} is not probed: {traced:?}");
                }
                if entry.contains("toa_direct_") || entry.contains("toa_ftrace_getname") {
                    bail!("{func} is redirected although hook={want}: {entry:?}");
                }
            }
        }
    }
    // The entry hooks every connection passes: direct calls of their own
    // with hook=direct, ftrace_ops with hook=ftrace.
    for (func, handler) in [
        ("tcp_conn_request", "toa_conn_request_entry"),
        ("tcp_check_req", "toa_check_req_entry"),
        ("inet_sock_destruct", "toa_destruct_entry"),
    ] {
        let entry = tracer_entry(&traced, func);
        match want {
            "direct" if !entry.contains(&format!("direct-->{handler}_direct")) => {
                bail!("{func} is not directed to {handler}_direct: {entry:?}")
            }
            "ftrace" if !entry.contains("toa_entry_ftrace") => {
                bail!("{func} has no toa_entry_ftrace ops: {entry:?}")
            }
            _ => {}
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

// ---- Sharing inet_getname/inet6_getname with other users of their entry ----

const TRACING: &str = "/sys/kernel/tracing";

/// The tracefs directory, mounted if it is not.
fn tracing() -> Result<&'static str> {
    if !std::path::Path::new(&format!("{TRACING}/trace")).exists() {
        toa_test::sh(&format!("mount -t tracefs nodev {TRACING}"))?;
    }
    Ok(TRACING)
}

/// Append `line` to the tracefs file `name` (no truncation: writing to
/// kprobe_events with O_TRUNC would remove every probe).
fn tracefs_append(name: &str, line: &str) -> Result<()> {
    use std::io::Write;
    let path = format!("{}/{name}", tracing()?);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| path.clone())?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("{path} << {line:?}"))?;
    Ok(())
}

/// Replace the content of the tracefs file `name` (O_TRUNC, as `echo >` does).
fn tracefs_set(name: &str, value: &str) -> Result<()> {
    let path = format!("{}/{name}", tracing()?);
    std::fs::write(&path, value).with_context(|| format!("{path} = {value:?}"))
}

/// The getname functions and the tracefs kretprobe event each gets.
const PROBED: [(&str, &str); 2] = [
    ("inet_getname", "toa_test_getname"),
    ("inet6_getname", "toa_test_getname6"),
];

/// Tracefs kretprobe events on inet_getname and inet6_getname
/// (`r:toa_test_getname inet_getname $retval`), enabled; disabled and
/// removed when dropped, whatever happened in between.
struct Kretprobes {
    added: Vec<&'static str>,
}

impl Kretprobes {
    fn add() -> Result<Self> {
        let dir = tracing()?;
        if !std::path::Path::new(&format!("{dir}/kprobe_events")).exists() {
            return Err(crate::Skip(
                "the kernel has no kprobe events (CONFIG_KPROBE_EVENTS)".into(),
            )
            .into());
        }
        let mut probes = Kretprobes { added: Vec::new() };
        for (func, event) in PROBED {
            tracefs_append("kprobe_events", &format!("r:{event} {func} $retval\n"))?;
            probes.added.push(event);
            tracefs_set(&format!("events/kprobes/{event}/enable"), "1")?;
        }
        Ok(probes)
    }

    /// (hits, misses) of `event` in kprobe_profile.
    fn profile(event: &str) -> Result<(u64, u64)> {
        let path = format!("{}/kprobe_profile", tracing()?);
        let text = std::fs::read_to_string(&path).context(path)?;
        for line in text.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if let [name, hits, misses] = cols[..] {
                if name == event {
                    return Ok((hits.parse()?, misses.parse()?));
                }
            }
        }
        bail!("{event} is not in kprobe_profile: {text:?}")
    }

    fn profiles() -> Result<Vec<(u64, u64)>> {
        PROBED.iter().map(|(_, e)| Self::profile(e)).collect()
    }
}

impl Drop for Kretprobes {
    fn drop(&mut self) {
        for event in self.added.iter().rev() {
            let off = tracefs_set(&format!("events/kprobes/{event}/enable"), "0");
            let gone = tracefs_append("kprobe_events", &format!("-:{event}\n"));
            for r in [off, gone] {
                if let Err(e) = r {
                    eprintln!("# could not remove the kprobe event {event}: {e:#}");
                }
            }
        }
    }
}

/// How many times one getpeername() on a TOA socket passes the entry of
/// inet_getname (where every other tracer of the function sees it), by
/// the mechanism toa loaded with: a probe leaves the call as it is (once);
/// a redirection makes the call enter once to be redirected, and toa's
/// wrapper calls the function itself. hook=ftrace's wrapper calls it
/// through its entry (a second time, seen by every tracer on it: the
/// wrapper's answer and the kernel's); hook=direct's wrapper calls it past
/// the tracer's call site, as a BPF trampoline calls the function it is
/// attached to (once).
fn entries_per_call(mechanism: &str) -> u64 {
    match mechanism {
        "ftrace" => 2,
        _ => 1,
    }
}

/// Calls made on each socket by the sharing cases.
const CALLS: u64 = 20;

/// A TOA connection per getname function: an IPv4 client on an AF_INET
/// socket (inet_getname) and an IPv6 client on an AF_INET6 one
/// (inet6_getname); then `CALLS` getpeername() calls on each, every one of
/// which must show the client and be rewritten exactly once
/// (getname_toa_ok, and nothing else, moves by one per call). `start`
/// runs between the connections and the calls (where the caller takes its
/// own tool's counts).
fn calls_rewritten_once(ctx: &Ctx, n: u8, start: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let l4 = sock::listen("0.0.0.0:0".parse()?)?;
    let a4 = handshake_to(
        ctx,
        &l4,
        Transport::V4,
        &with_ack(opt4(200, client(n))),
        Accept::Accept,
    )?;
    ensure_eq!(a4.peer, SocketAddr::from(client(n)), "getpeername, IPv4");
    let l6 = sock::listen6(
        SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0),
        true,
    )?;
    let a6 = handshake_to(
        ctx,
        &l6,
        Transport::V6,
        &with_ack(opt6(254, client6(n.into()))),
        Accept::Accept,
    )?;
    ensure_eq!(
        a6.peer,
        SocketAddr::from(client6(n.into())),
        "getpeername, IPv6"
    );
    start()?;
    let before = kmod::stats()?;
    for (a, want) in [
        (&a4, SocketAddr::from(client(n))),
        (&a6, SocketAddr::from(client6(n.into()))),
    ] {
        for i in 0..CALLS {
            ensure_eq!(
                sock::getpeername(a.fd.as_raw_fd())?,
                want,
                "getpeername #{i}"
            );
        }
    }
    kmod::expect_delta(&before, &[("getname_toa_ok", 2 * CALLS)])
        .context("each getpeername() rewritten exactly once")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeOrder {
    BeforeToa,
    AfterToa,
}

fn shared_kretprobe(ctx: &Ctx, order: ProbeOrder) -> Result<()> {
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    if order == ProbeOrder::AfterToa {
        ctx.insmod(&[])?;
    }
    let probes = Kretprobes::add()?;
    if order == ProbeOrder::BeforeToa {
        ctx.insmod(&[])?;
    }
    let mechanism = loaded_hook()?;
    let mut before = Vec::new();
    let n = if order == ProbeOrder::BeforeToa {
        75
    } else {
        76
    };
    calls_rewritten_once(ctx, n, &mut || {
        before = Kretprobes::profiles()?;
        Ok(())
    })?;
    let after = Kretprobes::profiles()?;
    let want = CALLS * entries_per_call(&mechanism);
    for (((_, event), b), a) in PROBED.iter().zip(&before).zip(&after) {
        let (hits, misses) = (a.0 - b.0, a.1 - b.1);
        ensure_eq!(
            (hits, misses),
            (want, 0),
            "{event}: (hits, misses) over {CALLS} calls with hook={mechanism}"
        );
    }
    // toa unloads with the probe still on (the order of the other case's
    // load), then the probe goes.
    if order == ProbeOrder::BeforeToa {
        kmod::rmmod()?;
        drop(probes);
        ctx.insmod(&[])
    } else {
        drop(probes);
        Ok(())
    }
}

/// A tracer on inet_getname and inet6_getname for the rest of the scope;
/// `nop` and an empty filter when dropped.
struct Tracer;

impl Tracer {
    fn set(tracer: &str) -> Result<Self> {
        let available = std::fs::read_to_string(format!("{}/available_tracers", tracing()?))?;
        if !available.split_whitespace().any(|t| t == tracer) {
            return Err(crate::Skip(format!(
                "the kernel has no {tracer} tracer (available: {})",
                available.trim()
            ))
            .into());
        }
        let guard = Tracer;
        tracefs_set("set_ftrace_filter", "inet_getname inet6_getname\n")?;
        tracefs_set("current_tracer", tracer)?;
        tracefs_set("trace", "")?;
        Ok(guard)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        for (file, value) in [
            ("current_tracer", "nop"),
            ("set_ftrace_filter", "\n"),
            ("trace", ""),
        ] {
            if let Err(e) = tracefs_set(file, value) {
                eprintln!("# could not reset the tracer: {e:#}");
            }
        }
    }
}

fn shared_tracer(ctx: &Ctx, tracer: &str) -> Result<()> {
    reload(ctx)?;
    let mechanism = loaded_hook()?;
    let guard = Tracer::set(tracer)?;
    let n = if tracer == "function" { 78 } else { 77 };
    calls_rewritten_once(ctx, n, &mut || tracefs_set("trace", ""))?;
    // What the tracer saw: one entry per pass through each function's entry.
    let trace = std::fs::read_to_string(format!("{}/trace", tracing()?))?;
    drop(guard);
    let want = CALLS * entries_per_call(&mechanism);
    for func in ["inet_getname", "inet6_getname"] {
        let seen = trace
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|w| w == func)
            })
            .count() as u64;
        if seen != want {
            let sample: Vec<&str> = trace
                .lines()
                .filter(|l| l.contains(func))
                .take(12)
                .collect();
            bail!(
                "the {tracer} tracer saw {seen} entries of {func}, want {want} \
                 (hook={mechanism}); first lines: {sample:#?}"
            );
        }
    }
    Ok(())
}

/// Whether `func`'s enabled_functions entry names `what`.
fn traced_by(func: &str, what: &str) -> Result<bool> {
    Ok(tracer_entry(&enabled_functions()?, func).contains(what))
}

fn shared_claim_after(ctx: &Ctx) -> Result<()> {
    let claim = ctx
        .claim_module
        .as_ref()
        .context("no --claim-module (tests/kmod/toa_claim.ko) given")?;
    reload(ctx)?;
    let mechanism = loaded_hook()?;
    let entries_before: Vec<String> = PROBED
        .iter()
        .map(|(f, _)| enabled_functions().map(|all| tracer_entry(&all, f)))
        .collect::<Result<_>>()?;
    let out = std::process::Command::new("insmod").arg(claim).output()?;
    let claimed = out.status.success();
    let result = (|| -> Result<()> {
        if redirects(&mechanism) {
            // toa owns the functions' entry (a direct call or an IPMODIFY
            // ops): the claimer's IPMODIFY ops is refused as a whole.
            if claimed {
                bail!("toa_claim loaded although toa redirects getname (hook={mechanism})");
            }
            let err = String::from_utf8_lossy(&out.stderr);
            if !err.contains("busy") {
                bail!("toa_claim refused, but not with EBUSY: {}", err.trim());
            }
            if std::path::Path::new("/sys/module/toa_claim").exists() {
                bail!("toa_claim refused but left loaded");
            }
            for ((func, _), was) in PROBED.iter().zip(&entries_before) {
                let now = tracer_entry(&enabled_functions()?, func);
                ensure_eq!(&now, was, "{func}'s tracer entry after the refusal");
                if now.contains("toa_claim") {
                    bail!("{func} still has toa_claim's ops: {now:?}");
                }
            }
        } else if !claimed {
            // Probes share the entry with an IPMODIFY ops.
            bail!(
                "toa_claim refused although toa probes getname (hook={mechanism}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        calls_rewritten_once(ctx, 79, &mut || Ok(()))?;
        ensure_eq!(loaded_hook()?, mechanism, "toa's mechanism");
        Ok(())
    })();
    if claimed {
        let _ = std::process::Command::new("rmmod")
            .arg("toa_claim")
            .status();
    }
    result?;
    // Without toa the functions are free: the claimer loads, and goes.
    kmod::rmmod()?;
    let out = std::process::Command::new("insmod").arg(claim).output()?;
    if !out.status.success() {
        bail!(
            "toa_claim refused after toa was unloaded: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let shown = traced_by("inet_getname", "toa_claim");
    let gone = std::process::Command::new("rmmod")
        .arg("toa_claim")
        .output()?;
    if !shown? {
        bail!("toa_claim loaded but inet_getname does not show its ops");
    }
    if !gone.status.success() {
        bail!(
            "rmmod toa_claim: {}",
            String::from_utf8_lossy(&gone.stderr).trim()
        );
    }
    ctx.insmod(&[])
}

// ---- A BPF fexit on inet_getname/inet6_getname (bpftrace) ----

/// bpftrace's program: a BPF fexit (kretfunc) on each getname function
/// counting this process's calls (`$1` is its pid), and a marker: this
/// process's getppid() prints both counts, so that the case reads them
/// where it wants (bpftrace's own output is asynchronous; the counts in a
/// printf are read when the marker fires). BEGIN runs once every probe is
/// attached.
const BPF_PROGRAM: &str = r#"
BEGIN { printf("toa-test ready\n"); }
fexit:vmlinux:inet_getname /pid == $1/ { @inet_getname++; }
fexit:vmlinux:inet6_getname /pid == $1/ { @inet6_getname++; }
tracepoint:syscalls:sys_enter_getppid /pid == $1/ {
    printf("toa-test counts %d %d\n", @inet_getname, @inet6_getname);
}
END { clear(@inet_getname); clear(@inet6_getname); }
"#;

/// How long bpftrace may take to compile and attach its program (seconds
/// under TCG; more on a busy machine), and to answer a marker.
const BPF_ATTACH: std::time::Duration = std::time::Duration::from_secs(300);
const BPF_ANSWER: std::time::Duration = std::time::Duration::from_secs(60);

/// Why the BPF case cannot run here, if it cannot.
fn bpf_unavailable() -> Option<String> {
    // SAFETY: bpf(BPF_PROG_LOAD) with a null attribute: fails with ENOSYS
    // without the system call, EFAULT (or EINVAL) with it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 5, std::ptr::null::<u8>(), 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    if rc < 0 && errno == Some(libc::ENOSYS) {
        return Some("the kernel has no bpf() system call (CONFIG_BPF_SYSCALL is not set)".into());
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some(
            "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF): no fexit program attaches".into(),
        );
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .any(|dir| std::path::Path::new(dir).join("bpftrace").is_file());
    if !found {
        return Some(
            "no tool in the guest attaches a BPF fentry/fexit (bpftrace is not installed)".into(),
        );
    }
    None
}

/// A bpftrace process running `BPF_PROGRAM`; interrupted (SIGINT, as ^C)
/// and waited for when dropped.
struct Bpftrace {
    child: std::process::Child,
    /// Its stdout, line by line (closed when it exits).
    lines: std::sync::mpsc::Receiver<String>,
    /// Its stderr, whole, once it exits.
    stderr: Option<std::thread::JoinHandle<String>>,
    status: Option<std::process::ExitStatus>,
}

/// What became of bpftrace's attach.
enum Attach {
    /// Both fexit programs are on their functions.
    Attached(Bpftrace),
    /// bpftrace gave up: its exit status and its words.
    Refused(String),
}

impl Bpftrace {
    fn start() -> Result<Attach> {
        use std::io::{BufRead, Read};
        use std::process::{Command, Stdio};
        let mut child = Command::new("bpftrace")
            .args(["-B", "line", "-e", BPF_PROGRAM])
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("bpftrace")?;
        let out = child.stdout.take().context("bpftrace's stdout")?;
        let mut err = child.stderr.take().context("bpftrace's stderr")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut bpf = Bpftrace {
            child,
            lines,
            stderr: Some(stderr),
            status: None,
        };
        let start = std::time::Instant::now();
        loop {
            let left = BPF_ATTACH.saturating_sub(start.elapsed());
            match bpf.lines.recv_timeout(left) {
                Ok(line) if line == "toa-test ready" => break,
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    bail!("bpftrace neither attached nor gave up in {BPF_ATTACH:?}")
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let (status, words) = bpf.stop()?;
                    return Ok(Attach::Refused(format!("{status}: {}", words.trim())));
                }
            }
        }
        // The fexit programs are on both functions' entries (a BPF
        // trampoline in the function tracer's table).
        for (func, _) in PROBED {
            let start = std::time::Instant::now();
            while !traced_by(func, "bpf_trampoline")? {
                if start.elapsed() > BPF_ANSWER {
                    bail!(
                        "bpftrace is ready but {func} shows no BPF trampoline: {:?}",
                        tracer_entry(&enabled_functions()?, func)
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        Ok(Attach::Attached(bpf))
    }

    /// The program's counts of this process's inet_getname and
    /// inet6_getname calls so far.
    fn counts(&mut self) -> Result<(u64, u64)> {
        // SAFETY: getppid() has no arguments and cannot fail.
        unsafe { libc::getppid() };
        let start = std::time::Instant::now();
        loop {
            let left = BPF_ANSWER.saturating_sub(start.elapsed());
            let line = self
                .lines
                .recv_timeout(left)
                .context("bpftrace printed no counts for the marker")?;
            if let Some(rest) = line.strip_prefix("toa-test counts ") {
                let mut n = rest.split_whitespace().map(str::parse::<u64>);
                if let (Some(Ok(v4)), Some(Ok(v6))) = (n.next(), n.next()) {
                    return Ok((v4, v6));
                }
                bail!("bpftrace printed {line:?}");
            }
        }
    }

    /// Interrupt bpftrace (if it still runs) and wait for it: its exit
    /// status and its stderr.
    fn stop(&mut self) -> Result<(std::process::ExitStatus, String)> {
        let status = match self.status {
            Some(s) => s,
            None => {
                if self.child.try_wait()?.is_none() {
                    let pid = libc::pid_t::try_from(self.child.id())?;
                    // SAFETY: a signal to our own child, not yet waited for.
                    unsafe { libc::kill(pid, libc::SIGINT) };
                    let start = std::time::Instant::now();
                    while self.child.try_wait()?.is_none() && start.elapsed() < BPF_ANSWER {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    if self.child.try_wait()?.is_none() {
                        let _ = self.child.kill();
                    }
                }
                let s = self.child.wait()?;
                self.status = Some(s);
                s
            }
        };
        let words = match self.stderr.take() {
            Some(t) => t.join().unwrap_or_default(),
            None => String::new(),
        };
        Ok((status, words))
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("# could not stop bpftrace: {e:#}");
        }
    }
}

/// `calls_rewritten_once` with the BPF program on: it sees each call as
/// many times as the call passes the function's entry with toa's
/// `mechanism` (`entries_per_call`). Returns the counts it saw.
fn bpf_sees_each_call(ctx: &Ctx, bpf: &mut Bpftrace, n: u8, mechanism: &str) -> Result<(u64, u64)> {
    let mut before = (0, 0);
    calls_rewritten_once(ctx, n, &mut || {
        before = bpf.counts()?;
        Ok(())
    })?;
    let after = bpf.counts()?;
    let seen = (after.0 - before.0, after.1 - before.1);
    let want = CALLS * entries_per_call(mechanism);
    ensure_eq!(
        seen,
        (want, want),
        "the fexit programs' (inet_getname, inet6_getname) counts over {CALLS} calls each with hook={mechanism}"
    );
    Ok(seen)
}

/// A BPF fexit program (bpftrace's `fexit:vmlinux:inet_getname`, which
/// the kernel attaches as a BPF trampoline through the function tracer's
/// direct call, as toa's hook=direct) on both getname functions; on
/// kernels with bpf(), BTF and bpftrace in the guest (Debian's stock
/// kernels), skipped elsewhere.
///
/// Attached before toa loads: toa cannot take the functions' direct call
/// (the trampoline has it) and loads with another mechanism (hook=ftrace
/// on Debian's 7.2 and 7.3, whose IPMODIFY ops the trampoline shares;
/// with an explicit hook=direct, kretprobes); each getpeername() is
/// rewritten once, and the program sees each call as many times as it
/// passes the entry (twice with hook=ftrace, whose wrapper calls the
/// function through its entry: the outer call returning the client, the
/// inner one the balancer; once otherwise). toa unloads with the program
/// on, which stays on the functions.
///
/// Attached after toa loaded: with hook=direct (the default) the kernel
/// refuses the second direct call on the function (7.2 and 7.3:
/// update_ftrace_direct_add answers EINVAL; bpftrace says `Error
/// attaching probe`) and nothing changes: the functions' tracer entries
/// are as before, toa rewrites each call once. With the other mechanisms
/// the program attaches beside toa's and sees each call as above.
fn shared_bpf(ctx: &Ctx) -> Result<()> {
    if let Some(why) = bpf_unavailable() {
        return Err(
            crate::Skip(format!("{why}: BPF trampolines on getname are not tested")).into(),
        );
    }
    let want = expected(ctx);
    // The program first, then toa.
    if kmod::loaded() {
        kmod::rmmod()?;
    }
    let mut bpf = match Bpftrace::start()? {
        Attach::Attached(b) => b,
        Attach::Refused(why) => bail!("bpftrace could not attach with toa unloaded: {why}"),
    };
    ctx.insmod(&[])?;
    let first = loaded_hook()?;
    if want == "direct" {
        if first == "direct" {
            bail!("toa took the functions' direct call although a BPF trampoline has it");
        }
    } else {
        ensure_eq!(first, want, "toa's mechanism beside the BPF program");
    }
    for (func, _) in PROBED {
        if !traced_by(func, "bpf_trampoline")? {
            bail!(
                "{func} lost its BPF trampoline when toa loaded: {:?}",
                tracer_entry(&enabled_functions()?, func)
            );
        }
    }
    let seen_first = bpf_sees_each_call(ctx, &mut bpf, 80, &first)?;
    kmod::rmmod()?;
    for (func, _) in PROBED {
        if !traced_by(func, "bpf_trampoline")? {
            bail!("{func} lost its BPF trampoline when toa unloaded");
        }
    }
    let (status, words) = bpf.stop()?;
    if !status.success() {
        bail!("bpftrace ended with {status}: {}", words.trim());
    }
    drop(bpf);

    // toa first, then the program.
    ctx.insmod(&[])?;
    let second = loaded_hook()?;
    let entries: Vec<String> = PROBED
        .iter()
        .map(|(f, _)| enabled_functions().map(|all| tracer_entry(&all, f)))
        .collect::<Result<_>>()?;
    let after = match Bpftrace::start()? {
        Attach::Attached(mut bpf) => {
            if second == "direct" {
                bail!("a BPF trampoline attached beside toa's direct call");
            }
            let seen = bpf_sees_each_call(ctx, &mut bpf, 81, &second)?;
            let (status, words) = bpf.stop()?;
            if !status.success() {
                bail!("bpftrace ended with {status}: {}", words.trim());
            }
            format!("attached beside toa's hook={second}, saw {seen:?}")
        }
        Attach::Refused(why) => {
            if second != "direct" {
                bail!("the BPF program was refused beside toa's hook={second}: {why}");
            }
            // bpftrace up to 0.23 (trixie) says "Error attaching probe:",
            // 0.27 (sid) "Unable to attach probe:".
            if ![
                "Error attaching probe: fexit:vmlinux:inet",
                "Unable to attach probe: fexit:vmlinux:inet",
            ]
            .iter()
            .any(|w| why.contains(w))
            {
                bail!("bpftrace failed, but not attaching the fexit programs: {why}");
            }
            for ((func, _), was) in PROBED.iter().zip(&entries) {
                let now = tracer_entry(&enabled_functions()?, func);
                ensure_eq!(&now, was, "{func}'s tracer entry after the refused attach");
            }
            calls_rewritten_once(ctx, 81, &mut || Ok(()))?;
            let why = why.lines().last().unwrap_or_default().trim().to_owned();
            format!("refused beside toa's hook={second} ({why}), nothing changed")
        }
    };
    println!(
        "# BPF fexit on getname: attached first, toa loaded with hook={first}, \
         each call rewritten once, the program saw {seen_first:?} for {CALLS} calls each; \
         after toa: {after}"
    );
    Ok(())
}
