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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn live_ctx() -> Ctx {
        Ctx {
            root: PathBuf::from("/"),
            live: true,
        }
    }

    /// Every collector runs on this machine without panicking; the ones every Windows (and
    /// Wine) answers give something.
    #[test]
    fn collectors_run_on_this_machine() {
        let ctx = live_ctx();
        let mut w = Warnings::new();
        let h = host::collect(&ctx, &mut w).expect("host");
        assert_eq!(h.os_id.as_deref(), Some("windows"));
        assert!(h.os_name.starts_with("Windows") || h.os_name.contains("Windows"));
        assert!(!h.hostname.is_empty());
        let c = hardware::cpu(&ctx, &mut w).expect("cpu");
        assert!(c.threads > 0 && !c.model.is_empty());
        let m = hardware::memory(&ctx, &mut w).expect("memory");
        assert!(m.total_bytes > 0);
        assert!(software::uninstall(&ctx, &mut w).is_ok());
        // These may fail where a class is missing; they must not panic.
        let _ = hardware::system(&ctx, &mut w);
        let _ = hardware::block(&ctx, &mut w);
        let _ = hardware::filesystems(&ctx, &mut w);
        let _ = hardware::gpu(&ctx, &mut w);
        let _ = hardware::monitors(&ctx, &mut w);
        let _ = hardware::network(&ctx, &mut w);
        let _ = hardware::battery(&ctx, &mut w);
        let _ = software::hotfixes(&ctx, &mut w);
    }

    /// A class that does not exist gives no rows: an error on Windows (`WBEM_E_INVALID_CLASS`,
    /// a warning in the collectors that have other sources), an empty answer under Wine 8;
    /// never a panic.
    #[test]
    fn missing_wmi_classes_give_nothing() {
        let w = wmi_rows::Wmi::cimv2().expect("root\\cimv2");
        if let Ok(rows) = w.rows("Win32_NoSuchClass", 1) {
            assert!(rows.is_empty());
        }
        let mut warn = Warnings::new();
        assert!(w.rows_or_warn("Win32_NoSuchClass", 1, &mut warn).is_empty());
        assert!(warn.len() <= 1, "{warn:?}");
        assert!(wmi_rows::Wmi::connect("ROOT\\NoSuchNamespace").is_err());
    }

    #[test]
    fn another_root_is_refused() {
        let ctx = Ctx {
            root: PathBuf::from("C:\\fixtures"),
            live: false,
        };
        let mut w = Warnings::new();
        assert!(host::collect(&ctx, &mut w).is_err());
        assert!(software::uninstall(&ctx, &mut w).is_err());
        assert!(hardware::cpu(&ctx, &mut w).is_err());
    }
}
