//! sanitize() and csv_cell() on hostile input.
#![allow(clippy::field_reassign_with_default)]

use tether_protocol::inventory::*;

fn all_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

fn assert_clean(inv: &Inventory, limits: &Limits) {
    let v = serde_json::to_value(inv).unwrap();
    let mut strings = Vec::new();
    all_strings(&v, &mut strings);
    for s in strings {
        assert!(s.len() <= limits.max_string, "len {}", s.len());
        for c in s.chars() {
            let bad = (c as u32) < 0x20
                || (0x7f..=0x9f).contains(&(c as u32))
                || ('\u{202A}'..='\u{202E}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c);
            assert!(!bad, "forbidden {:?} in {s:?}", c);
        }
    }
}

fn hostile() -> String {
    "\u{1b}[31mred\u{1b}[0m\r\n\t\0\u{7f}\u{85}\u{9b}\u{202e}evil\u{2066}\u{2069}ok\u{7}"
        .to_string()
}

#[test]
fn strips_controls_ansi_and_bidi() {
    let mut inv = Inventory::default();
    inv.host.hostname = hostile();
    inv.hardware.system.product_name = Some(hostile());
    inv.hardware.network.push(NetworkInterface {
        name: hostile(),
        ipv4: vec![hostile()],
        ..Default::default()
    });
    inv.errors.push(CollectorError {
        collector: hostile(),
        message: hostile(),
    });
    let limits = Limits::default();
    let report = inv.sanitize(&limits);
    assert_eq!(inv.host.hostname, "red   evilok");
    assert!(report.iter().any(|r| r.starts_with("host.hostname")));
    assert!(report.iter().any(|r| r.starts_with("network[].ipv4[]")));
    assert_clean(&inv, &limits);
    // Idempotent.
    assert!(inv.sanitize(&limits).is_empty());
}

#[test]
fn huge_strings_are_truncated_at_char_boundary() {
    let mut inv = Inventory::default();
    inv.host.os_name = "a".repeat(1 << 20);
    inv.host.kernel = "€".repeat(1 << 20); // 3-byte chars
    inv.hardware.cpu.model = format!("x{}", "€".repeat(1000));
    let limits = Limits::default();
    let report = inv.sanitize(&limits);
    assert_eq!(inv.host.os_name.len(), 512);
    assert_eq!(inv.host.kernel.len(), 510);
    assert_eq!(inv.hardware.cpu.model.len(), 511);
    assert_eq!(report.len(), 3);
    assert_clean(&inv, &limits);
}

#[test]
fn lists_are_bounded() {
    let mut inv = Inventory::default();
    inv.software = (0..100_000)
        .map(|i| Package {
            name: format!("pkg{i}\u{1b}[1m"),
            version: "1".into(),
            arch: "amd64".into(),
            source: PackageSource::Dpkg,
        })
        .collect();
    inv.hardware.block_devices = vec![BlockDevice::default(); 10_000];
    inv.hardware.network = vec![
        NetworkInterface {
            ipv6: vec!["::1/128".into(); 5000],
            ..Default::default()
        };
        300
    ];
    inv.host.logged_in_users = vec!["u".into(); 100_000];
    inv.errors = vec![CollectorError::default(); 10_000];
    let limits = Limits::default();
    let t = std::time::Instant::now();
    let report = inv.sanitize(&limits);
    assert!(t.elapsed().as_millis() < 2000);
    assert_eq!(inv.software.len(), 20_000);
    assert_eq!(inv.hardware.block_devices.len(), 256);
    assert_eq!(inv.hardware.network.len(), 256);
    assert!(inv.hardware.network.iter().all(|n| n.ipv6.len() == 64));
    assert_eq!(inv.host.logged_in_users.len(), 256);
    assert_eq!(inv.errors.len(), 256);
    assert_eq!(inv.software[0].name, "pkg0");
    assert!(report.len() < 20, "report is bounded: {report:?}");
    assert!(
        report
            .iter()
            .any(|r| r == "software: dropped 80000 items over the limit")
    );
}

#[test]
fn tiny_limits_are_total() {
    let mut inv = Inventory::default();
    inv.host.hostname = "é".into();
    inv.software.push(Package::default());
    let zero = Limits {
        max_string: 0,
        max_packages: 0,
        max_items: 0,
        max_addresses: 0,
        max_users: 0,
        max_errors: 0,
    };
    inv.sanitize(&zero);
    assert_eq!(inv.host.hostname, "");
    assert!(inv.software.is_empty());
    let mut inv = Inventory::default();
    inv.host.hostname = "é".into();
    inv.sanitize(&Limits {
        max_string: 1,
        ..Limits::default()
    });
    assert_eq!(inv.host.hostname, "");
}

#[test]
fn csv_formula_injection_is_neutralised() {
    assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
    assert_eq!(
        csv_cell("=HYPERLINK(\"http://x\",\"y\")"),
        "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
    );
    for s in ["+1+1", "-2", "@x", "\t=1", "\r=1"] {
        assert!(csv_cell(s).trim_start_matches('"').starts_with('\''), "{s}");
    }
    assert_eq!(csv_cell("line1\nline2"), "\"line1\nline2\"");
    assert_eq!(csv_cell("ThinkPad X1"), "ThinkPad X1");
}
