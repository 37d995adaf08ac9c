//! Installed software: dpkg status file, rpm (live only, via `rpm -qa`),
//! flatpak deployments and snaps.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::util::{list_dir, read_limited};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::{Package, PackageSource};

/// Largest dpkg status file read (real ones are a few MiB).
const DPKG_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Hard cap on packages kept by any one parser.
const MAX_PACKAGES: usize = 200_000;
const RPM_MAX_OUTPUT: u64 = 64 * 1024 * 1024;
const RPM_TIMEOUT: Duration = Duration::from_millis(1500);

/// Result of [`parse_dpkg_status`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DpkgParse {
    /// Packages whose status is `install ok installed` or `hold ok installed`.
    pub packages: Vec<Package>,
    /// Stanzas skipped or containing lines that are not `Field: value`.
    pub malformed_stanzas: usize,
    /// More than the hard cap of packages; the rest were dropped.
    pub capped: bool,
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}

fn is_installed(status: &[u8]) -> bool {
    let mut w = status
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    matches!(
        (w.next(), w.next(), w.next(), w.next()),
        (
            Some(b"install" | b"hold"),
            Some(b"ok"),
            Some(b"installed"),
            None
        )
    )
}

#[derive(Default)]
struct Stanza<'a> {
    lines: usize,
    bad: bool,
    package: Option<&'a [u8]>,
    status: Option<&'a [u8]>,
    version: Option<&'a [u8]>,
    arch: Option<&'a [u8]>,
}

/// Parse a dpkg `status` file (deb822 stanzas separated by blank lines).
/// Total on any input: garbage only increases `malformed_stanzas`.
pub fn parse_dpkg_status(data: &[u8]) -> DpkgParse {
    let mut out = DpkgParse::default();
    let mut st = Stanza::default();

    let finish = |st: &mut Stanza, out: &mut DpkgParse| {
        let s = std::mem::take(st);
        if s.lines == 0 {
            return;
        }
        let Some(name) = s.package.filter(|n| !n.is_empty()) else {
            out.malformed_stanzas += 1;
            return;
        };
        if s.bad {
            out.malformed_stanzas += 1;
        }
        if !s.status.is_some_and(is_installed) {
            return;
        }
        if out.packages.len() >= MAX_PACKAGES {
            out.capped = true;
            return;
        }
        let txt = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        out.packages.push(Package {
            name: txt(Some(name)),
            version: txt(s.version),
            arch: txt(s.arch),
            source: PackageSource::Dpkg,
        });
    };

    for raw in data.split(|&c| c == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|c| c.is_ascii_whitespace()) {
            finish(&mut st, &mut out);
            continue;
        }
        st.lines += 1;
        if line[0] == b' ' || line[0] == b'\t' {
            // Continuation of a multi-line field (Description, Conffiles...).
            if st.lines == 1 {
                st.bad = true;
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            st.bad = true;
            continue;
        };
        let (field, value) = (&line[..colon], trim(&line[colon + 1..]));
        if field.eq_ignore_ascii_case(b"Package") {
            st.package = Some(value);
        } else if field.eq_ignore_ascii_case(b"Status") {
            st.status = Some(value);
        } else if field.eq_ignore_ascii_case(b"Version") {
            st.version = Some(value);
        } else if field.eq_ignore_ascii_case(b"Architecture") {
            st.arch = Some(value);
        } else if field.is_empty() || field.iter().any(|c| !c.is_ascii_graphic()) {
            st.bad = true;
        }
    }
    finish(&mut st, &mut out);
    out
}

pub(crate) fn dpkg(ctx: &Ctx, warn: &mut Warnings) -> Result<Vec<Package>, CollectError> {
    let p = ctx.path("var/lib/dpkg/status");
    if !p.exists() {
        return Ok(Vec::new()); // not a dpkg system
    }
    let (data, truncated) = read_limited(&p, DPKG_MAX_BYTES).map_err(|e| ctx.io_err(&p, e))?;
    if truncated {
        warn.push(format!(
            "{}: larger than {DPKG_MAX_BYTES} bytes, truncated",
            ctx.display(&p)
        ));
    }
    let r = parse_dpkg_status(&data);
    if r.malformed_stanzas > 0 {
        warn.push(format!(
            "{}: {} malformed stanzas skipped",
            ctx.display(&p),
            r.malformed_stanzas
        ));
    }
    if r.capped {
        warn.push(format!("more than {MAX_PACKAGES} packages; list capped"));
    }
    Ok(r.packages)
}

/// Parse `rpm -qa --qf '%{NAME}\t%{EVR}\t%{ARCH}\n'` output.
pub fn parse_rpm_qa(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, version, arch) = (f.next()?.trim(), f.next()?.trim(), f.next()?.trim());
            (!name.is_empty() && name != "gpg-pubkey").then(|| Package {
                name: name.to_string(),
                version: version.to_string(),
                arch: if arch == "(none)" {
                    String::new()
                } else {
                    arch.to_string()
                },
                source: PackageSource::Rpm,
            })
        })
        .take(MAX_PACKAGES)
        .collect()
}

pub(crate) fn rpm(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Package>, CollectError> {
    let db_present = ["var/lib/rpm", "usr/lib/sysimage/rpm"]
        .iter()
        .any(|d| ctx.path(d).is_dir());
    if !db_present {
        return Ok(Vec::new());
    }
    if !ctx.live {
        tracing::info!("rpm database present but not parsed (not the live root)");
        return Ok(Vec::new());
    }
    let Some(bin) = ["/usr/bin/rpm", "/bin/rpm"]
        .into_iter()
        .find(|b| fs::metadata(b).is_ok())
    else {
        tracing::info!("rpm database present but no rpm binary; not parsed");
        return Ok(Vec::new());
    };
    let mut child = Command::new(bin)
        .args([
            "-qa",
            "--qf",
            "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CollectError::Invalid(format!("cannot run rpm: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CollectError::Invalid("rpm: no stdout".to_string()));
    };
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.take(RPM_MAX_OUTPUT).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + RPM_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CollectError::Invalid(format!(
                    "rpm -qa did not finish within {} ms",
                    RPM_TIMEOUT.as_millis()
                )));
            }
        }
    }
    let buf = reader
        .join()
        .map_err(|_| CollectError::Invalid("rpm output reader panicked".to_string()))?;
    Ok(parse_rpm_qa(&String::from_utf8_lossy(&buf)))
}

/// First `<release ... version="X"` in an AppStream metainfo file.
fn metainfo_version(xml: &str) -> Option<String> {
    let rel = xml.find("<release ")?;
    let tag_end = xml[rel..].find('>')? + rel;
    let tag = &xml[rel..tag_end];
    let v = tag.find("version=")? + "version=".len();
    let rest = &tag[v..];
    let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = &rest[1..];
    let end = inner.find(q)?;
    let s = inner[..end].trim();
    (!s.is_empty()).then(|| s.to_string())
}

pub(crate) fn flatpak(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Package>, CollectError> {
    let mut out = Vec::new();
    for (app, dir) in list_dir(&ctx.path("var/lib/flatpak/app")) {
        // current -> "<arch>/<branch>"; <arch>/<branch>/active -> deployment.
        let Ok(cur) = fs::read_link(dir.join("current")) else {
            continue;
        };
        let cur = cur.to_string_lossy().into_owned();
        let mut parts = cur.split('/');
        let (arch, branch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let active = dir.join(&cur).join("active");
        let share = active.join("files/share");
        let version = [
            share.join(format!("metainfo/{app}.metainfo.xml")),
            share.join(format!("appdata/{app}.appdata.xml")),
        ]
        .iter()
        .find_map(|p| read_limited(p, 512 * 1024).ok())
        .and_then(|(b, _)| metainfo_version(&String::from_utf8_lossy(&b)))
        .unwrap_or_else(|| branch.to_string());
        out.push(Package {
            name: app,
            version,
            arch: arch.to_string(),
            source: PackageSource::Flatpak,
        });
    }
    Ok(out)
}

fn snap_yaml_version(yaml: &str) -> Option<String> {
    yaml.lines().find_map(|l| {
        let v = l
            .strip_prefix("version:")?
            .trim()
            .trim_matches(|c| c == '\'' || c == '"');
        (!v.is_empty()).then(|| v.to_string())
    })
}

pub(crate) fn snap(ctx: &Ctx, _warn: &mut Warnings) -> Result<Vec<Package>, CollectError> {
    let mut found: BTreeMap<String, Package> = BTreeMap::new();
    // Mounted snaps: /snap/<name>/current -> <rev>, with meta/snap.yaml.
    for base in ["snap", "var/lib/snapd/snap"] {
        for (name, dir) in list_dir(&ctx.path(base)) {
            let Ok(rev) = fs::read_link(dir.join("current")) else {
                continue;
            };
            let rev = rev.to_string_lossy().into_owned();
            let version = read_limited(&dir.join("current/meta/snap.yaml"), 256 * 1024)
                .ok()
                .and_then(|(b, _)| snap_yaml_version(&String::from_utf8_lossy(&b)))
                .unwrap_or_else(|| format!("rev {rev}"));
            found.entry(name.clone()).or_insert(Package {
                name,
                version,
                arch: String::new(),
                source: PackageSource::Snap,
            });
        }
    }
    if found.is_empty() {
        // Fallback: downloaded blobs "<name>_<rev>.snap"; keep the highest rev.
        let mut revs: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for (file, _) in list_dir(&ctx.path("var/lib/snapd/snaps")) {
            let Some(stem) = file.strip_suffix(".snap") else {
                continue;
            };
            let Some((name, rev)) = stem.rsplit_once('_') else {
                continue;
            };
            let n = rev.trim_start_matches('x').parse::<u64>().unwrap_or(0);
            let e = revs.entry(name.to_string()).or_insert((n, rev.to_string()));
            if n > e.0 {
                *e = (n, rev.to_string());
            }
        }
        for (name, (_, rev)) in revs {
            found.insert(
                name.clone(),
                Package {
                    name,
                    version: format!("rev {rev}"),
                    arch: String::new(),
                    source: PackageSource::Snap,
                },
            );
        }
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_basic() {
        let s = b"Package: a\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n more\n .\n\n\
Package: b\nStatus: deinstall ok config-files\nVersion: 2\n\n\
Package: c\r\nstatus: hold ok installed\r\nversion: 3\r\narchitecture: all\r\n\r\n\
garbage line\n\n\n\
Package: d\nStatus: install ok half-installed\n";
        let r = parse_dpkg_status(s);
        let names: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["a", "c"]);
        assert_eq!(r.packages[0].version, "1.0");
        assert_eq!(r.packages[1].arch, "all");
        assert_eq!(r.malformed_stanzas, 1);
    }

    #[test]
    fn dpkg_garbage() {
        let mut x: u32 = 1;
        let v: Vec<u8> = (0..200_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let r = parse_dpkg_status(&v);
        assert!(r.packages.is_empty());
        assert!(r.malformed_stanzas > 0);
        assert_eq!(parse_dpkg_status(b"").packages.len(), 0);
        assert_eq!(
            parse_dpkg_status(b"Package:\nStatus: install ok installed\n")
                .packages
                .len(),
            0
        );
        let p = parse_dpkg_status(b"Package: \xff\xfe\nStatus: install ok installed\n");
        assert_eq!(p.packages.len(), 1);
    }

    #[test]
    fn rpm_qa() {
        let p = parse_rpm_qa(
            "bash\t5.2-1.fc40\tx86_64\ngpg-pubkey\tx\t(none)\nbad\nfoo\t1:2-3\t(none)\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].version, "1:2-3");
        assert_eq!(p[1].arch, "");
    }

    #[test]
    fn metainfo() {
        let x =
            r#"<component><releases><release version="1.2.3" date="x"/><release version="1.0"/>"#;
        assert_eq!(metainfo_version(x).as_deref(), Some("1.2.3"));
        assert_eq!(metainfo_version("<release date='x'>").as_deref(), None);
        assert_eq!(metainfo_version("<release version=").as_deref(), None);
        assert_eq!(
            snap_yaml_version("name: x\nversion: '2.1'\n").as_deref(),
            Some("2.1")
        );
    }
}
