//! Pure mapping from what Windows reports (WMI rows, registry values) into the inventory model.
//!
//! Nothing here calls Windows: the collectors turn WMI objects and registry keys into the plain
//! [`Row`] / struct forms below and hand them over, so this module compiles (and its tests run)
//! on any operating system. Everything read is untrusted: strings are trimmed, stripped of NULs
//! and bounded, numbers parsed leniently, and nothing panics on odd input.

pub use crate::platform::firmware::{chassis_name, is_placeholder, memory_type_name};
use std::collections::{BTreeMap, BTreeSet};

use tether_protocol::inventory::{
    Battery, BlockDevice, Cpu, Filesystem, Gpu, MAX_ITEMS, MAX_STRING, MemoryModule, Monitor,
    NetworkInterface, Package, PackageSource, SystemInfo,
};

/// One WMI property value, OS-neutral (a copy of what the `wmi` crate's `Variant` holds).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Array(Vec<Value>),
}

/// One WMI object: property name → value.
pub type Row = BTreeMap<String, Value>;

/// Property `k` of `r`. WMI names are case-insensitive, and Wine spells some differently
/// (`DeviceId` for `DeviceID`).
pub fn get<'a>(r: &'a Row, k: &str) -> Option<&'a Value> {
    r.get(k).or_else(|| {
        r.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    })
}

/// A string cut to `max` bytes at a char boundary, without NULs, trimmed.
pub fn bounded(s: &str, max: usize) -> String {
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().filter(|&c| c != '\0') {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

/// A non-empty bounded string, else `None`.
pub fn non_empty(s: &str) -> Option<String> {
    let b = bounded(s, MAX_STRING);
    (!b.is_empty()).then_some(b)
}

/// Property `k` as a bounded, non-empty string (numbers are rendered).
pub fn text(r: &Row, k: &str) -> Option<String> {
    match get(r, k)? {
        Value::Str(s) => non_empty(s),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        _ => None,
    }
}

/// Like [`text`], without vendor placeholders.
pub fn real_text(r: &Row, k: &str) -> Option<String> {
    text(r, k).filter(|s| !is_placeholder(s))
}

fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::UInt(u) => Some(*u),
        Value::Int(i) => u64::try_from(*i).ok(),
        // CIM uint64 values arrive as strings.
        Value::Str(s) => s.trim().parse().ok(),
        Value::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1.8e19 => Some(*f as u64),
        _ => None,
    }
}

/// Property `k` as an unsigned number (WMI gives 64-bit values as strings).
pub fn num(r: &Row, k: &str) -> Option<u64> {
    get(r, k).and_then(value_u64)
}

/// Property `k` as a `u32`, when it fits.
pub fn num32(r: &Row, k: &str) -> Option<u32> {
    num(r, k).and_then(|n| u32::try_from(n).ok())
}

pub fn flag(r: &Row, k: &str) -> Option<bool> {
    match get(r, k)? {
        Value::Bool(b) => Some(*b),
        Value::Int(i) => Some(*i != 0),
        Value::UInt(u) => Some(*u != 0),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "-1" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Property `k` as a list of strings (an array, or a lone string), at most `max` of them.
pub fn strings(r: &Row, k: &str, max: usize) -> Vec<String> {
    match get(r, k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => non_empty(s),
                _ => None,
            })
            .take(max)
            .collect(),
        Some(Value::Str(s)) => non_empty(s).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Property `k` as a list of numbers.
pub fn numbers(r: &Row, k: &str, max: usize) -> Vec<u64> {
    match get(r, k) {
        Some(Value::Array(a)) => a.iter().filter_map(value_u64).take(max).collect(),
        Some(v) => value_u64(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A UTF-16/ASCII code array (as `WmiMonitorID` gives names) as text, up to the first NUL.
pub fn code_string(r: &Row, k: &str) -> Option<String> {
    let codes = numbers(r, k, 256);
    let s: String = codes
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| {
            u32::try_from(c)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}')
        })
        .collect();
    non_empty(&s)
}

/// `yyyymmddHHMMSS.mmmmmm+UUU` (CIM_DATETIME) → `MM/DD/YYYY`, the form Linux's DMI `bios_date`
/// has. Anything else is kept as it is.
pub fn cim_date(s: &str) -> Option<String> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() >= 8 && b[..8].iter().all(u8::is_ascii_digit) {
        let (y, m, d) = (&s[0..4], &s[4..6], &s[6..8]);
        if y != "0000" && m != "00" && d != "00" {
            return Some(format!("{m}/{d}/{y}"));
        }
        return None;
    }
    non_empty(s)
}

/// The rows of the system-identity classes (each `None` when the class could not be read).
#[derive(Debug, Default)]
pub struct SystemRows<'a> {
    pub computer_system: Option<&'a Row>,
    pub product: Option<&'a Row>,
    pub bios: Option<&'a Row>,
    pub board: Option<&'a Row>,
    pub enclosure: Option<&'a Row>,
}

/// `Win32_ComputerSystem`, `Win32_ComputerSystemProduct`, `Win32_BIOS`, `Win32_BaseBoard` and
/// `Win32_SystemEnclosure` → [`SystemInfo`].
pub fn system_info(s: &SystemRows) -> SystemInfo {
    let get = |r: Option<&Row>, k: &str| r.and_then(|r| real_text(r, k));
    let cs = s.computer_system;
    let bios = s.bios;
    SystemInfo {
        sys_vendor: get(cs, "Manufacturer").or_else(|| get(s.product, "Vendor")),
        product_name: get(cs, "Model").or_else(|| get(s.product, "Name")),
        product_serial: get(s.product, "IdentifyingNumber").or_else(|| get(bios, "SerialNumber")),
        product_uuid: get(s.product, "UUID"),
        bios_vendor: get(bios, "Manufacturer"),
        bios_version: get(bios, "SMBIOSBIOSVersion").or_else(|| get(bios, "Version")),
        bios_date: bios
            .and_then(|r| text(r, "ReleaseDate"))
            .and_then(|d| cim_date(&d)),
        board_vendor: get(s.board, "Manufacturer"),
        board_name: get(s.board, "Product"),
        board_serial: get(s.board, "SerialNumber"),
        chassis_type: s.enclosure.and_then(|r| {
            let types = numbers(r, "ChassisTypes", 8);
            // "Unknown" (2) only when nothing better is listed.
            types
                .iter()
                .copied()
                .find(|&n| n != 2)
                .or_else(|| types.first().copied())
                .map(|n| {
                    u32::try_from(n)
                        .ok()
                        .and_then(chassis_name)
                        .map_or_else(|| n.to_string(), str::to_string)
                })
        }),
    }
}

/// `Win32_Processor` (one row per socket) → [`Cpu`].
pub fn cpu(rows: &[Row]) -> Cpu {
    let first = rows.first();
    let sum = |k: &str| {
        rows.iter()
            .filter_map(|r| num32(r, k))
            .fold(0u32, u32::saturating_add)
    };
    Cpu {
        // Intel pads the name with spaces; collapse runs of them.
        model: first
            .and_then(|r| text(r, "Name"))
            .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        vendor: first
            .and_then(|r| text(r, "Manufacturer"))
            .unwrap_or_default(),
        sockets: u32::try_from(rows.len()).unwrap_or(u32::MAX),
        cores: sum("NumberOfCores"),
        threads: sum("NumberOfLogicalProcessors"),
        base_mhz: first
            .and_then(|r| num32(r, "MaxClockSpeed"))
            .filter(|&m| m > 0),
    }
}

/// `Win32_PhysicalMemory` → modules (empty slots have no capacity and are left out).
pub fn memory_modules(rows: &[Row]) -> Vec<MemoryModule> {
    rows.iter()
        .filter_map(|r| {
            let size_bytes = num(r, "Capacity").filter(|&c| c > 0)?;
            Some(MemoryModule {
                locator: real_text(r, "DeviceLocator"),
                bank: real_text(r, "BankLabel"),
                size_bytes,
                memory_type: num(r, "SMBIOSMemoryType")
                    .and_then(|n| u8::try_from(n).ok())
                    .and_then(memory_type_name)
                    .map(str::to_string),
                speed_mts: num32(r, "ConfiguredClockSpeed")
                    .filter(|&s| s > 0)
                    .or_else(|| num32(r, "Speed"))
                    .filter(|&s| s > 0),
                manufacturer: real_text(r, "Manufacturer"),
                part_number: real_text(r, "PartNumber"),
                serial: real_text(r, "SerialNumber"),
            })
        })
        .take(MAX_ITEMS)
        .collect()
}

/// `Win32_DiskDrive` → block devices. `media` maps a disk number (`Index`) to
/// `MSFT_PhysicalDisk.MediaType` (3 HDD, 4 SSD) where the storage namespace answered.
pub fn block_devices(rows: &[Row], media: &BTreeMap<u64, u64>) -> Vec<BlockDevice> {
    rows.iter()
        .filter_map(|r| {
            let name = text(r, "DeviceID").or_else(|| text(r, "Name"))?;
            let media_type = text(r, "MediaType").unwrap_or_default().to_lowercase();
            let interface = text(r, "InterfaceType").unwrap_or_default();
            Some(BlockDevice {
                name,
                model: real_text(r, "Model"),
                serial: real_text(r, "SerialNumber"),
                size_bytes: num(r, "Size").unwrap_or(0),
                rotational: num(r, "Index")
                    .and_then(|i| media.get(&i))
                    .is_some_and(|&m| m == 3),
                removable: media_type.contains("removable")
                    || interface.eq_ignore_ascii_case("USB"),
            })
        })
        .take(MAX_ITEMS)
        .collect()
}

/// `Win32_LogicalDisk` → filesystems: drives with a size (no empty optical drives).
pub fn filesystems(rows: &[Row]) -> Vec<Filesystem> {
    rows.iter()
        .filter_map(|r| {
            let mount_point = text(r, "DeviceID")?;
            let size_bytes = num(r, "Size").filter(|&s| s > 0)?;
            Some(Filesystem {
                device: text(r, "ProviderName").unwrap_or_else(|| mount_point.clone()),
                mount_point,
                fs_type: text(r, "FileSystem").unwrap_or_default(),
                size_bytes,
                free_bytes: num(r, "FreeSpace").unwrap_or(0),
            })
        })
        .take(MAX_ITEMS)
        .collect()
}

/// `VEN_xxxx` and `DEV_xxxx` of a PnP device id such as
/// `PCI\VEN_10DE&DEV_1C82&SUBSYS_...\4&...`.
pub fn pci_ids(pnp: &str) -> (Option<u16>, Option<u16>) {
    let up = pnp.to_ascii_uppercase();
    let field = |tag: &str| {
        let i = up.find(tag)? + tag.len();
        let hex = up.get(i..i + 4)?;
        u16::from_str_radix(hex, 16).ok()
    };
    (field("VEN_"), field("DEV_"))
}

/// `Win32_VideoController` → GPUs. The model has no field for the adapter's name, and on
/// Windows the name ("NVIDIA GeForce RTX 3060") is what identifies it, so `vendor_name` holds
/// it; `driver` is the driver version; `pci_slot` the PnP device id (Windows gives no PCI
/// address here).
pub fn gpus(rows: &[Row]) -> Vec<Gpu> {
    rows.iter()
        .filter_map(|r| {
            let pnp = text(r, "PNPDeviceID");
            let name = text(r, "Name");
            if pnp.is_none() && name.is_none() {
                return None;
            }
            let (vendor_id, device_id) = pci_ids(pnp.as_deref().unwrap_or(""));
            Some(Gpu {
                pci_slot: pnp.unwrap_or_default(),
                vendor_id: vendor_id.unwrap_or(0),
                device_id: device_id.unwrap_or(0),
                vendor_name: name.or_else(|| text(r, "AdapterCompatibility")),
                driver: text(r, "DriverVersion"),
            })
        })
        .take(MAX_ITEMS)
        .collect()
}

/// Manufacturer id and product code of a monitor's PnP id (`DISPLAY\DEL4096\...`).
pub fn monitor_ids(pnp: &str) -> (String, u16) {
    let mut parts = pnp.split('\\');
    let _ = parts.next();
    let hw = parts.next().unwrap_or("");
    let manufacturer: String = hw.chars().take(3).collect();
    let code = hw
        .get(3..7)
        .and_then(|h| u16::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    if manufacturer.len() == 3 && manufacturer.chars().all(|c| c.is_ascii_alphabetic()) {
        (manufacturer.to_ascii_uppercase(), code)
    } else {
        (String::new(), code)
    }
}

/// `root\wmi` `WmiMonitorID` rows (EDID-derived, active monitors), with the physical size from
/// `WmiMonitorBasicDisplayParams` (centimetres) keyed by `InstanceName`.
pub fn monitors_from_wmi(rows: &[Row], sizes: &BTreeMap<String, (u32, u32)>) -> Vec<Monitor> {
    rows.iter()
        .filter_map(|r| {
            let instance = text(r, "InstanceName")?;
            let (pnp_mfr, pnp_code) = monitor_ids(&instance);
            let code = code_string(r, "ProductCodeID")
                .and_then(|c| u16::from_str_radix(c.trim(), 16).ok())
                .unwrap_or(pnp_code);
            let (w_cm, h_cm) = sizes.get(&instance).copied().unwrap_or((0, 0));
            Some(Monitor {
                manufacturer: code_string(r, "ManufacturerName").unwrap_or(pnp_mfr),
                product_code: code,
                serial: code_string(r, "SerialNumberID").filter(|s| !is_placeholder(s)),
                name: code_string(r, "UserFriendlyName"),
                width_mm: w_cm.saturating_mul(10),
                height_mm: h_cm.saturating_mul(10),
                native_width: 0,
                native_height: 0,
                year: num(r, "YearOfManufacture")
                    .and_then(|y| u16::try_from(y).ok())
                    .unwrap_or(0),
                connector: instance,
            })
        })
        .take(MAX_ITEMS)
        .collect()
}

/// `Win32_DesktopMonitor` → monitors (the fallback: no serial, year or physical size).
pub fn monitors_from_desktop(rows: &[Row]) -> Vec<Monitor> {
    rows.iter()
        .filter_map(|r| {
            let connector = text(r, "DeviceID")
                .or_else(|| text(r, "PNPDeviceID"))
                .or_else(|| text(r, "Name"))?;
            let (manufacturer, product_code) =
                monitor_ids(&text(r, "PNPDeviceID").unwrap_or_default());
            Some(Monitor {
                connector,
                manufacturer,
                product_code,
                serial: None,
                name: text(r, "Name"),
                native_width: num32(r, "ScreenWidth").unwrap_or(0),
                native_height: num32(r, "ScreenHeight").unwrap_or(0),
                ..Monitor::default()
            })
        })
        .take(MAX_ITEMS)
        .collect()
}

/// A dotted IPv4 netmask → prefix length (contiguous masks only).
fn mask_prefix(mask: &str) -> Option<u32> {
    let m: std::net::Ipv4Addr = mask.trim().parse().ok()?;
    let bits = u32::from(m);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

/// `Win32_NetworkAdapterConfiguration` joined with `Win32_NetworkAdapter` on `Index` →
/// interfaces: every IP-enabled configuration, and physical adapters without IP.
pub fn network(configs: &[Row], adapters: &[Row]) -> Vec<NetworkInterface> {
    let by_index: BTreeMap<u64, &Row> = adapters
        .iter()
        .filter_map(|a| Some((num(a, "Index")?, a)))
        .collect();
    let mut out = Vec::new();
    for c in configs {
        let adapter = num(c, "Index").and_then(|i| by_index.get(&i).copied());
        let ip_enabled = flag(c, "IPEnabled").unwrap_or(false);
        let physical = adapter.and_then(|a| flag(a, "PhysicalAdapter"));
        if !ip_enabled && physical != Some(true) {
            continue;
        }
        let Some(name) = adapter
            .and_then(|a| text(a, "NetConnectionID"))
            .or_else(|| text(c, "Description"))
            .or_else(|| adapter.and_then(|a| text(a, "Name")))
        else {
            continue;
        };
        let addrs = strings(
            c,
            "IPAddress",
            2 * tether_protocol::inventory::MAX_ADDRESSES,
        );
        let subnets = strings(c, "IPSubnet", 2 * tether_protocol::inventory::MAX_ADDRESSES);
        let (mut ipv4, mut ipv6) = (Vec::new(), Vec::new());
        for (i, a) in addrs.iter().enumerate() {
            let sub = subnets.get(i).map(String::as_str).unwrap_or("");
            let addr = a.split('%').next().unwrap_or(a);
            match addr.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(v4)) => {
                    let p = mask_prefix(sub).unwrap_or(32);
                    ipv4.push(format!("{v4}/{p}"));
                }
                Ok(std::net::IpAddr::V6(v6)) => {
                    let p = sub.trim().parse::<u32>().ok().filter(|&p| p <= 128);
                    ipv6.push(match p {
                        Some(p) => format!("{v6}/{p}"),
                        None => format!("{v6}/128"),
                    });
                }
                Err(_) => {}
            }
        }
        let status = adapter.and_then(|a| num(a, "NetConnectionStatus"));
        let state = match status {
            Some(2) => "up",
            Some(0 | 7 | 4 | 5) => "down",
            Some(_) => "unknown",
            None if ip_enabled => "up",
            None => "unknown",
        };
        out.push(NetworkInterface {
            name,
            mac: text(c, "MACAddress")
                .or_else(|| adapter.and_then(|a| text(a, "MACAddress")))
                .map(|m| m.replace('-', ":").to_ascii_lowercase()),
            ipv4,
            ipv6,
            mtu: num32(c, "MTU").unwrap_or(0),
            // A disconnected adapter reports i64::MAX.
            speed_mbps: adapter
                .and_then(|a| num(a, "Speed"))
                .filter(|&s| s > 0 && s < 10_000_000_000_000)
                .and_then(|s| u32::try_from(s / 1_000_000).ok()),
            state: state.to_string(),
            is_virtual: physical == Some(false),
        });
        if out.len() >= MAX_ITEMS {
            break;
        }
    }
    out
}

/// `Win32_Battery.Chemistry`.
fn chemistry(n: u64) -> Option<&'static str> {
    Some(match n {
        3 => "Lead Acid",
        4 => "NiCd",
        5 => "NiMH",
        6 => "Li-ion",
        7 => "Zinc air",
        8 => "Li-poly",
        _ => return None,
    })
}

/// `Win32_Battery.BatteryStatus`, in the words Linux's sysfs uses.
fn battery_status(n: u64) -> Option<&'static str> {
    Some(match n {
        1 | 4 | 5 => "Discharging",
        2 => "Not charging",
        3 => "Full",
        6..=9 => "Charging",
        11 => "Not charging",
        _ => return None,
    })
}

/// `Win32_Battery` → batteries (capacities are mWh; the model wants µWh).
pub fn batteries(rows: &[Row]) -> Vec<Battery> {
    rows.iter()
        .filter_map(|r| {
            let name = text(r, "DeviceID").or_else(|| text(r, "Name"))?;
            let mwh = |k: &str| num(r, k).filter(|&v| v > 0).map(|v| v.saturating_mul(1000));
            Some(Battery {
                name,
                manufacturer: None,
                model: text(r, "Name"),
                technology: num(r, "Chemistry").and_then(chemistry).map(str::to_string),
                energy_full_uwh: mwh("FullChargeCapacity"),
                energy_full_design_uwh: mwh("DesignCapacity"),
                capacity_percent: num(r, "EstimatedChargeRemaining")
                    .filter(|&p| p <= 100)
                    .and_then(|p| u8::try_from(p).ok()),
                status: num(r, "BatteryStatus")
                    .and_then(battery_status)
                    .map(str::to_string),
                cycle_count: None,
            })
        })
        .take(MAX_ITEMS)
        .collect()
}

/// `Win32_QuickFixEngineering` → one package per installed update (`KB5034441`), source
/// `Other`, no version or arch.
pub fn hotfixes(rows: &[Row], max: usize) -> Vec<Package> {
    let ids: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| real_text(r, "HotFixID"))
        .filter(|id| !id.eq_ignore_ascii_case("file 1"))
        .take(max)
        .collect();
    ids.into_iter()
        .map(|name| Package {
            name,
            version: String::new(),
            arch: String::new(),
            source: PackageSource::Other,
        })
        .collect()
}

/// The values of one subkey of an `Uninstall` key that matter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UninstallEntry {
    pub display_name: Option<String>,
    pub display_version: Option<String>,
    pub publisher: Option<String>,
    pub install_date: Option<String>,
    pub system_component: Option<u32>,
    /// Set on updates of another product (listed under it in "Installed updates").
    pub parent_key_name: Option<String>,
}

/// One `Uninstall` subkey → a package, unless it has no `DisplayName`, is a system component,
/// or is an update of another entry. `arch` is the registry view it came from.
///
/// Publisher and install date are read but not reported: `Package` has no fields for them, and
/// adding fields would change the bincode layout every existing agent and relay uses.
pub fn uninstall_package(e: &UninstallEntry, arch: &str) -> Option<Package> {
    let name = e.display_name.as_deref().and_then(non_empty)?;
    if e.system_component == Some(1)
        || e.parent_key_name
            .as_deref()
            .is_some_and(|p| !p.trim().is_empty())
    {
        return None;
    }
    Some(Package {
        name,
        version: e
            .display_version
            .as_deref()
            .map(|v| bounded(v, MAX_STRING))
            .unwrap_or_default(),
        arch: bounded(arch, 16),
        source: PackageSource::Other,
    })
}

/// Entries of several Uninstall keys → packages, duplicates (the same product in several
/// users' hives, say) once.
pub fn uninstall_packages<'a>(
    entries: impl IntoIterator<Item = (&'a UninstallEntry, &'a str)>,
    max: usize,
) -> Vec<Package> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (e, arch) in entries {
        if out.len() >= max {
            break;
        }
        if let Some(p) = uninstall_package(e, arch)
            && seen.insert((p.name.clone(), p.version.clone(), p.arch.clone()))
        {
            out.push(p);
        }
    }
    out
}

/// Windows' name for a 64-bit registry view's architecture: what Windows installers call it.
pub fn native_arch_label(rust_arch: &str) -> &'static str {
    match rust_arch {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "x86",
        _ => "",
    }
}

/// Values of `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OsValues {
    pub product_name: Option<String>,
    pub edition_id: Option<String>,
    pub display_version: Option<String>,
    pub release_id: Option<String>,
    /// "6.3" on Windows 10 and 11 as well (kept for compatibility), "6.1" on 7.
    pub current_version: Option<String>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub current_build: Option<String>,
    pub ubr: Option<u32>,
    pub csd_version: Option<String>,
}

/// What the host part of the inventory says about Windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OsFields {
    /// "Windows 11 Pro".
    pub name: String,
    /// "23H2" (else the release id, else the NT version).
    pub version: Option<String>,
    /// "22631.3007".
    pub build: Option<String>,
    /// "10.0.22631".
    pub kernel: String,
}

pub fn os_fields(v: &OsValues) -> OsFields {
    let clean = |s: &Option<String>| s.as_deref().and_then(non_empty);
    let build = clean(&v.current_build).filter(|b| b.chars().all(|c| c.is_ascii_digit()));
    let build_no = build.as_deref().and_then(|b| b.parse::<u32>().ok());
    let mut name = clean(&v.product_name)
        .or_else(|| clean(&v.edition_id).map(|e| format!("Windows {e}")))
        .unwrap_or_else(|| "Windows".to_string());
    // Windows 11 still says "Windows 10" in ProductName; build 22000 is the first 11.
    if build_no.is_some_and(|b| b >= 22000)
        && let Some(rest) = name.strip_prefix("Windows 10")
    {
        name = format!("Windows 11{rest}");
    }
    let nt = match (v.major, v.minor) {
        (Some(ma), Some(mi)) => Some(format!("{ma}.{mi}")),
        _ => clean(&v.current_version),
    };
    OsFields {
        name,
        version: clean(&v.display_version)
            .or_else(|| clean(&v.release_id))
            .or_else(|| {
                let sp = clean(&v.csd_version);
                match (nt.clone(), sp) {
                    (Some(n), Some(sp)) => Some(format!("{n} {sp}")),
                    (n, _) => n,
                }
            }),
        build: build.as_ref().map(|b| match v.ubr {
            Some(u) => format!("{b}.{u}"),
            None => b.clone(),
        }),
        kernel: match (&nt, &build) {
            (Some(n), Some(b)) => format!("{n}.{b}"),
            (Some(n), None) => n.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => String::new(),
        },
    }
}

/// `DOMAIN\user` → `user`, for the logged-in users list.
pub fn user_name(qualified: &str) -> Option<String> {
    let u = qualified.rsplit('\\').next().unwrap_or(qualified);
    non_empty(u)
}

/// Windows time zone key (`TimeZoneKeyName`) → IANA name, for the common zones (CLDR's
/// `windowsZones`, territory 001). `None` for the rest.
pub fn iana_zone(windows: &str) -> Option<&'static str> {
    Some(match windows.trim() {
        "Dateline Standard Time" => "Etc/GMT+12",
        "UTC-11" => "Etc/GMT+11",
        "Hawaiian Standard Time" => "Pacific/Honolulu",
        "Alaskan Standard Time" => "America/Anchorage",
        "Pacific Standard Time" => "America/Los_Angeles",
        "Pacific Standard Time (Mexico)" => "America/Tijuana",
        "US Mountain Standard Time" => "America/Phoenix",
        "Mountain Standard Time" => "America/Denver",
        "Mountain Standard Time (Mexico)" => "America/Mazatlan",
        "Central America Standard Time" => "America/Guatemala",
        "Central Standard Time" => "America/Chicago",
        "Central Standard Time (Mexico)" => "America/Mexico_City",
        "Canada Central Standard Time" => "America/Regina",
        "SA Pacific Standard Time" => "America/Bogota",
        "Eastern Standard Time" => "America/New_York",
        "Eastern Standard Time (Mexico)" => "America/Cancun",
        "US Eastern Standard Time" => "America/Indianapolis",
        "Venezuela Standard Time" => "America/Caracas",
        "Atlantic Standard Time" => "America/Halifax",
        "SA Western Standard Time" => "America/La_Paz",
        "Pacific SA Standard Time" => "America/Santiago",
        "Newfoundland Standard Time" => "America/St_Johns",
        "E. South America Standard Time" => "America/Sao_Paulo",
        "Argentina Standard Time" => "America/Buenos_Aires",
        "SA Eastern Standard Time" => "America/Cayenne",
        "Greenland Standard Time" => "America/Godthab",
        "Montevideo Standard Time" => "America/Montevideo",
        "UTC-02" => "Etc/GMT+2",
        "Azores Standard Time" => "Atlantic/Azores",
        "Cape Verde Standard Time" => "Atlantic/Cape_Verde",
        "UTC" => "Etc/UTC",
        "GMT Standard Time" => "Europe/London",
        "Greenwich Standard Time" => "Atlantic/Reykjavik",
        "Morocco Standard Time" => "Africa/Casablanca",
        "W. Europe Standard Time" => "Europe/Berlin",
        "Central Europe Standard Time" => "Europe/Budapest",
        "Romance Standard Time" => "Europe/Paris",
        "Central European Standard Time" => "Europe/Warsaw",
        "W. Central Africa Standard Time" => "Africa/Lagos",
        "GTB Standard Time" => "Europe/Bucharest",
        "Middle East Standard Time" => "Asia/Beirut",
        "Egypt Standard Time" => "Africa/Cairo",
        "E. Europe Standard Time" => "Europe/Chisinau",
        "South Africa Standard Time" => "Africa/Johannesburg",
        "FLE Standard Time" => "Europe/Kiev",
        "Israel Standard Time" => "Asia/Jerusalem",
        "Kaliningrad Standard Time" => "Europe/Kaliningrad",
        "Jordan Standard Time" => "Asia/Amman",
        "Arabic Standard Time" => "Asia/Baghdad",
        "Turkey Standard Time" => "Europe/Istanbul",
        "Arab Standard Time" => "Asia/Riyadh",
        "Belarus Standard Time" => "Europe/Minsk",
        "Russian Standard Time" => "Europe/Moscow",
        "E. Africa Standard Time" => "Africa/Nairobi",
        "Iran Standard Time" => "Asia/Tehran",
        "Arabian Standard Time" => "Asia/Dubai",
        "Azerbaijan Standard Time" => "Asia/Baku",
        "Georgian Standard Time" => "Asia/Tbilisi",
        "Caucasus Standard Time" => "Asia/Yerevan",
        "Afghanistan Standard Time" => "Asia/Kabul",
        "West Asia Standard Time" => "Asia/Tashkent",
        "Ekaterinburg Standard Time" => "Asia/Yekaterinburg",
        "Pakistan Standard Time" => "Asia/Karachi",
        "India Standard Time" => "Asia/Calcutta",
        "Sri Lanka Standard Time" => "Asia/Colombo",
        "Nepal Standard Time" => "Asia/Katmandu",
        "Central Asia Standard Time" => "Asia/Almaty",
        "Bangladesh Standard Time" => "Asia/Dhaka",
        "Myanmar Standard Time" => "Asia/Rangoon",
        "SE Asia Standard Time" => "Asia/Bangkok",
        "N. Central Asia Standard Time" => "Asia/Novosibirsk",
        "North Asia Standard Time" => "Asia/Krasnoyarsk",
        "China Standard Time" => "Asia/Shanghai",
        "North Asia East Standard Time" => "Asia/Irkutsk",
        "Singapore Standard Time" => "Asia/Singapore",
        "W. Australia Standard Time" => "Australia/Perth",
        "Taipei Standard Time" => "Asia/Taipei",
        "Ulaanbaatar Standard Time" => "Asia/Ulaanbaatar",
        "Tokyo Standard Time" => "Asia/Tokyo",
        "Korea Standard Time" => "Asia/Seoul",
        "Yakutsk Standard Time" => "Asia/Yakutsk",
        "Cen. Australia Standard Time" => "Australia/Adelaide",
        "AUS Central Standard Time" => "Australia/Darwin",
        "E. Australia Standard Time" => "Australia/Brisbane",
        "AUS Eastern Standard Time" => "Australia/Sydney",
        "West Pacific Standard Time" => "Pacific/Port_Moresby",
        "Tasmania Standard Time" => "Australia/Hobart",
        "Vladivostok Standard Time" => "Asia/Vladivostok",
        "Magadan Standard Time" => "Asia/Magadan",
        "Central Pacific Standard Time" => "Pacific/Guadalcanal",
        "New Zealand Standard Time" => "Pacific/Auckland",
        "UTC+12" => "Etc/GMT-12",
        "Fiji Standard Time" => "Pacific/Fiji",
        "Tonga Standard Time" => "Pacific/Tongatapu",
        "Samoa Standard Time" => "Pacific/Apia",
        "Line Islands Standard Time" => "Pacific/Kiritimati",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kv: &[(&str, Value)]) -> Row {
        kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }
    fn s(v: &str) -> Value {
        Value::Str(v.to_string())
    }

    #[test]
    fn strings_are_bounded_and_cleaned() {
        assert_eq!(bounded("  abc\0 ", 10), "abc");
        assert_eq!(bounded("éééé", 5), "éé");
        assert_eq!(non_empty("   "), None);
        let long = "x".repeat(10_000);
        assert_eq!(non_empty(&long).map(|s| s.len()), Some(MAX_STRING));
        let r = row(&[
            ("A", s("18446744073709551615")),
            ("B", Value::Int(-1)),
            ("C", s("nope")),
        ]);
        assert_eq!(num(&r, "A"), Some(u64::MAX));
        assert_eq!(num(&r, "B"), None);
        assert_eq!(num(&r, "C"), None);
        assert_eq!(num32(&r, "A"), None);
    }

    #[test]
    fn system_identity_from_wmi_rows() {
        let cs = row(&[("Manufacturer", s("LENOVO")), ("Model", s("20XW0026GE"))]);
        let bios = row(&[
            ("Manufacturer", s("LENOVO")),
            ("SMBIOSBIOSVersion", s("N32ET86W (1.62 )")),
            ("ReleaseDate", s("20230309000000.000000+000")),
            ("SerialNumber", s("PF2ABCDE")),
        ]);
        let board = row(&[
            ("Manufacturer", s("LENOVO")),
            ("Product", s("20XW0026GE")),
            ("SerialNumber", s("To be filled by O.E.M.")),
        ]);
        let enc = row(&[("ChassisTypes", Value::Array(vec![Value::UInt(10)]))]);
        let product = row(&[("UUID", s("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"))]);
        let si = system_info(&SystemRows {
            computer_system: Some(&cs),
            product: Some(&product),
            bios: Some(&bios),
            board: Some(&board),
            enclosure: Some(&enc),
        });
        assert_eq!(si.sys_vendor.as_deref(), Some("LENOVO"));
        assert_eq!(si.product_name.as_deref(), Some("20XW0026GE"));
        assert_eq!(si.product_serial.as_deref(), Some("PF2ABCDE"));
        assert_eq!(si.product_uuid, None);
        assert_eq!(si.bios_version.as_deref(), Some("N32ET86W (1.62 )"));
        assert_eq!(si.bios_date.as_deref(), Some("03/09/2023"));
        assert_eq!(si.board_serial, None);
        assert_eq!(si.chassis_type.as_deref(), Some("Notebook"));
        // Nothing readable: all empty, no panic.
        assert_eq!(system_info(&SystemRows::default()), SystemInfo::default());
    }

    #[test]
    fn cpu_sums_sockets() {
        let p = |n| {
            row(&[
                ("Name", s("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz     ")),
                ("Manufacturer", s("GenuineIntel")),
                ("NumberOfCores", Value::UInt(n)),
                ("NumberOfLogicalProcessors", Value::UInt(2 * n)),
                ("MaxClockSpeed", Value::UInt(2101)),
            ])
        };
        let c = cpu(&[p(16), p(16)]);
        assert_eq!(c.model, "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz");
        assert_eq!((c.sockets, c.cores, c.threads), (2, 32, 64));
        assert_eq!(c.base_mhz, Some(2101));
        assert_eq!(cpu(&[]), Cpu::default());
    }

    #[test]
    fn memory_disks_filesystems() {
        let m = row(&[
            ("Capacity", s("17179869184")),
            ("DeviceLocator", s("DIMM 0")),
            ("BankLabel", s("BANK 0")),
            ("SMBIOSMemoryType", Value::UInt(26)),
            ("ConfiguredClockSpeed", Value::UInt(3200)),
            ("PartNumber", s("M471A2K43DB1-CWE    ")),
        ]);
        let empty_slot = row(&[("DeviceLocator", s("DIMM 1"))]);
        let mods = memory_modules(&[m, empty_slot]);
        assert_eq!(mods.len(), 1);
        assert_eq!(mods[0].size_bytes, 16 << 30);
        assert_eq!(mods[0].memory_type.as_deref(), Some("DDR4"));
        assert_eq!(mods[0].speed_mts, Some(3200));
        assert_eq!(mods[0].part_number.as_deref(), Some("M471A2K43DB1-CWE"));

        let d = row(&[
            // As Wine spells it.
            ("DeviceId", s("\\\\.\\PHYSICALDRIVE0")),
            ("Index", Value::UInt(0)),
            ("Model", s("Samsung SSD 980")),
            ("Size", s("1000202273280")),
            ("MediaType", s("Fixed hard disk media")),
        ]);
        let usb = row(&[
            ("DeviceID", s("\\\\.\\PHYSICALDRIVE1")),
            ("Index", Value::UInt(1)),
            ("InterfaceType", s("USB")),
            ("Size", s("32000000000")),
        ]);
        let media = BTreeMap::from([(0, 4), (1, 3)]);
        let b = block_devices(&[d, usb], &media);
        assert_eq!(b[0].size_bytes, 1_000_202_273_280);
        assert_eq!(b[0].name, "\\\\.\\PHYSICALDRIVE0");
        assert!(!b[0].rotational && !b[0].removable);
        assert!(b[1].rotational && b[1].removable);

        let c = row(&[
            ("DeviceID", s("C:")),
            ("FileSystem", s("NTFS")),
            ("Size", s("82252800000")),
            ("FreeSpace", s("72701804544")),
        ]);
        let cd = row(&[("DeviceID", s("D:")), ("Size", Value::Null)]);
        let net = row(&[
            ("DeviceID", s("Z:")),
            ("ProviderName", s("\\\\srv\\share")),
            ("Size", s("100")),
        ]);
        let f = filesystems(&[c, cd, net]);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].mount_point.as_str(), f[0].device.as_str()),
            ("C:", "C:")
        );
        assert_eq!(f[0].free_bytes, 72_701_804_544);
        assert_eq!(f[1].device, "\\\\srv\\share");
    }

    #[test]
    fn gpus_and_monitors() {
        let g = row(&[
            ("Name", s("NVIDIA GeForce GTX 470")),
            ("AdapterCompatibility", s("(Standard display types)")),
            ("DriverVersion", s("30.0.14023.3004")),
            (
                "PNPDeviceID",
                s("PCI\\VEN_10DE&DEV_06CD&SUBSYS_00000000&REV_00\\0&DEADBEEF&0&DEAD"),
            ),
        ]);
        let gs = gpus(&[g]);
        assert_eq!((gs[0].vendor_id, gs[0].device_id), (0x10de, 0x06cd));
        assert_eq!(gs[0].vendor_name.as_deref(), Some("NVIDIA GeForce GTX 470"));
        assert_eq!(pci_ids("PCI\\VEN_"), (None, None));
        assert_eq!(pci_ids("ROOT\\BASICDISPLAY\\0000"), (None, None));

        let codes = |t: &str| {
            Value::Array(
                t.bytes()
                    .map(|b| Value::UInt(b.into()))
                    .chain([Value::UInt(0)])
                    .collect(),
            )
        };
        let inst = "DISPLAY\\DELA0B1\\5&2b1d3f8&0&UID4353_0";
        let w = row(&[
            ("InstanceName", s(inst)),
            ("ManufacturerName", codes("DEL")),
            ("ProductCodeID", codes("A0B1")),
            ("SerialNumberID", codes("ABC123")),
            ("UserFriendlyName", codes("DELL U2720Q")),
            ("YearOfManufacture", Value::UInt(2021)),
        ]);
        let sizes = BTreeMap::from([(inst.to_string(), (60, 34))]);
        let ms = monitors_from_wmi(&[w], &sizes);
        assert_eq!(ms[0].manufacturer, "DEL");
        assert_eq!(ms[0].product_code, 0xa0b1);
        assert_eq!(ms[0].name.as_deref(), Some("DELL U2720Q"));
        assert_eq!(
            (ms[0].width_mm, ms[0].height_mm, ms[0].year),
            (600, 340, 2021)
        );

        let d = row(&[
            ("DeviceID", s("DesktopMonitor1")),
            ("Name", s("Generic PnP Monitor")),
            ("PNPDeviceID", s("DISPLAY\\GSM5B7F\\4&1")),
            ("ScreenWidth", Value::UInt(1920)),
            ("ScreenHeight", Value::UInt(1080)),
        ]);
        let ms = monitors_from_desktop(&[d]);
        assert_eq!(
            (ms[0].manufacturer.as_str(), ms[0].product_code),
            ("GSM", 0x5b7f)
        );
        assert_eq!((ms[0].native_width, ms[0].native_height), (1920, 1080));
        assert_eq!(monitor_ids("garbage"), (String::new(), 0));
    }

    #[test]
    fn network_joins_adapters() {
        let cfg = row(&[
            ("Index", Value::UInt(4)),
            ("Description", s("Intel(R) Ethernet Connection I219-V")),
            ("IPEnabled", Value::Bool(true)),
            ("MACAddress", s("02:FC:00:00:00:01")),
            (
                "IPAddress",
                Value::Array(vec![s("192.0.2.2"), s("fe80::fc:ff:fe00:1%4"), s("bogus")]),
            ),
            ("IPSubnet", Value::Array(vec![s("255.255.255.0"), s("64")])),
        ]);
        let ad = row(&[
            ("Index", Value::UInt(4)),
            ("NetConnectionID", s("Ethernet")),
            ("NetConnectionStatus", Value::UInt(2)),
            ("PhysicalAdapter", Value::Bool(true)),
            ("Speed", s("1000000000")),
        ]);
        let off = row(&[
            ("Index", Value::UInt(9)),
            ("Description", s("WAN Miniport")),
            ("IPEnabled", Value::Bool(false)),
        ]);
        let n = network(&[cfg, off], &[ad]);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].name, "Ethernet");
        assert_eq!(n[0].mac.as_deref(), Some("02:fc:00:00:00:01"));
        assert_eq!(n[0].ipv4, ["192.0.2.2/24"]);
        assert_eq!(n[0].ipv6, ["fe80::fc:ff:fe00:1/64"]);
        assert_eq!(n[0].speed_mbps, Some(1000));
        assert_eq!(n[0].state, "up");
        assert!(!n[0].is_virtual);
        assert_eq!(mask_prefix("255.255.0.255"), None);
        assert_eq!(mask_prefix("0.0.0.0"), Some(0));
        assert_eq!(mask_prefix("255.255.255.255"), Some(32));
    }

    #[test]
    fn batteries_and_hotfixes() {
        let b = row(&[
            ("DeviceID", s("5B10W13930LGC01")),
            ("Name", s("5B10W13930")),
            ("Chemistry", Value::UInt(6)),
            ("EstimatedChargeRemaining", Value::UInt(87)),
            ("BatteryStatus", Value::UInt(2)),
            ("DesignCapacity", Value::UInt(57000)),
        ]);
        let bs = batteries(&[b]);
        assert_eq!(bs[0].technology.as_deref(), Some("Li-ion"));
        assert_eq!(bs[0].capacity_percent, Some(87));
        assert_eq!(bs[0].energy_full_design_uwh, Some(57_000_000));
        let h = hotfixes(
            &[
                row(&[("HotFixID", s("KB5034441"))]),
                row(&[("HotFixID", s("KB5034441"))]),
                row(&[("HotFixID", s("File 1"))]),
                row(&[]),
            ],
            100,
        );
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].name, "KB5034441");
    }

    #[test]
    fn uninstall_entries() {
        let app = UninstallEntry {
            display_name: Some("Tether Test App".into()),
            display_version: Some("1.2.3".into()),
            publisher: Some("Tether Inc".into()),
            install_date: Some("20261203".into()),
            ..Default::default()
        };
        let hidden = UninstallEntry {
            display_name: Some("Hidden".into()),
            system_component: Some(1),
            ..Default::default()
        };
        let patch = UninstallEntry {
            display_name: Some("Update for X (KB1)".into()),
            parent_key_name: Some("X".into()),
            ..Default::default()
        };
        let nameless = UninstallEntry::default();
        let blank = UninstallEntry {
            display_name: Some(" \0 ".into()),
            ..Default::default()
        };
        let p = uninstall_packages(
            [
                (&app, "x64"),
                (&hidden, "x64"),
                (&patch, "x64"),
                (&nameless, "x86"),
                (&blank, ""),
                (&app, "x64"),
                (&app, "x86"),
            ],
            100,
        );
        assert_eq!(p.len(), 2);
        assert_eq!(
            (
                p[0].name.as_str(),
                p[0].version.as_str(),
                p[0].arch.as_str()
            ),
            ("Tether Test App", "1.2.3", "x64")
        );
        assert_eq!(p[1].arch, "x86");
        assert_eq!(
            uninstall_packages([(&app, "x64"), (&app, "x86")], 1).len(),
            1
        );
    }

    #[test]
    fn os_names() {
        let w11 = OsValues {
            product_name: Some("Windows 10 Pro".into()),
            edition_id: Some("Professional".into()),
            display_version: Some("23H2".into()),
            current_version: Some("6.3".into()),
            major: Some(10),
            minor: Some(0),
            current_build: Some("22631".into()),
            ubr: Some(3007),
            ..Default::default()
        };
        let f = os_fields(&w11);
        assert_eq!(f.name, "Windows 11 Pro");
        assert_eq!(f.version.as_deref(), Some("23H2"));
        assert_eq!(f.build.as_deref(), Some("22631.3007"));
        assert_eq!(f.kernel, "10.0.22631");
        // Wine's defaults: Windows 7.
        let w7 = OsValues {
            product_name: Some("Microsoft Windows 7".into()),
            current_version: Some("6.1".into()),
            current_build: Some("7601".into()),
            csd_version: Some("Service Pack 1".into()),
            ..Default::default()
        };
        let f = os_fields(&w7);
        assert_eq!(f.name, "Microsoft Windows 7");
        assert_eq!(f.version.as_deref(), Some("6.1 Service Pack 1"));
        assert_eq!(f.build.as_deref(), Some("7601"));
        assert_eq!(f.kernel, "6.1.7601");
        assert_eq!(os_fields(&OsValues::default()).name, "Windows");
        assert_eq!(user_name("DESKTOP-1\\alice").as_deref(), Some("alice"));
        assert_eq!(iana_zone("W. Europe Standard Time"), Some("Europe/Berlin"));
        assert_eq!(cim_date("garbage").as_deref(), Some("garbage"));
        assert_eq!(cim_date("00000000000000.000000+000"), None);
    }
}
