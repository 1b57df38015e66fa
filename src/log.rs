// SPDX-License-Identifier: GPL-2.0

//! Kernel log lines prefixed `TOA:`, as users grep for them (`dmesg | grep TOA`).
//!
//! `pr_info!` would prefix the module name (`toa:`); these macros pass the
//! kernel's printk the prefix users know instead.

/// Log prefix, NUL-terminated for printk's `%s`.
pub(crate) const PREFIX: &[u8] = b"TOA\0";

/// Log a warning: `toa_warn!("...\n")`.
macro_rules! toa_warn {
    ($($arg:tt)*) => {
        // SAFETY: `WARNING` is one of the kernel's fixed printk format
        // strings and `PREFIX` is NUL-terminated, as `call_printk` requires.
        unsafe {
            kernel::print::call_printk(
                &kernel::print::format_strings::WARNING,
                $crate::log::PREFIX,
                format_args!($($arg)*),
            )
        }
    };
}

/// Log an informational line: `toa_info!("toa loaded\n")`.
macro_rules! toa_info {
    ($($arg:tt)*) => {
        // SAFETY: `INFO` is one of the kernel's fixed printk format strings
        // and `PREFIX` is NUL-terminated, as `call_printk` requires.
        unsafe {
            kernel::print::call_printk(
                &kernel::print::format_strings::INFO,
                $crate::log::PREFIX,
                format_args!($($arg)*),
            )
        }
    };
}
