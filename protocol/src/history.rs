//! What changed between two inventories of one machine, and a fingerprint that says whether
//! anything worth recording changed at all.
//!
//! Values that move on their own (uptime, free space, battery charge, who is logged in, when it
//! was collected) are left out of both, so an idle machine produces no history and no uploads.

use crate::codec;
use crate::inventory::{Inventory, Package};
use crate::version;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareUpgraded,
    SoftwareDowngraded,
    OsChanged,
    KernelChanged,
    HardwareAdded,
    HardwareRemoved,
    HardwareChanged,
    /// The first inventory the relay received for a machine.
    FirstInventory,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::SoftwareInstalled => "software_installed",
            ChangeKind::SoftwareRemoved => "software_removed",
            ChangeKind::SoftwareUpgraded => "software_upgraded",
            ChangeKind::SoftwareDowngraded => "software_downgraded",
            ChangeKind::OsChanged => "os_changed",
            ChangeKind::KernelChanged => "kernel_changed",
            ChangeKind::HardwareAdded => "hardware_added",
            ChangeKind::HardwareRemoved => "hardware_removed",
            ChangeKind::HardwareChanged => "hardware_changed",
            ChangeKind::FirstInventory => "first_inventory",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use ChangeKind::*;
        [
            SoftwareInstalled,
            SoftwareRemoved,
            SoftwareUpgraded,
            SoftwareDowngraded,
            OsChanged,
            KernelChanged,
            HardwareAdded,
            HardwareRemoved,
            HardwareChanged,
            FirstInventory,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// What changed: a package name, "memory", "disk sda", "monitor DEL 41042"…
    pub subject: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Change {
    fn new(
        kind: ChangeKind,
        subject: impl Into<String>,
        old: Option<String>,
        new: Option<String>,
    ) -> Self {
        Self {
            kind,
            subject: subject.into(),
            old,
            new,
        }
    }
}

/// The inventory with everything volatile zeroed: what the fingerprint and history look at.
pub fn stable_view(inv: &Inventory) -> Inventory {
    let mut s = inv.clone();
    s.collected_at_unix_ms = 0;
    s.host.uptime_s = 0;
    s.host.boot_time_unix = 0;
    s.host.logged_in_users.clear();
    s.errors.clear();
    for f in &mut s.hardware.filesystems {
        f.free_bytes = 0;
    }
    for b in &mut s.hardware.batteries {
        b.capacity_percent = None;
        b.status = None;
        b.energy_full_uwh = None;
        b.cycle_count = None;
    }
    for n in &mut s.hardware.network {
        n.speed_mbps = None;
        n.state.clear();
    }
    s.hardware.cpu.base_mhz = None;
    s.software
        .sort_by(|a, b| (&a.name, &a.arch, &a.version).cmp(&(&b.name, &b.arch, &b.version)));
    s
}

/// 64-bit FNV-1a of the stable view's encoding: equal for inventories that differ only in
/// volatile values. Not a security measure; it only saves uploads.
pub fn fingerprint(inv: &Inventory) -> u64 {
    let bytes = codec::to_bytes(&stable_view(inv)).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn pkg_key(p: &Package) -> (String, String, String) {
    (p.name.clone(), p.arch.clone(), format!("{:?}", p.source))
}

fn pkg_label(p: &Package) -> String {
    if p.arch.is_empty() || p.arch == "all" {
        p.name.clone()
    } else {
        format!("{}:{}", p.name, p.arch)
    }
}

/// Everything that changed from `old` to `new`, software first, sorted for stable output.
pub fn diff(old: &Inventory, new: &Inventory) -> Vec<Change> {
    let mut out = Vec::new();
    software(old, new, &mut out);
    os(old, new, &mut out);
    hardware(old, new, &mut out);
    out
}

fn software(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let before: BTreeMap<_, _> = old.software.iter().map(|p| (pkg_key(p), p)).collect();
    let after: BTreeMap<_, _> = new.software.iter().map(|p| (pkg_key(p), p)).collect();
    for (k, p) in &after {
        match before.get(k) {
            None => out.push(Change::new(
                ChangeKind::SoftwareInstalled,
                pkg_label(p),
                None,
                Some(p.version.clone()),
            )),
            Some(o) if o.version != p.version => {
                let kind = match version::compare(&p.version, &o.version) {
                    Ordering::Less => ChangeKind::SoftwareDowngraded,
                    _ => ChangeKind::SoftwareUpgraded,
                };
                out.push(Change::new(
                    kind,
                    pkg_label(p),
                    Some(o.version.clone()),
                    Some(p.version.clone()),
                ));
            }
            Some(_) => {}
        }
    }
    for (k, p) in &before {
        if !after.contains_key(k) {
            out.push(Change::new(
                ChangeKind::SoftwareRemoved,
                pkg_label(p),
                Some(p.version.clone()),
                None,
            ));
        }
    }
}

fn os(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let os_of = |i: &Inventory| {
        format!(
            "{} {}",
            i.host.os_name,
            i.host.os_version.clone().unwrap_or_default()
        )
        .trim()
        .to_string()
    };
    if os_of(old) != os_of(new) {
        out.push(Change::new(
            ChangeKind::OsChanged,
            "os",
            Some(os_of(old)),
            Some(os_of(new)),
        ));
    }
    if old.host.kernel != new.host.kernel {
        out.push(Change::new(
            ChangeKind::KernelChanged,
            "kernel",
            Some(old.host.kernel.clone()),
            Some(new.host.kernel.clone()),
        ));
    }
}

/// Compares two lists of items by key; reports additions and removals with a description.
fn items<T>(
    out: &mut Vec<Change>,
    old: &[T],
    new: &[T],
    key: impl Fn(&T) -> String,
    describe: impl Fn(&T) -> String,
) {
    let before: BTreeMap<_, _> = old.iter().map(|x| (key(x), x)).collect();
    let after: BTreeMap<_, _> = new.iter().map(|x| (key(x), x)).collect();
    for (k, x) in &after {
        if !before.contains_key(k) {
            out.push(Change::new(
                ChangeKind::HardwareAdded,
                k.clone(),
                None,
                Some(describe(x)),
            ));
        }
    }
    for (k, x) in &before {
        if !after.contains_key(k) {
            out.push(Change::new(
                ChangeKind::HardwareRemoved,
                k.clone(),
                Some(describe(x)),
                None,
            ));
        }
    }
}

fn changed(out: &mut Vec<Change>, subject: &str, old: String, new: String) {
    if old != new {
        out.push(Change::new(
            ChangeKind::HardwareChanged,
            subject,
            Some(old),
            Some(new),
        ));
    }
}

fn hardware(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let (o, n) = (&old.hardware, &new.hardware);
    changed(
        out,
        "memory",
        o.memory.total_bytes.to_string(),
        n.memory.total_bytes.to_string(),
    );
    changed(out, "cpu", o.cpu.model.clone(), n.cpu.model.clone());
    changed(
        out,
        "cpu threads",
        o.cpu.threads.to_string(),
        n.cpu.threads.to_string(),
    );
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    changed(
        out,
        "system serial",
        opt(&o.system.product_serial),
        opt(&n.system.product_serial),
    );
    changed(
        out,
        "bios version",
        opt(&o.system.bios_version),
        opt(&n.system.bios_version),
    );
    items(
        out,
        &o.memory.modules,
        &n.memory.modules,
        |m| {
            format!("dimm {} {}", opt(&m.locator), opt(&m.serial))
                .trim()
                .to_string()
        },
        |m| format!("{} bytes {}", m.size_bytes, opt(&m.part_number)),
    );
    items(
        out,
        &o.block_devices,
        &n.block_devices,
        |d| {
            format!("disk {} {}", d.name, opt(&d.serial))
                .trim()
                .to_string()
        },
        |d| {
            format!("{} {} bytes", opt(&d.model), d.size_bytes)
                .trim()
                .to_string()
        },
    );
    items(
        out,
        &o.monitors,
        &n.monitors,
        |m| {
            format!(
                "monitor {} {} {}",
                m.manufacturer,
                m.product_code,
                opt(&m.serial)
            )
            .trim()
            .to_string()
        },
        |m| {
            format!("{} {}x{}", opt(&m.name), m.native_width, m.native_height)
                .trim()
                .to_string()
        },
    );
    items(
        out,
        &o.network,
        &n.network,
        |i| format!("nic {} {}", i.name, opt(&i.mac)).trim().to_string(),
        |i| format!("mtu {}", i.mtu),
    );
    items(
        out,
        &o.gpus,
        &n.gpus,
        |g| format!("gpu {} {:04x}:{:04x}", g.pci_slot, g.vendor_id, g.device_id),
        |g| opt(&g.vendor_name),
    );
    items(
        out,
        &o.batteries,
        &n.batteries,
        |b| format!("battery {}", b.name),
        |b| opt(&b.model),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{BlockDevice, PackageSource};

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: PackageSource::Dpkg,
        }
    }

    fn inv(pkgs: &[(&str, &str)]) -> Inventory {
        let mut i = Inventory {
            software: pkgs.iter().map(|(n, v)| pkg(n, v)).collect(),
            ..Default::default()
        };
        i.host.kernel = "6.1.0".into();
        i.hardware.memory.total_bytes = 8 << 30;
        i
    }

    #[test]
    fn software_install_remove_upgrade_downgrade() {
        let old = inv(&[
            ("curl", "7.88.1-10"),
            ("vim", "2:9.0.1378-2"),
            ("gone", "1.0"),
            ("pinned", "2.0"),
        ]);
        let new = inv(&[
            ("curl", "7.88.1-10+deb12u5"),
            ("vim", "2:9.0.1378-2"),
            ("htop", "3.2.2-2"),
            ("pinned", "1.9"),
        ]);
        let d = diff(&old, &new);
        assert_eq!(
            d,
            vec![
                Change::new(
                    ChangeKind::SoftwareUpgraded,
                    "curl:amd64",
                    Some("7.88.1-10".into()),
                    Some("7.88.1-10+deb12u5".into())
                ),
                Change::new(
                    ChangeKind::SoftwareInstalled,
                    "htop:amd64",
                    None,
                    Some("3.2.2-2".into())
                ),
                Change::new(
                    ChangeKind::SoftwareDowngraded,
                    "pinned:amd64",
                    Some("2.0".into()),
                    Some("1.9".into())
                ),
                Change::new(
                    ChangeKind::SoftwareRemoved,
                    "gone:amd64",
                    Some("1.0".into()),
                    None
                ),
            ]
        );
    }

    #[test]
    fn hardware_and_kernel_changes() {
        let old = inv(&[]);
        let mut new = old.clone();
        new.hardware.memory.total_bytes = 16 << 30;
        new.host.kernel = "6.1.1".into();
        new.hardware.block_devices.push(BlockDevice {
            name: "sdb".into(),
            serial: Some("S1".into()),
            size_bytes: 1000,
            ..Default::default()
        });
        let kinds: Vec<_> = diff(&old, &new)
            .into_iter()
            .map(|c| (c.kind, c.subject))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (ChangeKind::KernelChanged, "kernel".to_string()),
                (ChangeKind::HardwareChanged, "memory".to_string()),
                (ChangeKind::HardwareAdded, "disk sdb S1".to_string()),
            ]
        );
    }

    #[test]
    fn volatile_values_do_not_change_the_fingerprint() {
        let a = inv(&[("curl", "1"), ("vim", "2")]);
        let mut b = a.clone();
        b.collected_at_unix_ms = 12345;
        b.host.uptime_s = 999;
        b.host.logged_in_users.push("ana".into());
        b.software.reverse();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert!(diff(&a, &b).is_empty());
        b.software[0].version = "3".into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn kind_names_roundtrip() {
        for k in [
            ChangeKind::SoftwareInstalled,
            ChangeKind::FirstInventory,
            ChangeKind::HardwareChanged,
        ] {
            assert_eq!(ChangeKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ChangeKind::parse("nope"), None);
    }
}
