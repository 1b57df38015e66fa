//! A tun device: the guest kernel's end of the wire the test peer talks on.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Run `ip ARGS...` (iproute2).
fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// An open tun device (layer 3, no packet information header).
pub struct Tun {
    file: File,
    /// Interface name.
    pub name: String,
    /// Time spent in the kernel handing packets over and taking them back
    /// (write, read and poll on the device), for the benchmark.
    io: std::cell::Cell<Duration>,
}

impl Tun {
    /// Create the interface `name`, bring it up and give it the addresses
    /// (IPv6 ones without duplicate address detection).
    pub fn create(name: &str, addrs: &[&str]) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .context("open /dev/net/tun")?;
        // SAFETY: all-zero is a valid ifreq.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF takes a pointer to an ifreq, which lives across the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut ifr) } < 0 {
            bail!("TUNSETIFF {name}: {}", std::io::Error::last_os_error());
        }
        // No duplicate address detection on the IPv6 address: it is usable
        // at once (as iproute2's `nodad`, which busybox's ip lacks).
        let dad = format!("/proc/sys/net/ipv6/conf/{name}/accept_dad");
        if Path::new(&dad).exists() {
            std::fs::write(&dad, "0").with_context(|| format!("write {dad}"))?;
        }
        ip(&["link", "set", name, "up"])?;
        for a in addrs {
            ip(&["addr", "add", a, "dev", name])?;
        }
        Ok(Tun {
            file,
            name: name.to_owned(),
            io: std::cell::Cell::new(Duration::ZERO),
        })
    }

    /// Hand a packet to the kernel, as if it arrived on the wire.
    pub fn send(&self, packet: &[u8]) -> Result<()> {
        let start = Instant::now();
        let r = (&self.file).write_all(packet).context("write to tun");
        self.io.set(self.io.get() + start.elapsed());
        r
    }

    /// Time spent in the device's system calls so far.
    pub fn io_time(&self) -> Duration {
        self.io.get()
    }

    /// The next packet the kernel sends out within `timeout`, if any.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let start = Instant::now();
            let r = (&self.file).read(&mut buf);
            self.io.set(self.io.get() + start.elapsed());
            match r {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("read from tun"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let start = Instant::now();
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
            self.io.set(self.io.get() + start.elapsed());
        }
    }

    /// Throw away whatever the kernel has sent so far.
    pub fn drain(&self) {
        while let Ok(Some(_)) = self.recv(Duration::ZERO) {}
    }
}
