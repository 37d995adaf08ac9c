//! Installed software: the `Uninstall` keys (machine-wide in both registry views, and in every
//! loaded user hive) and installed updates (`Win32_QuickFixEngineering`).

use tether_protocol::inventory::{MAX_PACKAGES, Package};
use winreg::RegKey;
use winreg::enums::{HKEY_LOCAL_MACHINE, HKEY_USERS, KEY_READ, KEY_WOW64_32KEY, KEY_WOW64_64KEY};

use super::mapping::{
    UninstallEntry, hotfixes as map_hotfixes, native_arch_label, uninstall_packages,
};
use super::registry::{dword, string};
use super::wmi_rows::Wmi;
use super::{CollectError, Ctx, Warnings, live};

const UNINSTALL: &str = "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall";
/// Most user hives looked at.
const MAX_HIVES: usize = 256;

/// Reads the subkeys of `root\path` (opened with `flags`) into `out`, tagged `arch`.
fn read_uninstall(
    root: &RegKey,
    path: &str,
    flags: u32,
    arch: &'static str,
    out: &mut Vec<(UninstallEntry, &'static str)>,
) -> std::io::Result<()> {
    let key = root.open_subkey_with_flags(path, flags)?;
    for name in key.enum_keys().take(MAX_PACKAGES) {
        let Ok(name) = name else { continue };
        let Ok(sub) = key.open_subkey_with_flags(&name, flags) else {
            continue;
        };
        out.push((
            UninstallEntry {
                display_name: string(&sub, "DisplayName"),
                display_version: string(&sub, "DisplayVersion"),
                publisher: string(&sub, "Publisher"),
                install_date: string(&sub, "InstallDate"),
                system_component: dword(&sub, "SystemComponent"),
                parent_key_name: string(&sub, "ParentKeyName"),
            },
            arch,
        ));
        if out.len() >= 4 * MAX_PACKAGES {
            break;
        }
    }
    Ok(())
}

pub(crate) fn uninstall(ctx: &Ctx, warn: &mut Warnings) -> Result<Vec<Package>, CollectError> {
    live(ctx)?;
    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    let mut entries = Vec::new();
    let native = native_arch_label(std::env::consts::ARCH);
    let views: [(u32, &'static str, &str); 2] = [
        (KEY_WOW64_64KEY, native, "64-bit"),
        // WOW6432Node: 32-bit programs on 64-bit Windows. On 32-bit Windows the flag is
        // ignored and the same key is read again (duplicates are dropped).
        (KEY_WOW64_32KEY, "x86", "32-bit"),
    ];
    let mut machine_ok = false;
    for (view, arch, label) in views {
        match read_uninstall(&hklm, UNINSTALL, KEY_READ | view, arch, &mut entries) {
            Ok(()) => machine_ok = true,
            Err(e) => warn.push(format!("HKLM\\{UNINSTALL} ({label} view): {e}")),
        }
    }

    // Loaded user hives: S-1-5-21-… for people, .DEFAULT / S-1-5-18 for LocalSystem, and their
    // `_Classes` companions, which hold no Software key.
    let hku = RegKey::predef(HKEY_USERS);
    for sid in hku.enum_keys().take(MAX_HIVES) {
        let Ok(sid) = sid else { continue };
        if sid.ends_with("_Classes") {
            continue;
        }
        let path = format!("{sid}\\{UNINSTALL}");
        match read_uninstall(&hku, &path, KEY_READ, "", &mut entries) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn.push(format!("HKU\\{path}: {e}")),
        }
    }

    if !machine_ok && entries.is_empty() {
        return Err(CollectError::Invalid(format!(
            "HKLM\\{UNINSTALL}: not readable"
        )));
    }
    Ok(uninstall_packages(
        entries.iter().map(|(e, a)| (e, *a)),
        MAX_PACKAGES,
    ))
}

pub(crate) fn hotfixes(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Package>, CollectError> {
    live(ctx)?;
    let wmi = Wmi::cimv2()?;
    let rows = wmi.rows("Win32_QuickFixEngineering", MAX_PACKAGES)?;
    Ok(map_hotfixes(&rows, MAX_PACKAGES))
}
