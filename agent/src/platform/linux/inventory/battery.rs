//! Batteries from /sys/class/power_supply (type == Battery).

use super::util::{list_dir, read_attr, read_u64};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::Battery;

pub(crate) fn collect(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Battery>, CollectError> {
    let mut out = Vec::new();
    for (name, dir) in list_dir(&ctx.path("sys/class/power_supply")) {
        if read_attr(&dir.join("type")).as_deref() != Some("Battery") {
            continue;
        }
        // Peripheral batteries (mice, headsets) report scope "Device".
        if read_attr(&dir.join("scope")).as_deref() == Some("Device") {
            continue;
        }
        let get = |f: &str| read_attr(&dir.join(f));
        let num = |f: &str| read_u64(&dir.join(f));
        // energy_* is in µWh; charge_* in µAh needs the design voltage (µV).
        let volt = num("voltage_min_design");
        let energy = |e: &str, c: &str| {
            num(e).or_else(|| {
                let ch = num(c)?;
                let v = volt?;
                u64::try_from(u128::from(ch) * u128::from(v) / 1_000_000).ok()
            })
        };
        out.push(Battery {
            name,
            manufacturer: get("manufacturer"),
            model: get("model_name"),
            technology: get("technology"),
            energy_full_uwh: energy("energy_full", "charge_full"),
            energy_full_design_uwh: energy("energy_full_design", "charge_full_design"),
            capacity_percent: num("capacity").and_then(|c| u8::try_from(c.min(100)).ok()),
            status: get("status"),
            cycle_count: num("cycle_count").and_then(|c| u32::try_from(c).ok()),
        });
    }
    Ok(out)
}
