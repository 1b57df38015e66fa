//! The host's own users are not the balancer: what a local unprivileged
//! user (an ICMP echo through a ping socket, any UDP or TCP socket) and a
//! container (a network namespace of its own) can make toa do, played as
//! they would, with every source trusted (the worst case for the host).

use std::io::Read;
use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::common::{unprivileged_trust_write_refused, NOBODY};
use crate::{ensure_eq, Case, Ctx};
use toa_test::kmod::{self, SysctlGuard};
use toa_test::udp::Announce;

/// The guest's own address on the test device (a local address, like any
/// of a backend's).
const HOST: &str = "10.0.0.1";
/// The client the attacker names (on the test device's network, so that
/// the host can send to it).
const FORGED: &str = "10.0.0.77:4242";

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "local: an unprivileged user's ping-socket announcement makes no flow; a local UDP service sees the user",
            udp_announcement,
        ),
        Case::new(
            "local: after such an announcement the host's datagrams to the named client are not diverted",
            udp_no_diversion,
        ),
        Case::new(
            "local: a protocol-6 announcement from a ping socket names no local TCP connection's client",
            tcp_announcement,
        ),
        Case::new(
            "local: each network namespace has its own net.toa.* (following the host's until its root writes one; a container's root and an unprivileged user's namespace set theirs, never the host's; the UDP table's settings are the host's)",
            other_namespace_writes,
        ),
    ]
}

/// What the unprivileged user runs: a ping socket with the announcement's
/// identifier sends the announcement to the host's own address, then a
/// UDP or TCP socket on the announced balancer port talks to the service.
const PY_ATTACK: &str = r#"
import socket, sys, time
msg, lport, dst, rsport, mode = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
p.bind(("0.0.0.0", 0x1234))
p.sendto(msg, (dst, 0))
time.sleep(0.3)
if mode == "udp":
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", lport))
    u.settimeout(6)
    u.sendto(b"hi", (dst, rsport))
    try:
        data, src = u.recvfrom(100)
        print("diverted", data.decode(), flush=True)
    except OSError:
        print("nothing", flush=True)
else:
    t = socket.socket()
    t.bind(("0.0.0.0", lport))
    t.connect((dst, rsport))
    t.recv(1)
    print("done", flush=True)
"#;

/// Ping sockets for every group (what systemd sets at boot), and trust in
/// every source, for the scope.
fn attack_setup() -> Result<(SysctlGuard, SysctlGuard)> {
    Ok((
        SysctlGuard::set("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")?,
        SysctlGuard::set("/proc/sys/net/toa/trusted_sources", "0.0.0.0/0 ::/0")?,
    ))
}

/// Start the attack as nobody: announce `lport` -> `rsport` for the forged
/// client (`tcp`: protocol 6), then talk to the service.
fn attack(lport: u16, rsport: u16, tcp: bool) -> Result<Attacker> {
    let mut a = Announce::lvs(
        SocketAddrV4::new(HOST.parse()?, lport),
        SocketAddrV4::new(HOST.parse()?, rsport),
        FORGED.parse()?,
    );
    a.tcp = tcp;
    // A ping socket bound to port 0x1234 sends identifier 12 34.
    a.ident = [0x12, 0x34];
    let hex: String = a.message().iter().map(|b| format!("{b:02x}")).collect();
    let mode = if tcp { "tcp" } else { "udp" };
    Command::new("setpriv")
        .args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".to_owned(),
            "python3".to_owned(),
            "-c".to_owned(),
            PY_ATTACK.to_owned(),
            hex,
            lport.to_string(),
            HOST.to_owned(),
            rsport.to_string(),
            mode.to_owned(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|c| Attacker(Some(c)))
        .context("setpriv python3")
}

/// The attacker, killed if a case gives up on it (so that nothing of it
/// reaches the next case).
struct Attacker(Option<Child>);

impl Drop for Attacker {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The attacker's last words (its stdout), or its error.
fn attacker_said(mut attacker: Attacker) -> Result<String> {
    let Some(child) = attacker.0.take() else {
        bail!("the attacker is gone");
    };
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the unprivileged attacker failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn udp_announcement(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = attack_setup()?;
    let service = UdpSocket::bind("0.0.0.0:6501")?;
    service.set_read_timeout(Some(Duration::from_secs(90)))?;
    let before = kmod::stats()?;
    let child = attack(40001, 6501, false)?;
    let mut buf = [0u8; 64];
    let (n, from) = service.recv_from(&mut buf).context("the user's datagram")?;
    ensure_eq!(&buf[..n], b"hi");
    ensure_eq!(
        from,
        format!("{HOST}:40001").parse::<SocketAddr>()?,
        "the service sees the local user, not the named client"
    );
    // Let the attacker finish (it waits for a reply that does not come).
    attacker_said(child)?;
    let flows = std::fs::read_to_string("/proc/net/toa_udp")?;
    if flows.contains("10.0.0.77") {
        bail!("a flow names the forged client:\n{flows}");
    }
    kmod::expect_delta(&before, &[("udp_local", 1)])
}

fn udp_no_diversion(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = attack_setup()?;
    // A root-owned service on the announced backend port.
    let service = UdpSocket::bind("0.0.0.0:6502")?;
    service.set_read_timeout(Some(Duration::from_secs(90)))?;
    let before = kmod::stats()?;
    let child = attack(40002, 6502, false)?;
    let mut buf = [0u8; 64];
    service.recv_from(&mut buf).context("the user's datagram")?;
    // The service writes to the client the user named: it must go there
    // (out of the test device), not to the user's socket.
    service.send_to(b"secret", FORGED)?;
    ensure_eq!(
        attacker_said(child)?,
        "nothing",
        "the host's datagram reached the user"
    );
    kmod::expect_delta(&before, &[("udp_local", 1)])
}

fn tcp_announcement(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = attack_setup()?;
    let service = TcpListener::bind("0.0.0.0:6503")?;
    let before = kmod::stats()?;
    let child = attack(40003, 6503, true)?;
    // Accept within a bound (a slow machine), never hang the suite.
    service.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let (mut conn, peer) = loop {
        match service.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    bail!("the user's connection never came");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    };
    conn.set_nonblocking(false)?;
    let seen = toa_test::sock::getpeername(std::os::fd::AsRawFd::as_raw_fd(&conn))?;
    use std::io::Write;
    conn.write_all(b"x")?;
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    attacker_said(child)?;
    let want: SocketAddr = format!("{HOST}:40003").parse()?;
    ensure_eq!(peer, want, "accept() shows the local user");
    ensure_eq!(seen, want, "getpeername() shows the local user");
    kmod::expect_delta(&before, &[("udp_local", 1), ("syn_recv_sock_no_toa", 1)])
}

fn other_namespace_writes(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    let _g = SysctlGuard::set("/proc/sys/net/toa/trusted_sources", "10.0.0.2/32")?;
    let _k = SysctlGuard::set("/proc/sys/net/toa/tcpopt_kinds", "200 253 254")?;
    let timeout = kmod::sysctl("udp_timeout")?;
    // What each actor runs in a network namespace of its own: show the
    // inherited list, set its own list and kinds, read them back, then try
    // the host's UDP timeout (the flow table is shared).
    let script = "cd /proc/sys/net/toa; echo start=$(cat trusted_sources); \
         echo 192.0.2.0/24 > trusted_sources && echo 254 > tcpopt_kinds && \
         echo own=$(cat trusted_sources)/$(cat tcpopt_kinds); \
         if (echo 5 > udp_timeout) 2>/dev/null; then echo timeout=written; else echo timeout=refused; fi";
    // A container's root: CAP_NET_ADMIN, in a network namespace of its own
    // (what `docker run --sysctl` and Kubernetes' namespaced sysctls do).
    let root = toa_test::sh(&format!("unshare -n sh -c '{script}' 2>&1"))?;
    let check = |who: &str, out: &str| -> Result<()> {
        for want in [
            "start=10.0.0.2/32",
            "own=192.0.2.0/24/254",
            "timeout=refused",
        ] {
            if !out.contains(want) {
                bail!("{who}: no {want:?} in {out:?}");
            }
        }
        Ok(())
    };
    check("a container's root", &root)?;
    // An unprivileged user with a user and network namespace of its own
    // (where the kernel has user namespaces): root of its own namespace,
    // it sets that namespace's values, and nobody else's.
    if std::path::Path::new("/proc/self/ns/user").exists() {
        let user = toa_test::sh(&format!(
            "setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups unshare -rn sh -c '{script}' 2>&1"
        ))?;
        check("an unprivileged user's namespace", &user)?;
    } else {
        println!(
            "# this kernel has no user namespaces: the unprivileged user's namespace is not tried"
        );
    }
    // The same user in the host's namespace may not write the host's.
    unprivileged_trust_write_refused("0.0.0.0/0")?;
    ensure_eq!(
        kmod::sysctl("trusted_sources")?,
        "10.0.0.2/32",
        "the host's list after writes from other namespaces ({root:?})"
    );
    ensure_eq!(
        kmod::sysctl("tcpopt_kinds")?,
        "200 253 254",
        "the host's kinds"
    );
    ensure_eq!(
        kmod::sysctl("udp_timeout")?,
        timeout,
        "the host's udp_timeout"
    );
    // The initial namespace's root still may.
    kmod::set_sysctl("trusted_sources", "10.0.0.3/32")?;
    ensure_eq!(kmod::sysctl("trusted_sources")?, "10.0.0.3/32");
    // A namespace made now shows the host's values as they are now.
    let later = toa_test::sh("unshare -n cat /proc/sys/net/toa/trusted_sources")?;
    ensure_eq!(later.trim(), "10.0.0.3/32", "a new namespace's list");
    // A namespace that never wrote its own follows the host's changes;
    // once it writes one, that setting is its own.
    let _ = toa_test::sh("ip netns del toafollow 2>/dev/null");
    toa_test::sh("ip netns add toafollow")?;
    let ns = |cmd: &str| toa_test::sh(&format!("ip netns exec toafollow sh -c '{cmd}'"));
    let result = (|| -> Result<()> {
        let now = ns("cat /proc/sys/net/toa/trusted_sources")?;
        ensure_eq!(now.trim(), "10.0.0.3/32", "an existing namespace");
        kmod::set_sysctl("trusted_sources", "10.0.0.4/32")?;
        kmod::set_sysctl("tcpopt_kinds", "254")?;
        ensure_eq!(
            ns("cat /proc/sys/net/toa/trusted_sources /proc/sys/net/toa/tcpopt_kinds")?,
            "10.0.0.4/32\n254\n",
            "an existing namespace follows the host's changes"
        );
        ns("echo 192.0.2.9/32 > /proc/sys/net/toa/trusted_sources")?;
        // A bad write changes nothing, and leaves the kinds following.
        if ns("echo nonsense > /proc/sys/net/toa/tcpopt_kinds").is_ok() {
            bail!("a bad tcpopt_kinds write was taken");
        }
        kmod::set_sysctl("trusted_sources", "10.0.0.5/32")?;
        kmod::set_sysctl("tcpopt_kinds", "200 253 254")?;
        ensure_eq!(
            ns("cat /proc/sys/net/toa/trusted_sources /proc/sys/net/toa/tcpopt_kinds")?,
            "192.0.2.9/32\n200 253 254\n",
            "its own list kept, its kinds still the host's"
        );
        Ok(())
    })();
    let _ = toa_test::sh("ip netns del toafollow");
    result
}
