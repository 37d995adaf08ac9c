//! `tether-relay token`: a one-time enrollment token for an agent or a technician.

use super::{Ctx, parse_role};
use anyhow::{Context, Result};
use std::time::Duration;
use tether_protocol::identity::{Role, validate_name};
use tether_relay::config::DataDir;
use tether_relay::store::{Store, TokenKind};

/// Create a one-time enrollment token for an agent or a technician.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// Enroll a workstation agent.
    #[arg(
        long,
        conflicts_with = "technician",
        required_unless_present = "technician"
    )]
    pub agent: bool,
    /// Device group for an agent token.
    #[arg(long, default_value = "default", requires = "agent")]
    pub group: String,
    /// Enroll a technician with this name.
    #[arg(long, value_name = "NAME")]
    pub technician: Option<String>,
    /// The technician's role.
    #[arg(long, value_parser = parse_role, requires = "technician")]
    pub role: Option<Role>,
    /// Re-enroll a technician who is already enrolled: their current certificates are
    /// revoked when the new one is issued (without it such a token is refused).
    #[arg(long, requires = "technician")]
    pub replace: bool,
    /// How long the token stays valid (e.g. 24h, 30m, 7d).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Relay address to put in the token [default: public_addr from init].
    #[arg(long)]
    pub relay: Option<String>,
    /// Print JSON ({"token":…,"expires_unix_ms":…}).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(ctx: &Ctx, a: TokenArgs) -> Result<()> {
    let dd = DataDir::new(&ctx.data);
    let settings = dd.load_settings()?;
    let kind = if a.agent {
        validate_name("group", &a.group)?;
        TokenKind::Agent { group: a.group }
    } else {
        let name = a
            .technician
            .context("--technician NAME or --agent is required")?;
        validate_name("technician name", &name)?;
        TokenKind::Technician {
            name,
            role: a
                .role
                .context("--role viewer|support|admin is required with --technician")?,
            replace: a.replace,
        }
    };
    let ttl = a.ttl;
    let store = Store::open(&ctx.store_url(&dd)?).await?;
    let relay_addr = match a.relay {
        Some(a) => a,
        None => {
            // Every live relay sharing the store, so the enrolled side can fail over.
            let me = tether_relay::cluster::Me {
                id: settings.id().to_string(),
                addr: settings.public_addr.clone(),
            };
            tether_relay::cluster::relay_addrs(&store, &me)
                .await
                .join(",")
        }
    };
    let created =
        tether_relay::tokens::create(&store, &dd, &relay_addr, &settings.name, kind.clone(), ttl)
            .await;
    let hint = match &kind {
        TokenKind::Technician { name, role, .. } if *role != Role::Admin => store
            .technician_grants(name)
            .await
            .ok()
            .filter(|g| g.is_empty())
            .map(|_| name.clone()),
        _ => None,
    };
    store.close().await;
    let (token, expires) = created?;
    if let Some(name) = hint {
        eprintln!(
            "note: {name} sees no device until granted groups (tether-relay grant --technician {name} --group GROUP, or --all-groups)"
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"token": token.encode(), "relay": relay_addr, "expires_unix_ms": expires})
        );
    } else {
        println!("{}", token.encode());
        eprintln!(
            "single-use token for {relay_addr}, valid for {}",
            tether_protocol::text::duration_words(ttl)
        );
    }
    Ok(())
}
