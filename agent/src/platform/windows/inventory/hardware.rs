//! Hardware from WMI (`root\cimv2`; `root\wmi` for monitors; the storage namespace for disk
//! media types). A class that does not answer is a warning, or the collector's error when it
//! is the only source of that part.

use std::collections::BTreeMap;

use tether_protocol::inventory::{
    Battery, BlockDevice, Cpu, Filesystem, Gpu, MAX_ADDRESSES, MAX_ITEMS, MAX_STRING, Memory,
    Monitor, NetworkInterface, SystemInfo,
};

use super::mapping::{self, SystemRows, num, text};
use super::wmi_rows::Wmi;
use super::{CollectError, Ctx, Warnings, live};

fn cimv2(ctx: &Ctx) -> Result<Wmi, CollectError> {
    live(ctx)?;
    Wmi::cimv2()
}

pub(crate) fn system(ctx: &Ctx, warn: &mut Warnings) -> Result<SystemInfo, CollectError> {
    let w = cimv2(ctx)?;
    let cs = w.rows_or_warn("Win32_ComputerSystem", 1, warn);
    let product = w.rows_or_warn("Win32_ComputerSystemProduct", 1, warn);
    let bios = w.rows_or_warn("Win32_BIOS", 1, warn);
    let board = w.rows_or_warn("Win32_BaseBoard", 1, warn);
    let enclosure = w.rows_or_warn("Win32_SystemEnclosure", 1, warn);
    Ok(mapping::system_info(&SystemRows {
        computer_system: cs.first(),
        product: product.first(),
        bios: bios.first(),
        board: board.first(),
        enclosure: enclosure.first(),
    }))
}

pub(crate) fn cpu(ctx: &Ctx, _warn: &mut Warnings) -> Result<Cpu, CollectError> {
    let rows = cimv2(ctx)?.rows("Win32_Processor", MAX_ITEMS)?;
    Ok(mapping::cpu(&rows))
}

pub(crate) fn memory(ctx: &Ctx, warn: &mut Warnings) -> Result<Memory, CollectError> {
    live(ctx)?;
    let mut m = Memory::default();
    match sysinfo::System::new() {
        Ok(mut s) => {
            s.refresh_memory();
            m.total_bytes = s.total_memory();
            m.swap_total_bytes = s.total_swap();
        }
        Err(e) => warn.push(format!("memory totals: {e}")),
    }
    match Wmi::cimv2().and_then(|w| w.rows("Win32_PhysicalMemory", MAX_ITEMS)) {
        Ok(rows) => m.modules = mapping::memory_modules(&rows),
        Err(e) => warn.push(e.to_string()),
    }
    if m.total_bytes == 0 {
        m.total_bytes = m
            .modules
            .iter()
            .fold(0u64, |a, d| a.saturating_add(d.size_bytes));
    }
    Ok(m)
}

pub(crate) fn block(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<BlockDevice>, CollectError> {
    let rows = cimv2(ctx)?.rows("Win32_DiskDrive", MAX_ITEMS)?;
    // HDD or SSD: only the storage namespace (Windows 8 and later) says. Its absence (older
    // Windows, Wine) is normal: the disks are then reported as not rotational.
    let media: BTreeMap<u64, u64> = Wmi::connect("ROOT\\Microsoft\\Windows\\Storage")
        .and_then(|s| s.rows("MSFT_PhysicalDisk", MAX_ITEMS))
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    let id = text(r, "DeviceId")?.parse().ok()?;
                    Some((id, num(r, "MediaType")?))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(mapping::block_devices(&rows, &media))
}

pub(crate) fn filesystems(
    ctx: &Ctx,
    _warn: &mut Warnings,
) -> Result<Vec<Filesystem>, CollectError> {
    let rows = cimv2(ctx)?.rows("Win32_LogicalDisk", MAX_ITEMS)?;
    Ok(mapping::filesystems(&rows))
}

pub(crate) fn gpu(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Gpu>, CollectError> {
    let rows = cimv2(ctx)?.rows("Win32_VideoController", MAX_ITEMS)?;
    Ok(mapping::gpus(&rows))
}

pub(crate) fn monitors(ctx: &Ctx, warn: &mut Warnings) -> Result<Vec<Monitor>, CollectError> {
    live(ctx)?;
    // The EDID-derived classes of root\wmi (active monitors) say the most; Win32_DesktopMonitor
    // is the fallback.
    let from_edid = Wmi::connect("ROOT\\WMI").and_then(|w| {
        let ids = w.rows("WmiMonitorID", MAX_ITEMS)?;
        let sizes = w
            .rows("WmiMonitorBasicDisplayParams", MAX_ITEMS)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let h = u32::try_from(num(r, "MaxHorizontalImageSize")?).ok()?;
                let v = u32::try_from(num(r, "MaxVerticalImageSize")?).ok()?;
                Some((text(r, "InstanceName")?, (h, v)))
            })
            .collect();
        Ok(mapping::monitors_from_wmi(&ids, &sizes))
    });
    match from_edid {
        Ok(m) if !m.is_empty() => Ok(m),
        other => {
            if let Err(e) = other {
                warn.push(e.to_string());
            }
            let rows = Wmi::cimv2()?.rows("Win32_DesktopMonitor", MAX_ITEMS)?;
            Ok(mapping::monitors_from_desktop(&rows))
        }
    }
}

pub(crate) fn network(
    ctx: &Ctx,
    warn: &mut Warnings,
) -> Result<Vec<NetworkInterface>, CollectError> {
    live(ctx)?;
    // sysinfo names interfaces by their alias (`NetConnectionID`, "Ethernet") and knows the
    // MTU, which WMI usually leaves empty; it is also the fallback when WMI does not answer.
    let sys = sysinfo::Networks::new_with_refreshed_list()
        .map_err(|e| warn.push(format!("sysinfo networks: {e}")))
        .ok();
    let wmi = Wmi::cimv2().and_then(|w| {
        let configs = w.rows("Win32_NetworkAdapterConfiguration", 4 * MAX_ITEMS)?;
        let adapters = w.rows_or_warn("Win32_NetworkAdapter", 4 * MAX_ITEMS, warn);
        Ok(mapping::network(&configs, &adapters))
    });
    let mut nics = match (wmi, &sys) {
        (Ok(n), _) => n,
        (Err(e), Some(sys)) => {
            warn.push(e.to_string());
            from_sysinfo(sys)
        }
        (Err(e), None) => return Err(e),
    };
    if let Some(sys) = &sys {
        for n in nics.iter_mut().filter(|n| n.mtu == 0) {
            if let Some((_, d)) = sys
                .iter()
                .find(|(name, _)| name.to_string_lossy() == n.name)
            {
                n.mtu = u32::try_from(d.mtu()).unwrap_or(0);
            }
        }
    }
    Ok(nics)
}

/// Interfaces as sysinfo sees them (no speed, state or physical/virtual).
fn from_sysinfo(sys: &sysinfo::Networks) -> Vec<NetworkInterface> {
    sys.iter()
        .take(MAX_ITEMS)
        .map(|(name, d)| {
            let (mut ipv4, mut ipv6) = (Vec::new(), Vec::new());
            for ip in d.ip_networks().iter().take(2 * MAX_ADDRESSES) {
                let s = format!("{}/{}", ip.addr, ip.prefix);
                if ip.addr.is_ipv4() {
                    ipv4.push(s)
                } else {
                    ipv6.push(s)
                }
            }
            let mac = d.mac_address();
            NetworkInterface {
                name: mapping::bounded(&name.to_string_lossy(), MAX_STRING),
                mac: (!mac.is_unspecified()).then(|| mac.to_string()),
                ipv4,
                ipv6,
                mtu: u32::try_from(d.mtu()).unwrap_or(0),
                speed_mbps: None,
                state: "unknown".to_string(),
                is_virtual: false,
            }
        })
        .collect()
}

pub(crate) fn battery(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Battery>, CollectError> {
    let rows = cimv2(ctx)?.rows("Win32_Battery", MAX_ITEMS)?;
    Ok(mapping::batteries(&rows))
}
