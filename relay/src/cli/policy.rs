//! `tether-relay policy`: show or change a device group's session policy, through the same
//! code as the technicians' `SetPolicy` request (`tether_relay::group_policy`).

use super::Ctx;
use anyhow::{Result, bail};
use tether_relay::group_policy::{self, PolicyChange};

/// Show or change per-group policy (who may be reached without the user's prompt).
/// Needs the relay's data directory, i.e. the relay's administrator.
#[derive(clap::Args)]
pub struct PolicyArgs {
    /// The device group to change.
    #[arg(long)]
    pub group: Option<String>,
    /// Allow admins to start sessions on this group's devices without the user's approval.
    #[arg(long, value_parser = ["on", "off"], requires = "group")]
    pub unattended: Option<String>,
    /// Record every shell on this group's devices to a transcript in DATA/transcripts/.
    #[arg(long, value_parser = ["on", "off"], requires = "group")]
    pub record_shells: Option<String>,
    /// Allow sessions to run shells, commands and file access as root on this group's
    /// devices when the technician asks (--as-root); off: they run as the desktop user.
    #[arg(long, value_parser = ["on", "off"], requires = "group")]
    pub allow_root: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(ctx: &Ctx, a: PolicyArgs) -> Result<()> {
    let json = a.json;
    let listing = a.group.is_none();
    let rows = ctx
        .with_store(async |store, dd| {
            if a.group.is_some()
                && a.unattended.is_none()
                && a.record_shells.is_none()
                && a.allow_root.is_none()
            {
                bail!(
                    "--group needs --unattended on|off, --record-shells on|off or --allow-root on|off"
                );
            }
            if let Some(group) = &a.group {
                let on = |flag: &Option<String>| flag.as_deref().map(|f| f == "on");
                let change = PolicyChange {
                    group: group.clone(),
                    unattended: on(&a.unattended),
                    record_shells: on(&a.record_shells),
                    allow_root: on(&a.allow_root),
                };
                group_policy::change(store, "tether-relay policy", &change).await?;
                if !json {
                    print_change(&change, dd);
                }
            }
            Ok(store.policies().await?)
        })
        .await?;
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|p| {
                serde_json::json!({
                    "group": p.group,
                    "unattended": p.unattended,
                    "record_shells": p.record_shells,
                    "allow_root": p.allow_root,
                    "updated_unix_ms": p.updated_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if listing {
        println!(
            "{:<24} {:<11} {:<14} ALLOW ROOT",
            "GROUP", "UNATTENDED", "RECORD SHELLS"
        );
        let word = |on: bool| if on { "on" } else { "off" };
        for p in rows {
            println!(
                "{:<24} {:<11} {:<14} {}",
                p.group,
                word(p.unattended),
                word(p.record_shells),
                word(p.allow_root)
            );
        }
    }
    Ok(())
}

/// What a change did, one line per setting changed.
fn print_change(change: &PolicyChange, dd: &tether_relay::config::DataDir) {
    let group = &change.group;
    if let Some(on) = change.allow_root {
        println!(
            "group {group}: root sessions {}",
            if on {
                "ALLOWED (technicians may ask for --as-root; the user sees it in the prompt)"
            } else {
                "off (shells, commands and files run as the desktop user)"
            }
        );
    }
    if let Some(on) = change.record_shells {
        println!(
            "group {group}: shell transcripts {}",
            if on {
                format!("ON (kept in {})", dd.transcripts().display())
            } else {
                "off".to_string()
            }
        );
    }
    if let Some(on) = change.unattended {
        println!(
            "group {group}: unattended access {}",
            if on {
                "ON for admins (sessions start without the user's approval; still audited and shown)"
            } else {
                "off (the user approves every session)"
            }
        );
    }
}
