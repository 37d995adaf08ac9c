//! What several relays on one store share about each other: which relays are alive and where
//! they are reached, and which relay holds each device's agent connection (presence leases).
//!
//! Soft state only: rows carry the times after which they stop being true, so a relay killed
//! without cleaning up is forgotten within [`RELAY_ALIVE_MS`] and its leases with it. Only a
//! store several relays can share (PostgreSQL) implements it.

use super::StoreError;
use async_trait::async_trait;

/// A relay that has not said it is alive for this long is taken for dead, and the devices it
/// held for offline (until their agents connect elsewhere).
pub const RELAY_ALIVE_MS: i64 = 4_000;

/// One relay of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRow {
    pub id: String,
    pub public_addr: String,
    pub started_at: i64,
    pub seen_at: i64,
}

/// A device's agent is connected to `relay_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub device_id: String,
    pub relay_id: String,
}

/// One change to this relay's leases, written in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// The device connected here (connection `epoch`): the lease is ours, whoever held it.
    Take { device: String, epoch: i64 },
    /// That connection ended: the lease goes, unless a newer connection (here or elsewhere)
    /// took it meanwhile.
    Give { device: String, epoch: i64 },
}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Records that relay `id` is alive now and reached at `addr` (`started` when this run of it
    /// began).
    async fn relay_alive(
        &self,
        id: &str,
        addr: &str,
        started: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The relays seen alive since `since`, by id.
    async fn relays(&self, since: i64) -> Result<Vec<RelayRow>, StoreError>;
    /// Applies `changes` (in order) to relay `relay`'s leases in one transaction; taken
    /// leases expire at `expires`.
    async fn change_leases(
        &self,
        relay: &str,
        changes: &[LeaseChange],
        expires: i64,
    ) -> Result<(), StoreError>;
    /// Extends every lease relay `relay` holds to `expires` (one statement however many).
    async fn renew_leases(&self, relay: &str, expires: i64) -> Result<u64, StoreError>;
    /// Drops every lease of relay `relay` (at its start: leases of its previous run).
    async fn clear_leases(&self, relay: &str) -> Result<u64, StoreError>;
    /// The leases not expired at `now` held by relays seen alive since `alive_since`.
    async fn leases(&self, now: i64, alive_since: i64) -> Result<Vec<LeaseRow>, StoreError>;
    /// Tries to take the cluster-wide lock `name` (one holder at a time), on a connection of
    /// its own: held until the [`HeldLock`] is dropped or its connection dies (the holder's
    /// process killed included). `None`: another relay holds it.
    async fn try_lock(&self, name: &str) -> Result<Option<Box<dyn HeldLock>>, StoreError>;
    /// Wake-ups for changes other relays (or `tether-relay` commands) made: a revocation, so
    /// far. The tables stay the truth: a wake-up only says "read them now".
    async fn changes(&self) -> Result<Box<dyn Changes>, StoreError>;
}

/// A stream of change wake-ups ([`ClusterStore::changes`]).
#[async_trait]
pub trait Changes: Send {
    /// The next change's kind; `None` when the connection was lost and made again (changes may
    /// have been missed: read everything).
    async fn next(&mut self) -> Result<Option<String>, StoreError>;
}

/// A cluster-wide lock this relay holds.
#[async_trait]
pub trait HeldLock: Send + Sync {
    /// Whether it is still held (its connection answers).
    async fn still_held(&mut self) -> bool;
}
