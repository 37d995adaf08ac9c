//! A health report as text for a terminal. Everything in it came from a device and was cleaned
//! by [`HealthReport::sanitize`] before.

use super::*;

/// "42 s", "5 min 3 s", "2 h 5 min", "3 d 4 h".
pub fn human_secs(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s % 60 == 0 => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

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
                crate::report::bytes(p.memory_bytes),
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
        crate::report::bytes(m.used_bytes()),
        crate::report::bytes(m.total_bytes),
        crate::report::bytes(m.available_bytes)
    );
    if m.swap_total_bytes == 0 {
        out.push_str("swap    none\n");
    } else {
        let _ = writeln!(
            out,
            "swap    {} % used: {} of {}",
            m.swap_used_percent(),
            crate::report::bytes(m.swap_used_bytes()),
            crate::report::bytes(m.swap_total_bytes)
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
                crate::report::bytes(f.size_bytes),
                crate::report::bytes(f.used_bytes()),
                crate::report::bytes(f.available_bytes),
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
        None => out.push_str("failed units: unknown (systemd not running or not answering)\n"),
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

/// One alert as JSON: the `alert` object the relay POSTs to webhooks and a row of
/// `tether alerts --json`, one shape for both (serialise it with serde_json).
#[derive(Serialize, Debug)]
pub struct AlertJson<'a> {
    pub id: i64,
    pub device_id: &'a str,
    pub hostname: &'a str,
    pub group: &'a str,
    pub kind: &'static str,
    pub subject: &'a str,
    pub value: i64,
    pub threshold: i64,
    pub detail: &'a str,
    pub opened_at: String,
    pub opened_unix_ms: i64,
    pub closed_at: Option<String>,
    pub closed_unix_ms: Option<i64>,
    pub close_detail: Option<&'a str>,
}

impl AlertRow {
    pub fn json(&self) -> AlertJson<'_> {
        AlertJson {
            id: self.id,
            device_id: &self.device_id,
            hostname: &self.hostname,
            group: &self.group,
            kind: self.kind.as_str(),
            subject: &self.subject,
            value: self.value,
            threshold: self.threshold,
            detail: &self.detail,
            opened_at: rfc3339(self.opened_unix_ms),
            opened_unix_ms: self.opened_unix_ms,
            closed_at: self.closed_unix_ms.map(rfc3339),
            closed_unix_ms: self.closed_unix_ms,
            close_detail: self.close_detail.as_deref(),
        }
    }
}

/// `2026-12-03T06:40:22.123Z`; times before 1970 read as 1970.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
