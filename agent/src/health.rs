//! Health collection: CPU, memory, swap, load, filesystem usage, the top processes and failed
//! systemd units, sampled on an interval (default 60 s) and on demand (after each connect).
//!
//! [`spawn`] runs the loop and publishes the latest report in a watch channel ([`HealthFeed`]);
//! the service sends each new one to the relay. CPU figures are averages since the previous
//! sample (the first sample waits sysinfo's minimum interval, 200 ms). Nothing here fails the
//! report: a part that cannot be read adds a line to `errors` and stays empty.

#[cfg(target_os = "linux")]
use crate::platform::inventory::filesystems::PSEUDO;
#[cfg(target_os = "linux")]
use crate::platform::mounts;
use crate::platform::units::failed_units;
#[cfg(target_os = "linux")]
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind, Users};
use tether_protocol::health::{
    FilesystemUsage, HealthReport, LoadAverage, MAX_FILESYSTEMS, MAX_PROCESSES, MemoryUsage,
    ProcessUsage,
};
use tether_protocol::message::AgentToRelay;
use tether_protocol::{codec, limits};
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

/// How long reading filesystem usage may take (a hung mount must not stop the reports).
pub const FILESYSTEMS_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(target_os = "linux")]
/// Besides the types that hold no storage ([`PSEUDO`], except `tmpfs`, whose filling up matters):
/// read-only media, and network filesystems (a `hard` mount could hang `statvfs`).
const ALSO_SKIP: &[&str] = &[
    "iso9660",
    "udf",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "fuse.rclone",
    "davfs",
    "ceph",
    "glusterfs",
    "afs",
    "9p",
];

#[cfg(target_os = "linux")]
fn skipped_type(ty: &str) -> bool {
    (ty != "tmpfs" && PSEUDO.contains(&ty)) || ALSO_SKIP.contains(&ty)
}

#[cfg(target_os = "linux")]
/// Mount points under these are the system's plumbing or other machines' (containers).
const SKIP_UNDER: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run/credentials",
    "/snap",
    "/var/snap",
    "/var/lib/docker",
    "/var/lib/containers",
    "/var/lib/kubelet",
];

#[cfg(target_os = "linux")]
fn under(mp: &str, dir: &str) -> bool {
    mp == dir || mp.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

#[cfg(target_os = "linux")]
/// A mount worth watching, from a mounts(5) table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
}

#[cfg(target_os = "linux")]
/// Writable storage mounts, one per mount point (the last mount on a path is the visible one),
/// sorted by mount point. Skips pseudo and network filesystems, read-only mounts, and mount
/// points under /proc, /sys, /dev (but not /dev/shm) and container storage.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut by_mp = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(mp), Some(ty), Some(opts)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let mp = crate::platform::inventory::filesystems::unescape(mp);
        let read_only = opts.split(',').any(|o| o == "ro");
        let skipped_dir = SKIP_UNDER.iter().any(|d| under(&mp, d)) && !under(&mp, "/dev/shm");
        if !mp.starts_with('/') || skipped_type(ty) || skipped_dir {
            by_mp.remove(&mp);
            continue;
        }
        if read_only {
            by_mp.remove(&mp);
            continue;
        }
        by_mp.insert(
            mp.clone(),
            Mount {
                device: crate::platform::inventory::filesystems::unescape(dev),
                mount_point: mp,
                fs_type: ty.to_string(),
            },
        );
    }
    by_mp.into_values().collect()
}

#[cfg(target_os = "linux")]
/// Sizes of the mounts in the platform's mount table (`/proc/self/mounts`, statvfs). The fullest are kept when there are
/// more than the report holds.
pub fn filesystems(errors: &mut Vec<String>) -> Vec<FilesystemUsage> {
    let text = match mounts::mount_table() {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("{}: {e}", mounts::MOUNT_TABLE));
            return Vec::new();
        }
    };
    let mut out: Vec<FilesystemUsage> = Vec::new();
    for m in parse_mounts(&text) {
        match mounts::usage(&m.mount_point) {
            Ok(u) => {
                if u.size == 0 {
                    continue;
                }
                out.push(FilesystemUsage {
                    mount_point: m.mount_point,
                    fs_type: m.fs_type,
                    device: m.device,
                    size_bytes: u.size,
                    free_bytes: u.free,
                    available_bytes: u.available,
                });
            }
            // Unmounted meanwhile, or not ours to look at.
            Err(e) => debug!(mount = m.mount_point, "statvfs: {e}"),
        }
    }
    if out.len() > MAX_FILESYSTEMS {
        out.sort_by_key(|f| std::cmp::Reverse(f.used_percent()));
        out.truncate(MAX_FILESYSTEMS);
        out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    }
    out
}

/// Sizes of the local fixed and removable volumes (drive letters), from sysinfo. The fullest
/// are kept when there are more than the report holds.
#[cfg(windows)]
pub fn filesystems(errors: &mut Vec<String>) -> Vec<FilesystemUsage> {
    let disks = match sysinfo::Disks::new_with_refreshed_list() {
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("volumes: {e}"));
            return Vec::new();
        }
    };
    let mut out: Vec<FilesystemUsage> = disks
        .iter()
        .filter(|d| d.total_space() > 0)
        .map(|d| FilesystemUsage {
            mount_point: d.mount_point().display().to_string(),
            fs_type: d.file_system().to_string_lossy().into_owned(),
            device: d.name().to_string_lossy().into_owned(),
            size_bytes: d.total_space(),
            free_bytes: d.available_space(),
            available_bytes: d.available_space(),
        })
        .collect();
    if out.len() > MAX_FILESYSTEMS {
        out.sort_by_key(|f| std::cmp::Reverse(f.used_percent()));
        out.truncate(MAX_FILESYSTEMS);
    }
    out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    out
}

/// Keeps sysinfo's state between samples, so CPU figures cover the time since the last one.
pub struct Collector {
    sys: Option<System>,
    users: Option<Users>,
    sampled: bool,
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

fn per_mille(pct: f32) -> u32 {
    if pct.is_finite() && pct > 0.0 {
        // Saturating float-to-int conversion.
        (pct * 10.0).round() as u32
    } else {
        0
    }
}

impl Collector {
    pub fn new() -> Self {
        Self {
            sys: System::new().ok(),
            users: (!crate::platform::under_wine())
                .then(|| Users::new_with_refreshed_list().ok())
                .flatten(),
            sampled: false,
        }
    }

    /// CPU, memory, load, uptime and processes (blocking; the first call takes ~200 ms).
    pub fn sample(&mut self, report: &mut HealthReport) {
        report.load = match System::load_average() {
            Ok(l) => LoadAverage {
                one: (l.one * 100.0).round() as u32,
                five: (l.five * 100.0).round() as u32,
                fifteen: (l.fifteen * 100.0).round() as u32,
            },
            // Windows has no load average.
            Err(_) if cfg!(windows) => LoadAverage::default(),
            Err(e) => {
                report.errors.push(format!("load average: {e}"));
                LoadAverage::default()
            }
        };
        report.uptime_s = System::uptime().unwrap_or(0);
        let Some(sys) = self.sys.as_mut() else {
            report.errors.push("system statistics unavailable".into());
            return;
        };
        let kind = ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .with_user(UpdateKind::OnlyIfNotSet);
        let cpu = !crate::platform::under_wine();
        if !cpu {
            report
                .errors
                .push("CPU usage: not readable under Wine".into());
        }
        if !self.sampled {
            if cpu {
                sys.refresh_cpu_usage();
            }
            sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
            self.sampled = true;
        }
        if cpu {
            sys.refresh_cpu_usage();
        }
        sys.refresh_memory();
        sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);

        report.cpus = u32::try_from(sys.cpus().len()).unwrap_or(u32::MAX);
        report.cpu_permille = per_mille(sys.global_cpu_usage()).min(1000) as u16;
        report.memory = MemoryUsage {
            total_bytes: sys.total_memory(),
            available_bytes: sys.available_memory(),
            swap_total_bytes: sys.total_swap(),
            swap_free_bytes: sys.free_swap(),
        };

        if let Some(users) = self.users.as_mut() {
            users.refresh();
        }
        let users = self.users.as_ref();
        let procs: Vec<ProcessUsage> = sys
            .processes()
            .values()
            .filter(|p| p.thread_kind().is_none())
            .map(|p| ProcessUsage {
                pid: p.pid().as_u32(),
                name: p.name().to_string_lossy().into_owned(),
                user: p
                    .user_id()
                    .and_then(|uid| users.and_then(|u| u.get_user_by_id(uid)))
                    .map(|u| u.name().to_string())
                    .or_else(|| p.user_id().map(|u| u.to_string()))
                    .unwrap_or_default(),
                cpu_permille: per_mille(p.cpu_usage()),
                memory_bytes: p.memory(),
            })
            .collect();
        report.top_cpu = top(&procs, |p| (p.cpu_permille, p.memory_bytes));
        report.top_memory = top(&procs, |p| (p.memory_bytes, u64::from(p.cpu_permille)));
    }
}

fn top<K: Ord>(procs: &[ProcessUsage], key: impl Fn(&ProcessUsage) -> K) -> Vec<ProcessUsage> {
    let mut v: Vec<&ProcessUsage> = procs.iter().collect();
    v.sort_by(|a, b| key(b).cmp(&key(a)).then(a.pid.cmp(&b.pid)));
    v.into_iter().take(MAX_PROCESSES).cloned().collect()
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Filesystem sizes on a thread of their own, with a deadline: a hung mount costs one stuck
/// thread (and skips filesystems until it returns), never the report.
async fn filesystems_with_deadline(
    busy: &Arc<AtomicBool>,
    errors: &mut Vec<String>,
) -> Vec<FilesystemUsage> {
    if busy.swap(true, Ordering::AcqRel) {
        errors.push("filesystems: the previous check has not returned yet".into());
        return Vec::new();
    }
    let flag = busy.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut errors = Vec::new();
        let fs = filesystems(&mut errors);
        flag.store(false, Ordering::Release);
        (fs, errors)
    });
    match tokio::time::timeout(FILESYSTEMS_TIMEOUT, task).await {
        Ok(Ok((fs, mut e))) => {
            errors.append(&mut e);
            fs
        }
        Ok(Err(e)) => {
            busy.store(false, Ordering::Release);
            errors.push(format!("filesystems: {e}"));
            Vec::new()
        }
        Err(_) => {
            errors.push(format!(
                "filesystems: no answer within {} s (a hung mount?)",
                FILESYSTEMS_TIMEOUT.as_secs()
            ));
            Vec::new()
        }
    }
}

/// Collects one report. Returns the collector for the next one.
pub async fn collect(
    mut collector: Collector,
    busy: &Arc<AtomicBool>,
) -> (Collector, HealthReport) {
    let mut report = HealthReport {
        collected_at_unix_ms: now_unix_ms(),
        ..HealthReport::default()
    };
    let sampled = tokio::task::spawn_blocking(move || {
        let mut r = HealthReport::default();
        collector.sample(&mut r);
        (collector, r)
    });
    let mut fs_errors = Vec::new();
    let mut unit_errors = Vec::new();
    let (sampled, filesystems, units) = tokio::join!(
        sampled,
        filesystems_with_deadline(busy, &mut fs_errors),
        failed_units(&mut unit_errors)
    );
    let collector = match sampled {
        Ok((c, r)) => {
            report = HealthReport {
                collected_at_unix_ms: report.collected_at_unix_ms,
                ..r
            };
            c
        }
        Err(e) => {
            report.errors.push(format!("sampling failed: {e}"));
            Collector::new()
        }
    };
    report.filesystems = filesystems;
    report.failed_units = units;
    report.errors.append(&mut fs_errors);
    report.errors.append(&mut unit_errors);
    for note in report.sanitize() {
        debug!("health report cleaned: {note}");
    }
    (collector, report)
}

/// The latest report, and a way to ask for a fresh one.
#[derive(Debug, Clone)]
pub struct HealthFeed {
    rx: watch::Receiver<Option<Arc<HealthReport>>>,
    now: Arc<Notify>,
}

impl HealthFeed {
    /// Asks for a report now (the service does after each connect).
    pub fn collect_now(&self) {
        self.now.notify_one();
    }

    /// Forgets the reports published so far: [`next`] waits for a newer one.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }
}

/// The next new report; never returns for `None`; `None` when collection stopped.
pub async fn next(feed: &mut Option<HealthFeed>) -> Option<Arc<HealthReport>> {
    match feed {
        Some(f) => match f.rx.changed().await {
            Ok(()) => f.rx.borrow_and_update().clone(),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// The report as a control frame, or `None` (logged) if it cannot be encoded within the limit.
pub fn frame(report: &HealthReport) -> Option<Vec<u8>> {
    match codec::to_frame(
        &AgentToRelay::Health(Box::new(report.clone())),
        limits::CONTROL,
    ) {
        Ok(f) => Some(f),
        Err(e) => {
            warn!("health report not sent: {e}");
            None
        }
    }
}

/// Starts collecting on the current runtime: now, then every `interval` and whenever asked.
pub fn spawn(interval: Duration) -> HealthFeed {
    let (tx, rx) = watch::channel(None);
    let now = Arc::new(Notify::new());
    let asked = now.clone();
    tokio::spawn(async move {
        let busy = Arc::new(AtomicBool::new(false));
        let mut collector = Collector::new();
        loop {
            let started = std::time::Instant::now();
            let (c, report) = collect(collector, &busy).await;
            collector = c;
            debug!(
                ms = started.elapsed().as_millis() as u64,
                filesystems = report.filesystems.len(),
                errors = report.errors.len(),
                "health collected"
            );
            if tx.send(Some(Arc::new(report))).is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = asked.notified() => {}
            }
        }
    });
    HealthFeed { rx, now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_worth_watching() {
        let t = "proc /proc proc rw 0 0\n/dev/vda / ext4 rw,relatime 0 0\n\
                 tmpfs /dev/shm tmpfs rw 0 0\ndevtmpfs /dev devtmpfs rw 0 0\n\
                 tmpfs /run tmpfs rw,nosuid 0 0\ntmpfs /run/credentials/x.service tmpfs rw 0 0\n\
                 /dev/sdb1 /mnt/my\\040disk vfat rw 0 0\n/dev/sr0 /media/cd iso9660 ro 0 0\n\
                 /dev/loop0 /snap/core/1 squashfs ro 0 0\nsrv:/x /net nfs4 rw 0 0\n\
                 /dev/sdc1 /data ext4 ro 0 0\noverlay /var/lib/docker/overlay2/a/merged overlay rw 0 0\n\
                 /dev/vdb / xfs rw 0 0\ngarbage\n";
        let m = parse_mounts(t);
        let mps: Vec<&str> = m.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(mps, vec!["/", "/dev/shm", "/mnt/my disk", "/run"]);
        assert_eq!(m[0].device, "/dev/vdb");
        assert_eq!(m[0].fs_type, "xfs");
    }

    #[test]
    fn remounted_read_only_is_dropped() {
        let m = parse_mounts("/dev/a /data ext4 rw 0 0\n/dev/a /data ext4 ro 0 0\n");
        assert!(m.is_empty());
    }

    #[test]
    fn top_lists_are_bounded_and_ordered() {
        let procs: Vec<ProcessUsage> = (0..50)
            .map(|i| ProcessUsage {
                pid: i,
                cpu_permille: i * 3 % 17,
                memory_bytes: u64::from(i),
                ..Default::default()
            })
            .collect();
        let t = top(&procs, |p| p.memory_bytes);
        assert_eq!(t.len(), MAX_PROCESSES);
        assert_eq!(t[0].pid, 49);
        assert_eq!(t[9].pid, 40);
        assert_eq!(per_mille(f32::NAN), 0);
        assert_eq!(per_mille(-1.0), 0);
        assert_eq!(per_mille(12.34), 123);
        assert_eq!(per_mille(f32::INFINITY), 0);
    }

    #[tokio::test]
    async fn a_live_report_matches_this_machine() {
        let busy = Arc::new(AtomicBool::new(false));
        let (_, r) = collect(Collector::new(), &busy).await;
        assert!(r.memory.total_bytes > 0);
        assert!(r.cpus > 0);
        assert!(r.filesystems.iter().any(|f| f.mount_point == "/"), "{r:?}");
        assert!(r.top_memory.len() <= MAX_PROCESSES && !r.top_memory.is_empty());
        assert!(frame(&r).is_some());
    }
}
