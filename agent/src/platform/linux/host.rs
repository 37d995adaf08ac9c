//! Facts about this machine needed before the full inventory exists: its name and OS (on
//! Linux, from `/proc/sys/kernel/hostname` and os-release, under the inventory root).

use std::path::Path;

/// This machine's hostname.
pub fn hostname() -> String {
    hostname_at(Path::new("/"))
}

/// The hostname as seen under `root` (the inventory root, `/` in production).
pub fn hostname_at(root: &Path) -> String {
    std::fs::read_to_string(root.join("proc/sys/kernel/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `PRETTY_NAME` from os-release under `root`, e.g. "Debian GNU/Linux 12 (bookworm)".
pub fn os_pretty_name(root: &Path) -> String {
    for path in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(text) = std::fs::read_to_string(root.join(path))
            && let Some(v) = parse_os_release(&text, "PRETTY_NAME")
        {
            return v;
        }
    }
    std::env::consts::OS.to_string()
}

/// Reads one key of an os-release file (shell-style `KEY="value"` lines).
pub fn parse_os_release(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn os_release() {
        let t = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            super::parse_os_release(t, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(super::parse_os_release(t, "ID").as_deref(), Some("debian"));
        assert_eq!(super::parse_os_release(t, "VERSION"), None);
    }
}
