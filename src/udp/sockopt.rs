// SPDX-License-Identifier: GPL-2.0

//! `getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP /* 2048 */, &map, &len)`:
//! DPVS's interface for applications that ask for the client of a datagram
//! themselves (`struct uoa_param_map` of `<linux/toa.h>`).
//!
//! The application passes the source its `recvfrom()` gave it and its own
//! address and port (`daddr` all zero: any). With receive rewriting off
//! that source is the balancer's (LIP:lport): the flow's forward half
//! answers. With it on (the default) the source is already the client:
//! its reverse half confirms it, and the answer is the client itself. An
//! IPv6 client of an IPv4 flow (NAT64) is only ever found the first way.
//!
//! The glue registers the option, copies the struct in and out and checks
//! its length; this answers in the socket's network namespace.

use core::ffi::c_int;

use kernel::error::code::{EINVAL, ENOENT};

use super::announce::Proto;
use super::flow_table::{Endpoint, FlowKey, Query};
use super::flows;
use crate::kapi::UoaParamMap;
use crate::settings::Settings;
use crate::stats::{self, Counter};

/// `AF_INET`.
const AF_INET: u16 = 2;
/// `AF_INET6`.
const AF_INET6: u16 = 10;

/// An endpoint as the application named it: `af` and 16 address bytes
/// (IPv4: the first 4; an IPv4-mapped IPv6 address is IPv4).
fn endpoint(af: u16, addr: &[u8; 16], port: [u8; 2]) -> Option<Endpoint> {
    match af {
        AF_INET => Some(Endpoint::v4([addr[0], addr[1], addr[2], addr[3]], port)),
        AF_INET6 if addr[..10] == [0; 10] && addr[10..12] == [0xff, 0xff] => {
            Some(Endpoint::v4([addr[12], addr[13], addr[14], addr[15]], port))
        }
        AF_INET6 => Some(Endpoint::v6(*addr, port)),
        _ => None,
    }
}

/// Answer `map` for a socket of namespace `net` (whose settings are `s`):
/// 0 (the client in `real_*`), `-EINVAL` (bad family) or `-ENOENT` (no
/// live flow).
///
/// # Safety
///
/// `map` must be a readable and writable [`UoaParamMap`] and `s` a live
/// [`Settings`]; the caller must be in an RCU read-side critical section.
#[no_mangle]
pub unsafe extern "C" fn toa_uoa_lookup(
    s: *const Settings,
    net: u64,
    now: u64,
    map: *mut UoaParamMap,
) -> c_int {
    // SAFETY: the caller guarantees `map` and `s`.
    let (map, s) = unsafe { (&mut *map, &*s) };
    let af = u16::from_ne_bytes(map.af);
    let (Some(src), Some(local)) = (
        endpoint(af, &map.saddr, map.sport),
        endpoint(af, &map.daddr, map.dport),
    ) else {
        return EINVAL.to_errno();
    };
    if src.v6 != local.v6 && local.addr != [0; 16] {
        return EINVAL.to_errno();
    }
    let rs = Endpoint {
        v6: src.v6,
        ..local
    };
    let any = local.addr == [0; 16];
    let key = FlowKey {
        net,
        proto: Proto::Udp,
        lip: src,
        rs,
    };
    let fwd = if any {
        Query::forward(&key).any_rs()
    } else {
        Query::forward(&key)
    };
    // SAFETY: the caller holds RCU.
    let client = match unsafe { flows::lookup(&fwd, now) } {
        Some(hit) => hit.peer,
        None => {
            let rev = Query::reverse(net, Proto::Udp, &src, &rs);
            let rev = if any { rev.any_rs() } else { rev };
            // SAFETY: the caller holds RCU.
            match unsafe { flows::lookup(&rev, now) } {
                Some(_) => src,
                None => {
                    stats::inc(s, Counter::UoaLookupNone);
                    return ENOENT.to_errno();
                }
            }
        }
    };
    map.real_af = if client.v6 { AF_INET6 } else { AF_INET }.to_ne_bytes();
    map.real_saddr = client.addr;
    map.real_sport = client.port;
    stats::inc(s, Counter::UoaLookupOk);
    0
}
