//! Replacing a device's inventory: what changed (the history), the first inventory's entry, and
//! the package index's additions and removals — decided here once, applied by any backend
//! through [`InventoryTx`].

use super::backend::{InventoryTx, PackageKey};
use super::{Store, StoreError, source_name};
use std::collections::BTreeSet;
use tether_protocol::history::{self, Change, ChangeKind};
use tether_protocol::inventory::Inventory;

/// Rows per multi-row statement a backend may use (4 values each, far below SQLite's and
/// PostgreSQL's parameter limits); the domain hands packages over in chunks of this size.
pub(super) const CHUNK: usize = 200;

fn package_keys(inv: &Inventory) -> BTreeSet<PackageKey> {
    inv.software
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.version.clone(),
                p.arch.clone(),
                source_name(p.source).to_string(),
            )
        })
        .collect()
}

/// What to record when `new` replaces `old` (`None`: the device's first inventory, or one
/// whose stored predecessor could not be read).
pub fn changes(old: Option<&Inventory>, new: &Inventory) -> Vec<Change> {
    match old {
        Some(o) => history::diff(o, new),
        None => vec![Change {
            kind: ChangeKind::FirstInventory,
            subject: "inventory".into(),
            old: None,
            new: Some(format!("{} packages", new.software.len())),
        }],
    }
}

impl Store {
    /// Stores an inventory (already cleaned) with the history of changes; returns how many
    /// changes were recorded. Atomic: on error nothing of it is stored.
    pub async fn ingest_inventory(
        &self,
        device_id: &str,
        hash: u64,
        inv: &Inventory,
        now: i64,
    ) -> Result<u32, StoreError> {
        let mut tx = self.backend.begin_inventory(device_id).await?;
        let old = tx.current().await?;
        let changes = changes(old.as_ref(), inv);
        tx.put(hash, inv, now).await?;
        let new_set = package_keys(inv);
        let old_set = match &old {
            Some(o) => package_keys(o),
            None => {
                // No trustworthy old list: start from a clean slate for this device.
                tx.clear_packages().await?;
                BTreeSet::new()
            }
        };
        apply_in_chunks(&mut tx, old_set.difference(&new_set).collect(), false).await?;
        apply_in_chunks(&mut tx, new_set.difference(&old_set).collect(), true).await?;
        tx.append_changes(&changes, now).await?;
        tx.commit().await?;
        Ok(changes.len() as u32)
    }
}

async fn apply_in_chunks(
    tx: &mut Box<dyn InventoryTx>,
    keys: Vec<&PackageKey>,
    add: bool,
) -> Result<(), StoreError> {
    for chunk in keys.chunks(CHUNK) {
        if add {
            tx.add_packages(chunk).await?;
        } else {
            tx.remove_packages(chunk).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_inventory_is_one_change_counting_its_packages() {
        let inv = Inventory {
            software: vec![Default::default(), Default::default()],
            ..Default::default()
        };
        let c = changes(None, &inv);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, ChangeKind::FirstInventory);
        assert_eq!(c[0].new.as_deref(), Some("2 packages"));
        assert!(changes(Some(&inv), &inv).is_empty());
    }
}
