//! `tether enroll`: trade a one-time token from the IT admin for technician credentials.

use super::CmdError;
use crate::{SOFTWARE, outln};
use std::path::Path;
use tether_net::client::{self, Credentials};
use tether_protocol::identity::Identity;
use tether_protocol::token::EnrollToken;

/// Enroll as a technician with a one-time token from the IT admin.
#[derive(clap::Args)]
pub struct EnrollArgs {
    #[arg(long, env = "TETHER_TOKEN")]
    pub token: String,
    /// Replace existing credentials.
    #[arg(long)]
    pub force: bool,
}

/// Enrolls with the relay named in the token, saving the credentials in `dir` (replacing
/// existing ones only with `--force`).
pub async fn enroll(dir: &Path, a: EnrollArgs) -> Result<(), CmdError> {
    if Credentials::exists(dir) && !a.force {
        return Err(CmdError::AlreadyEnrolled(dir.to_path_buf()));
    }
    let token = EnrollToken::decode(&a.token)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let identity = client::enroll(&token, dir, host.trim(), SOFTWARE)
        .await
        .map_err(|source| CmdError::Enroll {
            relay: token.relay_addr.to_string(),
            source,
        })?;
    match identity {
        Identity::Technician { name, role } => {
            outln!(
                "enrolled as technician {name} ({role}); credentials in {}",
                dir.display()
            );
            outln!("next: tether devices");
            Ok(())
        }
        other => Err(CmdError::NotTechnician(other.to_string())),
    }
}
