//! `tether token` and `tether policy`: what admins do from the technician's command
//! (enrollment tokens, device group policies).

use super::{CmdError, call};
use crate::outln;
use std::path::Path;
use std::time::Duration;
use tether_protocol::identity::Role;
use tether_protocol::message::TokenFor;

/// Admins: create a one-time enrollment token for a machine or a technician.
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
    #[arg(long, value_name = "NAME", requires = "role")]
    pub technician: Option<String>,
    /// The technician's role: viewer, support or admin.
    #[arg(long, value_parser = parse_role)]
    pub role: Option<Role>,
    /// Re-enroll a technician who is already enrolled (their current certificates are
    /// revoked when the new one is issued).
    #[arg(long, requires = "technician")]
    pub replace: bool,
    /// How long the token stays valid (1m to 30d).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// host:port to put in the token [default: the relay's public address].
    #[arg(long)]
    pub relay: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: tether_protocol::identity::IdentityError| e.to_string())
}

/// Admins: change a device group's policy.
#[derive(clap::Args)]
pub struct PolicyArgs {
    #[arg(long)]
    pub group: String,
    /// Allow admins in without the user's approval on this group's devices.
    #[arg(long, value_parser = ["on", "off"])]
    pub unattended: Option<String>,
    /// Keep a transcript of every shell on this group's devices on the relay.
    #[arg(long, value_parser = ["on", "off"])]
    pub record_shells: Option<String>,
    /// Let technicians run shells, commands and file access as root (--as-root) on this
    /// group's devices; off: always as the desktop user.
    #[arg(long, value_parser = ["on", "off"])]
    pub allow_root: Option<String>,
}

/// `tether token --agent [--group G] | --technician NAME --role ROLE [--replace]`.
pub async fn token(dir: &Path, a: TokenArgs) -> Result<(), CmdError> {
    let for_whom = match (a.agent, a.technician, a.role) {
        (true, _, _) => TokenFor::Agent { group: a.group },
        (false, Some(name), Some(role)) if a.replace => TokenFor::ReplaceTechnician { name, role },
        (false, Some(name), Some(role)) => TokenFor::Technician { name, role },
        _ => return Err(CmdError::Usage("--agent, or --technician NAME --role ROLE")),
    };
    let creds = super::credentials(dir)?;
    let (ttl, relay) = (a.ttl, a.relay);
    let (token, expires) =
        call(&creds, async |s| s.create_token(for_whom, ttl, relay).await).await?;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({"token": token, "expires_unix_ms": expires})
        );
    } else {
        outln!("{}", crate::safe::line(&token));
        eprintln!(
            "single-use token, valid for {}",
            tether_protocol::text::duration_words(ttl)
        );
    }
    Ok(())
}

/// `tether policy --group G [--unattended on|off] [--record-shells on|off] [--allow-root on|off]`
/// (each on or off, or left as it is when not given).
pub async fn policy(dir: &Path, a: PolicyArgs) -> Result<(), CmdError> {
    let on = |v: &Option<String>| v.as_deref().map(|v| v == "on");
    let (unattended, record_shells, allow_root) =
        (on(&a.unattended), on(&a.record_shells), on(&a.allow_root));
    let group = a.group.as_str();
    if unattended.is_none() && record_shells.is_none() && allow_root.is_none() {
        return Err(CmdError::Usage(
            "give --unattended on|off, --record-shells on|off and/or --allow-root on|off",
        ));
    }
    let creds = super::credentials(dir)?;
    call(&creds, async |s| {
        s.set_policy(group, unattended, record_shells, allow_root)
            .await
    })
    .await?;
    outln!("policy of group {group} changed");
    Ok(())
}
