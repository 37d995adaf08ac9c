//! `tether-relay relays`: the relays sharing this store, and which devices each holds.

use super::Ctx;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use tether_relay::store::cluster::RELAY_ALIVE_MS;
use tether_relay::store::now_ms;

/// List the relays sharing the store (PostgreSQL): alive or not, and the devices each holds.
#[derive(clap::Args)]
pub struct RelaysArgs {
    /// Relays seen within this long are listed (alive or not) [default: 1 day].
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub since: std::time::Duration,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(ctx: &Ctx, a: RelaysArgs) -> Result<()> {
    let (relays, leases) = ctx
        .with_store(async |store, _| {
            let Some(c) = store.cluster() else {
                bail!(
                    "this store serves one relay (SQLite); several relays share a PostgreSQL store (--store postgres://…)"
                );
            };
            let now = now_ms();
            let since = now.saturating_sub(i64::try_from(a.since.as_millis()).unwrap_or(i64::MAX));
            let relays = c.relays(since).await?;
            let leases = c.leases(now, now.saturating_sub(RELAY_ALIVE_MS)).await?;
            Ok((relays, leases))
        })
        .await?;
    let now = now_ms();
    let mut held: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in &leases {
        held.entry(&l.relay_id).or_default().push(&l.device_id);
    }
    if a.json {
        let rows: Vec<_> = relays
            .iter()
            .map(|r| {
                let devices = held.get(r.id.as_str()).cloned().unwrap_or_default();
                serde_json::json!({
                    "id": r.id,
                    "addr": r.public_addr,
                    "alive": now - r.seen_at <= RELAY_ALIVE_MS,
                    "started_unix_ms": r.started_at,
                    "seen_unix_ms": r.seen_at,
                    "devices": devices,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if relays.is_empty() {
        println!("no relay has run on this store");
        return Ok(());
    }
    println!(
        "{:<20} {:<28} {:<8} {:>8}",
        "RELAY", "ADDRESS", "STATE", "DEVICES"
    );
    for r in &relays {
        let alive = now - r.seen_at <= RELAY_ALIVE_MS;
        let state = if alive {
            "alive".to_string()
        } else {
            format!("gone {}s", (now - r.seen_at) / 1000)
        };
        let n = held.get(r.id.as_str()).map_or(0, Vec::len);
        println!(
            "{:<20} {:<28} {:<8} {:>8}",
            tether_protocol::text::clean(&r.id, 64),
            tether_protocol::text::clean(&r.public_addr, 255),
            state,
            n
        );
    }
    Ok(())
}
