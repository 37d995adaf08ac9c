//! Connected monitors from /sys/class/drm/*/edid.

use super::edid::parse_edid;
use super::util::{list_dir, read_limited};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::Monitor;

pub(crate) fn collect(ctx: &Ctx, warn: &mut Warnings) -> Result<Vec<Monitor>, CollectError> {
    let mut out = Vec::new();
    for (connector, dir) in list_dir(&ctx.path("sys/class/drm")) {
        // Only connectors ("card0-HDMI-A-1") have an edid attribute; an empty
        // one means nothing is plugged in.
        let Ok((bytes, _)) = read_limited(&dir.join("edid"), 64 * 1024) else {
            continue;
        };
        if bytes.is_empty() {
            continue;
        }
        match parse_edid(&bytes) {
            Ok(e) => out.push(Monitor {
                connector,
                manufacturer: e.manufacturer,
                product_code: e.product_code,
                serial: e
                    .serial_string
                    .or_else(|| (e.serial_number != 0).then(|| e.serial_number.to_string())),
                name: e.name,
                width_mm: e.width_mm,
                height_mm: e.height_mm,
                native_width: e.native_width,
                native_height: e.native_height,
                year: e.year,
            }),
            Err(err) => warn.push(format!("{connector}: {err}")),
        }
    }
    Ok(out)
}
