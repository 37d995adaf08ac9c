//! Where the agent keeps its state on Windows.

use std::path::PathBuf;

/// `%ProgramData%\Tether` (made, and its ACL set to SYSTEM and Administrators only, by
/// `tether-agent install-service`).
pub fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("ProgramData")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
    base.join("Tether")
}
