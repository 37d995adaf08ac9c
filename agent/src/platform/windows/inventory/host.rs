//! Host identity: Windows product, version and build (registry), hostname, architecture,
//! uptime (sysinfo), time zone (registry) and the console user (WMI).

use tether_protocol::inventory::{Host, MAX_USERS};
use winreg::RegKey;
use winreg::enums::HKEY_LOCAL_MACHINE;

use super::mapping::{OsValues, iana_zone, non_empty, os_fields, text, user_name};
use super::registry::{dword, open, string};
use super::wmi_rows::Wmi;
use super::{CollectError, Ctx, Warnings, live};

const CURRENT_VERSION: &str = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion";
const TIME_ZONE: &str = "SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation";

pub(crate) fn collect(ctx: &Ctx, warn: &mut Warnings) -> Result<Host, CollectError> {
    live(ctx)?;
    let mut h = Host {
        os_id: Some("windows".to_string()),
        ..Host::default()
    };
    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);

    match open(&hklm, CURRENT_VERSION) {
        Ok(k) => {
            let v = OsValues {
                product_name: string(&k, "ProductName"),
                edition_id: string(&k, "EditionID"),
                display_version: string(&k, "DisplayVersion"),
                release_id: string(&k, "ReleaseId"),
                current_version: string(&k, "CurrentVersion"),
                major: dword(&k, "CurrentMajorVersionNumber"),
                minor: dword(&k, "CurrentMinorVersionNumber"),
                current_build: string(&k, "CurrentBuildNumber")
                    .or_else(|| string(&k, "CurrentBuild")),
                ubr: dword(&k, "UBR"),
                csd_version: string(&k, "CSDVersion"),
            };
            let f = os_fields(&v);
            h.os_name = f.name;
            h.os_version = f.version;
            h.os_build = f.build;
            h.kernel = f.kernel;
        }
        Err(e) => {
            h.os_name = "Windows".to_string();
            warn.push(format!("HKLM\\{CURRENT_VERSION}: {e}"));
        }
    }

    h.hostname = sysinfo::System::host_name()
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .and_then(|n| non_empty(&n))
        .unwrap_or_default();
    if h.hostname.is_empty() {
        warn.push("hostname: not known".to_string());
    }
    h.arch = match sysinfo::System::cpu_arch().to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" | "x64" => "x86_64".to_string(),
        "arm64" | "aarch64" => "aarch64".to_string(),
        other => non_empty(other).unwrap_or_else(|| std::env::consts::ARCH.to_string()),
    };
    h.uptime_s = sysinfo::System::uptime().unwrap_or(0);
    h.boot_time_unix = sysinfo::System::boot_time().unwrap_or(0);

    match open(&hklm, TIME_ZONE) {
        Ok(k) => match string(&k, "TimeZoneKeyName") {
            Some(z) => {
                h.timezone = iana_zone(&z).map(str::to_string);
                if h.timezone.is_none() {
                    warn.push(format!("time zone {z:?}: no IANA name known for it"));
                }
            }
            None => warn.push(format!("HKLM\\{TIME_ZONE}: no TimeZoneKeyName")),
        },
        Err(e) => warn.push(format!("HKLM\\{TIME_ZONE}: {e}")),
    }

    // The console's user: cheap, but not the users of other (remote desktop) sessions.
    match Wmi::cimv2().and_then(|w| w.rows("Win32_ComputerSystem", 1)) {
        Ok(rows) => {
            h.logged_in_users = rows
                .iter()
                .filter_map(|r| text(r, "UserName"))
                .filter_map(|u| user_name(&u))
                .take(MAX_USERS)
                .collect();
        }
        Err(e) => warn.push(format!("logged-in users: {e}")),
    }
    Ok(h)
}
