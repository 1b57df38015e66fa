//! What toa's test tools share: the tun device and the test peer that
//! plays the balancer on it, the application-side socket calls, and module
//! control. Used by the in-VM suite (`toa-vmtest`), the benchmark
//! (`toa-bench`) and the NAT64 translator in `toa-balancer`.

pub mod kmod;
pub mod peer;
pub mod sock;
pub mod tun;
pub mod udp;

use anyhow::{bail, Context, Result};

/// Run a shell command; its stdout, or an error with its stderr.
pub fn sh(cmd: &str) -> Result<String> {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .with_context(|| cmd.to_owned())?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
