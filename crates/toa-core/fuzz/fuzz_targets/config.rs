//! What administrators write: sysctl kinds and trusted source lists, and the
//! socket word decoder against arbitrary words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toa_core::cidr::PrefixList;
use toa_core::parse;
use toa_core::stash::{self, Stashed};

fuzz_target!(|data: &[u8]| {
    if let Some(k) = parse::kind(data) {
        assert!(toa_core::wire::kind_is_configurable(u32::from(k)));
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
