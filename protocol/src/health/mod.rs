//! Device health: what an agent reports on an interval, and the alert rules the relay applies.
//!
//! No I/O here. [`HealthReport`] is the wire model (plain serde types, integers only so the
//! message stays `Eq` and a hostile agent cannot send NaN); [`HealthReport::sanitize`] bounds and
//! cleans one from an untrusted peer. [`DeviceAlerts`] is the alert state machine of one device:
//! thresholds, its previous state, a report or the time passed in; alerts to open and close come
//! out (`alerts.rs`). The relay stores what comes out and tells webhooks. Reports are printed
//! for a terminal by `tether-report` (the agent's `health` command and `tether health`).

mod alerts;

pub use alerts::*;

use crate::text;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Processes listed in each of the two top lists.
pub const MAX_PROCESSES: usize = 10;
pub const MAX_FILESYSTEMS: usize = 64;
pub const MAX_UNITS: usize = 64;
pub const MAX_ERRORS: usize = 8;
/// Mount points.
pub const MAX_PATH: usize = 256;
/// Device names (e.g. "/dev/mapper/vg0-root", "server:/export").
pub const MAX_DEVICE: usize = 128;
/// Filesystem types, process and user names.
pub const MAX_SHORT: usize = 64;
/// Unit names.
pub const MAX_UNIT_NAME: usize = 128;
/// Unit descriptions and error messages.
pub const MAX_TEXT: usize = 160;

/// One sample of a machine's health.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthReport {
    /// The agent's clock (informational: the relay keeps its own time of receipt).
    pub collected_at_unix_ms: u64,
    pub uptime_s: u64,
    /// Logical CPUs.
    pub cpus: u32,
    /// Whole-machine CPU use since the previous sample, in tenths of a percent (0–1000).
    pub cpu_permille: u16,
    pub load: LoadAverage,
    pub memory: MemoryUsage,
    #[serde(deserialize_with = "capped::filesystems")]
    pub filesystems: Vec<FilesystemUsage>,
    /// Highest CPU use first.
    #[serde(deserialize_with = "capped::processes")]
    pub top_cpu: Vec<ProcessUsage>,
    /// Highest resident memory first.
    #[serde(deserialize_with = "capped::processes")]
    pub top_memory: Vec<ProcessUsage>,
    /// Failed systemd units; `None` when systemd is not running or could not be asked.
    #[serde(deserialize_with = "capped::units")]
    pub failed_units: Option<Vec<FailedUnit>>,
    /// Problems met while collecting; the rest of the report is still valid.
    #[serde(deserialize_with = "capped::errors")]
    pub errors: Vec<String>,
}

/// Decode-time bounds for a report's lists (as the inventory's, [`crate::inventory::capped`]):
/// a 64 KiB control frame of empty elements would otherwise decode to megabytes before
/// [`HealthReport::sanitize`] trims it.
mod capped {
    use crate::inventory::capped::seq;
    use serde::{Deserialize, Deserializer};

    pub fn filesystems<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_FILESYSTEMS)
    }

    pub fn processes<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_PROCESSES)
    }

    pub fn errors<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_ERRORS)
    }

    pub fn units<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<super::FailedUnit>>, D::Error> {
        struct Units(Vec<super::FailedUnit>);
        impl<'de> Deserialize<'de> for Units {
            fn deserialize<D2: Deserializer<'de>>(d: D2) -> Result<Self, D2::Error> {
                seq(d, super::MAX_UNITS).map(Units)
            }
        }
        Ok(Option::<Units>::deserialize(d)?.map(|u| u.0))
    }
}

/// Load averages, in hundredths (`73` is 0.73).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadAverage {
    pub one: u32,
    pub five: u32,
    pub fifteen: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    pub total_bytes: u64,
    /// `MemAvailable`: what can be used without swapping.
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

impl MemoryUsage {
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.available_bytes)
    }

    /// Percent of memory in use (not available), rounded down.
    pub fn used_percent(&self) -> u8 {
        percent_floor(self.used_bytes(), self.total_bytes)
    }

    pub fn swap_used_bytes(&self) -> u64 {
        self.swap_total_bytes.saturating_sub(self.swap_free_bytes)
    }

    pub fn swap_used_percent(&self) -> u8 {
        percent_floor(self.swap_used_bytes(), self.swap_total_bytes)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct FilesystemUsage {
    pub mount_point: String,
    pub fs_type: String,
    pub device: String,
    pub size_bytes: u64,
    /// Free blocks, including those reserved for root.
    pub free_bytes: u64,
    /// Free blocks available to unprivileged users.
    pub available_bytes: u64,
}

impl FilesystemUsage {
    pub fn used_bytes(&self) -> u64 {
        self.size_bytes.saturating_sub(self.free_bytes)
    }

    /// Percent in use as `df` shows it: used / (used + available), rounded up.
    pub fn used_percent(&self) -> u8 {
        let used = self.used_bytes();
        percent_ceil(used, used.saturating_add(self.available_bytes))
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessUsage {
    pub pid: u32,
    pub name: String,
    pub user: String,
    /// CPU use since the previous sample in tenths of a percent of one CPU (may exceed 1000 for a
    /// process using several CPUs).
    pub cpu_permille: u32,
    /// Resident memory.
    pub memory_bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct FailedUnit {
    /// e.g. "nginx.service".
    pub name: String,
    pub description: String,
}

fn percent_floor(part: u64, whole: u64) -> u8 {
    if whole == 0 {
        return 0;
    }
    let p = u128::from(part.min(whole)) * 100 / u128::from(whole);
    u8::try_from(p).unwrap_or(100)
}

fn percent_ceil(part: u64, whole: u64) -> u8 {
    if whole == 0 {
        return 0;
    }
    let p = (u128::from(part.min(whole)) * 100).div_ceil(u128::from(whole));
    u8::try_from(p).unwrap_or(100)
}

impl HealthReport {
    /// Bounds and cleans a report from an untrusted peer in place: lists truncated to their
    /// limits, strings cleaned with [`text::clean`], numbers made consistent (available never
    /// above total, CPU at most 100 %). Returns one line per kind of change. Total: never panics.
    pub fn sanitize(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut dirty_strings = 0usize;
        let mut fix = |s: &mut String, max: usize| {
            if !text::is_clean(s, max) {
                *s = text::clean(s, max);
                dirty_strings += 1;
            }
        };
        let mut bound = |what: &str, len: usize, max: usize| {
            if len > max {
                notes.push(format!(
                    "{what}: dropped {} items over the limit",
                    len - max
                ));
            }
        };
        bound("filesystems", self.filesystems.len(), MAX_FILESYSTEMS);
        self.filesystems.truncate(MAX_FILESYSTEMS);
        bound("top_cpu", self.top_cpu.len(), MAX_PROCESSES);
        self.top_cpu.truncate(MAX_PROCESSES);
        bound("top_memory", self.top_memory.len(), MAX_PROCESSES);
        self.top_memory.truncate(MAX_PROCESSES);
        bound("errors", self.errors.len(), MAX_ERRORS);
        self.errors.truncate(MAX_ERRORS);
        if let Some(units) = &mut self.failed_units {
            bound("failed_units", units.len(), MAX_UNITS);
            units.truncate(MAX_UNITS);
        }

        for f in &mut self.filesystems {
            fix(&mut f.mount_point, MAX_PATH);
            fix(&mut f.fs_type, MAX_SHORT);
            fix(&mut f.device, MAX_DEVICE);
        }
        for p in self.top_cpu.iter_mut().chain(self.top_memory.iter_mut()) {
            fix(&mut p.name, MAX_SHORT);
            fix(&mut p.user, MAX_SHORT);
        }
        for u in self.failed_units.iter_mut().flatten() {
            fix(&mut u.name, MAX_UNIT_NAME);
            fix(&mut u.description, MAX_TEXT);
        }
        for e in &mut self.errors {
            fix(e, MAX_TEXT);
        }
        // One entry per mount point and per unit (cleaning may have made two equal).
        let mut seen = BTreeSet::new();
        let before = self.filesystems.len();
        self.filesystems
            .retain(|f| seen.insert(f.mount_point.clone()));
        let mut dropped = before - self.filesystems.len();
        if let Some(units) = &mut self.failed_units {
            let mut seen = BTreeSet::new();
            let before = units.len();
            units.retain(|u| seen.insert(u.name.clone()));
            dropped += before - units.len();
        }
        if dropped > 0 {
            notes.push(format!("dropped {dropped} duplicate entries"));
        }
        if dirty_strings > 0 {
            notes.push(format!(
                "removed control characters from or truncated {dirty_strings} strings"
            ));
        }

        let mut inconsistent = 0usize;
        let mut clamp = |v: &mut u64, max: u64| {
            if *v > max {
                *v = max;
                inconsistent += 1;
            }
        };
        let m = &mut self.memory;
        clamp(&mut m.available_bytes, m.total_bytes);
        clamp(&mut m.swap_free_bytes, m.swap_total_bytes);
        for f in &mut self.filesystems {
            clamp(&mut f.free_bytes, f.size_bytes);
            clamp(&mut f.available_bytes, f.free_bytes);
        }
        if self.cpu_permille > 1000 {
            self.cpu_permille = 1000;
            inconsistent += 1;
        }
        if inconsistent > 0 {
            notes.push(format!(
                "made {inconsistent} inconsistent values consistent"
            ));
        }
        notes
    }
}

/// The answer to a technician's `Health` request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealth {
    pub device: crate::device::DeviceSummary,
    /// When the relay received the report (its clock).
    pub received_unix_ms: i64,
    pub report: HealthReport,
    /// The device's open alerts.
    pub alerts: Vec<AlertRow>,
}

#[cfg(test)]
mod decode_bounds {
    use super::*;
    use crate::{codec, frame, limits};

    /// A hostile agent's report: tens of thousands of empty list elements fit a 64 KiB control
    /// frame; decoding keeps only what `sanitize` would keep, and the report still round-trips.
    #[test]
    fn lists_are_bounded_while_decoding() {
        let r = HealthReport {
            errors: vec![String::new(); 30_000],
            failed_units: Some(vec![FailedUnit::default(); 5_000]),
            top_cpu: vec![ProcessUsage::default(); 1_000],
            ..HealthReport::default()
        };
        let bytes = codec::to_frame(&r, limits::CONTROL).unwrap();
        assert!(bytes.len() <= limits::CONTROL + frame::HEADER_LEN);
        let back: HealthReport = codec::from_payload(&bytes[frame::HEADER_LEN..]).unwrap();
        assert_eq!(back.errors.len(), MAX_ERRORS);
        assert_eq!(back.failed_units.map(|u| u.len()), Some(MAX_UNITS));
        assert_eq!(back.top_cpu.len(), MAX_PROCESSES);
        let none = HealthReport::default();
        let bytes = codec::to_frame(&none, limits::CONTROL).unwrap();
        let back: HealthReport = codec::from_payload(&bytes[frame::HEADER_LEN..]).unwrap();
        assert_eq!(back, none);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const T0: i64 = 1_700_000_000_000;

    fn fs(mp: &str, size: u64, avail: u64) -> FilesystemUsage {
        FilesystemUsage {
            mount_point: mp.into(),
            fs_type: "ext4".into(),
            device: "/dev/vda1".into(),
            size_bytes: size,
            free_bytes: avail,
            available_bytes: avail,
        }
    }

    fn report(mem_used_pct: u64, disks: Vec<FilesystemUsage>) -> HealthReport {
        HealthReport {
            memory: MemoryUsage {
                total_bytes: 1000,
                available_bytes: 1000 - mem_used_pct * 10,
                ..Default::default()
            },
            filesystems: disks,
            failed_units: Some(Vec::new()),
            ..Default::default()
        }
    }

    fn kinds(t: &[Transition]) -> Vec<(bool, AlertKind, String)> {
        t.iter()
            .map(|t| match t {
                Transition::Open { key, .. } => (true, key.kind, key.subject.clone()),
                Transition::Close { key, .. } => (false, key.kind, key.subject.clone()),
            })
            .collect()
    }

    #[test]
    fn percentages_match_df() {
        // df: used 900 of (900 + 50 available) = 94.7 % → 95 %.
        let f = FilesystemUsage {
            size_bytes: 1000,
            free_bytes: 100,
            available_bytes: 50,
            ..Default::default()
        };
        assert_eq!(f.used_percent(), 95);
        assert_eq!(fs("/", 1000, 1000).used_percent(), 0);
        assert_eq!(fs("/", 0, 0).used_percent(), 0);
        assert_eq!(fs("/", u64::MAX, 0).used_percent(), 100);
        let m = MemoryUsage {
            total_bytes: 1000,
            available_bytes: 51,
            ..Default::default()
        };
        assert_eq!(m.used_percent(), 94);
        assert_eq!(MemoryUsage::default().used_percent(), 0);
    }

    #[test]
    fn disk_opens_at_threshold_and_closes_when_it_drains() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::default();
        assert!(
            s.on_report(&th, &report(10, vec![fs("/", 1000, 110)]), T0)
                .is_empty()
        );
        let t = s.on_report(&th, &report(10, vec![fs("/", 1000, 100)]), T0 + MIN);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Disk, "/".into())]);
        match &t[0] {
            Transition::Open { reading, .. } => {
                assert_eq!(reading.value, 90);
                assert_eq!(reading.threshold, 90);
                assert!(reading.detail.starts_with("/: 90 % used"), "{reading:?}");
            }
            other => panic!("{other:?}"),
        }
        // Still full: nothing new.
        assert!(
            s.on_report(&th, &report(10, vec![fs("/", 1000, 0)]), T0 + 2 * MIN)
                .is_empty()
        );
        let t = s.on_report(&th, &report(10, vec![fs("/", 1000, 500)]), T0 + 3 * MIN);
        assert_eq!(kinds(&t), vec![(false, AlertKind::Disk, "/".into())]);
        assert_eq!(s.open_alerts().count(), 0);

        // Full again, then unmounted: the alert closes.
        let t = s.on_report(
            &th,
            &report(10, vec![fs("/", 1000, 500), fs("/mnt", 10, 0)]),
            T0 + 4 * MIN,
        );
        assert_eq!(kinds(&t), vec![(true, AlertKind::Disk, "/mnt".into())]);
        let t = s.on_report(&th, &report(10, vec![fs("/", 1000, 500)]), T0 + 5 * MIN);
        assert_eq!(kinds(&t), vec![(false, AlertKind::Disk, "/mnt".into())]);
    }

    #[test]
    fn memory_must_stay_high_for_five_minutes() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::default();
        // High from T0, every minute: opens at exactly five minutes.
        for i in 0..5 {
            assert!(
                s.on_report(&th, &report(96, vec![]), T0 + i * MIN)
                    .is_empty(),
                "minute {i}"
            );
        }
        let t = s.on_report(&th, &report(97, vec![]), T0 + 5 * MIN);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Memory, String::new())]);
        match &t[0] {
            Transition::Open { reading, .. } => {
                assert_eq!(reading.value, 97);
                assert!(reading.detail.ends_with("for 5 min"), "{reading:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.on_report(&th, &report(99, vec![]), T0 + 6 * MIN)
                .is_empty()
        );
        let t = s.on_report(&th, &report(50, vec![]), T0 + 7 * MIN);
        assert_eq!(kinds(&t), vec![(false, AlertKind::Memory, String::new())]);
    }

    #[test]
    fn one_low_sample_restarts_the_memory_count() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::default();
        for i in 0..4 {
            s.on_report(&th, &report(96, vec![]), T0 + i * MIN);
        }
        assert!(
            s.on_report(&th, &report(94, vec![]), T0 + 4 * MIN)
                .is_empty()
        );
        for i in 5..10 {
            assert!(
                s.on_report(&th, &report(96, vec![]), T0 + i * MIN)
                    .is_empty(),
                "minute {i}"
            );
        }
        let t = s.on_report(&th, &report(96, vec![]), T0 + 10 * MIN);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Memory, String::new())]);
    }

    #[test]
    fn a_long_gap_between_reports_restarts_the_memory_count() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::default();
        s.on_report(&th, &report(96, vec![]), T0);
        // Offline for an hour, high again: not sustained as far as anyone saw.
        assert!(
            s.on_report(&th, &report(96, vec![]), T0 + 60 * MIN)
                .is_empty()
        );
        let t = s.on_report(&th, &report(96, vec![]), T0 + 65 * MIN);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Memory, String::new())]);
    }

    #[test]
    fn zero_sustain_opens_at_once() {
        let th = Thresholds {
            memory_for: Duration::ZERO,
            memory_percent: 50,
            ..Thresholds::default()
        };
        let mut s = DeviceAlerts::default();
        let t = s.on_report(&th, &report(50, vec![]), T0);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Memory, String::new())]);
    }

    #[test]
    fn silence_opens_after_ten_minutes_and_closes_on_the_next_report() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::default();
        s.on_report(&th, &report(10, vec![]), T0);
        assert!(s.on_tick(&th, T0 + 9 * MIN, 0).is_empty());
        assert!(s.on_tick(&th, T0 + 10 * MIN - 1, 0).is_empty());
        let t = s.on_tick(&th, T0 + 10 * MIN, 0);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Silent, String::new())]);
        match &t[0] {
            Transition::Open { reading, .. } => {
                assert_eq!(reading.value, 600);
                assert_eq!(reading.threshold, 600);
                assert_eq!(reading.detail, "no health report for 10 min");
            }
            other => panic!("{other:?}"),
        }
        // Opened once, however many ticks follow.
        assert!(s.on_tick(&th, T0 + 30 * MIN, 0).is_empty());
        let t = s.on_report(&th, &report(10, vec![]), T0 + 31 * MIN);
        assert_eq!(kinds(&t), vec![(false, AlertKind::Silent, String::new())]);
        match &t[0] {
            Transition::Close { reading, .. } => assert_eq!(reading.value, 31 * 60),
            other => panic!("{other:?}"),
        }
        assert!(s.on_tick(&th, T0 + 40 * MIN, 0).is_empty());
    }

    #[test]
    fn a_device_that_never_reported_counts_from_its_baseline() {
        let th = Thresholds {
            silent_after: Duration::from_secs(3),
            ..Thresholds::default()
        };
        let mut s = DeviceAlerts::default();
        assert!(s.on_tick(&th, T0 + 2_999, T0).is_empty());
        let t = s.on_tick(&th, T0 + 3_000, T0);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Silent, String::new())]);
    }

    #[test]
    fn silence_is_not_counted_while_the_relay_was_down() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::restore([], Some(T0));
        // The relay comes back an hour later: the device gets ten minutes from then.
        let started = T0 + 60 * MIN;
        assert!(s.on_tick(&th, started, started).is_empty());
        assert!(s.on_tick(&th, started + 9 * MIN, started).is_empty());
        let t = s.on_tick(&th, started + 10 * MIN, started);
        assert_eq!(kinds(&t), vec![(true, AlertKind::Silent, String::new())]);
        match &t[0] {
            // The detail tells the real time since the last report.
            Transition::Open { reading, .. } => assert_eq!(reading.value, 70 * 60),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failed_units_open_and_close_unknown_changes_nothing() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::default();
        let mut r = report(10, vec![]);
        r.failed_units = Some(vec![
            FailedUnit {
                name: "nginx.service".into(),
                description: "web".into(),
            },
            FailedUnit {
                name: "backup.timer".into(),
                description: String::new(),
            },
        ]);
        let t = s.on_report(&th, &r, T0);
        assert_eq!(
            kinds(&t),
            vec![
                (true, AlertKind::FailedUnit, "nginx.service".into()),
                (true, AlertKind::FailedUnit, "backup.timer".into())
            ]
        );
        // systemd did not answer this time: keep what we know.
        r.failed_units = None;
        assert!(s.on_report(&th, &r, T0 + MIN).is_empty());
        r.failed_units = Some(vec![FailedUnit {
            name: "nginx.service".into(),
            description: "web".into(),
        }]);
        let t = s.on_report(&th, &r, T0 + 2 * MIN);
        assert_eq!(
            kinds(&t),
            vec![(false, AlertKind::FailedUnit, "backup.timer".into())]
        );
    }

    #[test]
    fn restored_state_does_not_reopen() {
        let th = Thresholds::default();
        let mut s = DeviceAlerts::restore([AlertKey::new(AlertKind::Disk, "/")], Some(T0));
        assert!(
            s.on_report(&th, &report(10, vec![fs("/", 100, 1)]), T0 + MIN)
                .is_empty()
        );
        let t = s.on_report(&th, &report(10, vec![fs("/", 100, 50)]), T0 + 2 * MIN);
        assert_eq!(kinds(&t), vec![(false, AlertKind::Disk, "/".into())]);
    }

    #[test]
    fn sanitize_bounds_and_cleans() {
        let mut r = HealthReport {
            cpu_permille: 5000,
            memory: MemoryUsage {
                total_bytes: 10,
                available_bytes: 20,
                swap_total_bytes: 0,
                swap_free_bytes: 5,
            },
            filesystems: (0..1000)
                .map(|i| FilesystemUsage {
                    mount_point: format!("/m{i}\u{1b}[31m\u{202e}{}", "x".repeat(1000)),
                    size_bytes: 10,
                    free_bytes: 50,
                    available_bytes: 60,
                    ..Default::default()
                })
                .collect(),
            top_cpu: vec![ProcessUsage::default(); 100],
            top_memory: vec![ProcessUsage::default(); 100],
            failed_units: Some(
                (0..1000)
                    .map(|i| FailedUnit {
                        name: format!("\u{7}evil{i}.service"),
                        description: "d".repeat(10_000),
                    })
                    .collect(),
            ),
            errors: vec!["e".into(); 100],
            ..Default::default()
        };
        let notes = r.sanitize();
        assert!(!notes.is_empty());
        assert_eq!(r.filesystems.len(), MAX_FILESYSTEMS);
        assert_eq!(r.top_cpu.len(), MAX_PROCESSES);
        assert_eq!(r.top_memory.len(), MAX_PROCESSES);
        assert_eq!(r.errors.len(), MAX_ERRORS);
        let units = r.failed_units.as_ref().unwrap();
        assert_eq!(units.len(), MAX_UNITS);
        assert_eq!(units[0].name, "evil0.service");
        assert!(units[0].description.len() <= MAX_TEXT);
        let f = &r.filesystems[0];
        assert!(f.mount_point.len() <= MAX_PATH);
        assert!(text::is_clean(&f.mount_point, MAX_PATH));
        assert!(f.free_bytes <= f.size_bytes && f.available_bytes <= f.free_bytes);
        assert_eq!(r.cpu_permille, 1000);
        assert_eq!(r.memory.available_bytes, 10);
        assert_eq!(r.memory.swap_free_bytes, 0);
        // Idempotent.
        let again = r.clone();
        assert!(r.sanitize().is_empty());
        assert_eq!(r, again);
    }

    /// The largest report sanitize lets through still fits one control frame.
    #[test]
    fn largest_sanitized_report_fits_the_control_limit() {
        let long = |n: usize| "\u{10348}".repeat(n); // 4-byte characters
        let p = ProcessUsage {
            pid: u32::MAX,
            name: long(100),
            user: long(100),
            cpu_permille: u32::MAX,
            memory_bytes: u64::MAX,
        };
        let mut r = HealthReport {
            collected_at_unix_ms: u64::MAX,
            uptime_s: u64::MAX,
            cpus: u32::MAX,
            cpu_permille: u16::MAX,
            load: LoadAverage {
                one: u32::MAX,
                five: u32::MAX,
                fifteen: u32::MAX,
            },
            memory: MemoryUsage {
                total_bytes: u64::MAX,
                available_bytes: u64::MAX,
                swap_total_bytes: u64::MAX,
                swap_free_bytes: u64::MAX,
            },
            filesystems: (0..1000)
                .map(|i| FilesystemUsage {
                    mount_point: format!("{i}{}", long(1000)),
                    fs_type: long(1000),
                    device: long(1000),
                    size_bytes: u64::MAX,
                    free_bytes: u64::MAX,
                    available_bytes: u64::MAX,
                })
                .collect(),
            top_cpu: vec![p.clone(); 100],
            top_memory: vec![p; 100],
            failed_units: Some(
                (0..1000)
                    .map(|i| FailedUnit {
                        name: format!("{i}{}", long(1000)),
                        description: long(1000),
                    })
                    .collect(),
            ),
            errors: vec![long(1000); 100],
        };
        r.sanitize();
        assert_eq!(r.filesystems.len(), MAX_FILESYSTEMS);
        assert_eq!(r.failed_units.as_ref().map(Vec::len), Some(MAX_UNITS));
        // The message around it adds its variant index (one byte).
        let size = crate::codec::to_bytes(&r).unwrap().len() + 1;
        eprintln!("largest sanitized health report: {size} bytes");
        assert!(
            size < crate::limits::CONTROL,
            "{size} bytes exceed the control limit"
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            AlertKind::Disk,
            AlertKind::Memory,
            AlertKind::FailedUnit,
            AlertKind::Silent,
        ] {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AlertKind::parse("x"), None);
    }

    #[test]
    fn thresholds_validate() {
        assert!(Thresholds::default().validate().is_ok());
        for bad in [
            Thresholds {
                disk_percent: 0,
                ..Thresholds::default()
            },
            Thresholds {
                memory_percent: 101,
                ..Thresholds::default()
            },
            Thresholds {
                silent_after: Duration::ZERO,
                ..Thresholds::default()
            },
            Thresholds {
                memory_for: Duration::from_secs(365 * 86_400),
                ..Thresholds::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
