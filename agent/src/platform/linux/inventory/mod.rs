//! Inventory sources on Linux: one module per source (`/proc`, `/sys`, the SMBIOS table,
//! package databases, …), each read under a configurable root so tests can point at fixture
//! trees. [`spawn_all`] hands each to the OS-neutral runner (the agent's `collect` module).

pub mod edid;
pub mod smbios;
mod util;

mod battery;
mod block;
mod cpu;
mod dmi;
pub mod filesystems;
mod gpu;
mod host;
mod memory;
mod monitors;
mod network;
mod packages;

pub use packages::{DpkgParse, parse_dpkg_status, parse_rpm_qa};

pub use crate::platform::collector::{CollectError, Ctx, Spawn, Warnings};

/// Starts every collector this platform has.
pub(crate) fn spawn_all(r: &mut impl Spawn) {
    // Slowest first so they start earliest.
    r.spawn("dpkg", packages::dpkg, |i, v| i.software.extend(v));
    r.spawn("rpm", packages::rpm, |i, v| i.software.extend(v));
    r.spawn("filesystems", filesystems::collect, |i, v| {
        i.hardware.filesystems = v
    });
    r.spawn("network", network::collect, |i, v| i.hardware.network = v);
    r.spawn("host", host::collect, |i, v| i.host = v);
    r.spawn("cpu", cpu::collect, |i, v| i.hardware.cpu = v);
    r.spawn("memory", memory::collect, |i, v| i.hardware.memory = v);
    r.spawn("dmi", dmi::collect, |i, v| i.hardware.system = v);
    r.spawn("block", block::collect, |i, v| i.hardware.block_devices = v);
    r.spawn("gpu", gpu::collect, |i, v| i.hardware.gpus = v);
    r.spawn("monitors", monitors::collect, |i, v| {
        i.hardware.monitors = v
    });
    r.spawn("battery", battery::collect, |i, v| i.hardware.batteries = v);
    r.spawn("flatpak", packages::flatpak, |i, v| i.software.extend(v));
    r.spawn("snap", packages::snap, |i, v| i.software.extend(v));
}
