// SPDX-License-Identifier: GPL-2.0

//! What toa keeps on an accepted socket: one word in `sk->sk_user_data`.
//!
//! `sk_user_data` is shared kernel state. Its low three bits are flags other
//! subsystems test (`SK_USER_DATA_NOCOPY`, `_BPF`, `_PSOCK`), and a non-NULL
//! value means "owned" to whoever else looks (sockmap, KCM, ovpn refuse such a
//! socket). So the word toa stores:
//!
//! - never has a flag bit set (bits 0-2 are always zero);
//! - can never be mistaken for a pointer someone else stored: its top byte is
//!   [`TAG`], which no kernel address has (kernel addresses live in the upper
//!   half, top byte 0xff, on every 64-bit architecture toa builds for) and
//!   which kernel code does not store in `sk_user_data` for other reasons;
//! - is written only where the word was NULL (compare-and-exchange), so a
//!   value someone else put there is never overwritten.
//!
//! An IPv4 client fits in the word itself, so IPv4 costs no allocation:
//!
//! ```text
//!  63      56 55                      24 23          8 7        0
//! +----------+--------------------------+-------------+----------+
//! | TAG 0x54 |   IPv4 address (be32)    | port (be16) |   0x08   |
//! +----------+--------------------------+-------------+----------+
//! ```
//!
//! An IPv6 client lives in a separate 16-byte aligned record; the word is the
//! record's address with its top byte (0xff) replaced by [`TAG`] and low byte
//! clear of 0x08:
//!
//! ```text
//!  63      56 55                                      4 3        0
//! +----------+-----------------------------------------+----------+
//! | TAG 0x54 |       record address bits 55..4         |   0000   |
//! +----------+-----------------------------------------+----------+
//! ```
//!
//! Pure Rust, no kernel dependency: tested on the host by `toa-core`.

/// Top byte of every word toa stores.
pub const TAG: u8 = 0x54;
/// Low byte of a word holding an IPv4 client.
const LOW_V4: u64 = 0x08;
// The destructor's trampoline (the glue's TOA_ASM_SKIP_UNLESS_USER_DATA)
// lets a socket whose word has the tag on top and bit 3 set go without the
// handler: an IPv4 client, nothing to free. A record's word has bit 3
// clear (`V6_ADDR_BITS`).
const _: () = assert!(LOW_V4 == 1 << 3 && V6_ADDR_BITS & LOW_V4 == 0);
/// The kernel's `sk_user_data` flag bits (`SK_USER_DATA_PTRMASK` is their
/// complement); toa's words never have any of them set.
pub const KERNEL_FLAG_BITS: u64 = 0x7;
/// Bits 55..4: the part of a record address kept in a word.
const V6_ADDR_BITS: u64 = 0x00ff_ffff_ffff_fff0;

const _: () = assert!(u64::BITS == usize::BITS, "toa supports 64-bit kernels only");

/// What a `sk_user_data` word means to toa.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stashed {
    /// NULL: nobody stored anything.
    Empty,
    /// Somebody else's value (a pointer, flags, ...): none of toa's business.
    Foreign,
    /// An IPv4 client, held in the word itself.
    V4 {
        /// Port, network byte order.
        port: [u8; 2],
        /// Address, network byte order.
        addr: [u8; 4],
    },
    /// The address of toa's IPv6 record for this socket.
    V6Record(usize),
}

/// The word for an IPv4 client.
pub const fn encode_v4(port: [u8; 2], addr: [u8; 4]) -> usize {
    let a = u32::from_be_bytes(addr) as u64;
    let p = u16::from_be_bytes(port) as u64;
    // INVARIANT: top byte TAG, low byte LOW_V4 (no kernel flag bit set).
    (((TAG as u64) << 56) | (a << 24) | (p << 8) | LOW_V4) as usize
}

/// The word for an IPv6 record at `record`, or `None` if the address cannot
/// be represented (not 16-byte aligned, or not a top-byte-0xff kernel address).
pub const fn encode_v6_record(record: usize) -> Option<usize> {
    let r = record as u64;
    if r >> 56 != 0xff || r & !V6_ADDR_BITS & 0x00ff_ffff_ffff_ffff != 0 {
        return None;
    }
    // INVARIANT: top byte TAG, low four bits clear (no kernel flag bit, and
    // not LOW_V4), the rest the record's address bits 55..4.
    Some((((TAG as u64) << 56) | (r & V6_ADDR_BITS)) as usize)
}

/// What `word`, read from `sk_user_data`, holds.
pub const fn decode(word: usize) -> Stashed {
    let w = word as u64;
    if w == 0 {
        return Stashed::Empty;
    }
    if w >> 56 != TAG as u64 || w & KERNEL_FLAG_BITS != 0 {
        return Stashed::Foreign;
    }
    match w & 0xff {
        LOW_V4 => {
            let a = ((w >> 24) & 0xffff_ffff) as u32;
            let p = ((w >> 8) & 0xffff) as u16;
            Stashed::V4 {
                port: p.to_be_bytes(),
                addr: a.to_be_bytes(),
            }
        }
        low if low & 0xf == 0 => {
            Stashed::V6Record(((0xff_u64 << 56) | (w & V6_ADDR_BITS)) as usize)
        }
        _ => Stashed::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn null_is_empty() {
        assert_eq!(decode(0), Stashed::Empty);
    }

    #[test]
    fn v4_word_has_tag_and_no_flags() {
        let w = encode_v4([0x1f, 0x90], [192, 0, 2, 7]) as u64;
        assert_eq!(w >> 56, TAG as u64);
        assert_eq!(w & KERNEL_FLAG_BITS, 0);
        assert_eq!(w, 0x54c0_0002_071f_9008);
    }

    #[test]
    fn kernel_pointers_are_foreign() {
        for p in [
            0xffff_8880_0123_4560_u64,
            0xffff_8880_0123_4568,
            0xffff_ffff_8100_0000,
            0xff11_0000_0000_0000,
            0xffff_8880_0123_4561,
            0x0000_7fff_0000_0000,
            0x5400_0000_0000_0009,
            0x5400_0000_0000_0018,
        ] {
            assert_eq!(decode(p as usize), Stashed::Foreign, "{p:#x}");
        }
    }

    #[test]
    fn kernel_flags_make_a_word_foreign() {
        let w = encode_v4([0, 80], [10, 0, 0, 1]);
        for flag in 1..=7 {
            assert_eq!(decode(w | flag), Stashed::Foreign);
        }
    }

    #[test]
    fn v6_record_round_trips() {
        let rec = 0xffff_8880_0abc_def0_usize;
        let w = encode_v6_record(rec).expect("representable");
        assert_eq!((w as u64) >> 56, TAG as u64);
        assert_eq!(w as u64 & 0xf, 0);
        assert_eq!(decode(w), Stashed::V6Record(rec));
    }

    #[test]
    fn unrepresentable_records_are_refused() {
        assert_eq!(
            encode_v6_record(0xffff_8880_0abc_def8),
            None,
            "8-aligned only"
        );
        assert_eq!(
            encode_v6_record(0xf0ff_8880_0abc_def0),
            None,
            "tagged pointer"
        );
        assert_eq!(encode_v6_record(0x0000_0000_0abc_def0), None, "not kernel");
    }

    proptest! {
        #[test]
        fn v4_round_trips(port: [u8; 2], addr: [u8; 4]) {
            let w = encode_v4(port, addr);
            prop_assert_eq!(w as u64 & KERNEL_FLAG_BITS, 0);
            prop_assert_eq!(decode(w), Stashed::V4 { port, addr });
        }

        #[test]
        fn v6_records_round_trip(bits in 0u64..(1 << 52)) {
            let rec = (0xff00_0000_0000_0000 | (bits << 4)) as usize;
            let w = encode_v6_record(rec).expect("representable");
            prop_assert_eq!(w as u64 & KERNEL_FLAG_BITS, 0);
            prop_assert_eq!(decode(w), Stashed::V6Record(rec));
        }

        #[test]
        fn upper_half_words_are_never_ours(w in 0x8000_0000_0000_0000u64..) {
            prop_assert!(matches!(decode(w as usize), Stashed::Foreign));
        }
    }
}
