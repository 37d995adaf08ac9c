//! Bounded, panic-free file helpers. Everything read from the system goes
//! through here: files may be missing, huge, FIFOs, garbage or non-UTF-8.

pub use crate::platform::firmware::is_placeholder;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest sysfs/procfs attribute we read.
pub const ATTR_MAX: u64 = 4096;
/// Most directory entries considered in one listing.
pub const DIR_MAX: usize = 4096;

/// Read at most `max` bytes of a regular file. Refuses non-regular files so
/// a FIFO or device in a fixture tree cannot block. Returns the bytes and
/// whether the file was longer than `max`.
pub fn read_limited(path: &Path, max: u64) -> io::Result<(Vec<u8>, bool)> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let f = File::open(path)?;
    let cap = usize::try_from(meta.len().min(max))
        .unwrap_or(0)
        .min(64 * 1024 * 1024);
    let mut buf = Vec::with_capacity(cap.saturating_add(1));
    f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    let truncated = buf.len() as u64 > max;
    if truncated {
        buf.truncate(usize::try_from(max).unwrap_or(0));
    }
    Ok((buf, truncated))
}

/// Read a small attribute as text: lossy UTF-8, NULs and surrounding
/// whitespace trimmed; `None` when missing, unreadable or empty.
pub fn read_attr(path: &Path) -> Option<String> {
    let (bytes, _) = read_limited(path, ATTR_MAX).ok()?;
    let s = String::from_utf8_lossy(&bytes);
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

pub fn read_u64(path: &Path) -> Option<u64> {
    read_attr(path)?.parse().ok()
}

pub fn read_i64(path: &Path) -> Option<i64> {
    read_attr(path)?.parse().ok()
}

/// Parse "0x10de" / "10de" as u16.
pub fn read_hex_u16(path: &Path) -> Option<u16> {
    let s = read_attr(path)?;
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(&s);
    u16::from_str_radix(h, 16).ok()
}

/// Sorted directory listing (lossy names), capped at [`DIR_MAX`] entries.
/// Missing/unreadable directories give an empty list.
pub fn list_dir(path: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(path) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .take(DIR_MAX)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// File name of a symlink's target (e.g. the driver of a device).
pub fn link_name(path: &Path) -> Option<String> {
    let t = fs::read_link(path).ok()?;
    t.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_regular() {
        assert!(read_attr(Path::new("/nonexistent/xyz")).is_none());
        assert!(read_limited(Path::new("/"), 10).is_err());
    }
}
