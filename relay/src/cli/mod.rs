//! The `tether-relay` commands, one module per command, each with its arguments (a clap `Args`
//! struct) and what it does; `main.rs` only parses the arguments and calls one of them.
//!
//! Most commands have the same shape: find the initialized data directory, open the store,
//! do the work, close the store, print. [`Ctx::with_store`] is that shape up to the printing.

pub mod alerts_policy;
pub mod certificates;
pub mod check;
pub mod grant;
pub mod init;
pub mod migrate_store;
pub mod policy;
pub mod relays;
pub mod revoke;
pub mod serve;
pub mod token;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use tether_protocol::identity::Role;
use tether_relay::config::DataDir;
use tether_relay::store::{Store, StoreUrl};

/// What every command is given: `--data` and `--store`.
pub struct Ctx {
    pub data: PathBuf,
    pub store: Option<String>,
}

impl Ctx {
    /// The data directory, which `tether-relay init` must have made.
    pub fn initialized(&self) -> Result<DataDir> {
        let dd = DataDir::new(&self.data);
        if !dd.is_initialized() {
            bail!(
                "{} is not a relay data directory (run tether-relay init, or pass --data)",
                self.data.display()
            );
        }
        Ok(dd)
    }

    /// The store `--store` names, else the SQLite file in the data directory.
    pub fn store_url(&self, dd: &DataDir) -> Result<StoreUrl> {
        match &self.store {
            Some(url) => url.parse().context("--store"),
            None => Ok(StoreUrl::in_data_dir(dd)),
        }
    }

    /// Opens the store of the initialized data directory, runs `f` on it, and closes it
    /// whatever `f` returned.
    pub async fn with_store<T>(
        &self,
        f: impl AsyncFnOnce(&Store, &DataDir) -> Result<T>,
    ) -> Result<T> {
        let dd = self.initialized()?;
        let store = Store::open(&self.store_url(&dd)?).await?;
        let r = f(&store, &dd).await;
        store.close().await;
        r
    }
}

/// `--role viewer|support|admin`.
pub fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: tether_protocol::identity::IdentityError| e.to_string())
}
