//! Host facts on Windows: the computer name, and the product name from the registry.

use std::path::Path;

/// The computer name (NetBIOS), as Windows tools show it.
pub fn hostname() -> String {
    std::env::var("COMPUTERNAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `hostname`; `root` has no meaning on Windows (there is no alternative root to read from).
pub fn hostname_at(_root: &Path) -> String {
    hostname()
}

/// "Windows 10 Pro", from `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProductName`.
pub fn os_pretty_name(_root: &Path) -> String {
    use winreg::RegKey;
    use winreg::enums::HKEY_LOCAL_MACHINE;
    RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion")
        .and_then(|k| k.get_value::<String, _>("ProductName"))
        .ok()
        .map(|s| s.chars().take(128).collect::<String>())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "Windows".to_string())
}
