//! System/firmware identification from /sys/class/dmi/id.

use super::util::{is_placeholder, read_attr};
use super::{CollectError, Ctx, Warnings};
use crate::platform::firmware::chassis_name;
use tether_protocol::inventory::SystemInfo;

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
