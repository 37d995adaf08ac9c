//! Who is online right now: one entry per device with a live agent connection.
//!
//! The relay asks through [`Presence`]. [`LocalPresence`] is the single-relay implementation:
//! every agent is connected here. With several relays a shared implementation keeps, beside
//! its own connections, a view of which devices are connected to the others (from the shared
//! store's leases and notifications), so `is_online` stays an answer from memory.
//!
//! Only the newest connection of a device counts. When an agent reconnects before its old
//! connection has timed out, the old one is closed as replaced, and its clean-up (which carries
//! the old connection id) does not mark the device offline.

use std::collections::HashMap;
use std::sync::Mutex;
use tether_protocol::message::close_code;

/// Where agents are connected, as the broker and the technician API need it.
pub trait Presence: Send + Sync {
    /// Records this relay's connection to a device's agent, closing an older one of the same
    /// device as replaced.
    fn register(&self, device: &str, conn_id: u64, conn: quinn::Connection);
    fn unregister(&self, device: &str, conn_id: u64) -> bool;
    /// This relay's live connection to a device's agent.
    fn connection(&self, device: &str) -> Option<quinn::Connection>;
    /// Whether the device's agent is connected (to any relay).
    fn is_online(&self, device: &str) -> bool;
    /// The ids of the devices connected to this relay.
    fn devices(&self) -> Vec<String>;
    /// How many devices are connected to this relay.
    fn count(&self) -> usize;
    /// The other relay holding the device's agent, when it is not connected here.
    fn elsewhere(&self, _device: &str) -> Option<Holder> {
        None
    }
}

/// Another relay of the cluster and where it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub relay_id: String,
    pub addr: String,
}

/// One relay: every online agent is connected here.
#[derive(Default)]
pub struct LocalPresence {
    online: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    conn_id: u64,
    conn: quinn::Connection,
}

impl Presence for LocalPresence {
    fn register(&self, device: &str, conn_id: u64, conn: quinn::Connection) {
        let old = self
            .online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device.to_string(), Entry { conn_id, conn });
        if let Some(old) = old {
            old.conn.close(
                close_code::REPLACED.into(),
                b"replaced by a newer connection from the same device",
            );
        }
    }

    fn unregister(&self, device: &str, conn_id: u64) -> bool {
        let mut map = self.online.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(device).is_some_and(|e| e.conn_id == conn_id) {
            map.remove(device);
            true
        } else {
            false
        }
    }

    fn connection(&self, device: &str) -> Option<quinn::Connection> {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .map(|e| e.conn.clone())
    }

    fn is_online(&self, device: &str) -> bool {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(device)
    }

    fn devices(&self) -> Vec<String> {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn count(&self) -> usize {
        self.online.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
