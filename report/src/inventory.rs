//! Inventory as people read it: readable sections for a terminal and CSV rows for spreadsheets.
//! Shared by `tether-agent inventory` and `tether inventory`.
//!
//! Inventory text comes from agents and is untrusted: every value goes through
//! [`tether_protocol::text::clean`] here (terminal) or [`csv_cell`] (spreadsheets).

use std::fmt::Write;
use tether_protocol::inventory::{Inventory, Summary, csv_cell};
use tether_protocol::text::{bytes, clean};

fn c(s: &str) -> String {
    clean(s, 512)
}

fn o(s: &Option<String>) -> String {
    s.as_deref().map(c).unwrap_or_else(|| "-".into())
}

/// The whole inventory as readable sections. `packages` lists every package, else a count.
pub fn text(inv: &Inventory, packages: bool) -> String {
    let mut out = String::new();
    let h = &inv.host;
    let hw = &inv.hardware;
    let _ = writeln!(out, "Host");
    let _ = writeln!(out, "  hostname      {}", c(&h.hostname));
    let _ = writeln!(
        out,
        "  os            {} {} ({})",
        c(&h.os_name),
        o(&h.os_version),
        o(&h.os_build)
    );
    let _ = writeln!(out, "  kernel        {} {}", c(&h.kernel), c(&h.arch));
    let _ = writeln!(out, "  uptime        {}", uptime(h.uptime_s));
    let _ = writeln!(out, "  timezone      {}", o(&h.timezone));
    let users: Vec<_> = h.logged_in_users.iter().map(|u| c(u)).collect();
    let _ = writeln!(
        out,
        "  users         {}",
        if users.is_empty() {
            "-".into()
        } else {
            users.join(", ")
        }
    );

    let _ = writeln!(out, "\nHardware");
    let _ = writeln!(
        out,
        "  cpu           {} ({} sockets, {} cores, {} threads{})",
        c(&hw.cpu.model),
        hw.cpu.sockets,
        hw.cpu.cores,
        hw.cpu.threads,
        hw.cpu
            .base_mhz
            .map(|m| format!(", {m} MHz"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  memory        {} (swap {})",
        bytes(hw.memory.total_bytes),
        bytes(hw.memory.swap_total_bytes)
    );
    for m in &hw.memory.modules {
        let _ = writeln!(
            out,
            "    dimm        {} {} {} {} MT/s {} serial {}",
            o(&m.locator),
            bytes(m.size_bytes),
            o(&m.memory_type),
            m.speed_mts.unwrap_or(0),
            o(&m.part_number),
            o(&m.serial)
        );
    }
    let s = &hw.system;
    let _ = writeln!(
        out,
        "  system        {} {} serial {}",
        o(&s.sys_vendor),
        o(&s.product_name),
        o(&s.product_serial)
    );
    let _ = writeln!(out, "  uuid          {}", o(&s.product_uuid));
    let _ = writeln!(
        out,
        "  bios          {} {} ({})",
        o(&s.bios_vendor),
        o(&s.bios_version),
        o(&s.bios_date)
    );
    let _ = writeln!(
        out,
        "  board         {} {} serial {}",
        o(&s.board_vendor),
        o(&s.board_name),
        o(&s.board_serial)
    );
    for d in &hw.block_devices {
        let _ = writeln!(
            out,
            "  disk          {} {} {} serial {}{}{}",
            c(&d.name),
            bytes(d.size_bytes),
            o(&d.model),
            o(&d.serial),
            if d.rotational {
                ", rotational"
            } else {
                ", ssd"
            },
            if d.removable { ", removable" } else { "" }
        );
    }
    for f in &hw.filesystems {
        let _ = writeln!(
            out,
            "  filesystem    {} {} {} free of {} ({})",
            c(&f.mount_point),
            c(&f.fs_type),
            bytes(f.free_bytes),
            bytes(f.size_bytes),
            c(&f.device)
        );
    }
    for g in &hw.gpus {
        let _ = writeln!(
            out,
            "  gpu           {} {:04x}:{:04x} {} driver {}",
            c(&g.pci_slot),
            g.vendor_id,
            g.device_id,
            o(&g.vendor_name),
            o(&g.driver)
        );
    }
    for m in &hw.monitors {
        let _ = writeln!(
            out,
            "  monitor       {} {} {} {}x{} {}x{} mm serial {} ({})",
            c(&m.connector),
            c(&m.manufacturer),
            o(&m.name),
            m.native_width,
            m.native_height,
            m.width_mm,
            m.height_mm,
            o(&m.serial),
            m.year
        );
    }
    for n in &hw.network {
        let addrs: Vec<_> = n.ipv4.iter().chain(&n.ipv6).map(|a| c(a)).collect();
        let _ = writeln!(
            out,
            "  nic           {} {} {} mtu {}{} {}",
            c(&n.name),
            o(&n.mac),
            c(&n.state),
            n.mtu,
            n.speed_mbps
                .map(|s| format!(" {s} Mb/s"))
                .unwrap_or_default(),
            addrs.join(" ")
        );
    }
    for b in &hw.batteries {
        let _ = writeln!(
            out,
            "  battery       {} {} {} {}% {}",
            c(&b.name),
            o(&b.manufacturer),
            o(&b.model),
            b.capacity_percent.unwrap_or(0),
            o(&b.status)
        );
    }

    let _ = writeln!(out, "\nSoftware");
    let _ = writeln!(out, "  {} packages", inv.software.len());
    if packages {
        for p in &inv.software {
            let _ = writeln!(
                out,
                "  {:<40} {:<32} {} {:?}",
                c(&p.name),
                c(&p.version),
                c(&p.arch),
                p.source
            );
        }
    }
    if !inv.errors.is_empty() {
        let _ = writeln!(out, "\nCollection problems (the rest is complete)");
        for e in &inv.errors {
            let _ = writeln!(out, "  {}: {}", c(&e.collector), c(&e.message));
        }
    }
    out
}

/// Header of [`csv_row`].
pub const CSV_HEADER: &str = "device_id,hostname,group,online,os,kernel,arch,cpu_model,cpu_cores,cpu_threads,memory_bytes,disk_bytes,vendor,product,serial,bios_version,ipv4,mac,monitors,gpus,packages,collected_at,last_seen";

/// One CSV line (no newline). Every text cell is guarded against formula injection.
#[allow(clippy::too_many_arguments)]
pub fn csv_row(
    id: &str,
    hostname: &str,
    group: &str,
    online: bool,
    s: Option<&Summary>,
    collected_at: &str,
    last_seen: &str,
) -> String {
    let d = Summary::default();
    let s = s.unwrap_or(&d);
    let cells = [
        csv_cell(id),
        csv_cell(hostname),
        csv_cell(group),
        online.to_string(),
        csv_cell(&s.os),
        csv_cell(&s.kernel),
        csv_cell(&s.arch),
        csv_cell(&s.cpu_model),
        s.cpu_cores.to_string(),
        s.cpu_threads.to_string(),
        s.memory_bytes.to_string(),
        s.disk_bytes.to_string(),
        csv_cell(&s.vendor),
        csv_cell(&s.product),
        csv_cell(&s.serial),
        csv_cell(&s.bios_version),
        csv_cell(&s.ipv4),
        csv_cell(&s.mac),
        s.monitors.to_string(),
        s.gpus.to_string(),
        s.packages.to_string(),
        csv_cell(collected_at),
        csv_cell(last_seen),
    ];
    cells.join(",")
}

/// Uptime in words ("15 minutes", "2 days 4 hours"): whole hours showed "0 h" for the first hour.
fn uptime(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    tether_protocol::text::duration_words(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_as_words() {
        let mut inv = Inventory::default();
        inv.host.uptime_s = 15 * 60;
        assert!(text(&inv, false).contains("uptime        15 minutes"));
        inv.host.uptime_s = 2 * 86_400 + 4 * 3600 + 59;
        assert!(text(&inv, false).contains("uptime        2 days 4 hours"));
    }

    #[test]
    fn text_is_escaped() {
        let mut inv = Inventory::default();
        inv.host.hostname = "ws\u{1b}]0;owned\u{7}".into();
        inv.host.os_name = "Debian\u{1b}[2J".into();
        let t = text(&inv, true);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'));
        assert!(t.contains("ws]0;owned"));
    }

    #[test]
    fn csv_guards_cells() {
        let s = Summary {
            serial: "=cmd|' /C calc'!A0".into(),
            ..Default::default()
        };
        let row = csv_row("id", "+host", "g", true, Some(&s), "t", "t");
        assert!(row.contains("'=cmd"), "{row}");
        assert!(row.contains("'+host"), "{row}");
        assert_eq!(
            row.matches(',').count(),
            CSV_HEADER.matches(',').count(),
            "one cell per column: {row}"
        );
    }

    /// What the `decode` fuzz target does with an upload: the relay's decoding and cleaning,
    /// then this printing, whole or cut short.
    #[test]
    fn decoded_uploads_print() {
        let payload = tether_protocol::fuzzing::empty_modules_upload(1, 300).unwrap();
        let mut printed = 0;
        for cut in [payload.len(), payload.len() - 1, payload.len() / 2, 3] {
            tether_protocol::fuzzing::decode_everything_then(&payload[..cut], &mut |inv| {
                assert!(text(inv, true).contains("\nSoftware\n"));
                printed += 1;
            });
        }
        assert_eq!(printed, 1, "only the whole upload decodes");
    }
}
