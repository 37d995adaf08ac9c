//! `tether-relay init`: a new data directory with the organisation CA, the relay's
//! certificate, its settings and an empty store.

use super::Ctx;
use anyhow::{Context, Result, bail};
use tether_relay::ca::Ca;
use tether_relay::config::{DataDir, RelaySettings, ensure_dir};
use tether_relay::store::Store;

/// Create the organisation CA and the relay's certificate in a new data directory.
#[derive(clap::Args)]
pub struct InitArgs {
    /// DNS name clients use to reach the relay (checked against its certificate) [default:
    /// localhost, or the joined relay's name].
    #[arg(long)]
    pub name: Option<String>,
    /// host:port written into enrollment tokens [default: NAME:4433].
    #[arg(long)]
    pub public_addr: Option<String>,
    /// Another relay of the organisation, on the same `--store`: take its CA (copied from its
    /// data directory) and name, and issue this relay its own certificate.
    #[arg(long, value_name = "DATA_DIR")]
    pub join: Option<std::path::PathBuf>,
    /// This relay's id among those sharing the store [default: NAME; required with --join].
    #[arg(long)]
    pub id: Option<String>,
}

pub async fn run(ctx: &Ctx, a: InitArgs) -> Result<()> {
    let data = &ctx.data;
    let dd = DataDir::new(data);
    if dd.is_initialized() {
        bail!(tether_relay::config::ConfigError::AlreadyInitialized(
            data.display().to_string()
        ));
    }
    let joined = match &a.join {
        Some(from) => {
            let from = DataDir::new(from);
            let theirs = from.load_settings()?;
            let Some(id) = &a.id else {
                bail!(
                    "--join needs --id: give this relay an id of its own (the joined one is {:?})",
                    theirs.id()
                );
            };
            if id == theirs.id() {
                bail!(
                    "--id {id:?} is the joined relay's id; each relay needs its own (e.g. relay-2)"
                );
            }
            if let Some(name) = &a.name
                && name != &theirs.name
            {
                bail!(
                    "--name {name:?} differs from the joined relay's {:?}: relays of one organisation share the name clients check (leave --name out)",
                    theirs.name
                );
            }
            Some((from, theirs))
        }
        None => None,
    };
    ensure_dir(data)?;
    let name = match &joined {
        Some((_, theirs)) => theirs.name.clone(),
        None => a.name.unwrap_or_else(|| "localhost".into()),
    };
    let settings = RelaySettings {
        public_addr: a.public_addr.unwrap_or_else(|| format!("{name}:4433")),
        id: a.id.clone(),
        name,
    };
    let ca = match &joined {
        Some((from, _)) => Ca::join(&dd, from)
            .with_context(|| format!("reading the CA of {}", from.root.display()))?,
        None => Ca::create(&dd, &settings.name)?,
    };
    ca.issue_server(&dd, &settings.name)?;
    dd.save_settings(&settings)?;
    Store::open(&ctx.store_url(&dd)?).await?.close().await;
    println!(
        "initialized relay {} ({}) in {}",
        settings.name,
        settings.id(),
        data.display()
    );
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
