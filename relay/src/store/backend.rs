//! What a storage backend provides: small, transactional primitives grouped by concern.
//!
//! A backend (SQLite today, PostgreSQL for several relays) implements the four traits and
//! [`Backend`]; everything with a rule in it — what changed between two inventories, the first
//! inventory's history entry, which packages to add and remove from the index — lives above, in
//! the [`super::Store`] domain steps, and is written once. Time is always passed in.

use super::copy::{Row, SchemaColumn, Table};
use super::{
    AlertFilter, AlertPolicy, AlreadyEnrolled, CertRow, CertStatus, DeviceRow, Grants, GroupPolicy,
    NewToken, PolicyFlag, RedeemError, RevokeOutcome, RevokeTarget, SessionFilter, SessionRow,
    SoftwareHit, StoreError, TokenKind,
};
use async_trait::async_trait;
use tether_protocol::decision::Decision;
use tether_protocol::health::{AlertKey, AlertRow, HealthReport, Reading};
use tether_protocol::history::Change;
use tether_protocol::identity::Role;
use tether_protocol::inventory::{Inventory, Summary};
use tether_protocol::message::ReportRow;

/// A whole backend: every concern, plus its own upkeep.
#[async_trait]
pub trait Backend:
    IdentityStore
    + InventoryStore
    + SessionStore
    + HealthStore
    + CopyStore
    + std::fmt::Debug
    + Send
    + Sync
{
    /// Closes connections, waiting for writes in flight.
    async fn close(&self);
    /// The store's consistency problems (empty: intact).
    async fn integrity_problems(&self) -> Result<Vec<String>, StoreError>;
    /// What relays sharing this store know of each other; `None`: only one relay can use it.
    fn cluster(&self) -> Option<&dyn super::cluster::ClusterStore> {
        None
    }
}

/// Enrollment tokens, devices, certificates and technicians' grants.
#[async_trait]
pub trait IdentityStore {
    async fn insert_token(&self, t: &NewToken) -> Result<(), StoreError>;
    /// Marks the token used, atomically: of two concurrent redemptions exactly one succeeds.
    async fn redeem_token(
        &self,
        secret_hash: &[u8; 32],
        now: i64,
        used_by: &str,
    ) -> Result<Result<TokenKind, RedeemError>, StoreError>;
    /// Records what an online agent reported about itself.
    async fn update_device_status(
        &self,
        id: &str,
        hostname: &str,
        os: &str,
        agent_version: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError>;
    /// `touch_device` for many devices in one transaction.
    async fn touch_devices(&self, ids: &[String], now: i64) -> Result<(), StoreError>;
    /// How many devices are enrolled (the fleet size that sets the keep-alive interval).
    async fn device_count(&self) -> Result<u64, StoreError>;
    async fn list_devices(&self) -> Result<Vec<DeviceRow>, StoreError>;
    /// Changes whenever a certificate is revoked: (count, latest time).
    async fn revocation_mark(&self) -> Result<(i64, i64), StoreError>;
    /// Records a newly enrolled device and its certificate (device ids are new at every
    /// enrollment, so a device is never re-enrolled under the same id).
    async fn enroll_device(&self, d: &DeviceRow, cert_serial: &str) -> Result<(), StoreError>;
    /// Records a technician's new certificate. With `replace`, every other valid certificate
    /// of the name is revoked in the same transaction (returned); without it, a name that
    /// holds a valid certificate is refused.
    async fn enroll_technician(
        &self,
        name: &str,
        role: Role,
        cert_serial: &str,
        replace: bool,
        now: i64,
    ) -> Result<Result<Vec<String>, AlreadyEnrolled>, StoreError>;
    /// The role of a technician who is enrolled, or invited by a token not yet used and not
    /// expired at `now`; `None` for a name the relay does not know.
    async fn technician_role(&self, name: &str, now: i64) -> Result<Option<String>, StoreError>;
    /// Whether a technician of this name holds a certificate that is not revoked.
    async fn technician_enrolled(&self, name: &str) -> Result<bool, StoreError>;
    /// Revokes a device's or technician's certificates, all of them, or one by serial.
    async fn revoke(
        &self,
        target: RevokeTarget<'_>,
        reason: &str,
        now: i64,
    ) -> Result<RevokeOutcome, StoreError>;
    /// Whether a certificate presented at connect may be used.
    async fn certificate_status(&self, serial: &str) -> Result<CertStatus, StoreError>;
    /// Issued certificates, newest first (of one device or technician, or all).
    async fn certificates(
        &self,
        device: Option<&str>,
        technician: Option<&str>,
    ) -> Result<Vec<CertRow>, StoreError>;
    /// Grants (or, with `on` false, withdraws) a device group, or with `group`
    /// [`super::ALL_GROUPS`] every group, to a technician.
    async fn grant_group(
        &self,
        technician: &str,
        group: &str,
        on: bool,
        now: i64,
    ) -> Result<(), StoreError>;
    /// A technician's grants (none: no device).
    async fn technician_grants(&self, technician: &str) -> Result<Grants, StoreError>;
}

/// The latest inventory of each device, its history of changes, and the package index.
#[async_trait]
pub trait InventoryStore {
    /// Fingerprint of the stored inventory of a device, if any.
    async fn inventory_hash(&self, device_id: &str) -> Result<Option<u64>, StoreError>;
    /// Starts replacing a device's inventory: one transaction that holds the device's row
    /// until [`InventoryTx::commit`]; dropped uncommitted, nothing of it is stored.
    async fn begin_inventory(&self, device_id: &str) -> Result<Box<dyn InventoryTx>, StoreError>;
    /// The latest inventory of a device and when it was received.
    async fn inventory(&self, device_id: &str) -> Result<Option<(i64, Inventory)>, StoreError>;
    /// `(device id, summary, received at)` for every device with an inventory.
    async fn inventory_summaries(&self) -> Result<Vec<(String, Summary, i64)>, StoreError>;
    /// Devices that have a package of this name.
    async fn software(&self, name: &str) -> Result<Vec<SoftwareHit>, StoreError>;
    /// A device's recorded changes since `since`, oldest first.
    async fn history(&self, device_id: &str, since: i64) -> Result<Vec<(i64, Change)>, StoreError>;
}

/// One package in the index: name, version, architecture, source (as stored).
pub type PackageKey = (String, String, String, String);

/// The primitives of one inventory replacement (see [`super::Store::ingest_inventory`]).
#[async_trait]
pub trait InventoryTx: Send {
    /// The stored inventory with its packages; `None` if there is none or it is unreadable
    /// (then the new one replaces it whole).
    async fn current(&mut self) -> Result<Option<Inventory>, StoreError>;
    /// Writes the inventory's body (its `software` is ignored: packages live in the index).
    async fn put(&mut self, hash: u64, inv: &Inventory, now: i64) -> Result<(), StoreError>;
    /// Empties the device's package list (after [`put`](Self::put)).
    async fn clear_packages(&mut self) -> Result<(), StoreError>;
    async fn remove_packages(&mut self, packages: &[&PackageKey]) -> Result<(), StoreError>;
    async fn add_packages(&mut self, packages: &[&PackageKey]) -> Result<(), StoreError>;
    async fn append_changes(&mut self, changes: &[Change], now: i64) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// The audit trail of sessions and the device groups' session policy.
#[async_trait]
pub trait SessionStore {
    async fn session_requested(&self, r: &SessionRow) -> Result<(), StoreError>;
    /// Records the decision on a session request (and when it started, if it did).
    async fn session_decided(
        &self,
        id: &str,
        decision: Decision,
        detail: &str,
        granted: &str,
        started_at: Option<i64>,
    ) -> Result<(), StoreError>;
    /// Files a session under the engagement the agent says it joined, only if that engagement
    /// began with a session of the same technician on the same device. False otherwise.
    async fn session_engaged(&self, id: &str, engagement: &str) -> Result<bool, StoreError>;
    async fn session_ended(
        &self,
        id: &str,
        ended_at: i64,
        ended_by: &str,
        bytes_up: u64,
        bytes_down: u64,
    ) -> Result<(), StoreError>;
    async fn session_ended_by_user(&self, id: &str, device_id: &str) -> Result<bool, StoreError>;
    /// Appends to the audit record of a session that started on this device. False if none.
    async fn session_action(
        &self,
        id: &str,
        device_id: &str,
        action: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    async fn rate_session(
        &self,
        id: &str,
        device_id: &str,
        rating: u8,
        comment: &str,
    ) -> Result<bool, StoreError>;
    /// Turns one setting of a group's session policy on or off.
    async fn set_policy_flag(
        &self,
        group: &str,
        flag: PolicyFlag,
        on: bool,
        now: i64,
    ) -> Result<(), StoreError>;
    /// One setting of a group's session policy (off unless an admin turned it on).
    async fn policy_flag(&self, group: &str, flag: PolicyFlag) -> Result<bool, StoreError>;
    async fn policies(&self) -> Result<Vec<GroupPolicy>, StoreError>;
    async fn report(
        &self,
        since: i64,
        technician: Option<&str>,
    ) -> Result<Vec<ReportRow>, StoreError>;
    async fn add_notes(&self, id: &str, technician: &str, text: &str) -> Result<bool, StoreError>;
    async fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>, StoreError>;
}

/// Health reports, alerts and the groups' alert policy.
#[async_trait]
pub trait HealthStore {
    /// Replaces the latest (sanitized) health report of each device `(id, report, received)`,
    /// all in one transaction.
    async fn put_health_many(
        &self,
        reports: &[(String, HealthReport, i64)],
    ) -> Result<(), StoreError>;
    /// The latest health report of a device and when it was received.
    async fn health(&self, device_id: &str) -> Result<Option<(i64, HealthReport)>, StoreError>;
    /// `(device id, received at)` of every device's latest health report.
    async fn health_received(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Opens an alert; `None` if one with this key is already open.
    async fn open_alert(
        &self,
        device_id: &str,
        key: &AlertKey,
        reading: &Reading,
        at: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// Closes the open alert with this key; `None` if there is none.
    async fn close_alert(
        &self,
        device_id: &str,
        key: &AlertKey,
        detail: &str,
        at: i64,
    ) -> Result<Option<i64>, StoreError>;
    async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError>;
    /// Open alerts (and, with `closed_since`, those closed since then), newest first.
    async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, StoreError>;
    /// Every open alert's device and key (to rebuild the alert state after a restart).
    async fn open_alert_keys(&self) -> Result<Vec<(String, AlertKey)>, StoreError>;
    /// Every group with a policy or a device, with its effective policy.
    async fn alert_policies(&self) -> Result<Vec<AlertPolicy>, StoreError>;
    async fn set_alert_policy(&self, p: &AlertPolicy, now: i64) -> Result<(), StoreError>;
}

/// Whole tables, for copying one store into another ([`super::copy`]).
#[async_trait]
pub trait CopyStore {
    /// Every table of the database with its columns, as the database describes them.
    async fn schema(&self) -> Result<Vec<SchemaColumn>, StoreError>;
    /// A read-only transaction on one snapshot of the store (writers go on meanwhile).
    async fn begin_export(&self) -> Result<Box<dyn ExportTx>, StoreError>;
    /// A write transaction; dropped uncommitted, nothing of it is stored.
    async fn begin_import(&self) -> Result<Box<dyn ImportTx>, StoreError>;
}

/// Reading a snapshot (see [`CopyStore::begin_export`]).
#[async_trait]
pub trait ExportTx: Send {
    async fn count(&mut self, table: &Table) -> Result<u64, StoreError>;
    /// Up to `limit` rows in key order, those whose key comes after `after` (the key's values,
    /// in the order of [`Table::key`]) or from the first.
    async fn rows(
        &mut self,
        table: &Table,
        after: Option<&[super::copy::Value]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;
    /// Ends the snapshot.
    async fn end(self: Box<Self>) -> Result<(), StoreError>;
}

/// Filling tables (see [`CopyStore::begin_import`]).
#[async_trait]
pub trait ImportTx: Send {
    async fn count(&mut self, table: &Table) -> Result<u64, StoreError>;
    /// Inserts rows as they are (ids included).
    async fn insert(&mut self, table: &Table, rows: &[Row]) -> Result<(), StoreError>;
    /// After the last rows of a table: ids the database generates continue after the copied ones.
    async fn finish(&mut self, table: &Table) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
