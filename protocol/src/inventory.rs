//! Inventory data model: plain serde types, no I/O.
//!
//! Field types are deliberately plain (`String`, integers, `bool`, `Option`,
//! `Vec`, unit-only enums) so the same types round-trip through JSON and
//! bincode 2 (serde mode). No untagged enums, no `flatten`, no skipping.
//!
//! [`Inventory::sanitize`] is meant to run on the relay on untrusted input:
//! it is total (never panics) and bounds every string and list.
//!
//! Lists are bounded already while decoding (`deserialize_with` on every `Vec` field, see
//! [`capped`]): a 16 MiB upload of millions of empty elements would otherwise become hundreds of
//! megabytes before `sanitize` could trim it. Decoding keeps the first elements up to the same
//! limits `sanitize` applies ([`Limits::default`]) and decodes the rest one at a time without
//! keeping them, so an honest over-long list is trimmed exactly as before, not refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Current schema version written into [`Inventory::schema`].
pub const SCHEMA_VERSION: u16 = 1;

/// Complete inventory report of one workstation.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Inventory {
    pub schema: u16,
    pub collected_at_unix_ms: u64,
    pub host: Host,
    pub hardware: Hardware,
    #[serde(deserialize_with = "capped::packages")]
    pub software: Vec<Package>,
    /// Problems met while collecting; the rest of the report is still valid.
    #[serde(deserialize_with = "capped::errors")]
    pub errors: Vec<CollectorError>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Host {
    pub hostname: String,
    /// os-release `NAME`, e.g. "Debian GNU/Linux".
    pub os_name: String,
    /// os-release `VERSION_ID` (or `VERSION`), e.g. "12".
    pub os_version: Option<String>,
    /// os-release `ID`, e.g. "debian".
    pub os_id: Option<String>,
    /// os-release `BUILD_ID` or `VERSION_CODENAME`.
    pub os_build: Option<String>,
    /// Kernel release, e.g. "6.1.0-18-amd64".
    pub kernel: String,
    pub arch: String,
    pub uptime_s: u64,
    pub boot_time_unix: u64,
    /// IANA zone name, e.g. "Europe/Berlin".
    pub timezone: Option<String>,
    /// Distinct user names with a login session (utmp USER_PROCESS).
    #[serde(deserialize_with = "capped::users")]
    pub logged_in_users: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Hardware {
    pub cpu: Cpu,
    pub memory: Memory,
    pub system: SystemInfo,
    #[serde(deserialize_with = "capped::items")]
    pub block_devices: Vec<BlockDevice>,
    #[serde(deserialize_with = "capped::items")]
    pub filesystems: Vec<Filesystem>,
    #[serde(deserialize_with = "capped::items")]
    pub gpus: Vec<Gpu>,
    #[serde(deserialize_with = "capped::items")]
    pub monitors: Vec<Monitor>,
    #[serde(deserialize_with = "capped::items")]
    pub network: Vec<NetworkInterface>,
    #[serde(deserialize_with = "capped::items")]
    pub batteries: Vec<Battery>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Cpu {
    pub model: String,
    pub vendor: String,
    pub sockets: u32,
    /// Physical cores over all sockets.
    pub cores: u32,
    /// Logical CPUs (hardware threads).
    pub threads: u32,
    /// Base frequency when known (cpufreq `base_frequency`, else the
    /// "@ x.xxGHz" in the model name, else the current "cpu MHz").
    pub base_mhz: Option<u32>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Memory {
    pub total_bytes: u64,
    pub swap_total_bytes: u64,
    /// Populated DIMMs from SMBIOS type 17, when the table is readable (root).
    #[serde(deserialize_with = "capped::items")]
    pub modules: Vec<MemoryModule>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct MemoryModule {
    pub locator: Option<String>,
    pub bank: Option<String>,
    pub size_bytes: u64,
    /// e.g. "DDR4".
    pub memory_type: Option<String>,
    pub speed_mts: Option<u32>,
    pub manufacturer: Option<String>,
    pub part_number: Option<String>,
    pub serial: Option<String>,
}

/// System / firmware identification (DMI).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct SystemInfo {
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
    pub product_serial: Option<String>,
    pub product_uuid: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
    pub bios_date: Option<String>,
    pub board_vendor: Option<String>,
    pub board_name: Option<String>,
    pub board_serial: Option<String>,
    /// SMBIOS chassis type name, e.g. "Notebook", or the raw number.
    pub chassis_type: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct BlockDevice {
    pub name: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub rotational: bool,
    pub removable: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Filesystem {
    pub mount_point: String,
    pub fs_type: String,
    pub device: String,
    pub size_bytes: u64,
    /// Bytes available to unprivileged users.
    pub free_bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Gpu {
    /// PCI address, e.g. "0000:01:00.0".
    pub pci_slot: String,
    pub vendor_id: u16,
    pub device_id: u16,
    pub vendor_name: Option<String>,
    pub driver: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Monitor {
    /// DRM connector, e.g. "card0-HDMI-A-1".
    pub connector: String,
    /// 3-letter PNP manufacturer id, e.g. "DEL".
    pub manufacturer: String,
    pub product_code: u16,
    /// Serial-number descriptor string, else the numeric serial if non-zero.
    pub serial: Option<String>,
    /// Monitor name descriptor.
    pub name: Option<String>,
    pub width_mm: u32,
    pub height_mm: u32,
    pub native_width: u32,
    pub native_height: u32,
    /// Year of manufacture (or model year).
    pub year: u16,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct NetworkInterface {
    pub name: String,
    pub mac: Option<String>,
    /// CIDR notation, e.g. "192.168.1.10/24".
    #[serde(deserialize_with = "capped::addresses")]
    pub ipv4: Vec<String>,
    /// CIDR notation, e.g. "fe80::1/64".
    #[serde(deserialize_with = "capped::addresses")]
    pub ipv6: Vec<String>,
    pub mtu: u32,
    pub speed_mbps: Option<u32>,
    /// Kernel operstate: "up", "down", "unknown", ...
    pub state: String,
    /// No backing device (bridge, veth, tun, ...).
    pub is_virtual: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Battery {
    pub name: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub technology: Option<String>,
    pub energy_full_uwh: Option<u64>,
    pub energy_full_design_uwh: Option<u64>,
    /// Current charge level in percent (sysfs `capacity`).
    pub capacity_percent: Option<u8>,
    /// "Charging", "Discharging", "Full", ...
    pub status: Option<String>,
    pub cycle_count: Option<u32>,
}

#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
pub enum PackageSource {
    Dpkg,
    Rpm,
    Flatpak,
    Snap,
    #[default]
    Other,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: PackageSource,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct CollectorError {
    pub collector: String,
    pub message: String,
}

/// Bounds applied by [`Inventory::sanitize`].
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Maximum length of any string, in UTF-8 bytes.
    pub max_string: usize,
    pub max_packages: usize,
    /// Maximum length of each hardware list (disks, filesystems, NICs, ...).
    pub max_items: usize,
    /// Maximum addresses per NIC and per address family.
    pub max_addresses: usize,
    pub max_users: usize,
    pub max_errors: usize,
}

/// Longest inventory string the relay keeps, in UTF-8 bytes.
pub const MAX_STRING: usize = 512;
/// Most packages the relay keeps per inventory.
pub const MAX_PACKAGES: usize = 20_000;
/// Most elements of each hardware list (disks, filesystems, NICs, memory modules, ...).
pub const MAX_ITEMS: usize = 256;
/// Most addresses per NIC and per address family.
pub const MAX_ADDRESSES: usize = 64;
/// Most logged-in user names.
pub const MAX_USERS: usize = 256;
/// Most collector errors.
pub const MAX_ERRORS: usize = 256;

impl Default for Limits {
    /// The limits the relay enforces; decoding already trims lists to these (see [`capped`]).
    fn default() -> Self {
        Self {
            max_string: MAX_STRING,
            max_packages: MAX_PACKAGES,
            max_items: MAX_ITEMS,
            max_addresses: MAX_ADDRESSES,
            max_users: MAX_USERS,
            max_errors: MAX_ERRORS,
        }
    }
}

/// Decode-time bounds for the inventory's lists, used through `deserialize_with`.
///
/// bincode 2.0.1's serde path does not bound element counts: its `with_limit` counts only the
/// bytes of strings and byte buffers, and `deserialize_seq` hands the visitor whatever length
/// the prefix claims, so 2.1 M empty `MemoryModule`s (8 bytes each on the wire, 168 in memory)
/// decode to ~350 MB out of a 16 MiB frame. These helpers keep the first `max` elements and
/// decode the rest one at a time, dropping each (bincode cannot skip a value it has not
/// decoded), so memory stays that of `max` elements whatever the frame holds.
pub mod capped {
    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    /// Most bytes reserved up front from a length prefix (as serde's own `Vec` does): the rest
    /// grows as elements actually arrive.
    const PREALLOC: usize = 1024 * 1024;

    /// A list of at most `max` elements: the first ones; the rest are decoded and dropped.
    pub fn seq<'de, D, T>(d: D, max: usize) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct Capped<T> {
            max: usize,
            _t: PhantomData<T>,
        }
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Capped<T> {
            type Value = Vec<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let room = PREALLOC / std::mem::size_of::<T>().max(1);
                let hint = seq.size_hint().unwrap_or(0).min(self.max).min(room);
                let mut out = Vec::with_capacity(hint);
                while out.len() < self.max {
                    match seq.next_element()? {
                        Some(x) => out.push(x),
                        None => return Ok(out),
                    }
                }
                while seq.next_element::<T>()?.is_some() {}
                Ok(out)
            }
        }
        d.deserialize_seq(Capped {
            max,
            _t: PhantomData,
        })
    }

    pub fn items<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_ITEMS)
    }

    pub fn packages<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_PACKAGES)
    }

    pub fn addresses<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_ADDRESSES)
    }

    pub fn users<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_USERS)
    }

    pub fn errors<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        seq(d, super::MAX_ERRORS)
    }
}

impl Inventory {
    /// Bound and clean the inventory in place: truncate lists to their
    /// limits, strip control and bidi-override characters from every string
    /// and truncate strings to `limits.max_string` bytes (at a char
    /// boundary). Returns a bounded summary of what was changed (one line per
    /// field, not per string). Total: never panics.
    pub fn sanitize(&mut self, limits: &Limits) -> Vec<String> {
        let mut c = Cleaner::new(limits);
        let l = limits;

        c.str("host.hostname", &mut self.host.hostname);
        c.str("host.os_name", &mut self.host.os_name);
        c.opt("host.os_version", &mut self.host.os_version);
        c.opt("host.os_id", &mut self.host.os_id);
        c.opt("host.os_build", &mut self.host.os_build);
        c.str("host.kernel", &mut self.host.kernel);
        c.str("host.arch", &mut self.host.arch);
        c.opt("host.timezone", &mut self.host.timezone);
        c.list(
            "host.logged_in_users",
            &mut self.host.logged_in_users,
            l.max_users,
        );
        for u in &mut self.host.logged_in_users {
            c.str("host.logged_in_users[]", u);
        }

        let hw = &mut self.hardware;
        c.str("cpu.model", &mut hw.cpu.model);
        c.str("cpu.vendor", &mut hw.cpu.vendor);

        c.list("memory.modules", &mut hw.memory.modules, l.max_items);
        for m in &mut hw.memory.modules {
            c.opt("memory.modules[].locator", &mut m.locator);
            c.opt("memory.modules[].bank", &mut m.bank);
            c.opt("memory.modules[].memory_type", &mut m.memory_type);
            c.opt("memory.modules[].manufacturer", &mut m.manufacturer);
            c.opt("memory.modules[].part_number", &mut m.part_number);
            c.opt("memory.modules[].serial", &mut m.serial);
        }

        let s = &mut hw.system;
        c.opt("system.sys_vendor", &mut s.sys_vendor);
        c.opt("system.product_name", &mut s.product_name);
        c.opt("system.product_serial", &mut s.product_serial);
        c.opt("system.product_uuid", &mut s.product_uuid);
        c.opt("system.bios_vendor", &mut s.bios_vendor);
        c.opt("system.bios_version", &mut s.bios_version);
        c.opt("system.bios_date", &mut s.bios_date);
        c.opt("system.board_vendor", &mut s.board_vendor);
        c.opt("system.board_name", &mut s.board_name);
        c.opt("system.board_serial", &mut s.board_serial);
        c.opt("system.chassis_type", &mut s.chassis_type);

        c.list("block_devices", &mut hw.block_devices, l.max_items);
        for d in &mut hw.block_devices {
            c.str("block_devices[].name", &mut d.name);
            c.opt("block_devices[].model", &mut d.model);
            c.opt("block_devices[].serial", &mut d.serial);
        }

        c.list("filesystems", &mut hw.filesystems, l.max_items);
        for f in &mut hw.filesystems {
            c.str("filesystems[].mount_point", &mut f.mount_point);
            c.str("filesystems[].fs_type", &mut f.fs_type);
            c.str("filesystems[].device", &mut f.device);
        }

        c.list("gpus", &mut hw.gpus, l.max_items);
        for g in &mut hw.gpus {
            c.str("gpus[].pci_slot", &mut g.pci_slot);
            c.opt("gpus[].vendor_name", &mut g.vendor_name);
            c.opt("gpus[].driver", &mut g.driver);
        }

        c.list("monitors", &mut hw.monitors, l.max_items);
        for m in &mut hw.monitors {
            c.str("monitors[].connector", &mut m.connector);
            c.str("monitors[].manufacturer", &mut m.manufacturer);
            c.opt("monitors[].serial", &mut m.serial);
            c.opt("monitors[].name", &mut m.name);
        }

        c.list("network", &mut hw.network, l.max_items);
        for n in &mut hw.network {
            c.str("network[].name", &mut n.name);
            c.opt("network[].mac", &mut n.mac);
            c.list("network[].ipv4", &mut n.ipv4, l.max_addresses);
            c.list("network[].ipv6", &mut n.ipv6, l.max_addresses);
            for a in n.ipv4.iter_mut() {
                c.str("network[].ipv4[]", a);
            }
            for a in n.ipv6.iter_mut() {
                c.str("network[].ipv6[]", a);
            }
            c.str("network[].state", &mut n.state);
        }

        c.list("batteries", &mut hw.batteries, l.max_items);
        for b in &mut hw.batteries {
            c.str("batteries[].name", &mut b.name);
            c.opt("batteries[].manufacturer", &mut b.manufacturer);
            c.opt("batteries[].model", &mut b.model);
            c.opt("batteries[].technology", &mut b.technology);
            c.opt("batteries[].status", &mut b.status);
        }

        c.list("software", &mut self.software, l.max_packages);
        for p in &mut self.software {
            c.str("software[].name", &mut p.name);
            c.str("software[].version", &mut p.version);
            c.str("software[].arch", &mut p.arch);
        }

        c.list("errors", &mut self.errors, l.max_errors);
        for e in &mut self.errors {
            c.str("errors[].collector", &mut e.collector);
            c.str("errors[].message", &mut e.message);
        }

        c.into_report()
    }
}

#[derive(Default)]
struct FieldStats {
    stripped: usize,
    truncated: usize,
    dropped_items: usize,
}

struct Cleaner<'a> {
    limits: &'a Limits,
    stats: BTreeMap<&'static str, FieldStats>,
}

impl<'a> Cleaner<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self {
            limits,
            stats: BTreeMap::new(),
        }
    }

    fn str(&mut self, field: &'static str, s: &mut String) {
        let (stripped, truncated) = clean_string(s, self.limits.max_string);
        if stripped || truncated {
            let st = self.stats.entry(field).or_default();
            st.stripped += usize::from(stripped);
            st.truncated += usize::from(truncated);
        }
    }

    fn opt(&mut self, field: &'static str, s: &mut Option<String>) {
        if let Some(s) = s {
            self.str(field, s);
        }
    }

    fn list<T>(&mut self, field: &'static str, v: &mut Vec<T>, max: usize) {
        if v.len() > max {
            let dropped = v.len() - max;
            v.truncate(max);
            v.shrink_to_fit();
            self.stats.entry(field).or_default().dropped_items += dropped;
        }
    }

    fn into_report(self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, st) in self.stats {
            if st.dropped_items > 0 {
                out.push(format!(
                    "{field}: dropped {} items over the limit",
                    st.dropped_items
                ));
            }
            if st.stripped > 0 {
                out.push(format!(
                    "{field}: removed control/bidi characters from {} strings",
                    st.stripped
                ));
            }
            if st.truncated > 0 {
                out.push(format!(
                    "{field}: truncated {} over-long strings",
                    st.truncated
                ));
            }
        }
        out
    }
}

/// True for characters that must not survive sanitising: C0 controls, DEL,
/// C1 controls, and bidirectional overrides/isolates/marks.
fn is_forbidden(c: char) -> bool {
    c.is_control() // Cc: U+0000..=U+001F, U+007F, U+0080..=U+009F
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Clean one string in place. Returns (characters were removed, truncated).
fn clean_string(s: &mut String, max_bytes: usize) -> (bool, bool) {
    // Fast path: short printable ASCII needs no work.
    if s.len() <= max_bytes && s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return (false, false);
    }
    let mut out = String::with_capacity(s.len().min(max_bytes));
    let mut stripped = false;
    let mut truncated = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            stripped = true;
            // Drop a whole CSI sequence (ESC [ params intermediates final).
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&n) = chars.peek() {
                    if ('\u{20}'..='\u{3f}').contains(&n) {
                        chars.next();
                    } else {
                        if ('\u{40}'..='\u{7e}').contains(&n) {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            continue;
        }
        let c = if matches!(c, '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}') {
            stripped = true;
            ' '
        } else if is_forbidden(c) {
            stripped = true;
            continue;
        } else {
            c
        };
        if out.len() + c.len_utf8() > max_bytes {
            truncated = true;
            break;
        }
        out.push(c);
    }
    if stripped || truncated {
        *s = out;
    }
    (stripped, truncated)
}

/// Render one CSV cell (RFC 4180) safe against formula injection: a cell
/// whose first non-space character is `=`, `+`, `-`, `@`, TAB or CR gets a
/// leading `'`; cells containing `,` `"` CR or LF are quoted with `"`
/// doubled.
pub fn csv_cell(s: &str) -> String {
    let first = s.trim_start_matches(' ').chars().next();
    let needs_guard = matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r'));
    let needs_quotes = s.contains([',', '"', '\r', '\n']) || s.starts_with(' ') || s.ends_with(' ');
    let mut out = String::with_capacity(s.len() + 3);
    if needs_quotes {
        out.push('"');
    }
    if needs_guard {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if needs_quotes {
        out.push('"');
    }
    out
}

/// The key facts of an inventory: one row of `tether inventory --all`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub cpu_cores: u32,
    pub cpu_threads: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub vendor: String,
    pub product: String,
    pub serial: String,
    pub bios_version: String,
    pub ipv4: String,
    pub mac: String,
    pub monitors: u32,
    pub gpus: u32,
    pub packages: u32,
    pub collected_at_unix_ms: u64,
}

impl Inventory {
    /// Key facts for fleet-wide listings.
    pub fn summary(&self) -> Summary {
        let h = &self.hardware;
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        // The first interface with a hardware address and an IPv4 address: the one people mean.
        let nic = h
            .network
            .iter()
            .find(|n| n.mac.is_some() && !n.ipv4.is_empty() && !n.is_virtual)
            .or_else(|| {
                h.network
                    .iter()
                    .find(|n| !n.ipv4.is_empty() && n.name != "lo")
            });
        Summary {
            os: format!(
                "{} {}",
                self.host.os_name,
                self.host.os_version.clone().unwrap_or_default()
            )
            .trim()
            .to_string(),
            kernel: self.host.kernel.clone(),
            arch: self.host.arch.clone(),
            cpu_model: h.cpu.model.clone(),
            cpu_cores: h.cpu.cores,
            cpu_threads: h.cpu.threads,
            memory_bytes: h.memory.total_bytes,
            disk_bytes: h
                .block_devices
                .iter()
                .filter(|d| !d.removable)
                .fold(0u64, |a, d| a.saturating_add(d.size_bytes)),
            vendor: opt(&h.system.sys_vendor),
            product: opt(&h.system.product_name),
            serial: opt(&h.system.product_serial),
            bios_version: opt(&h.system.bios_version),
            ipv4: nic
                .and_then(|n| n.ipv4.first().cloned())
                .unwrap_or_default(),
            mac: nic.and_then(|n| n.mac.clone()).unwrap_or_default(),
            monitors: h.monitors.len() as u32,
            gpus: h.gpus.len() as u32,
            packages: self.software.len() as u32,
            collected_at_unix_ms: self.collected_at_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_and_truncates() {
        let mut s = "a\u{1b}[31mred\u{1b}[0m\u{7}\u{202e}x\u{85}y\tz".to_string();
        let (st, tr) = clean_string(&mut s, 512);
        assert!(st && !tr);
        assert_eq!(s, "aredxy z");

        let mut s = "é".repeat(10); // 20 bytes
        let (st, tr) = clean_string(&mut s, 5);
        assert!(!st && tr);
        assert_eq!(s, "éé");

        let mut s = "plain".to_string();
        assert_eq!(clean_string(&mut s, 512), (false, false));
        let mut s = "x".to_string();
        assert_eq!(clean_string(&mut s, 0), (false, true));
        assert_eq!(s, "");
    }

    #[test]
    fn unterminated_escape_is_total() {
        for input in [
            "\u{1b}",
            "\u{1b}[",
            "\u{1b}[12;",
            "a\u{1b}[\u{1b}[1m",
            "\u{1b}\u{1b}",
        ] {
            let mut s = input.to_string();
            clean_string(&mut s, 512);
            assert!(!s.contains('\u{1b}'));
        }
    }

    #[test]
    fn csv_cells() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_cell("@SUM(1)"), "'@SUM(1)");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1,\"2\""), "\"'=1,\"\"2\"\"\"");
        assert_eq!(csv_cell("  =1"), "\"'  =1\"");
        assert_eq!(csv_cell(""), "");
    }
}
