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
//! - [`tcp`]: TCP clients: the option list and the client options in it,
//!   the handshake table for clients named before the socket exists, the
//!   new child socket's client, the record kept on the socket, and what
//!   `getpeername()`/`accept()` and `TOA_SO_GET_LOOKUP` answer.
//! - [`udp`]: UDP clients: the balancers' announcements (ip_vs_ca ICMP,
//!   DPVS UOA), the flow table, what UDP applications see and send, the
//!   UOA getsockopt.
//! - [`policy`]: who may name a client and how: the option kinds, the
//!   trusted balancers, strict parsing of what administrators write.
//! - [`settings`]: each network namespace's `net.toa.*` (made of
//!   [`policy`]'s parts), handed to the packet paths with each packet.
//! - [`stats`]: the counters of each namespace's `/proc/net/toa_stats`.
//! - [`siphash`]: the keyed hash of both tables; [`recent`]: whether
//!   anything was put in one lately (the hot paths' skip).
//! - [`kapi`]: what the C glue (`src/glue/`) provides: hooks, sysctl,
//!   procfs, per-CPU counters, and the few `struct sock` accesses.
//! - [`log`]: kernel log lines prefixed `TOA:`.
//!
//! The pure parts (parsers, tables, hash) have no kernel dependency and are
//! host-tested from the same files by `crates/toa-core`.

use kernel::prelude::*;

#[macro_use]
mod log;

pub mod kapi;
pub mod policy;
pub mod recent;
pub mod settings;
pub mod siphash;
pub mod stats;
pub mod tcp;
pub mod udp;

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
        tcp::syn::init();
        udp::flows::init();
        kapi::register()?;
        let load = &settings::LOAD;
        let rules = load.options().rules();
        toa_info!(
            "toa loaded (hook={}, tcpopt_kinds={}, tcpopt_cdn={}, udp_max_flows={})\n",
            kapi::hook_name(),
            rules.kinds,
            u8::from(rules.cdn),
            udp::config::toa_udp_config_max_flows()
        );
        if !load.trust().configured() {
            toa_warn!(
                "no balancer is trusted yet: no client is taken from any packet, and no new connection is hooked, until net.toa.trusted_sources names the balancers' prefixes\n"
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
