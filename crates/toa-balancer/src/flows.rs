//! Which packets of a connection carry the TOA option.
//!
//! As DPVS does: every packet of the client after its SYN until the client
//! acknowledges data from the server. Until then the backend may not have
//! made the connection's socket yet: the handshake's ACK can be refused (a
//! listener whose accept queue is full, a timestamp the backend does not
//! take) or late, and then a retransmitted data segment or the ACK of a
//! retransmitted SYN-ACK completes the handshake, however many packets went
//! before it (a fixed number of tagged packets, 3 here once, left such a
//! connection to the balancer's address). Once the server has sent data
//! its socket exists, and its client is recorded.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::packet::Tcp;

/// What to do with one packet of the client, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A SYN: the flow starts (again); no option (its MSS is clamped).
    Syn,
    /// Before the server's data is acknowledged: the option goes in.
    Tag,
    /// The first packet acknowledging the server's data, after `tagged`
    /// packets carried the option: no option from here on.
    Replied { tagged: u32 },
    /// A later packet of a flow whose server has answered.
    Done,
    /// No SYN seen for this flow (started before this program, or
    /// forgotten): no option.
    NoFlow,
    /// A reset: the flow is forgotten.
    Reset,
}

/// Packets of a flow described in its trail at most.
const TRAIL: usize = 12;

#[derive(Default)]
struct Flow {
    /// The acknowledgment number of the client's first ACK (the server's
    /// initial sequence number + 1): while the client still sends it, it
    /// has seen none of the server's data.
    handshake_ack: Option<u32>,
    tagged: u32,
    replied: bool,
    /// Its first packets after the SYN, for a log: flags, payload length,
    /// the acknowledgment relative to the first ACK's.
    trail: Vec<String>,
}

/// Connections seen from their SYN.
#[derive(Default)]
pub struct Flows(HashMap<(SocketAddr, SocketAddr), Flow>);

/// Flows remembered at most (a test balancer: forget them all past that).
const MAX_FLOWS: usize = 100_000;

impl Flows {
    /// Whether this packet of the client gets the option (and count it).
    pub fn tag(&mut self, p: &Tcp) -> Decision {
        let key = (p.src(), p.dst());
        if p.tcp.syn {
            if self.0.len() >= MAX_FLOWS {
                self.0.clear();
            }
            self.0.insert(key, Flow::default());
            return Decision::Syn;
        }
        if p.tcp.rst {
            self.0.remove(&key);
            return Decision::Reset;
        }
        let Some(f) = self.0.get_mut(&key) else {
            return Decision::NoFlow;
        };
        if f.replied {
            return Decision::Done;
        }
        if f.trail.len() < TRAIL {
            let h = &p.tcp;
            let flags: String = [(h.ack, 'A'), (h.psh, 'P'), (h.fin, 'F')]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, c)| *c)
                .collect();
            let first = f.handshake_ack.unwrap_or(h.acknowledgment_number);
            let ack = h.acknowledgment_number.wrapping_sub(first);
            f.trail
                .push(format!("{flags}/len={}/ack+{ack}", p.payload.len()));
        }
        if p.tcp.ack {
            let ack = p.tcp.acknowledgment_number;
            match f.handshake_ack {
                None => f.handshake_ack = Some(ack),
                // Past the server's SYN: the client has its data.
                Some(first) if ack.wrapping_sub(first) as i32 > 0 => {
                    f.replied = true;
                    return Decision::Replied { tagged: f.tagged };
                }
                Some(_) => {}
            }
        }
        f.tagged += 1;
        Decision::Tag
    }
}

impl Flows {
    /// The first packets of `p`'s flow after its SYN (see [`Flow::trail`]).
    pub fn trail(&self, p: &Tcp) -> String {
        self.0
            .get(&(p.src(), p.dst()))
            .map(|f| f.trail.join(" "))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// A client segment of port `port` with the given flags and numbers.
    fn seg(port: u16, syn: bool, ack: Option<u32>, rst: bool, payload: &[u8]) -> Tcp {
        let mut b = PacketBuilder::ipv4([10, 1, 0, 2], [10, 1, 0, 1], 64).tcp(port, 80, 1000, 1000);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if rst {
            b = b.rst();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        Tcp::parse(&out).unwrap()
    }

    #[test]
    fn tags_until_the_server_data_is_acknowledged() {
        let mut f = Flows::default();
        assert_eq!(f.tag(&seg(1, true, None, false, b"")), Decision::Syn);
        assert_eq!(f.tag(&seg(1, false, Some(5001), false, b"")), Decision::Tag);
        assert_eq!(
            f.tag(&seg(1, false, Some(5001), false, b"GET /")),
            Decision::Tag
        );
        assert_eq!(f.tag(&seg(1, false, Some(5001), false, b"")), Decision::Tag);
        assert_eq!(
            f.tag(&seg(1, false, Some(5001), false, b"GET /")),
            Decision::Tag
        );
        assert_eq!(
            f.tag(&seg(1, false, Some(5007), false, b"")),
            Decision::Replied { tagged: 4 }
        );
        assert_eq!(
            f.tag(&seg(1, false, Some(5009), false, b"")),
            Decision::Done
        );
        // A retransmission with the old acknowledgment stays untagged.
        assert_eq!(
            f.tag(&seg(1, false, Some(5001), false, b"GET /")),
            Decision::Done
        );
    }

    #[test]
    fn a_handshake_ack_dropped_by_a_full_accept_queue_is_covered() {
        // The ACK, the data and the ACKs of two retransmitted SYN-ACKs:
        // the fourth packet completes the handshake, and is tagged too.
        let mut f = Flows::default();
        f.tag(&seg(2, true, None, false, b""));
        for _ in 0..6 {
            assert_eq!(
                f.tag(&seg(2, false, Some(u32::MAX), false, b"x")),
                Decision::Tag
            );
        }
        // The server's data across the sequence number wrap.
        assert_eq!(
            f.tag(&seg(2, false, Some(3), false, b"")),
            Decision::Replied { tagged: 6 }
        );
        let trail = f.trail(&seg(2, false, None, false, b""));
        assert!(trail.starts_with("A/len=1/ack+0 A/len=1/ack+0 "), "{trail}");
        assert!(trail.ends_with(" A/len=0/ack+4"), "{trail}");
    }

    #[test]
    fn unknown_reset_and_restarted_flows() {
        let mut f = Flows::default();
        assert_eq!(f.tag(&seg(3, false, Some(1), false, b"")), Decision::NoFlow);
        f.tag(&seg(3, true, None, false, b""));
        assert_eq!(f.tag(&seg(3, false, Some(1), false, b"")), Decision::Tag);
        assert_eq!(
            f.tag(&seg(3, false, Some(9), false, b"")),
            Decision::Replied { tagged: 1 }
        );
        // The port used again: a new SYN starts over.
        assert_eq!(f.tag(&seg(3, true, None, false, b"")), Decision::Syn);
        assert_eq!(f.tag(&seg(3, false, Some(77), false, b"")), Decision::Tag);
        assert_eq!(f.tag(&seg(3, false, Some(77), true, b"")), Decision::Reset);
        assert_eq!(
            f.tag(&seg(3, false, Some(77), false, b"")),
            Decision::NoFlow
        );
        // Another port is another flow.
        assert_eq!(
            f.tag(&seg(4, false, Some(77), false, b"")),
            Decision::NoFlow
        );
    }
}
