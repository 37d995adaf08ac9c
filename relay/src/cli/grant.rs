//! `tether-relay grant`: the device groups a technician sees and reaches.

use super::Ctx;
use anyhow::{Result, bail};
use tether_protocol::identity::validate_name;
use tether_relay::store::now_ms;

/// Grant a technician the device groups they see and reach (admins always see all; a
/// technician without any grant sees no device). Without --group or --all-groups, lists
/// the grants.
#[derive(clap::Args)]
pub struct GrantArgs {
    #[arg(long)]
    pub technician: String,
    #[arg(long, conflicts_with = "all_groups")]
    pub group: Option<String>,
    /// Every device group, present and future.
    #[arg(long)]
    pub all_groups: bool,
    /// Withdraw the group (or the all-groups grant) instead.
    #[arg(long)]
    pub remove: bool,
}

pub async fn run(ctx: &Ctx, a: GrantArgs) -> Result<()> {
    let technician = a.technician.as_str();
    ctx.initialized()?;
    validate_name("technician name", technician)?;
    if a.remove && a.group.is_none() && !a.all_groups {
        bail!("--remove needs --group GROUP or --all-groups");
    }
    let (role, grants) = ctx
        .with_store(async |store, _| {
            let Some(role) = store.technician_role(technician, now_ms()).await? else {
                bail!(
                    "no technician named {technician} is enrolled or invited (tether-relay token --technician {technician} --role ROLE); nothing granted"
                );
            };
            let target = match (&a.group, a.all_groups) {
                (Some(g), _) => {
                    validate_name("group", g)?;
                    Some(g.as_str())
                }
                (None, true) => Some(tether_relay::store::ALL_GROUPS),
                (None, false) => None,
            };
            if let Some(target) = target {
                store.grant_group(technician, target, !a.remove, now_ms()).await?;
                tracing::info!(
                    technician,
                    group = target,
                    granted = !a.remove,
                    "technician groups changed"
                );
            }
            Ok((role, store.technician_grants(technician).await?))
        })
        .await?;
    if role == "admin" {
        println!("{technician} is an admin: admins see every device group whatever their grants");
    } else if grants.all_groups {
        println!("{technician} sees every device group (all-groups grant)");
        if !grants.groups.is_empty() {
            println!(
                "also granted one by one (kept if --all-groups is withdrawn): {}",
                grants.groups.join(", ")
            );
        }
    } else if grants.groups.is_empty() {
        println!("{technician} sees no device (no grants; admins see every group)");
    } else {
        println!("{technician} sees groups: {}", grants.groups.join(", "));
    }
    Ok(())
}
