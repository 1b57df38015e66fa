//! The application side: listeners in the guest and the C-ABI calls an
//! unmodified application makes (accept, accept4, getpeername), plus the
//! same from Python.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// A listening TCP socket, non-blocking so accepting can time out.
pub fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    // A deep accept queue, as servers ask for (std's default is 128).
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(l.as_raw_fd(), 4096) } < 0 {
        bail!("listen: {}", std::io::Error::last_os_error());
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// How an application accepts.
#[derive(Clone, Copy, Debug)]
pub enum Accept {
    /// accept(2)
    Accept,
    /// accept4(2) with SOCK_CLOEXEC
    Accept4,
}

/// Convert a kernel sockaddr to a `SocketAddr`.
fn to_socket_addr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Result<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says it is a sockaddr_in, and it is long enough.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says it is a sockaddr_in6, and it is long enough.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        f => bail!("unexpected sockaddr family {f} (len {len})"),
    }
}

/// Wait up to `timeout` for `fd` to be readable.
fn wait_readable(fd: RawFd, timeout: Duration) -> Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    if n <= 0 {
        bail!("nothing to accept within {timeout:?}");
    }
    Ok(())
}

/// Accept one connection the way `how` says; the address accept returned.
pub fn accept(l: &TcpListener, how: Accept) -> Result<(OwnedFd, SocketAddr)> {
    accept_fd(l.as_raw_fd(), how)
}

/// [`accept`] on any listening socket (an `AF_SMC` one, say).
pub fn accept_fd(l: RawFd, how: Accept) -> Result<(OwnedFd, SocketAddr)> {
    wait_readable(l, Duration::from_secs(3))?;
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let sa = &mut ss as *mut _ as *mut libc::sockaddr;
    // SAFETY: `sa` and `len` describe a writable sockaddr_storage.
    let fd = unsafe {
        match how {
            Accept::Accept => libc::accept(l, sa, &mut len),
            Accept::Accept4 => libc::accept4(l, sa, &mut len, libc::SOCK_CLOEXEC),
        }
    };
    if fd < 0 {
        bail!("{how:?}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: accept returned a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, to_socket_addr(&ss, len)?))
}

/// getpeername(2) through libc: the address, or the errno.
pub fn getpeername_errno(fd: RawFd) -> Result<std::result::Result<SocketAddr, i32>> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` and `len` describe a writable sockaddr_storage.
    if unsafe { libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) } < 0 {
        return Ok(Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(0)));
    }
    Ok(Ok(to_socket_addr(&ss, len)?))
}

/// getpeername(2) into a buffer filled with 0xa5 first: the bytes the
/// kernel wrote (as many as the length it returned), or the errno.
pub fn getpeername_bytes(fd: RawFd) -> Result<std::result::Result<Vec<u8>, i32>> {
    let mut buf = [0xa5u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` and `len` describe 128 writable bytes.
    if unsafe { libc::getpeername(fd, buf.as_mut_ptr().cast(), &mut len) } < 0 {
        return Ok(Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(0)));
    }
    Ok(Ok(buf[..(len as usize).min(buf.len())].to_vec()))
}

/// The bytes of the `sockaddr_in` or `sockaddr_in6` the kernel writes for
/// `addr` (zeroed `sin_zero`; the flow information and scope of `addr`):
/// [`crate::udp::to_sockaddr`]'s, as long as it says.
pub fn sockaddr_bytes(addr: SocketAddr) -> Vec<u8> {
    let (ss, len) = crate::udp::to_sockaddr(&addr);
    // SAFETY: `ss` is a whole sockaddr_storage, `len` at most its size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&ss as *const libc::sockaddr_storage).cast::<u8>(),
            len as usize,
        )
    };
    bytes.to_vec()
}

/// getpeername(2) through libc.
pub fn getpeername(fd: RawFd) -> Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` and `len` describe a writable sockaddr_storage.
    if unsafe { libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) } < 0 {
        bail!("getpeername: {}", std::io::Error::last_os_error());
    }
    to_socket_addr(&ss, len)
}

/// Read what the peer sent, up to `max` bytes, waiting up to a second.
pub fn read_some(fd: RawFd, max: usize) -> Result<Vec<u8>> {
    wait_readable(fd, Duration::from_secs(1))?;
    let mut buf = vec![0u8; max];
    // SAFETY: `buf` is writable for `max` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), max) };
    if n < 0 {
        bail!("read: {}", std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// A server program run in the guest, printing `ready` once it listens and
/// then one line per connection.
pub struct Server {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// Start `program args...`; returns once it printed `ready`. Bounded by
    /// timeout(1): a test that never connects must not hang the suite.
    /// `TOA_TEST_WRAP` (e.g. "strace -f -o /tmp/trace") wraps the program.
    pub fn start(program: &str, args: &[String]) -> Result<Self> {
        let wrap: Vec<String> = std::env::var("TOA_TEST_WRAP")
            .map(|w| w.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let mut child = Command::new("timeout")
            .arg("120")
            .args(&wrap)
            .arg(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| program.to_owned())?;
        let mut out = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("{program} said {line:?}");
        }
        Ok(Server { child, out })
    }

    /// Wait for the server to exit; fails unless it exited 0.
    pub fn finish(mut self) -> Result<()> {
        let status = self.child.wait()?;
        if !status.success() {
            bail!("server exited with {status}");
        }
        Ok(())
    }

    /// The next line the server printed.
    pub fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        if line.is_empty() {
            bail!("server ended: {:?}", self.child.wait()?);
        }
        Ok(line.trim().to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python server accepting one connection and printing what Python's
/// `accept()` and `getpeername()` return.
const PY_SERVER: &str = r#"
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
c, addr = s.accept()
print("accept", addr[0], addr[1], flush=True)
peer = c.getpeername()
print("getpeername", peer[0], peer[1], flush=True)
c.close()
"#;

/// Start the Python server on `addr`.
pub fn python_server(addr: SocketAddr) -> Result<Server> {
    Server::start(
        "python3",
        &[
            "-c".into(),
            PY_SERVER.into(),
            addr.ip().to_string(),
            addr.port().to_string(),
        ],
    )
}

/// The Python server's (accept, getpeername) answers, as "addr port".
pub fn python_answers(mut s: Server) -> Result<(String, String)> {
    let (a, g) = (s.line()?, s.line()?);
    // Let it finish: Python's socket cleanup at exit asks the listener for
    // its peer, and that belongs to this case's counters, not the next's.
    s.finish()?;
    match (a.strip_prefix("accept "), g.strip_prefix("getpeername ")) {
        (Some(a), Some(g)) => Ok((a.to_owned(), g.to_owned())),
        _ => bail!("python server said {a:?} {g:?}"),
    }
}

/// An AF_INET6 listener on `addr`: dual-stack (IPv4 clients appear as
/// `::ffff:a.b.c.d`) unless `v6only`.
pub fn listen6(addr: SocketAddrV6, v6only: bool) -> Result<TcpListener> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let l = unsafe { TcpListener::from_raw_fd(fd) };
    let on: libc::c_int = v6only.into();
    // SAFETY: IPV6_V6ONLY takes an int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        bail!("IPV6_V6ONLY: {}", std::io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sin6.sin6_port = addr.port().to_be();
    sin6.sin6_addr.s6_addr = addr.ip().octets();
    // SAFETY: bind/listen with a valid sockaddr_in6.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sin6 as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    // SAFETY: listen(2) on our socket.
    if rc < 0 || unsafe { libc::listen(fd, 4096) } < 0 {
        bail!("bind/listen {addr}: {}", std::io::Error::last_os_error());
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// `getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP)` with a buffer of `len`
/// bytes (0x5a-filled): the errno, or the address and the length returned.
/// On failure also checks that `len` was left alone.
pub fn toa_lookup(fd: RawFd, len: usize) -> Result<std::result::Result<(SocketAddr, usize), i32>> {
    let mut buf = vec![0x5au8; len.max(1)];
    let mut l = len as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes (at least one).
    let rc =
        unsafe { libc::getsockopt(fd, libc::IPPROTO_IP, 4096, buf.as_mut_ptr().cast(), &mut l) };
    if rc != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if l as usize != len {
            bail!("failed TOA_SO_GET_LOOKUP changed len {len} to {l}");
        }
        if buf.iter().any(|b| *b != 0x5a) {
            bail!("failed TOA_SO_GET_LOOKUP wrote to the buffer");
        }
        return Ok(Err(errno));
    }
    if l != 20 {
        bail!("TOA_SO_GET_LOOKUP returned len {l}, want 20");
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&buf[..16]);
    let port = u16::from_be_bytes([buf[16], buf[17]]);
    Ok(Ok((
        SocketAddr::new(Ipv6Addr::from(addr).into(), port),
        l as usize,
    )))
}

/// setsockopt(IPPROTO_TCP, `opt`, `value`) on `l`.
fn set_tcp_int(l: &TcpListener, opt: libc::c_int, value: libc::c_int, what: &str) -> Result<()> {
    // SAFETY: an int option on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// TCP_DEFER_ACCEPT: the listener wakes up for a connection only once data
/// arrives (up to `seconds`), as nginx's `listen ... deferred` asks.
pub fn set_defer_accept(l: &TcpListener, seconds: libc::c_int) -> Result<()> {
    set_tcp_int(l, libc::TCP_DEFER_ACCEPT, seconds, "TCP_DEFER_ACCEPT")
}

/// TCP_FASTOPEN: accept data in SYNs, up to `qlen` pending.
pub fn set_fastopen(l: &TcpListener, qlen: libc::c_int) -> Result<()> {
    set_tcp_int(l, libc::TCP_FASTOPEN, qlen, "TCP_FASTOPEN")
}

/// As user and group `id` (no supplementary groups, so no capabilities),
/// in a child process: a UDP socket bound to `0.0.0.0:port` sends
/// `payload` to `to`; then three sockets try to bind `0.0.0.0:take`, the
/// first plainly, the second with SO_REUSEADDR, the third with
/// SO_REUSEPORT. Returns 0 or the errno of each bind. The child makes raw
/// system calls only (no allocation: the parent may have other threads).
pub fn udp_as_user(
    id: u32,
    port: u16,
    to: SocketAddrV4,
    payload: &[u8],
    take: u16,
) -> Result<[i32; 3]> {
    let any = |port| SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    let (from, len) = crate::udp::to_sockaddr(&any(port));
    let (dest, _) = crate::udp::to_sockaddr(&to.into());
    let (taken, _) = crate::udp::to_sockaddr(&any(take));
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the child below makes system calls only, then _exit()s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        // In the child: [step reached (0 = all done), bind errnos...].
        let mut out = [-1i32; 4];
        // SAFETY: raw system calls on values of this frame; the child
        // ends with _exit().
        unsafe {
            let errno = || *libc::__errno_location();
            'run: {
                out[0] = 1;
                if libc::setgroups(0, std::ptr::null()) < 0
                    || libc::setresgid(id, id, id) < 0
                    || libc::setresuid(id, id, id) < 0
                {
                    break 'run;
                }
                out[0] = 2;
                let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                if s < 0 || libc::bind(s, (&from as *const libc::sockaddr_storage).cast(), len) < 0
                {
                    break 'run;
                }
                out[0] = 3;
                if libc::sendto(
                    s,
                    payload.as_ptr().cast(),
                    payload.len(),
                    0,
                    (&dest as *const libc::sockaddr_storage).cast(),
                    len,
                ) < 0
                {
                    break 'run;
                }
                for (i, opt) in [0, libc::SO_REUSEADDR, libc::SO_REUSEPORT]
                    .into_iter()
                    .enumerate()
                {
                    let t = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                    let one: libc::c_int = 1;
                    if opt != 0 {
                        libc::setsockopt(
                            t,
                            libc::SOL_SOCKET,
                            opt,
                            (&one as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        );
                    }
                    out[i + 1] =
                        if libc::bind(t, (&taken as *const libc::sockaddr_storage).cast(), len) < 0
                        {
                            errno()
                        } else {
                            0
                        };
                }
                out[0] = 0;
            }
            libc::write(fds[1], out.as_ptr().cast(), std::mem::size_of_val(&out));
            libc::_exit(0);
        }
    }
    // SAFETY: our end of the pipe, closed once.
    unsafe { libc::close(fds[1]) };
    let mut out = [0i32; 4];
    // SAFETY: `out` is writable for its size; fds[0] is ours.
    let n = unsafe { libc::read(fds[0], out.as_mut_ptr().cast(), std::mem::size_of_val(&out)) };
    let mut status = 0;
    // SAFETY: the child we forked; fds[0] closed once.
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    if n != std::mem::size_of_val(&out) as isize {
        bail!("the child as user {id} reported nothing (status {status})");
    }
    const STEPS: [&str; 4] = [
        "done",
        "dropping privileges",
        "binding its own port",
        "sending",
    ];
    if out[0] != 0 {
        bail!("as user {id}: {} failed", STEPS[out[0] as usize % 4]);
    }
    Ok([out[1], out[2], out[3]])
}
