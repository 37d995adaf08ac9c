//! What every connection task shares: the relay's [`State`] (store, CA, presence, budgets,
//! live sessions, the alert engine). Its own module so that the request handlers (`broker`,
//! `tech`, `enroll`, `alerts`) and the server that runs them all depend on it, and not on each
//! other.

use crate::ca::Ca;
use crate::presence::Presence;
use crate::store::Store;
use quinn::Connection;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tether_protocol::conn::Timeouts;

/// Byte filter applied to spliced session traffic. Only fault-injection tests set one (to prove
/// that a relay altering bytes breaks the session instead of corrupting it).
pub type SpliceFilter = Arc<dyn Fn(&mut [u8]) + Send + Sync>;

/// See [`ServeOptions::after_cert_check`].
pub type CertCheckHook =
    Arc<dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Shared by every connection task.
pub struct State {
    pub(crate) store: Store,
    pub(crate) ca: Ca,
    /// Signs session grants (the CA key signs only certificates).
    pub(crate) signer: crate::ca::GrantSigner,
    pub(crate) presence: Arc<dyn Presence>,
    /// This relay's id and address among those sharing the store.
    pub(crate) me: crate::cluster::Me,
    pub(crate) timeouts: Timeouts,
    pub(crate) next_conn_id: AtomicU64,
    /// Bounds how many bulk uploads are read at once (each may be up to `limits::BULK`).
    pub(crate) uploads: tokio::sync::Semaphore,
    /// One upload read at a time per device, a few more waiting (see [`DeviceUploads`]).
    pub(crate) device_uploads: DeviceUploads,
    /// Bounds how many uploads are decoded at once on the blocking pool (CPU, not memory).
    pub(crate) decoders: tokio::sync::Semaphore,
    /// Shell transcript streams open at once: their own budget, apart from uploads.
    pub(crate) transcript_streams: tokio::sync::Semaphore,
    /// Sessions running now, for what agents may report about them.
    pub(crate) live_sessions: crate::live::LiveSessions,
    pub(crate) splice_filter: Option<SpliceFilter>,
    /// Live authenticated connections by certificate serial, so a revocation closes them.
    pub(crate) live: std::sync::Mutex<std::collections::HashMap<u64, (String, Connection)>>,
    /// Where shell transcripts go (`DATA/transcripts`).
    pub(crate) transcripts: std::path::PathBuf,
    /// Name and public address, for tokens admins create remotely.
    pub(crate) settings: crate::config::RelaySettings,
    /// Health reports and the alert engine.
    pub(crate) alerts: crate::alerts::Alerts,
    pub(crate) after_cert_check: Option<CertCheckHook>,
    /// Counts the revocation watcher's passes over the live connections (for tests).
    pub(crate) sweeps: tokio::sync::watch::Sender<u64>,
}

/// Upload streams of one device admitted at once: one is read, the others wait their turn
/// without holding any of the [`MAX_CONCURRENT_UPLOADS`]; more are refused at once. An honest
/// agent has one (two across a reconnect).
pub(crate) const UPLOADS_PER_DEVICE: usize = 3;

/// Upload streams per device: a count of those admitted and a one-permit semaphore for whose
/// turn it is. An entry exists only while a stream of that device is admitted.
#[derive(Default)]
pub(crate) struct DeviceUploads {
    map: std::sync::Mutex<std::collections::HashMap<String, (usize, Arc<tokio::sync::Semaphore>)>>,
}

/// An admitted upload stream of a device; see [`DeviceUploads::admit`].
pub(crate) struct UploadTicket<'a> {
    owner: &'a DeviceUploads,
    device: String,
    pub(crate) turn: Arc<tokio::sync::Semaphore>,
}

impl DeviceUploads {
    /// Admits one more upload stream of `device`, unless it has [`UPLOADS_PER_DEVICE`] already.
    pub(crate) fn admit(&self, device: &str) -> Option<UploadTicket<'_>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (count, turn) = map
            .entry(device.to_string())
            .or_insert_with(|| (0, Arc::new(tokio::sync::Semaphore::new(1))));
        if *count >= UPLOADS_PER_DEVICE {
            return None;
        }
        *count += 1;
        Some(UploadTicket {
            owner: self,
            device: device.to_string(),
            turn: turn.clone(),
        })
    }
}

impl Drop for UploadTicket<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((count, _)) = map.get_mut(&self.device) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.device);
            }
        }
    }
}
