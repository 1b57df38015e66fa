//! The UDP parsers and the flow table against arbitrary bytes.
//!
//! Input: a selector byte, then bytes for the chosen part:
//!
//! - 0: an ICMP message (after two bytes of its claimed length) for the
//!   ip_vs_ca announcement parser, with the default kinds: a taken
//!   announcement re-encodes to the very message;
//! - 1: IPv4-style options for the UOA scan: a found client's option is
//!   in the list;
//! - 2: an option protocol header: a taken one names a client whose family
//!   matches its version, and its length is the input's;
//! - 3: a program for a small flow table (announce, receive, send, wait,
//!   drop a namespace), checked for its accounting: every flow recorded is
//!   still there or left by exactly one door, and a receive only ever names
//!   the client announced last for its key.
#![no_main]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use libfuzzer_sys::fuzz_target;
use toa_core::udp::announce::{self, Parsed, Proto};
use toa_core::udp::flow_table::{Bucket, Endpoint, FlowKey, Locks, Table, Via};
use toa_core::udp::uoa::{self, Options};
use toa_core::tcp::wire::{ClientAddr, Kinds};

struct Spin(Vec<AtomicBool>);

impl Locks for Spin {
    fn lock(&self, i: usize) {
        assert!(!self.0[i].swap(true, Ordering::Acquire), "bucket {i} locked twice");
    }
    fn unlock(&self, i: usize) {
        self.0[i].store(false, Ordering::Release);
    }
}

fn ep(n: u8, port: u8) -> Endpoint {
    Endpoint::v4([10, 0, n / 16, n % 16 + 1], [0, port | 1])
}

fn table(prog: &[u8]) {
    let buckets: Vec<Bucket> = (0..4).map(|_| Bucket::new()).collect();
    let locks = Spin((0..4).map(|_| AtomicBool::new(false)).collect());
    // Namespace 0 is the host's; 1 a guest (its share of each bucket).
    let t = Table::new(&buckets, &locks, [7, 11], 0).unwrap();
    let timeout = 3000;
    let mut now = 0u64;
    let (mut new, mut gone, mut delta) = (0u64, 0u64, 0i64);
    let mut last: HashMap<(u64, u8), Endpoint> = HashMap::new();
    for op in prog.chunks_exact(3) {
        let (code, x, y) = (op[0], op[1], op[2]);
        let net = u64::from(code >> 7);
        let key = FlowKey { net, proto: Proto::Udp, lip: ep(x % 32, 7), rs: ep(200, 53) };
        match code % 5 {
            0 => {
                let client = if y & 0x80 != 0 {
                    Endpoint::v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, y], [0, y | 1])
                } else {
                    ep(y, y)
                };
                let a = t.announce(&key, &client, Via::Opp, now, timeout);
                assert!(u8::from(a.new) + u8::from(a.refreshed) + u8::from(a.refused) == 1);
                // Only a guest is ever refused.
                assert!(!a.refused || net != 0);
                new += u64::from(a.new);
                gone += u64::from(a.replaced) + u64::from(a.expired) + u64::from(a.evicted);
                delta += i64::from(a.delta);
                if a.refused {
                    // What the key named before may have been replaced
                    // (then gone) or kept.
                    if t.receive(&key, now, timeout).is_none() {
                        last.remove(&(net, x % 32));
                    }
                } else {
                    last.insert((net, x % 32), client);
                }
            }
            1 => {
                if let Some(h) = t.receive(&key, now, timeout) {
                    assert_eq!(Some(&h.peer), last.get(&(net, x % 32)));
                }
            }
            2 => {
                if let Some(h) = t.send(net, Proto::Udp, &key.rs, &ep(y, y), now, timeout) {
                    let lip = (0..32).find(|n| ep(*n, 7) == h.peer).expect("a LIP of ours");
                    assert_eq!(last.get(&(net, lip)), Some(&ep(y, y)));
                }
            }
            3 => now += u64::from(y) * 50,
            _ => {
                let n = t.remove_net(net);
                gone += n;
                delta -= n as i64;
                last.retain(|(nn, _), _| *nn != net);
            }
        }
        assert_eq!(delta as u64, t.count());
        assert_eq!(new, gone + t.count());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let [l0, l1, msg @ ..] = rest else { return };
            let len = usize::from(u16::from_be_bytes([*l0, *l1])) % 64;
            let msg = &msg[..msg.len().min(announce::MAX_MESSAGE + 1)];
            if let Parsed::Ok(a) = announce::parse(msg, len, &Kinds::DEFAULT) {
                // What was taken is what a balancer would send for it: the
                // same bytes but the checksum and LVS's two pad bytes.
                let (enc, n) = announce::encode(&a, [msg[4], msg[5]]);
                assert_eq!(n, len);
                assert_eq!(announce::parse(&enc[..n], n, &Kinds::DEFAULT), Parsed::Ok(a));
                for i in (0..n).filter(|i| *i != 2 && *i != 3 && !(a.padded && (14..16).contains(i))) {
                    assert_eq!(enc[i], msg[i], "byte {i}");
                }
                assert!(matches!(a.client, ClientAddr::V4 { .. }));
            }
        }
        1 => {
            if let Options::Found(c) = uoa::scan(rest) {
                let (o, n) = uoa::encode(&c);
                assert!(rest.windows(n).any(|w| w == &o[..n]));
            }
        }
        2 => {
            let opp = &rest[..rest.len().min(uoa::OPP_MAX + 4)];
            if let Ok(o) = uoa::parse_opp(opp) {
                assert_eq!(o.len, opp.len());
                assert_eq!(uoa::opp_len(opp), Some(o.len));
                let v6 = opp[0] == uoa::OPP_VERSION_V6;
                assert_eq!(matches!(o.client, ClientAddr::V6 { .. }), v6);
            }
        }
        _ => table(&rest[..rest.len().min(3 * 400)]),
    }
});
