//! The Tether agent: keeps one connection to the relay open for as long as the workstation runs,
//! reconnecting with backoff when the relay or the network goes away. `main.rs` is CLI glue.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod account;
pub mod collect;
pub mod consent;
pub mod files;
pub mod health;
pub mod host;
pub mod input;
pub mod ipc;
pub mod platform;
pub mod reporter;
pub mod screen;
pub mod service;
pub mod session;
pub mod shell;
pub mod stream;

use std::path::PathBuf;

/// `name version` sent in hellos and status reports.
pub const SOFTWARE: &str = concat!("tether-agent ", env!("CARGO_PKG_VERSION"));

/// Default state directory: `/var/lib/tether-agent` for root (the service), else the user's
/// XDG state directory (for trying the agent without root).
pub fn default_state_dir() -> PathBuf {
    let is_root = std::env::var_os("USER").is_some_and(|u| u == "root")
        || std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/tether-agent");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("tether-agent");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/tether-agent"),
        None => PathBuf::from("/var/lib/tether-agent"),
    }
}
