// SPDX-License-Identifier: GPL-2.0

//! toa: the real client address of FULLNAT-balanced TCP connections.
//!
//! A FULLNAT layer-4 balancer (LVS FULLNAT, cloud ELB/CLB, DPVS) replaces both
//! addresses of a connection and carries the client's address in a TCP option
//! of the handshake. toa reads that option when the kernel creates the
//! accepted socket and answers `accept()` / `getpeername()` with the client.
//!
//! The crate, concern by concern:
//!
//! - [`wire`]: the TCP option list and the client options in it (pure
//!   Rust, host-tested from the same file by `crates/toa-core`).
//! - [`kinds`]: which kinds are in force, from the list and the two older
//!   settings (pure Rust, host-tested).
//! - [`syn_table`]: the handshake table's slots (pure Rust, host-tested).
//! - [`siphash`]: the keyed hash of both tables (pure Rust, host-tested).
//! - [`stash`]: the word toa keeps in `sk_user_data` (pure Rust, host-tested).
//! - [`parse`]: strict parsing of sysctl and parameter writes (pure Rust).
//! - [`cidr`]: prefix lists, parsed strictly (pure Rust, host-tested).
//! - [`settings`]: each network namespace's `net.toa.*`, made of:
//!   - [`config`]: the option kinds, the CDN switch, which packet and which
//!     option are the balancer's;
//!   - [`trust`]: the balancers allowed to name a client
//!     (`trusted_sources`).
//! - [`stats`]: the counters of `/proc/net/toa_stats`.
//! - [`syn`]: clients named by a SYN (or a held-back handshake ACK), kept in
//!   the handshake table until the socket exists.
//! - [`handshake`]: a new child socket: find its client in the handshake.
//! - [`record`]: the client recorded on a socket: store, look up, drop.
//! - [`getname`]: `getpeername()`/`accept()`: answer with the recorded client.
//! - [`lookup`]: `getsockopt(TOA_SO_GET_LOOKUP)`: the client as IPv6 (NAT64).
//! - [`udp`]: UDP clients: the balancers' announcements (ip_vs_ca ICMP,
//!   DPVS UOA), the flow table, what UDP applications see and send, the
//!   UOA getsockopt (its parsers and table pure Rust, host-tested).
//! - [`kapi`]: what the C glue (`glue.c`) provides: probes, sysctl, procfs,
//!   per-CPU counters, and the few `struct sock` accesses.
//! - [`log`]: kernel log lines prefixed `TOA:`.

use kernel::prelude::*;

#[macro_use]
mod log;

pub mod cidr;
pub mod config;
pub mod getname;
pub mod handshake;
pub mod kapi;
pub mod kinds;
pub mod lookup;
pub mod parse;
pub mod record;
pub mod settings;
pub mod siphash;
pub mod stash;
pub mod stats;
pub mod syn;
pub mod syn_table;
pub mod trust;
pub mod udp;
pub mod wire;

#[cfg(toa_module_authors)]
module! {
    type: Toa,
    name: "toa",
    authors: ["The toa developers"],
    description: "Real client addresses behind FULLNAT load balancers (TCP option address)",
    license: "GPL",
}

#[cfg(not(toa_module_authors))]
module! {
    type: Toa,
    name: "toa",
    author: "The toa developers",
    description: "Real client addresses behind FULLNAT load balancers (TCP option address)",
    license: "GPL",
}

/// The loaded module; dropping it unregisters everything.
struct Toa;

impl kernel::Module for Toa {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        syn::init();
        udp::flows::init();
        kapi::register()?;
        let load = &settings::LOAD;
        let rules = load.options.rules();
        toa_info!(
            "toa loaded (hook={}, tcpopt_kinds={}, tcpopt_cdn={}, udp_max_flows={})\n",
            kapi::hook_name(),
            rules.kinds,
            u8::from(rules.cdn),
            udp::config::toa_udp_config_max_flows()
        );
        if !load.trust.configured() {
            toa_warn!(
                "no balancer is trusted yet: no client is taken from any packet until net.toa.trusted_sources names the balancers' prefixes\n"
            );
        }
        Ok(Toa)
    }
}

impl Drop for Toa {
    fn drop(&mut self) {
        kapi::unregister();
        toa_info!("toa unloaded\n");
    }
}
