//! The alert engine: [`DeviceAlerts`], one device's alert state machine (thresholds, its
//! previous state, a report or the time passed in; alerts to open and close come out), and the
//! rows the relay keeps for them.

use super::*;

/// One alert as the relay keeps it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: i64,
    pub device_id: String,
    pub hostname: String,
    pub group: String,
    pub kind: AlertKind,
    /// Mount point or unit; empty for memory and silence.
    pub subject: String,
    /// At opening: percent for disk and memory, seconds without a report for silence.
    pub value: i64,
    pub threshold: i64,
    pub detail: String,
    pub opened_unix_ms: i64,
    pub closed_unix_ms: Option<i64>,
    /// What cleared it.
    pub close_detail: Option<String>,
}

/// What an alert is about. In JSON: "disk", "memory", "failed_unit", "silent".
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A filesystem at or above the disk threshold; subject: its mount point.
    #[default]
    Disk,
    /// Memory at or above the threshold for the sustain time; subject empty.
    Memory,
    /// A failed systemd unit; subject: the unit.
    FailedUnit,
    /// No health report for the silence time; subject empty.
    Silent,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Disk => "disk",
            AlertKind::Memory => "memory",
            AlertKind::FailedUnit => "failed_unit",
            AlertKind::Silent => "silent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disk" => AlertKind::Disk,
            "memory" => AlertKind::Memory,
            "failed_unit" => AlertKind::FailedUnit,
            "silent" => AlertKind::Silent,
            _ => return None,
        })
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies an alert of one device: at most one of each key is open at a time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertKey {
    pub kind: AlertKind,
    pub subject: String,
}

impl AlertKey {
    pub fn new(kind: AlertKind, subject: impl Into<String>) -> Self {
        Self {
            kind,
            subject: subject.into(),
        }
    }
}

/// Alert thresholds of a device group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Any filesystem at or above this percentage (as `df` rounds it).
    pub disk_percent: u8,
    /// Memory in use at or above this percentage…
    pub memory_percent: u8,
    /// …in every report for at least this long.
    pub memory_for: Duration,
    /// No health report for this long.
    pub silent_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            disk_percent: 90,
            memory_percent: 95,
            memory_for: Duration::from_secs(5 * 60),
            silent_after: Duration::from_secs(10 * 60),
        }
    }
}

/// Longest sustain or silence time accepted.
pub const MAX_ALERT_TIME: Duration = Duration::from_secs(30 * 24 * 3600);

impl Thresholds {
    /// Checks the values are usable (percentages 1–100, silence at least 1 s, times at most 30 d).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.disk_percent) {
            return Err(format!(
                "disk percent must be 1 to 100, not {}",
                self.disk_percent
            ));
        }
        if !(1..=100).contains(&self.memory_percent) {
            return Err(format!(
                "memory percent must be 1 to 100, not {}",
                self.memory_percent
            ));
        }
        if self.memory_for > MAX_ALERT_TIME || self.silent_after > MAX_ALERT_TIME {
            return Err("alert times must be at most 30 days".into());
        }
        if self.silent_after < Duration::from_secs(1) {
            return Err("the silence time must be at least 1 s".into());
        }
        Ok(())
    }
}

/// The measurement behind an opening or closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Percent for disk and memory, seconds without a report for silence, 0 for units.
    pub value: i64,
    pub threshold: i64,
    /// One line for people, e.g. "/var: 93 % used (7.4 GiB of 8.0 GiB)".
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Open { key: AlertKey, reading: Reading },
    Close { key: AlertKey, reading: Reading },
}

impl Transition {
    pub fn key(&self) -> &AlertKey {
        match self {
            Transition::Open { key, .. } | Transition::Close { key, .. } => key,
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn secs_between(from_ms: i64, to_ms: i64) -> i64 {
    to_ms.saturating_sub(from_ms).max(0) / 1000
}

/// The alert state of one device. Times are milliseconds since the Unix epoch on the relay's
/// clock; the caller passes them in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceAlerts {
    open: BTreeSet<AlertKey>,
    /// First of the current run of reports with memory at or above the threshold.
    memory_high_since: Option<i64>,
    last_report: Option<i64>,
}

impl DeviceAlerts {
    /// State restored from the store: the alerts that are open and when the last report came.
    pub fn restore(open: impl IntoIterator<Item = AlertKey>, last_report: Option<i64>) -> Self {
        Self {
            open: open.into_iter().collect(),
            memory_high_since: None,
            last_report,
        }
    }

    pub fn open_alerts(&self) -> impl Iterator<Item = &AlertKey> {
        self.open.iter()
    }

    pub fn is_open(&self, key: &AlertKey) -> bool {
        self.open.contains(key)
    }

    pub fn last_report(&self) -> Option<i64> {
        self.last_report
    }

    fn open(&mut self, out: &mut Vec<Transition>, key: AlertKey, reading: Reading) {
        if self.open.insert(key.clone()) {
            out.push(Transition::Open { key, reading });
        }
    }

    fn close(&mut self, out: &mut Vec<Transition>, key: &AlertKey, reading: Reading) {
        if self.open.remove(key) {
            out.push(Transition::Close {
                key: key.clone(),
                reading,
            });
        }
    }

    /// A (sanitized) report arrived at `now`.
    pub fn on_report(
        &mut self,
        th: &Thresholds,
        report: &HealthReport,
        now: i64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let previous = self.last_report.replace(now);

        let silent = AlertKey::new(AlertKind::Silent, "");
        if self.is_open(&silent) {
            let gap = previous.map_or(0, |p| secs_between(p, now));
            self.close(
                &mut out,
                &silent,
                Reading {
                    value: gap,
                    threshold: ms(th.silent_after) / 1000,
                    detail: format!("reporting again after {}", text::human_secs(gap)),
                },
            );
        }

        // Disks: one alert per mount point; a mount that is gone no longer counts as full.
        let disk_threshold = i64::from(th.disk_percent);
        let mut full = BTreeSet::new();
        for f in &report.filesystems {
            let pct = i64::from(f.used_percent());
            let key = AlertKey::new(AlertKind::Disk, f.mount_point.clone());
            if pct >= disk_threshold {
                full.insert(key.clone());
                self.open(&mut out, key, disk_reading(f, disk_threshold));
            } else if self.is_open(&key) {
                self.close(&mut out, &key, disk_reading(f, disk_threshold));
            }
        }
        let gone: Vec<AlertKey> = self
            .open
            .iter()
            .filter(|k| k.kind == AlertKind::Disk && !full.contains(k))
            .cloned()
            .collect();
        for key in gone {
            let detail = format!("{}: no longer mounted", key.subject);
            self.close(
                &mut out,
                &key,
                Reading {
                    value: 0,
                    threshold: disk_threshold,
                    detail,
                },
            );
        }

        // Memory: high in every report for `memory_for`. A gap longer than that between two
        // reports says nothing about the time in between, so the count starts again.
        let m = &report.memory;
        let pct = m.used_percent();
        let mem_key = AlertKey::new(AlertKind::Memory, "");
        let reading = Reading {
            value: i64::from(pct),
            threshold: i64::from(th.memory_percent),
            detail: format!(
                "memory {pct} % used ({} of {})",
                text::bytes(m.used_bytes()),
                text::bytes(m.total_bytes)
            ),
        };
        if m.total_bytes > 0 && pct >= th.memory_percent {
            let gap_too_long = previous.is_some_and(|p| now.saturating_sub(p) > ms(th.memory_for));
            if gap_too_long || self.memory_high_since.is_none() {
                self.memory_high_since = Some(now);
            }
            let since = self.memory_high_since.unwrap_or(now);
            if now.saturating_sub(since) >= ms(th.memory_for) {
                let detail = format!(
                    "{} for {}",
                    reading.detail,
                    text::human_secs(secs_between(since, now))
                );
                self.open(&mut out, mem_key, Reading { detail, ..reading });
            }
        } else {
            self.memory_high_since = None;
            self.close(&mut out, &mem_key, reading);
        }

        // Units: unknown (no systemd, or it did not answer) changes nothing.
        if let Some(units) = &report.failed_units {
            let failed: BTreeSet<AlertKey> = units
                .iter()
                .map(|u| AlertKey::new(AlertKind::FailedUnit, u.name.clone()))
                .collect();
            for u in units {
                let key = AlertKey::new(AlertKind::FailedUnit, u.name.clone());
                let detail = if u.description.is_empty() {
                    format!("{} failed", u.name)
                } else {
                    format!("{} failed ({})", u.name, u.description)
                };
                self.open(
                    &mut out,
                    key,
                    Reading {
                        value: 0,
                        threshold: 0,
                        detail,
                    },
                );
            }
            let recovered: Vec<AlertKey> = self
                .open
                .iter()
                .filter(|k| k.kind == AlertKind::FailedUnit && !failed.contains(k))
                .cloned()
                .collect();
            for key in recovered {
                let detail = format!("{} no longer failed", key.subject);
                self.close(
                    &mut out,
                    &key,
                    Reading {
                        value: 0,
                        threshold: 0,
                        detail,
                    },
                );
            }
        }
        out
    }

    /// Time passed: opens the silence alert when no report came for `silent_after`. Silence is
    /// not counted before `baseline`: when the device enrolled, or when the relay started (it
    /// could not receive reports while it was down).
    pub fn on_tick(&mut self, th: &Thresholds, now: i64, baseline: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let quiet_since = self.last_report.unwrap_or(baseline).max(baseline);
        if now.saturating_sub(quiet_since) >= ms(th.silent_after) {
            let last = self.last_report.unwrap_or(baseline);
            let secs = secs_between(last, now);
            let detail = match self.last_report {
                Some(_) => format!("no health report for {}", text::human_secs(secs)),
                None => format!("no health report yet ({})", text::human_secs(secs)),
            };
            self.open(
                &mut out,
                AlertKey::new(AlertKind::Silent, ""),
                Reading {
                    value: secs,
                    threshold: ms(th.silent_after) / 1000,
                    detail,
                },
            );
        }
        out
    }
}

fn disk_reading(f: &FilesystemUsage, threshold: i64) -> Reading {
    let pct = f.used_percent();
    Reading {
        value: i64::from(pct),
        threshold,
        detail: format!(
            "{}: {pct} % used ({} of {}, {} available)",
            f.mount_point,
            text::bytes(f.used_bytes()),
            text::bytes(f.size_bytes),
            text::bytes(f.available_bytes)
        ),
    }
}

/// One alert as JSON: the `alert` object the relay POSTs to webhooks and a row of
/// `tether alerts --json`, one shape for both (serialise it with serde_json).
#[derive(Serialize, Debug)]
pub struct AlertJson<'a> {
    pub id: i64,
    pub device_id: &'a str,
    pub hostname: &'a str,
    pub group: &'a str,
    pub kind: &'static str,
    pub subject: &'a str,
    pub value: i64,
    pub threshold: i64,
    pub detail: &'a str,
    pub opened_at: String,
    pub opened_unix_ms: i64,
    pub closed_at: Option<String>,
    pub closed_unix_ms: Option<i64>,
    pub close_detail: Option<&'a str>,
}

impl AlertRow {
    pub fn json(&self) -> AlertJson<'_> {
        AlertJson {
            id: self.id,
            device_id: &self.device_id,
            hostname: &self.hostname,
            group: &self.group,
            kind: self.kind.as_str(),
            subject: &self.subject,
            value: self.value,
            threshold: self.threshold,
            detail: &self.detail,
            opened_at: rfc3339(self.opened_unix_ms),
            opened_unix_ms: self.opened_unix_ms,
            closed_at: self.closed_unix_ms.map(rfc3339),
            closed_unix_ms: self.closed_unix_ms,
            close_detail: self.close_detail.as_deref(),
        }
    }
}

/// `2026-12-03T06:40:22.123Z`; times before 1970 read as 1970.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
