//! Health reports, alerts and per-group alert policy (see migrations/sqlite/0005_health.sql).

use tether_protocol::health::Thresholds;

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
