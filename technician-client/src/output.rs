//! Rendering for people (tables) and scripts (JSON with stable field names).
//!
//! Everything shown here came from agents through the relay, so it is cleaned again before it
//! reaches the terminal: an escape sequence in a hostname must not drive the technician's terminal.

use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tether_protocol::decision::Decision;
use tether_protocol::message::{
    DeviceHistory, DeviceSummary, InventoryRow, ReportRow, SessionRow, SoftwareRow,
};
use tether_protocol::text::clean;
use tether_report::inventory::{CSV_HEADER, csv_row};

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(time_of(ms)).to_string()
}

/// "now", "42 s ago", "5 min ago", "3 h ago", "12 d ago".
pub fn ago(ms: i64, now: SystemTime) -> String {
    let secs = now
        .duration_since(time_of(ms))
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match secs {
        0..=4 => "now".into(),
        5..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

pub fn devices_json(devices: &[DeviceSummary]) -> Value {
    Value::Array(devices.iter().map(device_json).collect())
}

pub fn devices_table(devices: &[DeviceSummary], now: SystemTime) -> String {
    let rows: Vec<[String; 6]> = devices
        .iter()
        .map(|d| {
            [
                clean(&d.id, 64),
                clean(&d.hostname, 64),
                clean(&d.group, 64),
                if d.online { "online" } else { "offline" }.to_string(),
                if d.online {
                    "now".into()
                } else {
                    ago(d.last_seen_unix_ms, now)
                },
                clean(&d.os, 48),
            ]
        })
        .collect();
    table(
        &["ID", "HOSTNAME", "GROUP", "STATUS", "LAST SEEN", "OS"],
        &rows,
    )
}

/// Left-aligned columns separated by two spaces.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

pub fn device_json(d: &DeviceSummary) -> Value {
    json!({
        "id": d.id,
        "hostname": d.hostname,
        "group": d.group,
        "online": d.online,
        "os": d.os,
        "agent_version": d.agent_version,
        "last_seen": rfc3339(d.last_seen_unix_ms),
        "last_seen_unix_ms": d.last_seen_unix_ms,
        "first_seen_unix_ms": d.first_seen_unix_ms,
    })
}

pub fn inventory_rows_json(rows: &[InventoryRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let mut v = device_json(&r.device);
                v["inventory"] = match &r.summary {
                    Some(s) => serde_json::to_value(s).unwrap_or(Value::Null),
                    None => Value::Null,
                };
                v["inventory_received_unix_ms"] = json!(r.received_unix_ms);
                v
            })
            .collect(),
    )
}

pub fn inventory_rows_csv(rows: &[InventoryRow]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let d = &r.device;
        let collected = r
            .summary
            .as_ref()
            .map(|s| rfc3339(s.collected_at_unix_ms.min(i64::MAX as u64) as i64))
            .unwrap_or_default();
        out.push_str(&csv_row(
            &d.id,
            &d.hostname,
            &d.group,
            d.online,
            r.summary.as_ref(),
            &collected,
            &rfc3339(d.last_seen_unix_ms),
        ));
        out.push('\n');
    }
    out
}

pub fn software_table(rows: &[SoftwareRow]) -> String {
    let rows: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                clean(&r.hostname, 64),
                clean(&r.device_id, 64),
                clean(&r.name, 64),
                clean(&r.version, 64),
                clean(&r.arch, 16),
                if r.online { "online" } else { "offline" }.to_string(),
            ]
        })
        .collect();
    table(
        &["HOSTNAME", "DEVICE", "PACKAGE", "VERSION", "ARCH", "STATUS"],
        &rows,
    )
}

pub fn software_json(rows: &[SoftwareRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "device_id": r.device_id,
                    "hostname": r.hostname,
                    "online": r.online,
                    "name": r.name,
                    "version": r.version,
                    "arch": r.arch,
                    "source": r.source,
                })
            })
            .collect(),
    )
}

pub fn history_json(h: &DeviceHistory) -> Value {
    Value::Array(
        h.changes
            .iter()
            .map(|c| {
                json!({
                    "at": rfc3339(c.at_unix_ms),
                    "at_unix_ms": c.at_unix_ms,
                    "kind": c.change.kind.as_str(),
                    "subject": c.change.subject,
                    "old": c.change.old,
                    "new": c.change.new,
                })
            })
            .collect(),
    )
}

pub fn history_table(h: &DeviceHistory) -> String {
    let rows: Vec<[String; 4]> = h
        .changes
        .iter()
        .map(|c| {
            let what = match (&c.change.old, &c.change.new) {
                (Some(o), Some(n)) => format!("{} -> {}", clean(o, 128), clean(n, 128)),
                (None, Some(n)) => clean(n, 128),
                (Some(o), None) => format!("(was {})", clean(o, 128)),
                (None, None) => String::new(),
            };
            [
                rfc3339(c.at_unix_ms),
                c.change.kind.as_str().to_string(),
                clean(&c.change.subject, 96),
                what,
            ]
        })
        .collect();
    table(&["WHEN", "CHANGE", "WHAT", "VALUE"], &rows)
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(rfc3339(m))).unwrap_or(Value::Null)
}

pub fn sessions_json(rows: &[SessionRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "technician": r.technician,
                    "device_id": r.device_id,
                    "hostname": r.hostname,
                    "reason": r.reason,
                    "ticket": r.ticket,
                    "permissions_asked": r.permissions_asked,
                    "permissions_granted": r.permissions_granted,
                    "decision": r.decision,
                    "decision_detail": r.decision_detail,
                    "requested_at": rfc3339(r.requested_unix_ms),
                    "started_at": opt_time(r.started_unix_ms),
                    "ended_at": opt_time(r.ended_unix_ms),
                    "ended_by": r.ended_by,
                    "duration_s": match (r.started_unix_ms, r.ended_unix_ms) {
                        (Some(s), Some(e)) => json!((e - s).max(0) as f64 / 1000.0),
                        _ => Value::Null,
                    },
                    "bytes_up": r.bytes_up,
                    "bytes_down": r.bytes_down,
                    "notes": r.notes,
                    "rating": r.rating,
                    "rating_comment": r.rating_comment,
                    "actions": r.actions,
                    "activity": r.activity,
                    "engagement": r.engagement,
                })
            })
            .collect(),
    )
}

pub const SESSIONS_CSV_HEADER: &str = "id,technician,device_id,hostname,reason,ticket,permissions_asked,permissions_granted,decision,requested_at,started_at,ended_at,ended_by,bytes_up,bytes_down,notes,rating,activity,engagement";

pub fn sessions_csv(rows: &[SessionRow]) -> String {
    use tether_protocol::inventory::csv_cell;
    let t = |m: Option<i64>| m.map(rfc3339).unwrap_or_default();
    let mut out = String::from(SESSIONS_CSV_HEADER);
    out.push('\n');
    for r in rows {
        let cells = [
            csv_cell(&r.id),
            csv_cell(&r.technician),
            csv_cell(&r.device_id),
            csv_cell(&r.hostname),
            csv_cell(&r.reason),
            csv_cell(&r.ticket),
            csv_cell(&r.permissions_asked),
            csv_cell(&r.permissions_granted),
            csv_cell(&r.decision),
            csv_cell(&rfc3339(r.requested_unix_ms)),
            csv_cell(&t(r.started_unix_ms)),
            csv_cell(&t(r.ended_unix_ms)),
            csv_cell(r.ended_by.as_deref().unwrap_or("")),
            r.bytes_up.to_string(),
            r.bytes_down.to_string(),
            csv_cell(&r.notes),
            r.rating.map(|x| x.to_string()).unwrap_or_default(),
            csv_cell(&r.activity),
            csv_cell(r.engagement.as_deref().unwrap_or("")),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

pub fn sessions_table(rows: &[SessionRow]) -> String {
    let rows: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                clean(&r.id, 36),
                // Sessions of one visit share the id of the session the user approved.
                r.engagement
                    .as_deref()
                    .map_or_else(|| "-".to_string(), |e| clean(e, 8)),
                rfc3339(r.requested_unix_ms),
                clean(&r.technician, 32),
                clean(&r.hostname, 32),
                clean(&r.ticket, 16),
                // A word this build does not know (a newer relay's) shows as sent, cleaned.
                Decision::parse(&r.decision)
                    .map_or_else(|| clean(&r.decision, 12), |d| d.to_string()),
                if r.activity.is_empty() {
                    "-".to_string()
                } else {
                    clean(&r.activity, 40)
                },
                r.ended_by
                    .as_deref()
                    .map_or_else(|| "-".to_string(), |e| clean(e, 16)),
                r.rating
                    .map_or_else(|| "-".to_string(), |n| format!("{n}/5")),
                clean(&r.reason, 48),
                if r.notes.is_empty() {
                    "-".to_string()
                } else {
                    clean(&r.notes, 48)
                },
            ]
        })
        .collect();
    table(
        &[
            "SESSION",
            "ENGAGEMENT",
            "REQUESTED",
            "TECHNICIAN",
            "DEVICE",
            "TICKET",
            "DECISION",
            "ACTIVITY",
            "ENDED BY",
            "RATING",
            "REASON",
            "NOTES",
        ],
        &rows,
    )
}

/// `tether report`: one row per technician.
pub fn report_table(rows: &[ReportRow]) -> String {
    let pct = |n: u64, of: u64| {
        if of == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", n as f64 * 100.0 / of as f64)
        }
    };
    let rows: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let asked = r.approved + r.unattended + r.denied + r.timed_out;
            [
                clean(&r.technician, 32),
                r.requests.to_string(),
                pct(r.approved + r.unattended, asked),
                pct(r.denied, asked),
                pct(r.timed_out, asked),
                format_secs(r.total_seconds as f64),
                r.mean_seconds
                    .map(format_secs)
                    .unwrap_or_else(|| "-".into()),
                match r.mean_rating {
                    Some(m) => format!("{m:.1} ({})", r.ratings),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    table(
        &[
            "TECHNICIAN",
            "REQUESTS",
            "APPROVED",
            "DENIED",
            "NO ANSWER",
            "TOTAL TIME",
            "MEAN TIME",
            "RATING",
        ],
        &rows,
    )
}

fn format_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub fn report_json(rows: &[ReportRow]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "technician": r.technician,
                    "requests": r.requests,
                    "approved": r.approved,
                    "unattended": r.unattended,
                    "denied": r.denied,
                    "timed_out": r.timed_out,
                    "failed": r.failed,
                    "total_seconds": r.total_seconds,
                    "mean_seconds": r.mean_seconds,
                    "ratings": r.ratings,
                    "mean_rating": r.mean_rating,
                })
            })
            .collect(),
    )
}

/// Writes to standard output; when the reader has gone (`tether inventory --all | head -1`) the
/// program ends quietly with success, as Unix filters do, instead of panicking.
pub fn write_stdout(args: std::fmt::Arguments, newline: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// `println!` through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*), true) };
}

/// `print!` through [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*), false) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sessions_table_says_who_ended_it_the_rating_and_the_notes() {
        let row = SessionRow {
            id: "s1".into(),
            technician: "ana".into(),
            device_id: "d1".into(),
            hostname: "ws-1".into(),
            reason: "printer".into(),
            ticket: "HD-1".into(),
            permissions_asked: "view".into(),
            permissions_granted: "view".into(),
            decision: Decision::Approved.to_string(),
            decision_detail: String::new(),
            requested_unix_ms: 0,
            started_unix_ms: Some(1),
            ended_unix_ms: Some(2),
            ended_by: Some("user".into()),
            bytes_up: 0,
            bytes_down: 0,
            notes: "Replaced toner".into(),
            rating: Some(4),
            rating_comment: None,
            actions: vec![],
            activity: "command: df -h".into(),
            engagement: Some("s0000000-1111".into()),
        };
        let t = sessions_table(&[row]);
        for want in [
            "ENDED BY",
            "RATING",
            "NOTES",
            "user",
            "4/5",
            "Replaced toner",
        ] {
            assert!(t.contains(want), "{want} missing:\n{t}");
        }
    }

    fn dev(host: &str, online: bool, last: i64) -> DeviceSummary {
        DeviceSummary {
            id: "0b7c".into(),
            hostname: host.into(),
            group: "default".into(),
            online,
            os: "Debian".into(),
            agent_version: "0.1.0".into(),
            first_seen_unix_ms: 0,
            last_seen_unix_ms: last,
        }
    }

    #[test]
    fn report_rates_and_times() {
        let row = ReportRow {
            technician: "ana\u{1b}[31m".into(),
            requests: 5,
            approved: 2,
            unattended: 1,
            denied: 1,
            timed_out: 0,
            failed: 1,
            total_seconds: 3725,
            mean_seconds: Some(1241.7),
            ratings: 2,
            mean_rating: Some(4.5),
        };
        let t = report_table(&[row]);
        assert!(t.contains("ana[31m"), "{t}");
        assert!(
            t.contains("75%") && t.contains("25%") && t.contains("0%"),
            "{t}"
        );
        assert!(
            t.contains("1h02m") && t.contains("20m42s") && t.contains("4.5 (2)"),
            "{t}"
        );
    }

    #[test]
    fn table_escapes_and_aligns() {
        let now = SystemTime::now();
        let now_ms = now.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let t = devices_table(
            &[
                dev("ws-01\u{1b}]0;pwned\u{7}", true, now_ms),
                dev("laptop-ana", false, now_ms - 600_000),
            ],
            now,
        );
        assert!(!t.contains('\u{1b}'));
        assert!(t.contains("10 min ago"), "{t}");
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].find("STATUS"), lines[1].find("online"));
    }

    #[test]
    fn json_has_stable_fields() {
        let v = devices_json(&[dev("a", true, 0)]);
        assert_eq!(v[0]["hostname"], "a");
        assert_eq!(v[0]["online"], true);
        assert_eq!(v[0]["last_seen"], "1970-01-01T00:00:00Z");
    }
}
