//! Small, bounded registry reads.

use winreg::RegKey;
use winreg::enums::{KEY_READ, KEY_WOW64_64KEY};

use super::mapping::non_empty;

/// `path` under `root`, read-only, in the 64-bit view (the native one, whatever this build's
/// bitness).
pub(crate) fn open(root: &RegKey, path: &str) -> std::io::Result<RegKey> {
    root.open_subkey_with_flags(path, KEY_READ | KEY_WOW64_64KEY)
}

/// A string value (REG_SZ / REG_EXPAND_SZ), bounded; a DWORD is rendered in decimal.
pub(crate) fn string(key: &RegKey, name: &str) -> Option<String> {
    match key.get_value::<String, _>(name) {
        Ok(s) => non_empty(&s),
        Err(_) => key.get_value::<u32, _>(name).ok().map(|n| n.to_string()),
    }
}

/// A DWORD value; a string holding a number is accepted too.
pub(crate) fn dword(key: &RegKey, name: &str) -> Option<u32> {
    key.get_value::<u32, _>(name)
        .ok()
        .or_else(|| string(key, name).and_then(|s| s.trim().parse().ok()))
}
