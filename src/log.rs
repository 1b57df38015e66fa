// SPDX-License-Identifier: GPL-2.0

//! Kernel log lines prefixed `TOA:`, as users grep for them (`dmesg | grep TOA`).
//!
//! `pr_info!` would prefix the module name (`toa:`); these macros pass the
//! kernel's printk the prefix users know instead.

/// Log prefix, NUL-terminated for printk's `%s`.
pub(crate) const PREFIX: &[u8] = b"TOA\0";

/// Log a line at `$level` (one of the kernel's fixed printk format strings
/// in `kernel::print::format_strings`), prefixed `TOA:`.
macro_rules! toa_log {
    ($level:ident, $($arg:tt)*) => {
        // SAFETY: `$level` names one of the kernel's fixed printk format
        // strings and `PREFIX` is NUL-terminated, as `call_printk` requires.
        unsafe {
            kernel::print::call_printk(
                &kernel::print::format_strings::$level,
                $crate::log::PREFIX,
                format_args!($($arg)*),
            )
        }
    };
}

/// Log a warning: `toa_warn!("...\n")`.
macro_rules! toa_warn {
    ($($arg:tt)*) => {
        toa_log!(WARNING, $($arg)*)
    };
}

/// Log an informational line: `toa_info!("toa loaded\n")`.
macro_rules! toa_info {
    ($($arg:tt)*) => {
        toa_log!(INFO, $($arg)*)
    };
}
