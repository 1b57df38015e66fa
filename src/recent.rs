// SPDX-License-Identifier: GPL-2.0

//! Whether anything was put in a table lately: one atomic stamp that lets a
//! hot path skip a table nothing could still be found in.
//!
//! The handshake table (clients named in a SYN) and the protocol-6 flows
//! of the UDP table (clients named ahead of a TCP connection) are looked up
//! by every new connection; on hosts whose balancers never use them, a
//! [`Recent`] that saw no entry within an entry's lifetime says so with one
//! load.

use core::sync::atomic::{AtomicU64, Ordering};

/// The clock (ms) of the newest entry put in, plus one (0: none yet).
pub struct Recent(AtomicU64);

impl Default for Recent {
    fn default() -> Self {
        Self::new()
    }
}

impl Recent {
    /// No entry yet.
    pub const fn new() -> Self {
        Recent(AtomicU64::new(0))
    }

    /// An entry was put in at `now_ms`. Release: a reader that sees this
    /// stamp finds the entry. The stamp never goes back (an older clock
    /// read by a slower CPU leaves a newer one in place).
    pub fn put(&self, now_ms: u64) {
        self.0
            .fetch_max(now_ms.saturating_add(1), Ordering::Release);
    }

    /// Whether an entry put in at most `lifetime_ms` before `now_ms` may
    /// still be there: false when none was put in, or the newest is older.
    pub fn may_hold(&self, now_ms: u64, lifetime_ms: u64) -> bool {
        let last = self.0.load(Ordering::Acquire);
        last != 0 && now_ms.saturating_sub(last - 1) <= lifetime_ms
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn nothing_put_holds_nothing() {
        assert!(!Recent::new().may_hold(0, u64::MAX));
        assert!(!Recent::new().may_hold(5000, 1000));
    }

    #[test]
    fn an_entry_holds_for_its_lifetime() {
        let r = Recent::new();
        r.put(0);
        assert!(r.may_hold(0, 1000));
        assert!(r.may_hold(1000, 1000));
        assert!(!r.may_hold(1001, 1000));
        r.put(5000);
        assert!(r.may_hold(6000, 1000));
        assert!(!r.may_hold(6001, 1000));
    }

    #[test]
    fn an_older_put_keeps_the_newer_stamp() {
        let r = Recent::new();
        r.put(5000);
        r.put(100);
        assert!(r.may_hold(6000, 1000));
    }

    #[test]
    fn a_clock_behind_the_stamp_holds() {
        let r = Recent::new();
        r.put(5000);
        assert!(r.may_hold(4000, 1000));
    }
}
