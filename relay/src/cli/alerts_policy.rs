//! `tether-relay alerts-policy`: show or change a device group's alert thresholds and webhook.

use super::Ctx;
use anyhow::Result;
use std::time::Duration;
use tether_protocol::identity::validate_name;
use tether_relay::alerts::{PolicyChange, change_policy, policy_json};

/// Show or change per-group alert thresholds and the webhook that receives alerts.
/// Without --group: list every group. Needs the relay's data directory.
#[derive(clap::Args)]
pub struct AlertsPolicyArgs {
    /// The device group to show or change.
    #[arg(long)]
    pub group: Option<String>,
    /// Alert when any filesystem is at least this full [default: 90].
    #[arg(long, requires = "group", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub disk_percent: Option<u8>,
    /// Alert when memory in use stays at least this high… [default: 95]
    #[arg(long, requires = "group", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub memory_percent: Option<u8>,
    /// …for this long (e.g. 5m, 90s) [default: 5m].
    #[arg(long, requires = "group", value_parser = humantime::parse_duration)]
    pub memory_for: Option<Duration>,
    /// The same in minutes.
    #[arg(long, requires = "group", conflicts_with = "memory_for")]
    pub memory_minutes: Option<u64>,
    /// Alert when a device sent no health report for this long (e.g. 10m, 30s) [default: 10m].
    #[arg(long, requires = "group", value_parser = humantime::parse_duration)]
    pub silent_after: Option<Duration>,
    /// The same in minutes.
    #[arg(long, requires = "group", conflicts_with = "silent_after")]
    pub silent_minutes: Option<u64>,
    /// POST every alert opening and closing as JSON to this http(s) URL.
    #[arg(long, requires = "group", conflicts_with = "no_webhook")]
    pub webhook: Option<String>,
    /// Stop sending this group's alerts to a webhook.
    #[arg(long, requires = "group")]
    pub no_webhook: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(ctx: &Ctx, a: AlertsPolicyArgs) -> Result<()> {
    let minutes = |m: Option<u64>| m.map(|m| Duration::from_secs(m.saturating_mul(60)));
    let group = a.group.clone();
    let rows = ctx
        .with_store(async |store, _| {
            let mut rows = store.alert_policies().await?;
            if let Some(group) = &group {
                validate_name("group", group)?;
                let change = PolicyChange {
                    group: group.clone(),
                    disk_percent: a.disk_percent,
                    memory_percent: a.memory_percent,
                    memory_for: a.memory_for.or(minutes(a.memory_minutes)),
                    silent_after: a.silent_after.or(minutes(a.silent_minutes)),
                    webhook: if a.no_webhook {
                        Some(None)
                    } else {
                        a.webhook.map(Some)
                    },
                };
                let p = if change.is_empty() {
                    rows.into_iter()
                        .find(|p| &p.group == group)
                        .unwrap_or_else(|| tether_relay::store::AlertPolicy::defaults(group))
                } else {
                    let p = change_policy(store, &change).await?;
                    tracing::info!(group, "alert policy changed");
                    p
                };
                rows = vec![p];
            }
            Ok(rows)
        })
        .await?;
    if a.json {
        let v: Vec<_> = rows.iter().map(policy_json).collect();
        let v = if group.is_some() {
            v.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(v)
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<20} {:>5} {:>7} {:>10} {:>12}  WEBHOOK",
            "GROUP", "DISK", "MEMORY", "MEMORY FOR", "SILENT AFTER"
        );
        for p in rows {
            let t = &p.thresholds;
            println!(
                "{:<20} {:>4}% {:>6}% {:>10} {:>12}  {}",
                p.group,
                t.disk_percent,
                t.memory_percent,
                humantime::format_duration(t.memory_for).to_string(),
                humantime::format_duration(t.silent_after).to_string(),
                p.webhook.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}
