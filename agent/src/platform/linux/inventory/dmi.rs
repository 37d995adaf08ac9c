//! System/firmware identification from /sys/class/dmi/id.

use super::util::{is_placeholder, read_attr};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::SystemInfo;

fn chassis_name(n: u32) -> Option<&'static str> {
    Some(match n {
        1 => "Other",
        2 => "Unknown",
        3 => "Desktop",
        4 => "Low Profile Desktop",
        5 => "Pizza Box",
        6 => "Mini Tower",
        7 => "Tower",
        8 => "Portable",
        9 => "Laptop",
        10 => "Notebook",
        11 => "Hand Held",
        12 => "Docking Station",
        13 => "All in One",
        14 => "Sub Notebook",
        15 => "Space-saving",
        16 => "Lunch Box",
        17 => "Main Server Chassis",
        23 => "Rack Mount Chassis",
        24 => "Sealed-case PC",
        30 => "Tablet",
        31 => "Convertible",
        32 => "Detachable",
        33 => "IoT Gateway",
        34 => "Embedded PC",
        35 => "Mini PC",
        36 => "Stick PC",
        _ => return None,
    })
}

pub(crate) fn collect(ctx: &Ctx, _warn: &mut Warnings) -> Result<SystemInfo, CollectError> {
    let dir = ctx.path("sys/class/dmi/id");
    // No DMI (VMs without SMBIOS, ARM boards) is normal: empty result, no error.
    let get = |f: &str| read_attr(&dir.join(f)).filter(|v| !is_placeholder(v));
    let chassis_type = read_attr(&dir.join("chassis_type")).map(|raw| {
        match raw.parse::<u32>().ok().and_then(chassis_name) {
            Some(name) => name.to_string(),
            None => raw,
        }
    });
    Ok(SystemInfo {
        sys_vendor: get("sys_vendor"),
        product_name: get("product_name"),
        product_serial: get("product_serial"),
        product_uuid: get("product_uuid"),
        bios_vendor: get("bios_vendor"),
        bios_version: get("bios_version"),
        bios_date: get("bios_date"),
        board_vendor: get("board_vendor"),
        board_name: get("board_name"),
        board_serial: get("board_serial"),
        chassis_type,
    })
}
