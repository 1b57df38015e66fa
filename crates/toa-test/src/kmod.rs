//! Controlling and observing toa.ko from inside the guest: insmod/rmmod,
//! sysctls, module parameters, `/proc/net/toa_stats` and the kernel log.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Load the module at `path` with `params`; the error carries insmod's message.
pub fn insmod(path: &Path, params: &[&str]) -> Result<()> {
    let out = std::process::Command::new("insmod")
        .arg(path)
        .args(params)
        .output()?;
    if !out.status.success() {
        bail!(
            "insmod {} {:?}: {}",
            path.display(),
            params,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Unload the module.
pub fn rmmod() -> Result<()> {
    let out = std::process::Command::new("rmmod").arg("toa").output()?;
    if !out.status.success() {
        bail!("rmmod toa: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether toa is loaded.
pub fn loaded() -> bool {
    Path::new("/sys/module/toa").exists()
}

/// The path of sysctl `net.toa.<name>`.
fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/net/toa/{name}")
}

/// Read sysctl `net.toa.<name>`, trimmed.
pub fn sysctl(name: &str) -> Result<String> {
    let p = sysctl_path(name);
    Ok(std::fs::read_to_string(&p)
        .with_context(|| p.clone())?
        .trim()
        .to_owned())
}

/// Write `value` to sysctl `net.toa.<name>` in one write(2).
pub fn set_sysctl(name: &str, value: &str) -> std::io::Result<()> {
    write_file(&sysctl_path(name), value)
}

/// Write `value` to `path` in one write(2), as `echo value > path` does.
pub fn write_file(path: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(std::io::Error::other(format!(
            "short write {n}/{}",
            value.len()
        )));
    }
    Ok(())
}

/// Set a sysctl for the rest of the scope, then put the old value back.
pub struct SysctlGuard {
    path: String,
    old: String,
}

impl SysctlGuard {
    /// `path` is a full /proc/sys path.
    pub fn set(path: &str, value: &str) -> Result<Self> {
        let old = std::fs::read_to_string(path).with_context(|| path.to_owned())?;
        write_file(path, value).with_context(|| format!("{path} = {value}"))?;
        Ok(SysctlGuard {
            path: path.to_owned(),
            old: old.trim().to_owned(),
        })
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Err(e) = write_file(&self.path, &self.old) {
            eprintln!("# could not restore {} to {}: {e}", self.path, self.old);
        }
    }
}

/// The totals of `/proc/net/toa_stats`, by counter name.
pub type Stats = BTreeMap<String, u64>;

/// Read `/proc/net/toa_stats` of this process's network namespace: the
/// namespace's own totals.
pub fn stats() -> Result<Stats> {
    Ok(read_stats()?.0)
}

/// Read the initial namespace's `/proc/net/toa_stats` `all_netns` column:
/// every namespace's totals, the ones gone included.
pub fn stats_all() -> Result<Stats> {
    read_stats()?
        .1
        .context("/proc/net/toa_stats has no all_netns column (not the initial namespace?)")
}

/// `/proc/net/toa_stats`: a header line of CPU names, `total` and, in the
/// initial namespace, `all_netns`; then one row per counter. The totals,
/// and the all_netns column if there is one.
fn read_stats() -> Result<(Stats, Option<Stats>)> {
    let text = std::fs::read_to_string("/proc/net/toa_stats").context("/proc/net/toa_stats")?;
    let mut lines = text.lines();
    let mut header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let has_all = header.last() == Some(&"all_netns");
    if has_all {
        header.pop();
    }
    if header.last() != Some(&"total") {
        bail!("toa_stats header does not end in total (and all_netns): {header:?}");
    }
    let mut map = Stats::new();
    let mut all = Stats::new();
    for line in lines {
        let mut cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() != header.len() + 1 + usize::from(has_all) {
            bail!("toa_stats row {line:?} does not match header {header:?}");
        }
        if has_all {
            let a = cols.pop().unwrap_or_default();
            let a: u64 = a.parse().with_context(|| line.to_owned())?;
            all.insert(cols[0].to_owned(), a);
        }
        let total: u64 = cols[cols.len() - 1]
            .parse()
            .with_context(|| line.to_owned())?;
        let per_cpu: Vec<&str> = cols[1..cols.len() - 1].to_vec();
        if per_cpu.iter().all(|v| *v != "-") {
            let sum: u64 = per_cpu
                .iter()
                .map(|v| v.parse::<u64>().unwrap_or(u64::MAX))
                .sum();
            if sum != total {
                bail!("toa_stats row {line:?}: CPUs sum to {sum}, total says {total}");
            }
        }
        if has_all && all.get(cols[0]).copied().unwrap_or(0) < total {
            bail!("toa_stats row {line:?}: all_netns below the namespace's own total");
        }
        map.insert(cols[0].to_owned(), total);
    }
    Ok((map, has_all.then_some(all)))
}

/// How each counter moved from `before` to `after` (only those that did).
pub fn delta(before: &Stats, after: &Stats) -> Stats {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.wrapping_sub(*before.get(k).unwrap_or(&0));
            (d != 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Check that the counters moved exactly as `want` says (others not at all).
///
/// With `hook=kretprobe` or `hook=fprobe`, `probe_missed` is left out: the
/// kprobe core skips a handler whenever another kprobe is running on the same
/// CPU (a softirq arriving while a task-context handler runs), which depends
/// on timing, not on the case. Every case still checks the addresses it got.
pub fn expect_delta(before: &Stats, want: &[(&str, u64)]) -> Result<()> {
    let mut got = delta(before, &stats()?);
    let hook = std::fs::read_to_string("/sys/module/toa/parameters/hook").unwrap_or_default();
    if matches!(hook.trim(), "kretprobe" | "fprobe") {
        got.remove("probe_missed");
    }
    let want: Stats = want.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    if got != want {
        bail!("toa_stats moved by {got:?}, expected {want:?}");
    }
    Ok(())
}

/// The kernel log, as `dmesg` prints it.
pub fn dmesg() -> Result<String> {
    crate::sh("dmesg")
}

/// How many kernel log lines contain `needle`.
pub fn log_count(needle: &str) -> Result<usize> {
    Ok(dmesg()?.lines().filter(|l| l.contains(needle)).count())
}
