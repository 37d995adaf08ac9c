//! Health reports and alerts: their requests, and how their answers are shown (the commands
//! are in `cmd::health`).
//!
//! Everything in a health report came from an agent: it is cleaned again before it reaches the
//! terminal ([`tether_report::health::text`] and [`clean`] here).

use crate::output::{rfc3339, table};
use crate::relay::{RequestError, Session};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use tether_protocol::health::{AlertRow, DeviceHealth};
use tether_protocol::message::{TechRequest, TechResponse};
use tether_protocol::text::{clean, human_secs};

impl Session {
    /// The latest health report of a device and its open alerts.
    pub async fn health(&self, device: &str) -> Result<DeviceHealth, RequestError> {
        match self
            .request(&TechRequest::Health {
                device: device.to_string(),
            })
            .await?
        {
            TechResponse::Health(h) => Ok(*h),
            TechResponse::Error { message, .. } => Err(RequestError::Denied(message)),
            _ => Err(RequestError::Unexpected),
        }
    }

    /// Open alerts; with `all`, also those closed in the last 7 days.
    pub async fn alerts(&self, all: bool) -> Result<Vec<AlertRow>, RequestError> {
        match self.request(&TechRequest::Alerts { all }).await? {
            TechResponse::Alerts(a) => Ok(a),
            TechResponse::Error { message, .. } => Err(RequestError::Denied(message)),
            _ => Err(RequestError::Unexpected),
        }
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds from `ms` to `now` (never negative: clocks may disagree a little).
fn age_s(ms: i64, now: i64) -> i64 {
    now.saturating_sub(ms).max(0) / 1000
}

/// One alert as JSON: the `alert` object the relay POSTs to webhooks, the same shape
/// ([`AlertRow::json`]).
pub fn alert_json(a: &AlertRow) -> Value {
    serde_json::to_value(a.json()).unwrap_or_default()
}

pub fn alerts_json(rows: &[AlertRow]) -> Value {
    Value::Array(rows.iter().map(alert_json).collect())
}

pub fn health_json(h: &DeviceHealth, now: i64) -> Value {
    json!({
        "device": crate::output::device_json(&h.device),
        "received_at": rfc3339(h.received_unix_ms),
        "received_unix_ms": h.received_unix_ms,
        "age_s": age_s(h.received_unix_ms, now),
        "report": h.report,
        "alerts": alerts_json(&h.alerts),
    })
}

fn alert_value(a: &AlertRow) -> String {
    use tether_protocol::health::AlertKind;
    match a.kind {
        AlertKind::Disk | AlertKind::Memory => format!("{} % (≥ {} %)", a.value, a.threshold),
        AlertKind::Silent => format!("{} (≥ {})", human_secs(a.value), human_secs(a.threshold)),
        AlertKind::FailedUnit => "failed".into(),
    }
}

/// The screen of `tether health`.
pub fn health_text(h: &DeviceHealth, now: i64) -> String {
    let d = &h.device;
    let mut out = format!(
        "{} ({}) {} · group {} · report received {} ago ({})\n\n",
        clean(&d.hostname, 64),
        d.id,
        if d.online { "online" } else { "offline" },
        clean(&d.group, 64),
        human_secs(age_s(h.received_unix_ms, now)),
        rfc3339(h.received_unix_ms)
    );
    out.push_str(&tether_report::health::text(&h.report));
    out.push('\n');
    if h.alerts.is_empty() {
        out.push_str("open alerts: none\n");
    } else {
        out.push_str("open alerts\n");
        let rows: Vec<[String; 4]> = h
            .alerts
            .iter()
            .map(|a| {
                [
                    a.kind.as_str().to_string(),
                    alert_value(a),
                    format!("{} ago", human_secs(age_s(a.opened_unix_ms, now))),
                    clean(&a.detail, 256),
                ]
            })
            .collect();
        out.push_str(&table(&["KIND", "VALUE", "OPENED", "DETAIL"], &rows));
    }
    out
}

/// The table of `tether alerts`.
pub fn alerts_table(rows: &[AlertRow], now: i64) -> String {
    let rows: Vec<[String; 7]> = rows
        .iter()
        .map(|a| {
            [
                a.id.to_string(),
                clean(&a.hostname, 64),
                a.kind.as_str().to_string(),
                alert_value(a),
                format!("{} ago", human_secs(age_s(a.opened_unix_ms, now))),
                match a.closed_unix_ms {
                    None => "open".into(),
                    Some(c) => format!("closed {} ago", human_secs(age_s(c, now))),
                },
                clean(&a.detail, 256),
            ]
        })
        .collect();
    table(
        &["ID", "HOST", "KIND", "VALUE", "OPENED", "STATE", "DETAIL"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::health::{AlertKind, HealthReport};
    use tether_protocol::message::DeviceSummary;

    fn alert() -> AlertRow {
        AlertRow {
            id: 3,
            device_id: "d1".into(),
            hostname: "ws\u{1b}[31m-1".into(),
            group: "default".into(),
            kind: AlertKind::Disk,
            subject: "/".into(),
            value: 93,
            threshold: 90,
            detail: "/: 93 % used\u{7}".into(),
            opened_unix_ms: 1_000,
            closed_unix_ms: Some(61_000),
            close_detail: Some("/: 10 % used".into()),
        }
    }

    #[test]
    fn alerts_are_escaped_and_json_is_stable() {
        let t = alerts_table(&[alert()], 121_000);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t}");
        assert!(t.contains("93 % (≥ 90 %)"), "{t}");
        assert!(t.contains("closed 1 min ago"), "{t}");
        let v = alert_json(&alert());
        assert_eq!(v["kind"], "disk");
        assert_eq!(v["closed_at"], "1970-01-01T00:01:01.000Z");
    }

    #[test]
    fn health_screen() {
        let h = DeviceHealth {
            device: DeviceSummary {
                id: "d1".into(),
                hostname: "ws-1".into(),
                group: "default".into(),
                online: true,
                os: String::new(),
                agent_version: String::new(),
                first_seen_unix_ms: 0,
                last_seen_unix_ms: 0,
            },
            received_unix_ms: 10_000,
            report: HealthReport::default(),
            alerts: vec![AlertRow {
                closed_unix_ms: None,
                ..alert()
            }],
        };
        let t = health_text(&h, 22_000);
        assert!(t.starts_with("ws-1 (d1) online · group default · report received 12 s ago"));
        assert!(t.contains("open alerts\nKIND"), "{t}");
        // Skewed clocks never show a negative age.
        assert!(health_text(&h, 0).contains("received 0 s ago"));
        let v = health_json(&h, 22_000);
        assert_eq!(v["age_s"], 12);
        assert_eq!(v["alerts"][0]["kind"], "disk");
    }
}
