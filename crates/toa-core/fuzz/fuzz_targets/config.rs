//! What administrators write: sysctl kinds and kind lists, the order of
//! slot and list writes, trusted source lists, and the socket word decoder
//! against arbitrary words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toa_core::policy::cidr::PrefixList;
use toa_core::policy::kinds::KindConfig;
use toa_core::policy::parse;
use toa_core::tcp::stash::{self, Stashed};
use toa_core::tcp::wire::{self, Kinds};

fuzz_target!(|data: &[u8]| {
    if let Some(k) = parse::kind(data) {
        assert!(wire::kind_is_configurable(u32::from(k)));
    }
    if let Some(set) = parse::kind_list(data) {
        // Every kind taken is configurable, and printing reads back.
        assert!(set.iter().all(|k| wire::kind_is_configurable(u32::from(k))));
        let text = format!("{set}");
        assert_eq!(parse::kind_list(text.as_bytes()), Some(set));
    }
    // Writes split at ';': slot 0, slot 1 or the list by the first byte.
    let mut c = KindConfig::DEFAULT;
    for w in data.split(|b| *b == b';') {
        let Some((&which, text)) = w.split_first() else {
            continue;
        };
        let before = c;
        let ok = match which % 3 {
            0 | 1 => c.write_slot(usize::from(which % 3), text).is_some(),
            _ => c.write_list(text).is_some(),
        };
        if !ok {
            assert_eq!(c, before);
        }
        let [s0, s1] = c.slots();
        assert!(s0 == 0 || c.effective().contains(s0));
        assert!(s1 == 0 || c.effective().contains(s1));
        if ok && which % 3 == 2 {
            assert_eq!(Some(c.effective()), parse::kind_list(text));
        }
        assert!(c
            .effective()
            .iter()
            .all(|k| wire::kind_is_configurable(u32::from(k))));
        let _: Kinds = c.effective();
    }
    let mut list = PrefixList::EMPTY;
    if list.parse_into(data).is_some() {
        // A list taken is printed canonically and reads back the same.
        let mut buf = [0u8; 4096];
        let n = list.format(&mut buf);
        let mut again = PrefixList::EMPTY;
        assert!(again.parse_into(&buf[..n]).is_some());
        assert_eq!(list, again);
    }
    if let Ok(bytes) = <[u8; 8]>::try_from(data.get(..8).unwrap_or(&[])) {
        let word = usize::from_ne_bytes(bytes);
        match stash::decode(word) {
            Stashed::V4 { port, addr } => assert_eq!(stash::encode_v4(port, addr), word),
            Stashed::V6Record(rec) => assert_eq!(stash::encode_v6_record(rec), Some(word)),
            Stashed::Empty => assert_eq!(word, 0),
            Stashed::Foreign => {}
        }
    }
});
