//! On a kernel with kmemleak (the debug flavour): after the whole suite, a
//! scan reports nothing allocated by toa.

use std::time::Duration;

use anyhow::{bail, Result};

use super::ipv6::settle;
use crate::{Case, Ctx};

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// The case, if this kernel has kmemleak.
pub fn cases() -> Vec<Case> {
    // virtme-ng may not have mounted debugfs.
    let _ =
        toa_test::sh("mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug");
    if std::path::Path::new(KMEMLEAK).exists() {
        vec![Case::new(
            "kmemleak: a scan after the suite reports nothing of toa's",
            scan,
        )]
    } else {
        Vec::new()
    }
}

fn scan(ctx: &Ctx) -> Result<()> {
    ctx.require_loaded()?;
    settle()?;
    // kmemleak reports an object only once it is older than 5 s and was
    // unreferenced in two scans.
    std::thread::sleep(Duration::from_secs(6));
    for _ in 0..2 {
        toa_test::kmod::write_file(KMEMLEAK, "scan")?;
    }
    let report = std::fs::read_to_string(KMEMLEAK)?;
    let ours: Vec<&str> = report
        .split("unreferenced object")
        .filter(|block| block.contains("[toa]") || block.contains("toa_"))
        .collect();
    let total = report.matches("unreferenced object").count();
    println!(
        "# kmemleak: {total} suspected leaks in the kernel, {} of toa's",
        ours.len()
    );
    if !ours.is_empty() {
        bail!("kmemleak reports toa's memory:\n{}", ours.join("\n---\n"));
    }
    Ok(())
}
