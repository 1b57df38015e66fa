//! The kernel module's pure Rust, compiled for the host from the very files
//! Kbuild compiles into `toa.ko`, in the module's own layout
//! (`src/tcp/wire.rs`, `src/tcp/syn_table.rs`, `src/tcp/stash.rs`,
//! `src/policy/kinds.rs`, `src/policy/parse.rs`, `src/policy/cidr.rs`,
//! `src/siphash.rs`, `src/recent.rs`, and the UDP parsers and flow table in `src/udp/`), so
//! that their unit tests, property tests and fuzz targets run in userspace.
#![cfg_attr(not(test), no_std)]

/// The TCP concern's pure parts (`src/tcp/`).
#[path = "../../../src/tcp"]
pub mod tcp {
    pub mod stash;
    pub mod syn_table;
    pub mod wire;
}

/// Who may name a client: the settings' pure parts (`src/policy/`).
#[path = "../../../src/policy"]
pub mod policy {
    pub mod cidr;
    pub mod kinds;
    pub mod parse;
}

#[path = "../../../src/siphash.rs"]
pub mod siphash;

#[path = "../../../src/recent.rs"]
pub mod recent;

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
