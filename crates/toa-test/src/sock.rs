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
    wait_readable(l.as_raw_fd(), Duration::from_secs(3))?;
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let sa = &mut ss as *mut _ as *mut libc::sockaddr;
    // SAFETY: `sa` and `len` describe a writable sockaddr_storage.
    let fd = unsafe {
        match how {
            Accept::Accept => libc::accept(l.as_raw_fd(), sa, &mut len),
            Accept::Accept4 => libc::accept4(l.as_raw_fd(), sa, &mut len, libc::SOCK_CLOEXEC),
        }
    };
    if fd < 0 {
        bail!("{how:?}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: accept returned a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, to_socket_addr(&ss, len)?))
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

/// A Python server accepting one connection and printing what Python's
/// `accept()` and `getpeername()` return.
pub struct PyServer {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

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

impl PyServer {
    /// Start it listening on `addr`; returns once it listens.
    pub fn start(addr: SocketAddr) -> Result<Self> {
        // Bounded: a test that never connects must not hang the suite.
        let mut child = Command::new("timeout")
            .args(["20", "python3", "-c", PY_SERVER])
            .args([addr.ip().to_string(), addr.port().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("python3")?;
        let mut out = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("python server said {line:?}");
        }
        Ok(PyServer { child, out })
    }

    /// The (accept, getpeername) answers, as "addr port" strings.
    pub fn answers(mut self) -> Result<(String, String)> {
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            self.out.read_line(&mut line)?;
            lines.push(line.trim().to_owned());
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("python server failed: {status}, said {lines:?}");
        }
        let strip = |l: &str, p: &str| l.strip_prefix(p).map(str::to_owned);
        match (
            strip(&lines[0], "accept "),
            strip(&lines[1], "getpeername "),
        ) {
            (Some(a), Some(g)) => Ok((a, g)),
            _ => bail!("python server said {lines:?}"),
        }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
