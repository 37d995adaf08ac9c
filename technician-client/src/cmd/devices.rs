//! `tether devices`, `inventory`, `software` and `history`: what the relay knows about the
//! machines (one request each, printed as a table, JSON or CSV).

use super::{CmdError, call, print_json, since_ms};
use crate::{out, outln, output};
use std::path::Path;
use std::time::Duration;
use tether_protocol::identity::Identity;

/// `tether devices [--json]`.
pub async fn devices(dir: &Path, json: bool) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let devices = call(&creds, async |s| s.devices().await).await?;
    if json {
        print_json(&output::devices_json(&devices));
    } else if devices.is_empty() {
        match &creds.identity {
            Identity::Technician {
                role: tether_protocol::identity::Role::Admin,
                ..
            } => outln!("no devices enrolled yet (IT: tether-relay token --agent)"),
            _ => outln!(
                "no device in the groups you may see (IT grants groups: tether-relay grant --technician NAME --group GROUP)"
            ),
        }
    } else {
        out!(
            "{}",
            output::devices_table(&devices, std::time::SystemTime::now())
        );
    }
    Ok(())
}

/// What `tether inventory` shows.
pub struct InventoryArgs {
    /// One device (id, prefix or hostname); `None` with `all`.
    pub device: Option<String>,
    /// One row per device.
    pub all: bool,
    /// With `all`: CSV.
    pub csv: bool,
    pub json: bool,
    /// Every installed package.
    pub packages: bool,
}

/// `tether inventory DEVICE [--packages] [--json]` and `tether inventory --all [--csv|--json]`.
pub async fn inventory(dir: &Path, a: InventoryArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    if a.all {
        let rows = call(&creds, async |s| s.inventory_all().await).await?;
        if a.json && !a.csv {
            print_json(&output::inventory_rows_json(&rows));
        } else {
            out!("{}", output::inventory_rows_csv(&rows));
        }
        return Ok(());
    }
    let device = a
        .device
        .ok_or(CmdError::Usage("name a device, or use --all"))?;
    let inv = call(&creds, async |s| s.inventory(&device).await).await?;
    if a.json {
        let v = serde_json::json!({
            "device": output::device_json(&inv.device),
            "received_at": output::rfc3339(inv.received_unix_ms),
            "inventory": inv.inventory,
        });
        print_json(&v);
    } else {
        outln!(
            "{} ({}) {}, inventory received {}\n",
            tether_protocol::text::clean(&inv.device.hostname, 64),
            inv.device.id,
            if inv.device.online {
                "online"
            } else {
                "offline"
            },
            output::rfc3339(inv.received_unix_ms)
        );
        out!(
            "{}",
            tether_report::inventory::text(&inv.inventory, a.packages)
        );
    }
    Ok(())
}

/// `tether software NAME [--version-below V] [--json]`.
pub async fn software(
    dir: &Path,
    name: &str,
    version_below: Option<String>,
    json: bool,
) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let below = version_below.clone();
    let rows = call(&creds, async |s| s.software(name, below).await).await?;
    if json {
        print_json(&output::software_json(&rows));
    } else if rows.is_empty() {
        let name = tether_protocol::text::clean(name, 64);
        match &version_below {
            Some(v) => outln!(
                "no device has {name} below version {}",
                tether_protocol::text::clean(v, 64)
            ),
            None => outln!("no device has {name}"),
        }
    } else {
        out!("{}", output::software_table(&rows));
    }
    Ok(())
}

/// `tether history DEVICE [--since D] [--json]`.
pub async fn history(
    dir: &Path,
    device: &str,
    since: Duration,
    json: bool,
) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let h = call(&creds, async |s| s.history(device, since_ms(since)).await).await?;
    if json {
        print_json(&output::history_json(&h));
    } else if h.changes.is_empty() {
        outln!(
            "no changes on {} in the last {}",
            tether_protocol::text::clean(&h.device.hostname, 64),
            humantime::format_duration(since)
        );
    } else {
        out!("{}", output::history_table(&h));
    }
    Ok(())
}
