//! Who is online right now: one entry per device with a live agent connection.
//!
//! Only the newest connection of a device counts. When an agent reconnects before its old
//! connection has timed out, the old one is closed as replaced, and its clean-up (which carries
//! the old connection id) does not mark the device offline.

use std::collections::HashMap;
use std::sync::Mutex;
use tether_protocol::message::close_code;

#[derive(Default)]
pub struct Presence {
    online: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    conn_id: u64,
    conn: quinn::Connection,
}

impl Presence {
    pub fn register(&self, device: &str, conn_id: u64, conn: quinn::Connection) {
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

    /// Removes the device if `conn_id` is still its current connection. Returns true if it did.
    pub fn unregister(&self, device: &str, conn_id: u64) -> bool {
        let mut map = self.online.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(device).is_some_and(|e| e.conn_id == conn_id) {
            map.remove(device);
            true
        } else {
            false
        }
    }

    /// The live connection of a device's agent.
    pub fn connection(&self, device: &str) -> Option<quinn::Connection> {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .map(|e| e.conn.clone())
    }

    pub fn is_online(&self, device: &str) -> bool {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(device)
    }

    /// The ids of all online devices.
    pub fn devices(&self) -> Vec<String> {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.online.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
