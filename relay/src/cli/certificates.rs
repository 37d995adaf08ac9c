//! `tether-relay certificates`: the certificates the relay issued, with their serials.

use super::Ctx;
use anyhow::Result;

/// List the certificates issued to devices and technicians, with their serials and
/// whether they are revoked.
#[derive(clap::Args)]
pub struct CertificatesArgs {
    /// Only this device (id or hostname).
    #[arg(long, conflicts_with = "technician")]
    pub device: Option<String>,
    /// Only this technician.
    #[arg(long)]
    pub technician: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(ctx: &Ctx, a: CertificatesArgs) -> Result<()> {
    let (device, technician) = (a.device.as_deref(), a.technician.as_deref());
    let rows = ctx
        .with_store(async |store, _| Ok(store.certificates(device, technician).await?))
        .await?;
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|c| {
                serde_json::json!({
                    "serial": c.serial,
                    "subject": c.subject,
                    "detail": c.detail,
                    "issued_unix_ms": c.issued_at,
                    "revoked_unix_ms": c.revoked_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<34} {:<46} {:<10} STATUS",
            "SERIAL", "SUBJECT", "ROLE/GROUP"
        );
        for c in rows {
            println!(
                "{:<34} {:<46} {:<10} {}",
                c.serial,
                c.subject,
                c.detail,
                if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "valid"
                }
            );
        }
    }
    Ok(())
}
