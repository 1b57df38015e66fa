//! The kernel module's pure Rust, compiled for the host from the very files
//! Kbuild compiles into `toa.ko` (`src/wire.rs`, `src/kinds.rs`,
//! `src/siphash.rs`, `src/syn_table.rs`, `src/stash.rs`, `src/parse.rs`,
//! `src/cidr.rs`, and the UDP parsers and flow table in `src/udp/`), so that
//! their unit tests, property tests and fuzz targets run in userspace.
#![cfg_attr(not(test), no_std)]

#[path = "../../../src/wire.rs"]
pub mod wire;

#[path = "../../../src/kinds.rs"]
pub mod kinds;

#[path = "../../../src/siphash.rs"]
pub mod siphash;

#[path = "../../../src/syn_table.rs"]
pub mod syn_table;

#[path = "../../../src/stash.rs"]
pub mod stash;

#[path = "../../../src/parse.rs"]
pub mod parse;

#[path = "../../../src/cidr.rs"]
pub mod cidr;

/// The UDP concern's pure parts (`src/udp/`).
#[path = "../../../src/udp"]
pub mod udp {
    pub mod announce;
    pub mod flow_table;
    pub mod uoa;
}

/// `make check`'s proof that it counts a test binary that dies without a
/// summary (`TOA_SELFTEST_ABORT=1 make check` turns red): only built with
/// the `selftest-abort` feature.
#[cfg(all(test, feature = "selftest-abort"))]
mod selftest_abort {
    #[test]
    fn this_test_binary_aborts() {
        std::process::abort();
    }
}
