//! The NFQUEUE half: tag the client's packets with the TOA option.
//!
//! ```text
//! toa-balancer nfqueue QUEUE KIND [STATS]
//! ```
//!
//! It fails closed: the queue is bound without fail-open (a full queue or
//! socket drops the packet, and TCP sends it again), and no error of one
//! packet ends the program (each is counted and the loop goes on); with
//! nftables' `queue` without `bypass`, nothing reaches the backend untagged
//! while this program is not there. "ready" on stderr says the queue is
//! bound. The counters go to the file STATS (`name value` lines, rewritten
//! every 250 ms while they change, at once on SIGUSR1, and on SIGTERM or
//! SIGINT before exiting), and to stderr on those signals.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::flows::{Decision, Flows};
use crate::packet::{toa_option, Tcp};

/// The kernel's queue length (packets waiting for a verdict; the default
/// is 1024): past it, packets are dropped (not passed untagged).
const QUEUE_MAXLEN: u32 = 8192;

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// What the program did, packet by packet.
        #[derive(Default)]
        pub struct Counters {
            $(#[doc = $doc] pub $name: AtomicU64,)*
            /// Errors by kind (`recv_ENOBUFS`, `verdict_ENOENT`, `panic`, ...).
            pub errors: Mutex<BTreeMap<String, u64>>,
        }

        impl Counters {
            /// `name value` lines, errors last.
            pub fn render(&self) -> String {
                let mut s = String::new();
                $(s += &format!("{} {}\n", stringify!($name), self.$name.load(Relaxed));)*
                for (k, v) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    s += &format!("error_{k} {v}\n");
                }
                s
            }
        }
    };
}

counters! {
    packets: "packets received from the queue",
    not_tcp: "packets that are not plain TCP (passed as they are)",
    syns: "SYNs (flow started; MSS clamped)",
    tagged: "packets that got the option",
    untagged_after_reply: "packets after the client acknowledged the server's data (no option needed)",
    untagged_no_flow: "packets of flows whose SYN was not seen (no option)",
    untagged_no_room: "packets due an option that had no room for it, or malformed options (passed without)",
    resets: "RSTs",
    flows_replied_after_1: "flows whose server answered after 1 tagged packet",
    flows_replied_after_2: "... after 2",
    flows_replied_after_3: "... after 3",
    flows_replied_after_4_or_more: "... after 4 or more (the handshake's ACK was dropped or retransmitted)",
    errors_total: "errors of any kind (by kind: the error_* lines)",
    dropped_on_error: "packets dropped because this program failed on them",
}

impl Counters {
    fn error(&self, kind: &str) {
        self.errors_total.fetch_add(1, Relaxed);
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind.to_string())
            .or_default() += 1;
    }

    fn io_error(&self, what: &str, e: &io::Error) {
        self.error(&format!("{what}_{}", errno_name(e)));
    }

    /// The counters on one line, for a log.
    pub fn line(&self) -> String {
        self.render()
            .lines()
            .map(|l| l.replacen(' ', "=", 1))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOBUFS) => "ENOBUFS".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EINTR) => "EINTR".into(),
        Some(libc::EAGAIN) => "EAGAIN".into(),
        Some(libc::ENOSPC) => "ENOSPC".into(),
        Some(libc::ENOMEM) => "ENOMEM".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ENODEV) => "ENODEV".into(),
        Some(n) => format!("errno{n}"),
        None => "other".into(),
    }
}

static COUNTERS: std::sync::LazyLock<Counters> = std::sync::LazyLock::new(Counters::default);

/// Write the counters to `path` (whole: a new file renamed over it).
fn write_stats(path: &Option<PathBuf>, text: &str) {
    let Some(path) = path else { return };
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// The thread that writes the counters: every 250 ms while they change,
/// and on SIGUSR1, SIGTERM and SIGINT (blocked in every other thread).
fn stats_thread(path: Option<PathBuf>, set: libc::sigset_t) {
    let mut last = String::new();
    loop {
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 250_000_000,
        };
        // SAFETY: plain sigtimedwait(2) on a set we built.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        let text = COUNTERS.render();
        if sig > 0 || text != last {
            write_stats(&path, &text);
            last = text;
        }
        if sig > 0 {
            eprintln!("toa-balancer: counters: {}", COUNTERS.line());
        }
        if sig == libc::SIGTERM || sig == libc::SIGINT {
            std::process::exit(0);
        }
    }
}

/// Block SIGUSR1, SIGTERM and SIGINT in this thread (and the threads it
/// starts); the set, for sigtimedwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialized by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// One packet: the new payload if it changes, and what was done. The
/// option names the packet's source, or `forge` (an attacker's own
/// packets naming someone else) with the source's port.
fn rewrite(flows: &mut Flows, kind: u8, forge: Option<IpAddr>, packet: &[u8]) -> Option<Vec<u8>> {
    let c = &*COUNTERS;
    let Some(mut p) = Tcp::parse(packet) else {
        c.not_tcp.fetch_add(1, Relaxed);
        return None;
    };
    let named = forge.map_or(p.src(), |a| SocketAddr::new(a, p.src().port()));
    let option = toa_option(kind, named);
    let mut changed = false;
    if p.tcp.syn && !p.tcp.ack {
        p.clamp_mss(option.len() as u16);
        changed = true;
    }
    match flows.tag(&p) {
        Decision::Syn => {
            c.syns.fetch_add(1, Relaxed);
        }
        Decision::Tag => {
            if p.add_option(&option) {
                c.tagged.fetch_add(1, Relaxed);
                changed = true;
            } else {
                c.untagged_no_room.fetch_add(1, Relaxed);
            }
        }
        Decision::Replied { tagged } => {
            c.untagged_after_reply.fetch_add(1, Relaxed);
            // More than the handshake's ACK and the request before the
            // answer: what the client sent, for the log.
            if tagged > 3 {
                eprintln!(
                    "toa-balancer: {} -> {}: answered after {tagged} tagged packets: {}",
                    p.src(),
                    p.dst(),
                    flows.trail(&p)
                );
            }
            match tagged {
                0 | 1 => &c.flows_replied_after_1,
                2 => &c.flows_replied_after_2,
                3 => &c.flows_replied_after_3,
                _ => &c.flows_replied_after_4_or_more,
            }
            .fetch_add(1, Relaxed);
        }
        Decision::Done => {
            c.untagged_after_reply.fetch_add(1, Relaxed);
        }
        Decision::NoFlow => {
            c.untagged_no_flow.fetch_add(1, Relaxed);
        }
        Decision::Reset => {
            c.resets.fetch_add(1, Relaxed);
        }
    }
    changed.then(|| p.to_bytes())
}

/// Tags the packets queued to `queue_num` (see the crate's doc); with
/// `forge`, every option names that address instead of the client.
pub fn run(queue_num: u16, kind: u8, stats: Option<PathBuf>, forge: Option<IpAddr>) -> Result<()> {
    let set = block_signals();
    let mut queue = nfq::Queue::open().context("open the netfilter queue socket")?;
    queue.bind(queue_num).context("bind the queue")?;
    // Fail closed: a packet the kernel cannot hand over is dropped, never
    // passed on without its option; and tell us when the socket overflows.
    queue
        .set_fail_open(queue_num, false)
        .context("clear fail-open")?;
    queue
        .set_queue_max_len(queue_num, QUEUE_MAXLEN)
        .context("set the queue length")?;
    queue.set_recv_enobufs(true).context("ask for ENOBUFS")?;
    write_stats(&stats, &COUNTERS.render());
    std::thread::spawn(move || stats_thread(stats, set));
    eprintln!("toa-balancer: ready: queue {queue_num} bound (fail closed), TOA kind {kind}");
    let mut flows = Flows::default();
    let c = &*COUNTERS;
    loop {
        let mut msg = match queue.recv() {
            Ok(msg) => msg,
            Err(e) => {
                // ENOBUFS: the socket overflowed and the kernel dropped
                // packets (TCP sends them again); an error message from
                // the kernel (a verdict it refused) comes here too.
                c.io_error("recv", &e);
                if e.raw_os_error() != Some(libc::ENOBUFS) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                continue;
            }
        };
        c.packets.fetch_add(1, Relaxed);
        let verdict = match catch_unwind(AssertUnwindSafe(|| {
            rewrite(&mut flows, kind, forge, msg.get_payload())
        })) {
            Ok(Some(bytes)) => {
                msg.set_payload(bytes);
                nfq::Verdict::Accept
            }
            Ok(None) => nfq::Verdict::Accept,
            Err(_) => {
                c.error("panic");
                c.dropped_on_error.fetch_add(1, Relaxed);
                nfq::Verdict::Drop
            }
        };
        msg.set_verdict(verdict);
        if let Err(e) = queue.verdict(msg) {
            // The packet stays queued until the kernel gives up on it:
            // never passed untagged.
            c.io_error("verdict", &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_name_value_lines() {
        let c = Counters::default();
        c.tagged.fetch_add(3, Relaxed);
        c.io_error("recv", &io::Error::from_raw_os_error(libc::ENOBUFS));
        c.io_error("recv", &io::Error::from_raw_os_error(libc::ENOBUFS));
        let text = c.render();
        assert!(text.contains("\ntagged 3\n"), "{text}");
        assert!(text.contains("errors_total 2\n"), "{text}");
        assert!(text.ends_with("error_recv_ENOBUFS 2\n"), "{text}");
        assert!(c.line().contains(" tagged=3 "), "{}", c.line());
    }
}
