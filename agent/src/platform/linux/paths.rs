//! Paths on Linux: the agent's state directory.

use std::path::PathBuf;

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
