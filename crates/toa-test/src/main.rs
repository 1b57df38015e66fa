//! toa's in-VM test suite.
//!
//! Runs inside a guest booted by `scripts/vm.sh` on a test kernel, as root:
//! loads the toa.ko given with `--module`, creates the tun device `toa0`
//! (guest 10.0.0.1/24 and fd00::1/64; the test peer plays every other
//! address), runs the cases and prints one `ok`/`not ok` line per case and a
//! last line `N passed, M failed`. Exit status 0 only if all passed.

mod cases;

use toa_test::{kmod, tun};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

/// What every case gets.
pub struct Ctx {
    /// The toa.ko under test.
    pub module: PathBuf,
    /// Module parameters for every load (`--param hook=fprobe`).
    pub params: Vec<String>,
    /// Unload/load cycles of the stress case (`--cycles`, default 100; the
    /// life-cycle case does up to 20).
    pub cycles: u32,
    /// Announcements in the UDP flood case (`--flood`, default 100 000; the
    /// debug kernel, where each costs ~100 times more, takes fewer).
    pub flood: u32,
    /// Random option lists of the stress case (`--lists`, default 3000; the
    /// debug kernel, where each handshake costs ~100 ms, takes fewer).
    pub lists: u32,
    /// The wire to the test peer.
    pub tun: tun::Tun,
    /// The example servers (examples/toa_server.c, toa-client's example).
    pub c_server: Option<PathBuf>,
    pub rust_server: Option<PathBuf>,
    /// The UDP example server (examples/toa_udp_server.c).
    pub c_udp_server: Option<PathBuf>,
    /// A test module that claims inet_getname/inet6_getname with an
    /// IPMODIFY ftrace_ops (tests/kmod/toa_claim.c), for the fallback case.
    pub claim_module: Option<PathBuf>,
}

impl Ctx {
    /// Load toa with default settings unless it is loaded.
    pub fn require_loaded(&self) -> Result<()> {
        if !kmod::loaded() {
            self.insmod(&[])?;
        }
        Ok(())
    }

    /// The hook mechanism every load asks for (`--param hook=...`), or
    /// `None` for the default.
    pub fn hook(&self) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find_map(|p| p.strip_prefix("hook="))
    }

    /// Load toa with `--param`s and `extra` parameters.
    pub fn insmod(&self, extra: &[&str]) -> Result<()> {
        let mut all: Vec<&str> = self.params.iter().map(String::as_str).collect();
        all.extend(extra);
        kmod::insmod(&self.module, &all)
    }

    /// Load the module with the run's parameters but its default trust
    /// (no `trusted_sources`: nobody), and `extra`.
    pub fn insmod_default_trust(&self, extra: &[&str]) -> Result<()> {
        let mut all: Vec<&str> = self
            .params
            .iter()
            .map(String::as_str)
            .filter(|p| !p.starts_with("trusted_sources="))
            .collect();
        all.extend(extra);
        kmod::insmod(&self.module, &all)
    }
}

/// The parameter every load of the suite gets unless a case says otherwise:
/// every source is a balancer.
pub const TRUST_ALL: &str = "trusted_sources=0.0.0.0/0,::/0";

/// What a case runs.
pub type CaseFn = Box<dyn Fn(&Ctx) -> Result<()>>;

/// One test case.
pub struct Case {
    pub name: String,
    pub run: CaseFn,
}

impl Case {
    pub fn new(name: impl Into<String>, run: impl Fn(&Ctx) -> Result<()> + 'static) -> Self {
        Case {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// A case that cannot run on this kernel (a feature it is built without):
/// returned as the case's error, it prints `skip N - name: why` and is
/// counted as skipped in the last line, never as passed.
#[derive(Debug)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

/// Check a condition inside a case: `ensure_eq!(got, want[, "context {}", x])`.
#[macro_export]
macro_rules! ensure_eq {
    ($got:expr, $want:expr) => {
        $crate::ensure_eq!($got, $want, "{}", stringify!($got))
    };
    ($got:expr, $want:expr, $($ctx:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            anyhow::bail!("{}: got {:?}, want {:?}", format!($($ctx)+), got, want);
        }
    }};
}

fn main() -> ExitCode {
    // This program again, as a container's flooder (cases/namespaces.rs).
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("--attacker") {
        return cases::attacker_main(&all[1..]);
    }
    let mut args = std::env::args().skip(1);
    let mut module = None;
    let mut only: Vec<String> = Vec::new();
    let mut skip: Vec<String> = Vec::new();
    let (mut c_server, mut rust_server, mut claim_module) = (None, None, None);
    let mut c_udp_server = None;
    // The test peer plays every balancer, on every address: trust them all
    // (nobody is trusted by default); the trust cases load without it.
    let mut params = vec![TRUST_ALL.to_owned()];
    let mut hooks: Vec<Option<String>> = Vec::new();
    let mut cycles = 100;
    let mut flood = 100_000;
    let mut lists = 3000;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--module" => module = args.next().map(PathBuf::from),
            "--only" => only.extend(args.next()),
            // Leave out the cases whose name contains this (a guest without
            // the programs they run).
            "--skip" => skip.extend(args.next()),
            "--param" => params.extend(args.next()),
            "--hooks" => hooks.extend(
                args.next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|h| Some(h.to_owned())),
            ),
            "--cycles" => cycles = args.next().and_then(|c| c.parse().ok()).unwrap_or(100),
            "--flood" => flood = args.next().and_then(|c| c.parse().ok()).unwrap_or(100_000),
            "--lists" => lists = args.next().and_then(|c| c.parse().ok()).unwrap_or(3000),
            "--c-server" => c_server = args.next().map(PathBuf::from),
            "--rust-server" => rust_server = args.next().map(PathBuf::from),
            "--c-udp-server" => c_udp_server = args.next().map(PathBuf::from),
            "--claim-module" => claim_module = args.next().map(PathBuf::from),
            "--list" => {
                for c in cases::all() {
                    println!("{}", c.name);
                }
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(module) = module else {
        eprintln!("usage: toa-vmtest --module toa.ko [--param P=V]... [--hooks H[+P=V...][/[!]NAME],...] [--cycles N] [--flood N] [--lists N] [--only NAME]... [--skip NAME]... [--c-server PATH] [--rust-server PATH] [--c-udp-server PATH] [--claim-module PATH]");
        return ExitCode::from(2);
    };
    if hooks.is_empty() {
        hooks.push(None);
    }
    let tun = match tun::Tun::create("toa0", &toa_test::peer::GUEST_NETS) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot set up the tun device: {e:#}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let mut ctx = Ctx {
        module,
        params: Vec::new(),
        cycles,
        flood,
        lists,
        tun,
        c_server,
        rust_server,
        c_udp_server,
        claim_module,
    };
    let (mut passed, mut failed, mut skipped, mut n) = (0, 0, 0, 0);
    let selected: Vec<Case> = cases::all()
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| c.name.contains(o.as_str())))
        .filter(|c| !skip.iter().any(|s| c.name.contains(s.as_str())))
        .collect();
    // The whole selection once per hook mechanism asked for (--hooks), each
    // time from an unloaded module.
    for hook in &hooks {
        ctx.params = params.clone();
        let mut this_pass: Option<&str> = None;
        let prefix = match hook {
            // `auto+udp_hooks=netfilter/udp:`: a mechanism, more
            // parameters, and the cases of this pass (names containing
            // the text after `/`; `/!udp:` all but those).
            Some(h) => {
                let (h, pass_only) = match h.split_once('/') {
                    Some((h, o)) => (h, Some(o)),
                    None => (h.as_str(), None),
                };
                let mut parts = h.split('+');
                ctx.params
                    .push(format!("hook={}", parts.next().unwrap_or_default()));
                ctx.params.extend(parts.map(str::to_owned));
                this_pass = pass_only;
                format!("[hook={h}] ")
            }
            None => String::new(),
        };
        if kmod::loaded() {
            let _ = kmod::rmmod();
        }
        for case in &selected {
            let in_pass = match this_pass {
                Some(o) => match o.strip_prefix('!') {
                    Some(not) => !case.name.contains(not),
                    None => case.name.contains(o),
                },
                None => true,
            };
            if !in_pass {
                continue;
            }
            n += 1;
            let start = Instant::now();
            ctx.tun.drain();
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&ctx)));
            let ms = start.elapsed().as_millis();
            match result {
                Ok(Ok(())) => {
                    passed += 1;
                    println!("ok {n} - {prefix}{} ({ms} ms)", case.name);
                }
                Ok(Err(e)) if e.downcast_ref::<Skip>().is_some() => {
                    skipped += 1;
                    println!("skip {n} - {prefix}{}: {e}", case.name);
                }
                Ok(Err(e)) => {
                    failed += 1;
                    println!("not ok {n} - {prefix}{}: {e:#}", case.name);
                }
                Err(_) => {
                    failed += 1;
                    println!("not ok {n} - {prefix}{}: panicked", case.name);
                }
            }
        }
    }
    if skipped > 0 {
        println!("# {skipped} skipped (the kernel lacks what they need)");
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
