//! The TCP option parser against arbitrary option lists and kinds.
//!
//! Input: two kind bytes, then the option bytes (at most 40, as a TCP
//! header can carry). Checks, beyond "never panics, never reads outside the
//! slice" (the sanitizer's part): a found client was read from inside the
//! list, with a configured kind and the length of its family; the result
//! does not depend on bytes after an End of Option List.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toa_core::wire::{scan, ClientAddr, Kinds, Scan, LEN_V4, LEN_V6, MAX_OPTIONS_LEN};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, options @ ..] = data else {
        return;
    };
    let options = &options[..options.len().min(MAX_OPTIONS_LEN)];
    let kinds = Kinds([*k0, *k1]);
    let result = scan(options, kinds);
    if let Scan::Found(client) = result {
        let (len, body): (u8, Vec<u8>) = match client {
            ClientAddr::V4 { port, addr } => (LEN_V4, [&port[..], &addr[..]].concat()),
            ClientAddr::V6 { port, addr } => (LEN_V6, [&port[..], &addr[..]].concat()),
        };
        let found_in_list = options.windows(usize::from(len)).any(|w| {
            (w[0] == *k0 || w[0] == *k1) && w[0] != 0 && w[1] == len && w[2..] == body[..]
        });
        assert!(found_in_list, "{client:?} is not in {options:?}");
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
                assert_eq!(scan(&padded, kinds), result);
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
