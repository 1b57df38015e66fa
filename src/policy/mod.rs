// SPDX-License-Identifier: GPL-2.0

//! Who may name a client, and how: what each network namespace's
//! `net.toa.*` says ([`crate::settings`] holds one set per namespace).
//!
//! - [`config`]: the option kinds, the CDN switch, which packet and which
//!   option are the balancer's (`tcpopt_*`);
//! - [`kinds`]: how the list of kinds and the two older settings fit
//!   together (pure Rust, host-tested);
//! - [`trust`]: the balancers allowed to name a client
//!   (`trusted_sources`), read lock-free on the packet paths;
//! - [`cidr`]: prefix lists, parsed strictly (pure Rust, host-tested);
//! - [`parse`]: strict parsing of sysctl and parameter writes (pure Rust,
//!   host-tested).
//!
//! The glue: `src/glue/admin.c` (sysctls, parameters, who may write).

pub mod cidr;
pub mod config;
pub mod kinds;
pub mod parse;
pub mod trust;
