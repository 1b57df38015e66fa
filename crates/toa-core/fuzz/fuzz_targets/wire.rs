//! The TCP option parser against arbitrary option lists, kinds, packets.
//!
//! Input: a flags byte (bit 0: SYN, bit 1: CDN option on), four kind bytes
//! (the configured kinds, 0 = none), two bytes of TCP source port, then the
//! option bytes (at most 40, as a TCP header can carry). Checks, beyond
//! "never panics, never reads outside the slice" (the sanitizer's part): a
//! found client was read from inside the list, with a configured kind and
//! a length of its shape (or kind 28, version 1, and the packet's port); a
//! SYN and an ACK read the same list alike but for Fast Open's option; the
//! result does not depend on bytes after an End of Option List.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toa_core::tcp::wire::{
    scan, ClientAddr, Format, Found, Kinds, Packet, Rules, Scan, CDN_VERSION, FASTOPEN_EXID,
    KIND_CDN, KIND_EXP, LEN_CDN_V4, LEN_CDN_V6, LEN_V4, LEN_V6, LEN_VIP, MAX_OPTIONS_LEN,
};

fuzz_target!(|data: &[u8]| {
    let [flags, k0, k1, k2, k3, p0, p1, options @ ..] = data else {
        return;
    };
    let options = &options[..options.len().min(MAX_OPTIONS_LEN)];
    let kinds = [*k0, *k1, *k2, *k3]
        .iter()
        .fold(Kinds::EMPTY, |s, k| s.with(*k));
    let rules = Rules {
        kinds,
        cdn: flags & 2 != 0,
    };
    let packet = if flags & 1 != 0 { Packet::Syn } else { Packet::Ack };
    let port = [*p0, *p1];
    let result = scan(options, &rules, packet, port);
    if let Scan::Found(Found { client, format }) = result {
        let (cport, addr): ([u8; 2], Vec<u8>) = match client {
            ClientAddr::V4 { port, addr } => (port, addr.to_vec()),
            ClientAddr::V6 { port, addr } => (port, addr.to_vec()),
        };
        let v6 = addr.len() == 16;
        let found_in_list = match format {
            Format::Cdn => {
                assert!(rules.cdn && cport == port);
                let len = if v6 { LEN_CDN_V6 } else { LEN_CDN_V4 };
                let want = [&[KIND_CDN, len, CDN_VERSION][..], &addr].concat();
                options.windows(want.len()).any(|w| w == want.as_slice())
            }
            Format::Toa | Format::Vip => {
                let len = match (format, v6) {
                    (Format::Vip, _) => LEN_VIP,
                    (_, true) => LEN_V6,
                    _ => LEN_V4,
                };
                let body = [&cport[..], &addr].concat();
                options.windows(2 + body.len()).any(|w| {
                    kinds.contains(w[0])
                        && w[1] == len
                        && w[2..] == body[..]
                        && !(packet == Packet::Syn && w[0] == KIND_EXP && cport == FASTOPEN_EXID)
                })
            }
        };
        assert!(found_in_list, "{client:?} ({format:?}) is not in {options:?}");
    }
    // A SYN reads the list as an ACK does, but for Fast Open's option.
    let other = if packet == Packet::Syn { Packet::Ack } else { Packet::Syn };
    if scan(options, &rules, other, port) != result {
        assert!(
            kinds.contains(KIND_EXP)
                && options
                    .windows(4)
                    .any(|w| w[0] == KIND_EXP && w[2..4] == FASTOPEN_EXID),
            "SYN and ACK differ on {options:?}"
        );
    }
    // Whatever follows an EOL at a parse position is padding: replacing the
    // tail after the first EOL the walk reaches must not change the result.
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => {
                let mut padded = options.to_vec();
                for b in &mut padded[i + 1..] {
                    *b = 0xa5;
                }
                assert_eq!(scan(&padded, &rules, packet, port), result);
                break;
            }
            1 => i += 1,
            _ => match options.get(i + 1) {
                Some(&l) if l >= 2 => i += usize::from(l),
                _ => break,
            },
        }
    }
});
