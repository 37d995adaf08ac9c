//! `tether token` and `tether policy`: what admins do from the technician's command
//! (enrollment tokens, device group policies).

use super::{CmdError, call};
use crate::outln;
use std::path::Path;
use std::time::Duration;
use tether_protocol::identity::Role;
use tether_protocol::message::TokenFor;

/// Whom `tether token` is for, as given on the command line.
pub struct TokenArgs {
    /// A workstation agent, for `group`.
    pub agent: bool,
    pub group: String,
    /// A technician with this name and `role`.
    pub technician: Option<String>,
    pub role: Option<Role>,
    /// Re-enroll a technician who is already enrolled.
    pub replace: bool,
    pub ttl: Duration,
    /// host:port to put in the token.
    pub relay: Option<String>,
    pub json: bool,
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
/// (each `Some(true)` for on, `Some(false)` for off, `None` to leave as it is).
pub async fn policy(
    dir: &Path,
    group: &str,
    unattended: Option<bool>,
    record_shells: Option<bool>,
    allow_root: Option<bool>,
) -> Result<(), CmdError> {
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
