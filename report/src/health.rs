//! A health report as text for a terminal. Everything in it came from a device and was cleaned
//! by [`HealthReport::sanitize`] before; every string is cleaned again for the terminal here.

use tether_protocol::health::{HealthReport, MAX_PATH, MAX_TEXT, MAX_UNIT_NAME, ProcessUsage};
use tether_protocol::text::{self, bytes, human_secs};

/// "0.73".
fn hundredths(v: u32) -> String {
    format!("{}.{:02}", v / 100, v % 100)
}

/// "23.4 %".
fn permille(v: u32) -> String {
    format!("{}.{} %", v / 10, v % 10)
}

/// Left-aligned columns separated by two spaces; cells are cleaned for the terminal.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| text::clean(c, MAX_PATH)).collect())
        .collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            l.push_str(&format!("{c:<w$}  "));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn process_rows(procs: &[ProcessUsage]) -> Vec<Vec<String>> {
    procs
        .iter()
        .map(|p| {
            vec![
                p.pid.to_string(),
                p.user.clone(),
                permille(p.cpu_permille),
                bytes(p.memory_bytes),
                p.name.clone(),
            ]
        })
        .collect()
}

/// A report as people read it (shared by `tether-agent health` and `tether health`). Every
/// string from the report is cleaned for the terminal.
pub fn text(r: &HealthReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let m = &r.memory;
    let _ = writeln!(
        out,
        "cpu     {} of {} CPUs · load {} {} {} · up {}",
        permille(u32::from(r.cpu_permille)),
        r.cpus,
        hundredths(r.load.one),
        hundredths(r.load.five),
        hundredths(r.load.fifteen),
        human_secs(i64::try_from(r.uptime_s).unwrap_or(i64::MAX))
    );
    let _ = writeln!(
        out,
        "memory  {} % used: {} of {} ({} available)",
        m.used_percent(),
        bytes(m.used_bytes()),
        bytes(m.total_bytes),
        bytes(m.available_bytes)
    );
    if m.swap_total_bytes == 0 {
        out.push_str("swap    none\n");
    } else {
        let _ = writeln!(
            out,
            "swap    {} % used: {} of {}",
            m.swap_used_percent(),
            bytes(m.swap_used_bytes()),
            bytes(m.swap_total_bytes)
        );
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = r
        .filesystems
        .iter()
        .map(|f| {
            vec![
                f.mount_point.clone(),
                f.fs_type.clone(),
                bytes(f.size_bytes),
                bytes(f.used_bytes()),
                bytes(f.available_bytes),
                format!("{} %", f.used_percent()),
                f.device.clone(),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "MOUNTED ON",
            "TYPE",
            "SIZE",
            "USED",
            "AVAIL",
            "USE",
            "DEVICE",
        ],
        &rows,
    );
    out.push_str("\ntop cpu\n");
    table(
        &mut out,
        &["PID", "USER", "CPU", "MEMORY", "NAME"],
        &process_rows(&r.top_cpu),
    );
    out.push_str("\ntop memory\n");
    table(
        &mut out,
        &["PID", "USER", "CPU", "MEMORY", "NAME"],
        &process_rows(&r.top_memory),
    );
    out.push('\n');
    match &r.failed_units {
        None => out.push_str("failed units: unknown (the service manager did not answer: systemd, or WMI on Windows)\n"),
        Some(u) if u.is_empty() => out.push_str("failed units: none\n"),
        Some(units) => {
            let _ = writeln!(out, "failed units: {}", units.len());
            for u in units {
                let _ = writeln!(
                    out,
                    "  {}  {}",
                    text::clean(&u.name, MAX_UNIT_NAME),
                    text::clean(&u.description, MAX_TEXT)
                );
            }
        }
    }
    for e in &r.errors {
        let _ = writeln!(out, "problem: {}", text::clean(e, MAX_TEXT));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::health::{FailedUnit, FilesystemUsage, MemoryUsage};

    fn fs(mp: &str, size: u64, avail: u64) -> FilesystemUsage {
        FilesystemUsage {
            mount_point: mp.into(),
            fs_type: "ext4".into(),
            device: "/dev/vda1".into(),
            size_bytes: size,
            free_bytes: avail,
            available_bytes: avail,
        }
    }

    fn report(mem_used_pct: u64, disks: Vec<FilesystemUsage>) -> HealthReport {
        HealthReport {
            memory: MemoryUsage {
                total_bytes: 1000,
                available_bytes: 1000 - mem_used_pct * 10,
                ..Default::default()
            },
            filesystems: disks,
            failed_units: Some(Vec::new()),
            ..Default::default()
        }
    }

    #[test]
    fn text_is_escaped() {
        let mut r = report(50, vec![fs("/x\u{1b}[2J", 100, 10)]);
        r.top_cpu = vec![ProcessUsage {
            pid: 1,
            name: "evil\u{1b}]0;t\u{7}".into(),
            user: "root".into(),
            cpu_permille: 1234,
            memory_bytes: 2048,
        }];
        r.failed_units = Some(vec![FailedUnit {
            name: "a\u{202e}.service".into(),
            description: "\u{1b}[31mred".into(),
        }]);
        r.load.one = 73;
        let t = text(&r);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}') && !t.contains('\u{202e}'));
        assert!(t.contains("load 0.73 0.00 0.00"), "{t}");
        assert!(t.contains("123.4 %"), "{t}");
        assert!(t.contains("memory  50 % used"), "{t}");
        assert!(t.contains("failed units: 1"), "{t}");
    }
}
