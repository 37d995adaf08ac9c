//! Block devices from /sys/block.

use super::util::{is_placeholder, list_dir, read_attr, read_limited, read_u64};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::BlockDevice;

/// Virtual devices that are not disks.
fn skipped(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "nbd", "fd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Unit serial number from a SCSI VPD page 0x80 (4-byte header).
fn vpd80_serial(b: &[u8]) -> Option<String> {
    if b.len() < 4 || b[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let body = b.get(4..4 + len).unwrap_or(&b[4..]);
    let s = String::from_utf8_lossy(body)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

pub(crate) fn collect(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<BlockDevice>, CollectError> {
    let mut out = Vec::new();
    for (name, dir) in list_dir(&ctx.path("sys/block")) {
        if skipped(&name) {
            continue;
        }
        let sectors = read_u64(&dir.join("size")).unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let dev = dir.join("device");
        let model = read_attr(&dev.join("model"))
            .or_else(|| read_attr(&dev.join("name"))) // MMC
            .filter(|s| !is_placeholder(s));
        let serial = read_attr(&dev.join("serial"))
            .or_else(|| read_attr(&dir.join("serial"))) // virtio-blk
            .or_else(|| {
                read_limited(&dev.join("vpd_pg80"), 1024)
                    .ok()
                    .and_then(|(b, _)| vpd80_serial(&b))
            })
            .or_else(|| read_attr(&dev.join("wwid")))
            .or_else(|| read_attr(&dir.join("wwid")))
            .filter(|s| !is_placeholder(s));
        out.push(BlockDevice {
            name,
            model,
            serial,
            size_bytes: sectors.saturating_mul(512),
            rotational: read_u64(&dir.join("queue/rotational")) == Some(1),
            removable: read_u64(&dir.join("removable")) == Some(1),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpd() {
        assert_eq!(
            vpd80_serial(b"\x00\x80\x00\x05 AB1 \x00").as_deref(),
            Some("AB1")
        );
        assert_eq!(vpd80_serial(b"\x00\x80\x00\xffXY").as_deref(), Some("XY"));
        assert_eq!(vpd80_serial(b"\x00\x83\x00\x01A"), None);
        assert_eq!(vpd80_serial(b""), None);
    }
}
