//! Inventory sources on Windows: the registry (`CurrentVersion`, the `Uninstall` keys of every
//! view and loaded user hive, the time zone), WMI (`root\cimv2` hardware classes, `root\wmi`
//! monitor EDIDs, the storage namespace's media types) and sysinfo (uptime, memory totals).
//! [`spawn_all`] hands each collector to the OS-neutral runner (the agent's `collect` module).
//!
//! Windows sources are the live system's only: [`Ctx::root`] has no meaning here, and a
//! collector asked for another root reports so instead of describing this machine.
//! The mapping from WMI rows and registry values to the model is pure and OS-neutral
//! ([`mapping`]); the modules beside it only read.

pub mod mapping;

mod hardware;
mod host;
mod registry;
mod software;
mod wmi_rows;

pub use crate::platform::collector::{CollectError, Ctx, Spawn, Warnings};

/// Starts every collector this platform has.
pub(crate) fn spawn_all(r: &mut impl Spawn) {
    // Slowest first so they start earliest (Win32_QuickFixEngineering can take seconds).
    r.spawn("hotfixes", software::hotfixes, |i, v| i.software.extend(v));
    r.spawn("uninstall", software::uninstall, |i, v| {
        i.software.extend(v)
    });
    r.spawn("network", hardware::network, |i, v| i.hardware.network = v);
    r.spawn("host", host::collect, |i, v| i.host = v);
    r.spawn("system", hardware::system, |i, v| i.hardware.system = v);
    r.spawn("cpu", hardware::cpu, |i, v| i.hardware.cpu = v);
    r.spawn("memory", hardware::memory, |i, v| i.hardware.memory = v);
    r.spawn("block", hardware::block, |i, v| {
        i.hardware.block_devices = v
    });
    r.spawn("filesystems", hardware::filesystems, |i, v| {
        i.hardware.filesystems = v
    });
    r.spawn("gpu", hardware::gpu, |i, v| i.hardware.gpus = v);
    r.spawn("monitors", hardware::monitors, |i, v| {
        i.hardware.monitors = v
    });
    r.spawn("battery", hardware::battery, |i, v| {
        i.hardware.batteries = v
    });
}

/// Refuses a context that is not the live system (Windows has no fixture roots).
fn live(ctx: &Ctx) -> Result<(), CollectError> {
    if ctx.live {
        Ok(())
    } else {
        Err(CollectError::Invalid(format!(
            "Windows sources are read from the live system only, not under {}",
            ctx.root.display()
        )))
    }
}
