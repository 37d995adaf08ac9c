//! Health reports, alerts and per-group alert policy (see migrations/sqlite/0005_health.sql).

use super::{Backend, Store, StoreError};
use tether_protocol::health::{AlertKey, AlertRow, HealthReport, Reading, Thresholds};

/// The alert thresholds and webhook of one device group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPolicy {
    pub group: String,
    pub thresholds: Thresholds,
    /// Receives every alert opening and closing as a JSON POST.
    pub webhook: Option<String>,
    /// `None` for a group that has the defaults (no row).
    pub updated_at: Option<i64>,
}

impl AlertPolicy {
    pub fn defaults(group: &str) -> Self {
        Self {
            group: group.to_string(),
            thresholds: Thresholds::default(),
            webhook: None,
            updated_at: None,
        }
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Also alerts closed at or after this time.
    pub closed_since: Option<i64>,
    pub device_id: Option<String>,
    pub limit: u32,
}

impl Store {
    /// Replaces the latest (sanitized) health report of each device `(id, report, received)`,
    /// all in one transaction.
    pub async fn put_health_many(
        &self,
        reports: &[(String, HealthReport, i64)],
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.put_health_many(reports).await,
        }
    }

    /// The latest health report of a device and when it was received.
    pub async fn health(&self, device_id: &str) -> Result<Option<(i64, HealthReport)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.health(device_id).await,
        }
    }

    /// `(device id, received at)` of every device's latest health report.
    pub async fn health_received(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.health_received().await,
        }
    }

    /// Opens an alert; `None` if one with this key is already open.
    pub async fn open_alert(
        &self,
        device_id: &str,
        key: &AlertKey,
        reading: &Reading,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.open_alert(device_id, key, reading, at).await,
        }
    }

    /// Closes the open alert with this key; `None` if there is none.
    pub async fn close_alert(
        &self,
        device_id: &str,
        key: &AlertKey,
        detail: &str,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.close_alert(device_id, key, detail, at).await,
        }
    }

    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.alert(id).await,
        }
    }

    /// Open alerts (and, with `closed_since`, those closed since then), newest first.
    pub async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.alerts(f).await,
        }
    }

    /// Every open alert's device and key (to rebuild the alert state after a restart).
    pub async fn open_alert_keys(&self) -> Result<Vec<(String, AlertKey)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.open_alert_keys().await,
        }
    }

    /// Every group with a policy or a device, with its effective policy.
    pub async fn alert_policies(&self) -> Result<Vec<AlertPolicy>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.alert_policies().await,
        }
    }

    pub async fn set_alert_policy(&self, p: &AlertPolicy, now: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_alert_policy(p, now).await,
        }
    }
}
