//! Checks against the machine the tests run on (Linux).

use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use tether_agent::collect::{CollectOptions, collect};
use tether_protocol::inventory::{Inventory, PackageSource};

fn inventory() -> &'static Inventory {
    static INV: OnceLock<Inventory> = OnceLock::new();
    INV.get_or_init(|| {
        let t = Instant::now();
        let inv = collect(&CollectOptions::default());
        eprintln!("collect took {:?}; errors: {:?}", t.elapsed(), inv.errors);
        inv
    })
}

fn sh(cmd: &str) -> Option<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn hostname_matches_proc() {
    let want = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(inventory().host.hostname, want.trim());
}

#[test]
fn cpu_threads_match_cpuinfo() {
    let ci = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let n = ci.lines().filter(|l| l.starts_with("processor")).count();
    assert_eq!(inventory().hardware.cpu.threads as usize, n);
    assert!(inventory().hardware.cpu.cores >= 1);
    assert!(inventory().hardware.cpu.sockets >= 1);
}

#[test]
fn memory_total_matches_meminfo() {
    let mi = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = mi
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert_eq!(inventory().hardware.memory.total_bytes, kb * 1024);
}

#[test]
fn root_filesystem_size_matches_df() {
    let Some(out) = sh("df -B1 --output=size / | tail -n 1") else {
        eprintln!("df not available; skipped");
        return;
    };
    let want: u64 = out.trim().parse().unwrap();
    let root = inventory()
        .hardware
        .filesystems
        .iter()
        .find(|f| f.mount_point == "/")
        .expect("root filesystem listed");
    assert_eq!(root.size_bytes, want);
    assert!(root.free_bytes <= root.size_bytes);
}

#[test]
fn dpkg_count_matches_dpkg_query() {
    let Some(out) = sh("dpkg-query -f '${Status}\\n' -W | grep -c 'install ok installed'") else {
        eprintln!("dpkg-query not available; skipped");
        return;
    };
    let want: usize = out.parse().unwrap();
    let held = sh("dpkg-query -f '${Status}\\n' -W | grep -c 'hold ok installed'")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let got = inventory()
        .software
        .iter()
        .filter(|p| p.source == PackageSource::Dpkg)
        .count();
    assert_eq!(got, want + held);
}

#[test]
fn fast_and_complete() {
    let t = Instant::now();
    let inv = collect(&CollectOptions::default());
    let took = t.elapsed();
    assert!(took.as_secs_f64() < 2.0, "collect took {took:?}");
    assert!(!inv.host.kernel.is_empty());
    assert!(!inv.host.arch.is_empty());
    assert!(inv.host.boot_time_unix > 0);
    let j = serde_json::to_string(&inv).unwrap();
    assert_eq!(serde_json::from_str::<Inventory>(&j).unwrap(), inv);
}
