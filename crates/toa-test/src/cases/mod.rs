//! The cases, in the order they run: the module's life cycle first (it
//! starts unloaded), then behaviour with the module loaded.

mod common;
mod hooks;
mod ipv4;
mod ipv6;
mod leaks;
mod lifecycle;
mod local;
mod namespaces;
mod owners;
mod producers;
mod stress;
mod trust;
mod udp;

use crate::Case;

pub use namespaces::attacker_main;

/// Every case, in order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(lifecycle::cases());
    v.extend(hooks::cases());
    v.extend(ipv4::cases());
    v.extend(ipv6::cases());
    v.extend(trust::cases());
    v.extend(local::cases());
    v.extend(namespaces::cases());
    v.extend(owners::cases());
    v.extend(producers::cases());
    v.extend(udp::cases());
    v.extend(stress::cases());
    v.extend(leaks::cases());
    v
}
