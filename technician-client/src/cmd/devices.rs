//! `tether devices`, `inventory`, `software` and `history`: what the relay knows about the
//! machines (one request each, printed as a table, JSON or CSV).

use super::{CmdError, call, print_json, since_ms};
use crate::{out, outln, output};
use std::path::Path;
use std::time::Duration;
use tether_protocol::identity::Identity;

/// List machines: id, hostname, group, online, last seen.
#[derive(clap::Args)]
pub struct DevicesArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `tether devices [--json]`.
pub async fn devices(dir: &Path, a: DevicesArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let devices = call(&creds, async |s| s.devices().await).await?;
    if a.json {
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

/// Hardware and software inventory of one machine, or of all (--all).
#[derive(clap::Args)]
pub struct InventoryArgs {
    /// Device id, unique id prefix, or hostname.
    #[arg(required_unless_present = "all")]
    pub device: Option<String>,
    /// One row per device with the key fields.
    #[arg(long, conflicts_with = "device")]
    pub all: bool,
    /// With --all: CSV for spreadsheets and asset registers.
    #[arg(long, requires = "all", conflicts_with = "json")]
    pub csv: bool,
    #[arg(long)]
    pub json: bool,
    /// List every installed package.
    #[arg(long, conflicts_with = "all")]
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

/// Which machines have a package, and which version (NAME may end in *).
#[derive(clap::Args)]
pub struct SoftwareArgs {
    pub name: String,
    /// Only versions below this one (dpkg ordering), e.g. to find unpatched machines.
    #[arg(long, value_name = "V")]
    pub version_below: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `tether software NAME [--version-below V] [--json]`.
pub async fn software(dir: &Path, a: SoftwareArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let (name, version_below) = (a.name.as_str(), a.version_below);
    let below = version_below.clone();
    let rows = call(&creds, async |s| s.software(name, below).await).await?;
    if a.json {
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

/// What changed on a machine: software installed/removed/upgraded, hardware, OS.
#[derive(clap::Args)]
pub struct HistoryArgs {
    pub device: String,
    /// How far back (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub since: Duration,
    #[arg(long)]
    pub json: bool,
}

/// `tether history DEVICE [--since D] [--json]`.
pub async fn history(dir: &Path, a: HistoryArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let (device, since) = (a.device.as_str(), a.since);
    let h = call(&creds, async |s| s.history(device, since_ms(since)).await).await?;
    if a.json {
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
