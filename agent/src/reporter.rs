//! Keeps the current inventory: collects on start, on an interval (default 1 h) and whenever
//! asked (SIGHUP), and publishes it only when its fingerprint changed, so a quiet machine
//! causes no uploads.

use crate::collect::{CollectOptions, collect};
use std::sync::Arc;
use std::time::Duration;
use tether_protocol::history::fingerprint;
use tether_protocol::inventory::Inventory;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

#[derive(Debug)]
pub struct Latest {
    pub hash: u64,
    pub inventory: Inventory,
}

pub type LatestRx = watch::Receiver<Option<Arc<Latest>>>;

/// Starts the collection loop on the current runtime.
pub fn spawn(opts: CollectOptions, interval: Duration, refresh: Arc<Notify>) -> LatestRx {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut last: Option<u64> = None;
        loop {
            let o = opts.clone();
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || collect(&o)).await {
                Ok(inventory) => {
                    let hash = fingerprint(&inventory);
                    debug!(
                        ms = started.elapsed().as_millis() as u64,
                        packages = inventory.software.len(),
                        errors = inventory.errors.len(),
                        "inventory collected"
                    );
                    for e in &inventory.errors {
                        warn!("inventory: {}: {}", e.collector, e.message);
                    }
                    if last != Some(hash) {
                        if last.is_some() {
                            info!("inventory changed");
                        }
                        last = Some(hash);
                        if tx.send(Some(Arc::new(Latest { hash, inventory }))).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => warn!("inventory collection failed: {e}"),
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = refresh.notified() => info!("inventory refresh requested"),
            }
        }
    });
    rx
}
