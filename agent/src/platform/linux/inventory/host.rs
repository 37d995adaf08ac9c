//! Host identity: hostname, OS, kernel, uptime, timezone, logged-in users.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use super::util::{read_attr, read_limited};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::Host;

pub(crate) fn collect(ctx: &Ctx, warn: &mut Warnings) -> Result<Host, CollectError> {
    let mut h = Host::default();

    let hp = ctx.path("proc/sys/kernel/hostname");
    match read_attr(&hp) {
        Some(n) => h.hostname = n,
        None => warn.push(format!("{}: not readable", ctx.display(&hp))),
    }

    let os = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| read_limited(&ctx.path(p), 64 * 1024).ok())
        .map(|(b, _)| parse_os_release(&String::from_utf8_lossy(&b)));
    match os {
        Some(mut os) => {
            h.os_name = os
                .remove("NAME")
                .or_else(|| os.get("PRETTY_NAME").cloned())
                .unwrap_or_default();
            h.os_version = os.remove("VERSION_ID").or_else(|| os.remove("VERSION"));
            h.os_id = os.remove("ID");
            h.os_build = os
                .remove("BUILD_ID")
                .or_else(|| os.remove("VERSION_CODENAME"));
        }
        None => warn.push("/etc/os-release: not readable".to_string()),
    }

    let kp = ctx.path("proc/sys/kernel/osrelease");
    match read_attr(&kp) {
        Some(k) => h.kernel = k,
        None => warn.push(format!("{}: not readable", ctx.display(&kp))),
    }

    h.arch = read_attr(&ctx.path("proc/sys/kernel/arch")).unwrap_or_else(|| {
        if ctx.live {
            std::env::consts::ARCH.to_string()
        } else {
            String::new()
        }
    });

    if let Some(u) = read_attr(&ctx.path("proc/uptime")) {
        h.uptime_s = parse_uptime(&u).unwrap_or(0);
    }
    if let Ok((stat, _)) = read_limited(&ctx.path("proc/stat"), 1024 * 1024) {
        h.boot_time_unix = parse_btime(&String::from_utf8_lossy(&stat)).unwrap_or(0);
    }

    h.timezone = timezone(ctx);

    for p in ["run/utmp", "var/run/utmp"] {
        if let Ok((b, _)) = read_limited(&ctx.path(p), 4 * 1024 * 1024) {
            h.logged_in_users = parse_utmp(&b);
            break;
        }
    }
    Ok(h)
}

fn timezone(ctx: &Ctx) -> Option<String> {
    if let Some(tz) = read_attr(&ctx.path("etc/timezone")) {
        let first = tz.lines().next().unwrap_or("").trim();
        if !first.is_empty() {
            return Some(first.to_string());
        }
    }
    let target = fs::read_link(ctx.path("etc/localtime")).ok()?;
    let t = target.to_string_lossy();
    let idx = t.find("zoneinfo/")?;
    let zone = &t[idx + "zoneinfo/".len()..];
    let zone = zone.strip_prefix("posix/").unwrap_or(zone);
    (!zone.is_empty()).then(|| zone.to_string())
}

/// Parse os-release(5): KEY=VALUE lines, optional single/double quotes,
/// backslash escapes inside double quotes.
pub(crate) fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let v = v.trim();
        let val = if let Some(inner) = v.strip_prefix('"') {
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        } else if let Some(inner) = v.strip_prefix('\'') {
            inner.strip_suffix('\'').unwrap_or(inner).to_string()
        } else {
            v.to_string()
        };
        m.insert(k.to_string(), val);
    }
    m
}

fn parse_uptime(s: &str) -> Option<u64> {
    let first = s.split_whitespace().next()?;
    let secs = first.split('.').next()?;
    secs.parse().ok()
}

fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

const UT_USER_PROCESS: i16 = 7;
const UT_USER_OFF: usize = 44;
const UT_USER_LEN: usize = 32;

/// Distinct user names of USER_PROCESS records in a glibc utmp file.
///
/// The record is 384 bytes on x86_64 and 32-bit targets and 400 bytes on
/// other 64-bit targets; `ut_type` (offset 0) and `ut_user` (offset 44) are
/// at the same place in both, so the size is picked from the file length.
pub(crate) fn parse_utmp(b: &[u8]) -> Vec<String> {
    let native = if cfg!(all(
        target_pointer_width = "64",
        not(target_arch = "x86_64")
    )) {
        400
    } else {
        384
    };
    let other = if native == 384 { 400 } else { 384 };
    let rec = if !b.is_empty() && !b.len().is_multiple_of(native) && b.len().is_multiple_of(other) {
        other
    } else {
        native
    };
    let mut users = BTreeSet::new();
    for r in b.chunks_exact(rec) {
        let ty = i16::from_ne_bytes([r[0], r[1]]);
        if ty != UT_USER_PROCESS {
            continue;
        }
        let raw = &r[UT_USER_OFF..UT_USER_OFF + UT_USER_LEN];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        let name = String::from_utf8_lossy(&raw[..end]).trim().to_string();
        if !name.is_empty() {
            users.insert(name);
        }
    }
    users.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let m = parse_os_release(
            "# c\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\nPRETTY_NAME='x y'\nBAD\n=1\nQ=\"a\\\"b\n",
        );
        assert_eq!(m["NAME"], "Debian GNU/Linux");
        assert_eq!(m["VERSION_ID"], "12");
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["PRETTY_NAME"], "x y");
        assert_eq!(m["Q"], "a\"b");
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn uptime_btime() {
        assert_eq!(parse_uptime("152.73 284.79\n"), Some(152));
        assert_eq!(parse_uptime("garbage"), None);
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime("btime x"), None);
    }

    fn utmp_rec(ty: i16, user: &str, size: usize) -> Vec<u8> {
        let mut r = vec![0u8; size];
        r[..2].copy_from_slice(&ty.to_ne_bytes());
        r[UT_USER_OFF..UT_USER_OFF + user.len()].copy_from_slice(user.as_bytes());
        r
    }

    #[test]
    fn utmp() {
        for size in [384, 400] {
            let mut b = utmp_rec(2, "reboot", size);
            b.extend(utmp_rec(7, "alice", size));
            b.extend(utmp_rec(7, "bob", size));
            b.extend(utmp_rec(7, "alice", size));
            b.extend(utmp_rec(8, "carol", size));
            assert_eq!(parse_utmp(&b), vec!["alice", "bob"]);
        }
        assert!(parse_utmp(&[7, 0, 1]).is_empty());
        assert!(parse_utmp(&[]).is_empty());
    }
}
