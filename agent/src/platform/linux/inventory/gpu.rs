//! Display controllers (PCI class 0x03xxxx) from /sys/bus/pci/devices.

use super::util::{link_name, list_dir, read_attr, read_hex_u16};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::Gpu;

pub(crate) fn vendor_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0x10de => "NVIDIA",
        0x1002 | 0x1022 => "AMD",
        0x8086 => "Intel",
        0x1af4 | 0x1b36 => "Red Hat (virtio/QXL)",
        0x1234 => "QEMU (Bochs VGA)",
        0x15ad => "VMware",
        0x80ee => "VirtualBox",
        0x1414 => "Microsoft (Hyper-V)",
        0x1a03 => "ASPEED",
        0x102b => "Matrox",
        0x5143 => "Qualcomm",
        0x1ed5 => "Moore Threads",
        _ => return None,
    })
}

pub(crate) fn collect(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Gpu>, CollectError> {
    let mut out = Vec::new();
    for (slot, dir) in list_dir(&ctx.path("sys/bus/pci/devices")) {
        let Some(class) = read_attr(&dir.join("class")) else {
            continue;
        };
        let class = class.to_ascii_lowercase();
        let class = class.strip_prefix("0x").unwrap_or(&class);
        // 6 hex digits: base class 03 = display controller.
        if class.len() != 6 || !class.starts_with("03") {
            continue;
        }
        let vendor_id = read_hex_u16(&dir.join("vendor")).unwrap_or(0);
        out.push(Gpu {
            pci_slot: slot,
            vendor_id,
            device_id: read_hex_u16(&dir.join("device")).unwrap_or(0),
            vendor_name: vendor_name(vendor_id).map(str::to_string),
            driver: link_name(&dir.join("driver")),
        });
    }
    Ok(out)
}
