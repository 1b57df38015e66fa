//! toa-balancer: the TOA half of a FULLNAT balancer, for toa's end-to-end
//! topology (`tests/e2e/fullnat.sh`).
//!
//! ```text
//! toa-balancer nfqueue QUEUE KIND [STATS]
//!     Packets nftables queues to QUEUE (client -> virtual service, before
//!     DNAT/SNAT, after conntrack): the SYN's MSS is lowered by the TOA
//!     option's size (so full segments still fit once tagged), and the
//!     packets after it get a TOA option of kind KIND naming the client
//!     until the client acknowledges the server's data (flows.rs). Fails
//!     closed, says "ready" once the queue is bound, and keeps its counters
//!     in the file STATS (nfqueue.rs).
//!
//! toa-balancer forge QUEUE KIND ADDR
//!     An attacker, not a balancer: the same tagging of the packets queued
//!     to QUEUE (a client's own output), every option naming ADDR.
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

mod flows;
mod nfqueue;
mod packet;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Result};
use etherparse::{IpNumber, Ipv4Header, Ipv6Header};

use flows::{Decision, Flows};
use packet::{toa_option, Ip, Tcp};
use toa_test::tun::Tun;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["nfqueue", queue, kind] => nfqueue::run(queue.parse()?, kind.parse()?, None, None),
        ["nfqueue", queue, kind, stats] => {
            nfqueue::run(queue.parse()?, kind.parse()?, Some(stats.into()), None)
        }
        ["forge", queue, kind, name] => {
            nfqueue::run(queue.parse()?, kind.parse()?, None, Some(name.parse()?))
        }
        ["udp", mode, vip, rs, lip] => udp::run(mode, vip.parse()?, rs.parse()?, lip.parse()?),
        ["nat64", tun, prefix, pool, kind] => {
            nat64(tun, prefix.parse()?, pool.parse()?, kind.parse()?)
        }
        _ => bail!(
            "usage: toa-balancer nfqueue QUEUE KIND [STATS] | forge QUEUE KIND ADDR | udp MODE VIP:PORT RS:PORT LIP | nat64 TUN PREFIX POOL KIND"
        ),
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
    fn translate_v6(&mut self, mut p: Tcp) -> Option<Tcp> {
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
        if self.flows.tag(&p) == Decision::Tag {
            p.add_option(&toa_option(self.kind, client));
        }
        Some(p)
    }

    /// An IPv4 reply to POOL:port, as the IPv6 packet to its client.
    fn translate_v4(&mut self, mut p: Tcp) -> Option<Tcp> {
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
            Ip::V6(_) => nat.translate_v6(p),
            Ip::V4(_) => nat.translate_v4(p),
        };
        if let Some(out) = out {
            dev.send(&out.to_bytes())?;
        }
    }
}
