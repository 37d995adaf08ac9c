//! Mounted filesystems from /proc/self/mounts; sizes via statvfs (sysinfo)
//! on the live system only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::util::read_limited;
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::Filesystem;

/// Filesystem types that hold no storage (kernel interfaces, memory-backed plumbing).
pub(crate) const PSEUDO: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "fuse.lxcfs",
];

const SKIP_UNDER: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/snap",
    "/var/lib/docker",
    "/var/lib/containers",
    "/var/lib/kubelet",
    "/var/snap",
];

/// Decode the octal escapes (`\040` etc.) the kernel uses in mount fields.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn under(mp: &str, dir: &str) -> bool {
    mp == dir || mp.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Real filesystems from a mounts(5) table, de-duplicated by mount point
/// (the last mount on a path is the visible one).
pub(crate) fn parse_mounts(text: &str) -> Vec<Filesystem> {
    let mut by_mp: BTreeMap<String, Filesystem> = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(mp), Some(ty)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let mp = unescape(mp);
        if !mp.starts_with('/') || PSEUDO.contains(&ty) {
            continue;
        }
        if SKIP_UNDER.iter().any(|d| under(&mp, d)) && !under(&mp, "/run/media") {
            continue;
        }
        by_mp.insert(
            mp.clone(),
            Filesystem {
                mount_point: mp,
                fs_type: ty.to_string(),
                device: unescape(dev),
                size_bytes: 0,
                free_bytes: 0,
            },
        );
    }
    by_mp.into_values().collect()
}

pub(crate) fn collect(ctx: &Ctx, warn: &mut Warnings) -> Result<Vec<Filesystem>, CollectError> {
    let p = ctx.path("proc/self/mounts");
    let (b, truncated) = read_limited(&p, 4 * 1024 * 1024).map_err(|e| ctx.io_err(&p, e))?;
    if truncated {
        warn.push(format!("{}: truncated at 4 MiB", ctx.display(&p)));
    }
    let mut fss = parse_mounts(&String::from_utf8_lossy(&b));
    if ctx.live {
        // sysinfo does statvfs per mount (skipping network filesystems,
        // which could hang).
        let kind = sysinfo::DiskRefreshKind::nothing().with_storage();
        match sysinfo::Disks::new_with_refreshed_list_specifics(kind) {
            Ok(disks) => {
                let sizes: BTreeMap<PathBuf, (u64, u64)> = disks
                    .iter()
                    .map(|d| {
                        (
                            d.mount_point().to_path_buf(),
                            (d.total_space(), d.available_space()),
                        )
                    })
                    .collect();
                for fs in &mut fss {
                    if let Some(&(t, a)) = sizes.get(&PathBuf::from(&fs.mount_point)) {
                        fs.size_bytes = t;
                        fs.free_bytes = a;
                    }
                }
            }
            Err(e) => warn.push(format!("filesystem sizes unavailable: {e}")),
        }
    }
    Ok(fss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let t = "proc /proc proc rw 0 0\n/dev/vda / ext4 rw 0 0\n\
                 tmpfs /dev/shm tmpfs rw 0 0\n/dev/sdb1 /mnt/my\\040disk vfat rw 0 0\n\
                 /dev/sdc1 /run/media/u/USB exfat rw 0 0\n/dev/sdd1 /run/x ext4 rw 0 0\n\
                 /dev/vdb / xfs rw 0 0\ngarbage\n\\777 \\777 x\n";
        let f = parse_mounts(t);
        let mps: Vec<&str> = f.iter().map(|f| f.mount_point.as_str()).collect();
        assert_eq!(mps, vec!["/", "/mnt/my disk", "/run/media/u/USB"]);
        assert_eq!(f[0].device, "/dev/vdb");
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
        assert_eq!(unescape("\\777"), "\\777");
    }
}
