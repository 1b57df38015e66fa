// SPDX-License-Identifier: GPL-2.0

//! UDP clients: the real client of datagrams a FULLNAT balancer forwards.
//!
//! A balancer that rewrites both addresses of a UDP flow tells the backend
//! who the client is in one of two ways, both supported:
//!
//! - ip_vs_ca / LVS FULLNAT: an ICMP echo request *announcing* the flow
//!   before its first packet ([`announce`]); with protocol 6 it names the
//!   client of a TCP connection whose handshake carries no option;
//! - DPVS: a UOA in the first packets of the flow, as an IPv4 option
//!   (`ipo`) or in an "option protocol" header (`opp`, IP protocol 248)
//!   ([`uoa`]).
//!
//! Either way the flow goes into the [`flow_table`]. The glue's hooks read
//! announcements and UOAs, turn option protocol packets back into plain
//! UDP, and show every datagram of a flow as coming from its client; on
//! output they send every datagram to a client with a flow back to the
//! balancer's address and port. Two sets of hooks do it, for the network
//! namespaces that trust a balancer: protocol-level ones where the
//! namespace does not forward (`glue/udp_entry.c`: `udp_rcv`, `icmp_rcv`,
//! protocol 248, `udp_sendmsg` and `udpv6_sendmsg` (a reply's destination
//! named before the kernel routes it), `ip_send_skb`..., which only such
//! packets pass), netfilter
//! ones where it does (`glue/udp_nf.c`: before conntrack and DNAT, so that
//! pods behind the node see the client). Unmodified applications then see
//! and answer the client on every receive and send path ([`packet`]).
//! Applications written for DPVS ask with the UOA getsockopt
//! ([`sockopt`]).
//!
//! - [`announce`], [`uoa`], [`flow_table`]: pure Rust, host-tested by
//!   `crates/toa-core`;
//! - [`config`]: `udp_rewrite`, `udp_timeout`, `udp_max_flows`;
//! - [`flows`]: the table in the kernel: its memory (the glue's), hash key,
//!   counters, and the few questions other parts ask it;
//! - [`packet`]: the hooks' decisions;
//! - [`sockopt`]: `getsockopt(IPPROTO_IP, UOA_SO_GET_LOOKUP)`.

pub mod announce;
pub mod config;
pub mod flow_table;
pub mod flows;
pub mod packet;
pub mod sockopt;
pub mod uoa;
