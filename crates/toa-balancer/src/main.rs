//! toa-balancer: the TOA half of a FULLNAT balancer, for toa's end-to-end
//! topology (`tests/e2e/fullnat.sh`).
//!
//! ```text
//! toa-balancer nfqueue QUEUE KIND
//!     Packets nftables queues to QUEUE (client -> virtual service, before
//!     DNAT/SNAT, after conntrack): the SYN's MSS is lowered by the TOA
//!     option's size (so full segments still fit once tagged), and the first
//!     packets after it get a TOA option of kind KIND naming the client.
//!
//! toa-balancer udp MODE VIP:PORT RS:PORT LIP
//!     A UDP FULLNAT relay naming each client to the backend the way LVS
//!     (MODE icmp: an ICMP announcement) or DPVS (ipo, opp: a UOA) does;
//!     see udp.rs.
//!
//! toa-balancer nat64 TUN PREFIX POOL KIND
//!     A stateful NAT64 on tun device TUN: IPv6 clients reaching
//!     PREFIX::a.b.c.d (a /96) are sent to a.b.c.d from the IPv4 address
//!     POOL, a port each, with a TOA option (length 20) naming the IPv6
//!     client; replies are translated back.
//! ```

mod packet;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etherparse::{IpNumber, Ipv4Header, Ipv6Header};

use packet::{toa_option, Ip, Tcp};
use toa_test::tun::Tun;

/// How many packets of a connection after its SYN carry the option: the
/// handshake's ACK and the first data, in case that ACK is lost.
const TAGGED_PACKETS: u8 = 3;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["nfqueue", queue, kind] => nfqueue(queue.parse()?, kind.parse()?),
        ["udp", mode, vip, rs, lip] => udp::run(mode, vip.parse()?, rs.parse()?, lip.parse()?),
        ["nat64", tun, prefix, pool, kind] => {
            nat64(tun, prefix.parse()?, pool.parse()?, kind.parse()?)
        }
        _ => bail!(
            "usage: toa-balancer nfqueue QUEUE KIND | udp MODE VIP:PORT RS:PORT LIP | nat64 TUN PREFIX POOL KIND"
        ),
    }
}

/// Connections seen from their SYN: how many packets were tagged so far.
#[derive(Default)]
struct Flows(HashMap<(SocketAddr, SocketAddr), u8>);

impl Flows {
    /// Whether this packet of the flow gets the option (and count it).
    fn tag(&mut self, p: &Tcp) -> bool {
        let key = (p.src(), p.dst());
        if p.tcp.syn {
            if self.0.len() > 100_000 {
                self.0.clear();
            }
            self.0.insert(key, 0);
            return false;
        }
        if p.tcp.rst || p.tcp.fin {
            self.0.remove(&key);
            return false;
        }
        match self.0.get_mut(&key) {
            Some(n) if *n < TAGGED_PACKETS => {
                *n += 1;
                true
            }
            _ => false,
        }
    }
}

fn nfqueue(queue_num: u16, kind: u8) -> Result<()> {
    let mut queue = nfq::Queue::open().context("open the netfilter queue socket")?;
    queue.bind(queue_num).context("bind the queue")?;
    // If this program falls behind, packets pass untagged rather than drop.
    queue.set_fail_open(queue_num, true)?;
    eprintln!("toa-balancer: tagging packets of queue {queue_num} with kind {kind}");
    let mut flows = Flows::default();
    loop {
        let mut msg = queue.recv()?;
        if let Some(mut p) = Tcp::parse(msg.get_payload()) {
            let option = toa_option(kind, p.src());
            if p.tcp.syn && !p.tcp.ack {
                p.clamp_mss(option.len() as u16);
                msg.set_payload(p.to_bytes());
            }
            if flows.tag(&p) && p.add_option(&option) {
                msg.set_payload(p.to_bytes());
            }
        }
        msg.set_verdict(nfq::Verdict::Accept);
        queue.verdict(msg)?;
    }
}

/// The NAT64 state: which pool port stands for which IPv6 client.
struct Nat64 {
    prefix: Ipv6Addr,
    pool: Ipv4Addr,
    kind: u8,
    by_client: HashMap<SocketAddr, u16>,
    by_port: HashMap<u16, SocketAddr>,
    next_port: u16,
    flows: Flows,
}

impl Nat64 {
    /// An IPv6 packet to PREFIX::a.b.c.d, as the IPv4 packet to a.b.c.d.
    fn to_v4(&mut self, mut p: Tcp) -> Option<Tcp> {
        let Ip::V6(h6) = &p.ip else { return None };
        let dst = Ipv6Addr::from(h6.destination).octets();
        if dst[..12] != self.prefix.octets()[..12] {
            return None;
        }
        let client = p.src();
        let port = match self.by_client.get(&client) {
            Some(port) => *port,
            None => {
                let port = self.next_port;
                self.next_port = if port == u16::MAX { 20000 } else { port + 1 };
                if let Some(old) = self.by_port.insert(port, client) {
                    self.by_client.remove(&old);
                }
                self.by_client.insert(client, port);
                port
            }
        };
        let mut h4 = Ipv4Header::new(
            0,
            h6.hop_limit.saturating_sub(1),
            IpNumber::TCP,
            self.pool.octets(),
            [dst[12], dst[13], dst[14], dst[15]],
        )
        .ok()?;
        h4.dont_fragment = true;
        p.ip = Ip::V4(h4);
        p.tcp.source_port = port;
        if self.flows.tag(&p) {
            p.add_option(&toa_option(self.kind, client));
        }
        Some(p)
    }

    /// An IPv4 reply to POOL:port, as the IPv6 packet to its client.
    fn to_v6(&mut self, mut p: Tcp) -> Option<Tcp> {
        let Ip::V4(h4) = &p.ip else { return None };
        if Ipv4Addr::from(h4.destination) != self.pool {
            return None;
        }
        let client = *self.by_port.get(&p.tcp.destination_port)?;
        let IpAddr::V6(client_ip) = client.ip() else {
            return None;
        };
        let mut src = self.prefix.octets();
        src[12..].copy_from_slice(&h4.source);
        let mut h6 = Ipv6Header {
            next_header: IpNumber::TCP,
            hop_limit: h4.time_to_live.saturating_sub(1),
            source: src,
            destination: client_ip.octets(),
            ..Default::default()
        };
        h6.set_payload_length(0).ok()?;
        p.ip = Ip::V6(h6);
        p.tcp.destination_port = client.port();
        Some(p)
    }
}

fn nat64(tun: &str, prefix: Ipv6Addr, pool: Ipv4Addr, kind: u8) -> Result<()> {
    let dev = Tun::create(tun, &[])?;
    let mut nat = Nat64 {
        prefix,
        pool,
        kind,
        by_client: HashMap::new(),
        by_port: HashMap::new(),
        next_port: 20000,
        flows: Flows::default(),
    };
    eprintln!("toa-balancer: NAT64 {prefix}/96 -> {pool} on {tun}, TOA kind {kind}");
    loop {
        let Some(packet) = dev.recv(Duration::from_secs(3600))? else {
            continue;
        };
        let Some(p) = Tcp::parse(&packet) else {
            continue;
        };
        let out = match p.ip {
            Ip::V6(_) => nat.to_v4(p),
            Ip::V4(_) => nat.to_v6(p),
        };
        if let Some(out) = out {
            dev.send(&out.to_bytes())?;
        }
    }
}
