//! Mounted filesystems on Linux: the mount table (`/proc/self/mounts`) and a filesystem's
//! usage (`statvfs`).

use std::io::Read;

/// Where the mount table is read from (for messages).
pub const MOUNT_TABLE: &str = "/proc/self/mounts";

/// This process's mount table, in mounts(5) format (at most 4 MiB of it).
pub fn mount_table() -> std::io::Result<String> {
    let mut b = Vec::new();
    std::fs::File::open(MOUNT_TABLE)?
        .take(4 << 20)
        .read_to_end(&mut b)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// How full a filesystem is, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub free: u64,
    /// Free for unprivileged users.
    pub available: u64,
}

/// The usage of the filesystem mounted at `mount_point` (may block on a hung mount: call it
/// where a deadline can give up on it).
pub fn usage(mount_point: &str) -> std::io::Result<Usage> {
    let st = rustix::fs::statvfs(mount_point)?;
    let unit = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Ok(Usage {
        size: st.f_blocks.saturating_mul(unit),
        free: st.f_bfree.saturating_mul(unit),
        available: st.f_bavail.saturating_mul(unit),
    })
}
