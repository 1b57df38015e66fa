// SPDX-License-Identifier: GPL-2.0

//! TCP clients: the real client of connections a FULLNAT balancer forwards.
//!
//! The balancer names the client in a TCP option of the handshake (the
//! SYN, the completing ACK, or both, as each producer does; [`wire`]).
//! When the kernel creates the accepted socket, [`handshake`] finds its
//! client, in the completing packet or in the handshake table where
//! [`syn`] kept what a SYN (or a held-back ACK) named, and [`record`]
//! keeps it on the socket (a word in `sk_user_data`, [`stash`]; an IPv6
//! client in a small record). Then [`getname`] answers `getpeername()` and
//! `accept()` with the client, and [`lookup`] answers
//! `getsockopt(TOA_SO_GET_LOOKUP)` with it as IPv6 (NAT64).
//!
//! - [`wire`], [`syn_table`], [`stash`]: pure Rust, host-tested by
//!   `crates/toa-core`;
//! - the glue: `src/glue/tcp_syn.c` (the SYN-side hooks and the table's
//!   locks), `tcp_hooks.c` (the child socket, getname, getsockopt),
//!   `tcp_redirect.c` (getname's direct-call redirection),
//!   `tcp_records.c` (IPv6 records), `tcp_park.c` (the words of sockets a
//!   BPF socket map took, [`park`]).

pub mod getname;
pub mod handshake;
pub mod lookup;
pub mod park;
pub mod record;
pub mod stash;
pub mod syn;
pub mod syn_table;
pub mod wire;
