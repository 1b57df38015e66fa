// SPDX-License-Identifier: GPL-2.0

//! Which option kinds are in force: the set `net.toa.tcpopt_kinds` shows,
//! and how the two older settings `tcpopt_addr` and `tcpopt_addr_v6` fit in.
//!
//! The kinds in force are the union of three parts:
//!
//! - slot 0, `tcpopt_addr` (default 200), and slot 1, `tcpopt_addr_v6`
//!   (default 254): one kind each, 0 for none, exactly as before the set
//!   existed, so configurations and guides that set them keep working;
//! - the other listed kinds (default: 253).
//!
//! Writing a slot replaces that slot's kind and leaves the rest: with the
//! defaults, `tcpopt_addr=254` leaves {253, 254} (200 goes, as it always
//! did) and writing 200 back restores {200, 253, 254}. Writing the list sets
//! the whole set to what was written; a slot keeps its kind if the list has
//! it and becomes 0 otherwise. Reading the list shows the whole set.
//!
//! Pure Rust, no kernel dependency: tested on the host by `toa-core`.

use crate::policy::parse;
use crate::tcp::wire::Kinds;

/// The kind settings; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindConfig {
    /// `tcpopt_addr` and `tcpopt_addr_v6`; 0 is none.
    slots: [u8; 2],
    /// The listed kinds that are not a slot's (a slot's kind may be here
    /// too, when the slot was set to a kind already listed: the kind then
    /// stays in force when the slot moves on).
    others: Kinds,
}

impl KindConfig {
    /// Out of the box: slots 200 and 254, and 253.
    pub const DEFAULT: KindConfig = KindConfig {
        slots: [200, 254],
        others: Kinds::EMPTY.with(253),
    };

    /// The kinds in force.
    pub const fn effective(&self) -> Kinds {
        self.others.with(self.slots[0]).with(self.slots[1])
    }

    /// Both slots' kinds.
    pub const fn slots(&self) -> [u8; 2] {
        self.slots
    }

    /// The kind of `slot` (0: `tcpopt_addr`, 1: `tcpopt_addr_v6`); `None`
    /// for another slot.
    pub fn slot(&self, slot: usize) -> Option<u8> {
        self.slots.get(slot).copied()
    }

    /// Set `slot` to `kind` (0: none); `None` (and nothing changed) for
    /// another slot or a kind that cannot be configured.
    pub fn set_slot(&mut self, slot: usize, kind: u8) -> Option<()> {
        if !crate::tcp::wire::kind_is_configurable(u32::from(kind)) {
            return None;
        }
        *self.slots.get_mut(slot)? = kind;
        Some(())
    }

    /// Make `kinds` the set in force: a slot keeps its kind if `kinds` has
    /// it (the kind stays the slot's) and becomes 0 otherwise.
    pub fn set_list(&mut self, kinds: Kinds) {
        let mut others = kinds.words();
        for s in &mut self.slots {
            if kinds.contains(*s) {
                others[usize::from(*s / 64)] &= !(1 << (*s % 64));
            } else {
                *s = 0;
            }
        }
        // INVARIANT: `others` plus the slots' kinds is exactly `kinds`.
        self.others = Kinds::from_words(others);
    }

    /// Set `slot` from text (one decimal kind, 0 for none).
    pub fn write_slot(&mut self, slot: usize, text: &[u8]) -> Option<()> {
        self.set_slot(slot, parse::kind(text)?)
    }

    /// Set the list from text (see [`parse::kind_list`]).
    pub fn write_list(&mut self, text: &[u8]) -> Option<()> {
        self.set_list(parse::kind_list(text)?);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(ks: &[u8]) -> Kinds {
        ks.iter().fold(Kinds::EMPTY, |s, k| s.with(*k))
    }

    #[test]
    fn defaults() {
        let c = KindConfig::DEFAULT;
        assert_eq!(c.effective(), kinds(&[200, 253, 254]));
        assert_eq!(c.slot(0), Some(200));
        assert_eq!(c.slot(1), Some(254));
        assert_eq!(c.slot(2), None);
    }

    #[test]
    fn a_slot_write_replaces_its_kind_only() {
        let mut c = KindConfig::DEFAULT;
        c.set_slot(0, 254).unwrap();
        assert_eq!(
            c.effective(),
            kinds(&[253, 254]),
            "Huawei ELB's tcpopt_addr=254"
        );
        c.set_slot(0, 200).unwrap();
        assert_eq!(c.effective(), Kinds::DEFAULT);
    }

    #[test]
    fn a_slot_naming_a_listed_kind_gives_it_back_when_changed() {
        let mut c = KindConfig::DEFAULT;
        c.set_slot(0, 253).unwrap();
        c.set_slot(1, 200).unwrap();
        assert_eq!(c.effective(), kinds(&[200, 253]));
        c.set_slot(1, 254).unwrap();
        c.set_slot(0, 200).unwrap();
        assert_eq!(c.effective(), Kinds::DEFAULT, "restored in reverse order");
    }

    #[test]
    fn old_parameters_keep_their_meaning() {
        // modprobe toa tcpopt_addr=253 tcpopt_addr_v6=0
        let mut c = KindConfig::DEFAULT;
        c.write_slot(0, b"253").unwrap();
        c.write_slot(1, b"0").unwrap();
        assert_eq!(c.effective(), kinds(&[253]));
        // tcpopt_addr=0 disables 200 only.
        let mut c = KindConfig::DEFAULT;
        c.write_slot(0, b"0\n").unwrap();
        assert_eq!(c.effective(), kinds(&[253, 254]));
    }

    #[test]
    fn a_list_write_is_the_set() {
        let mut c = KindConfig::DEFAULT;
        c.write_list(b"253").unwrap();
        assert_eq!(c.effective(), kinds(&[253]));
        assert_eq!((c.slot(0), c.slot(1)), (Some(0), Some(0)));
        c.write_slot(0, b"200").unwrap();
        assert_eq!(c.effective(), kinds(&[200, 253]));
        c.write_list(b"200,254").unwrap();
        assert_eq!(c.effective(), kinds(&[200, 254]));
        assert_eq!(c.slot(0), Some(200), "still listed: kept");
        c.write_slot(0, b"0").unwrap();
        assert_eq!(
            c.effective(),
            kinds(&[254]),
            "the listed 200 was the slot's"
        );
        c.write_list(b"200 253 254").unwrap();
        assert_eq!(c.effective(), Kinds::DEFAULT);
        c.write_list(b"").unwrap();
        assert_eq!(c.effective(), Kinds::EMPTY);
    }

    #[test]
    fn bad_writes_change_nothing() {
        let mut c = KindConfig::DEFAULT;
        for bad in [&b"8"[..], b"28", b"256", b"abc", b"-1", b""] {
            assert_eq!(c.write_slot(0, bad), None, "{bad:?}");
        }
        for bad in [&b"200 8"[..], b"0", b"200,,254", b"28", b"200 x"] {
            assert_eq!(c.write_list(bad), None, "{bad:?}");
        }
        assert_eq!(c.set_slot(2, 200), None);
        assert_eq!(c, KindConfig::DEFAULT);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Slot(usize, u8),
            List(Vec<u8>),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0usize..2, any::<u8>()).prop_map(|(s, k)| Op::Slot(s, k)),
                proptest::collection::vec(any::<u8>(), 0..5).prop_map(Op::List),
            ]
        }

        proptest! {
            #[test]
            fn slots_are_always_in_force_and_lists_are_exact(ops in proptest::collection::vec(op(), 0..20)) {
                let mut c = KindConfig::DEFAULT;
                for o in ops {
                    let before = c;
                    match o {
                        Op::Slot(s, k) => {
                            if c.set_slot(s, k).is_some() {
                                prop_assert_eq!(c.slot(s), Some(k));
                                // The other slot and the others are untouched.
                                prop_assert_eq!(c.slot(1 - s), before.slot(1 - s));
                            } else {
                                prop_assert_eq!(c, before);
                            }
                        }
                        Op::List(ks) => {
                            let set = ks.iter().fold(Kinds::EMPTY, |s, k| s.with(*k));
                            c.set_list(set);
                            prop_assert_eq!(c.effective(), set);
                        }
                    }
                    for s in 0..2 {
                        let k = c.slot(s).unwrap_or(0);
                        prop_assert!(k == 0 || c.effective().contains(k));
                    }
                }
            }
        }
    }
}
