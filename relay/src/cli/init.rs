//! `tether-relay init`: a new data directory with the organisation CA, the relay's
//! certificate, its settings and an empty store.

use super::Ctx;
use anyhow::{Result, bail};
use tether_relay::ca::Ca;
use tether_relay::config::{DataDir, RelaySettings, ensure_dir};
use tether_relay::store::Store;

/// Create the organisation CA and the relay's certificate in a new data directory.
#[derive(clap::Args)]
pub struct InitArgs {
    /// DNS name clients use to reach the relay (checked against its certificate).
    #[arg(long, default_value = "localhost")]
    pub name: String,
    /// host:port written into enrollment tokens [default: NAME:4433].
    #[arg(long)]
    pub public_addr: Option<String>,
}

pub async fn run(ctx: &Ctx, a: InitArgs) -> Result<()> {
    let data = &ctx.data;
    let dd = DataDir::new(data);
    if dd.is_initialized() {
        bail!(tether_relay::config::ConfigError::AlreadyInitialized(
            data.display().to_string()
        ));
    }
    ensure_dir(data)?;
    let settings = RelaySettings {
        public_addr: a.public_addr.unwrap_or_else(|| format!("{}:4433", a.name)),
        name: a.name,
    };
    let ca = Ca::create(&dd, &settings.name)?;
    ca.issue_server(&dd, &settings.name)?;
    dd.save_settings(&settings)?;
    Store::open(&ctx.store_url(&dd)?).await?.close().await;
    println!("initialized relay {} in {}", settings.name, data.display());
    println!(
        "CA fingerprint (sha256): {}",
        tether_protocol::token::hex(&ca.fingerprint())
    );
    match &ctx.store {
        // The same store must be given to serve (the password shown as ***: type it again).
        Some(_) => println!(
            "next: tether-relay serve --data {} --store {}",
            data.display(),
            ctx.store_url(&dd)?
        ),
        None => println!("next: tether-relay serve --data {}", data.display()),
    }
    Ok(())
}
