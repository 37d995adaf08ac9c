//! `tether-relay revoke`: every certificate of a device or a technician, or one by serial.

use super::Ctx;
use anyhow::{Result, bail};
use tether_relay::store::{RevokeOutcome, RevokeTarget, now_ms};

/// Revoke every certificate of a device or a technician, or one certificate by serial: a
/// running relay disconnects it within a second and refuses it from then on (it must be
/// enrolled again with a new token).
#[derive(clap::Args)]
pub struct RevokeArgs {
    /// Device id or hostname.
    #[arg(long, group = "target")]
    pub device: Option<String>,
    /// Technician name.
    #[arg(long, group = "target")]
    pub technician: Option<String>,
    /// One certificate's serial number, in hex (see tether-relay certificates).
    #[arg(long, group = "target", value_name = "HEX")]
    pub serial: Option<String>,
    /// Why (kept with the revocation).
    #[arg(long, default_value = "")]
    pub reason: String,
}

pub async fn run(ctx: &Ctx, a: RevokeArgs) -> Result<()> {
    ctx.with_store(async |store, _| {
        // A device by the rules technicians' requests follow (ids win; a shared or id-shaped
        // hostname is refused with the candidates), then revoked by its id only.
        let device = match a.device {
            Some(q) => match tether_relay::tech::pick_device(&store.list_devices().await?, &q) {
                Ok(d) => Some(d.id.clone()),
                Err(tether_relay::tech::Unresolved::NotFound(_)) => Some(q),
                Err(e) => bail!("{}; nothing revoked", e.message()),
            },
            None => None,
        };
        let target = match (&device, &a.technician, &a.serial) {
            (Some(d), _, _) => RevokeTarget::Device(d),
            (_, Some(t), _) => RevokeTarget::Technician(t),
            (_, _, Some(s)) => {
                if tether_relay::store::normalize_serial(s).is_none() {
                    bail!("--serial takes the certificate's serial number in hex");
                }
                RevokeTarget::Serial(s)
            }
            _ => bail!("give --device ID, --technician NAME or --serial HEX"),
        };
        match store.revoke(target, &a.reason, now_ms()).await? {
            RevokeOutcome::Revoked { subject, serials } => {
                tracing::info!(subject, ?serials, "certificates revoked");
                if serials.is_empty() {
                    println!("{subject}: every certificate was already revoked");
                } else {
                    println!(
                        "revoked {subject} (serials {}); a running relay disconnects it within a second",
                        serials.join(", ")
                    );
                }
                Ok(())
            }
            RevokeOutcome::NotFound => match target {
                RevokeTarget::Device(_) => bail!("no such device (see tether devices)"),
                RevokeTarget::Technician(_) => {
                    bail!("no such technician (see tether-relay certificates)")
                }
                RevokeTarget::Serial(_) => bail!(
                    "no certificate with that serial was issued by this relay (see tether-relay certificates)"
                ),
            },
            RevokeOutcome::Ambiguous(ids) => bail!(
                "{} devices have that hostname ({}); use the device id",
                ids.len(),
                ids.join(", ")
            ),
        }
    })
    .await
}
