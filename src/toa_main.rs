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
//! - [`wire`]: the TCP option list and the TOA option in it (pure Rust,
//!   host-tested from the same file by `crates/toa-core`).
//! - [`stash`]: the word toa keeps in `sk_user_data` (pure Rust, host-tested).
//! - [`parse`]: strict parsing of sysctl and parameter writes (pure Rust).
//! - [`cidr`]: prefix lists, parsed strictly (pure Rust, host-tested).
//! - [`config`]: the option kinds taken as TOA (sysctl and module parameters).
//! - [`trust`]: the balancers allowed to name a client (`trusted_sources`).
//! - [`stats`]: the counters of `/proc/net/toa_stats`.
//! - [`handshake`]: a new child socket: find its client in the handshake.
//! - [`record`]: the client recorded on a socket: store, look up, drop.
//! - [`getname`]: `getpeername()`/`accept()`: answer with the recorded client.
//! - [`lookup`]: `getsockopt(TOA_SO_GET_LOOKUP)`: the client as IPv6 (NAT64).
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
pub mod lookup;
pub mod parse;
pub mod record;
pub mod stash;
pub mod stats;
pub mod trust;
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
        kapi::register()?;
        let [v4, v6] = config::kinds().0;
        let hook = kapi::hook_name();
        toa_info!("toa loaded (hook={hook}, tcpopt_addr={v4}, tcpopt_addr_v6={v6})\n");
        Ok(Toa)
    }
}

impl Drop for Toa {
    fn drop(&mut self) {
        kapi::unregister();
        toa_info!("toa unloaded\n");
    }
}
