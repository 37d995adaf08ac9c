//! Inventory is untrusted input: a hostile agent's report is bounded and cleaned by the relay,
//! shown escaped to technicians, guarded in CSV, and an oversized one is refused while the relay
//! keeps serving everyone else.

use std::time::Duration;
use tether_net::client::{Credentials, connect_with_credentials};
use tether_net::framed::{read_msg, write_msg};
use tether_net::tls::TransportOptions;
use tether_protocol::inventory::{Inventory, Package, PackageSource};
use tether_protocol::limits;
use tether_protocol::message::{AgentStatus, AgentStream, AgentToRelay, Intent, UploadReply};
use tether_tests::{Agent, Relay, Tech, ok};

const FORMULA: &str = "=cmd|' /C calc'!A0";

fn hostile_inventory() -> Inventory {
    let mut inv = Inventory::default();
    inv.host.hostname = format!("{FORMULA}\u{1b}[31m");
    inv.host.os_name = "Debian\u{202e}lmth.exe\u{1b}]0;owned\u{7}".into();
    inv.host.kernel = "x".repeat(1 << 20);
    inv.hardware.cpu.model = "\u{1b}[2J\u{1b}[HEPYC".into();
    inv.hardware.system.product_serial = Some("+SUM(1+1)*cmd|' /C calc'!A0".into());
    inv.software = (0..30_000)
        .map(|i| Package {
            name: format!("pkg{i}\u{1b}[1m"),
            version: "@1.0".into(),
            arch: "amd64".into(),
            source: PackageSource::Dpkg,
        })
        .collect();
    inv
}

#[test]
fn hostile_inventory_is_bounded_and_escaped() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let bad = Agent::enroll(&relay.agent_token());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let creds = Credentials::load(&bad.state()).unwrap();
        let (_ep, conn, _w, mut control, _recv) = connect_with_credentials(
            &creds,
            Intent::Agent,
            "hostile",
            TransportOptions::default(),
        )
        .await
        .unwrap();
        write_msg(
            &mut control,
            &AgentToRelay::Status(AgentStatus {
                hostname: format!("{FORMULA}\u{1b}[31m{}", "h".repeat(10_000)),
                os: "\u{1b}]0;owned\u{7}Debian".into(),
                agent_version: "1\u{0}".into(),
            }),
            limits::CONTROL,
        )
        .await
        .unwrap();

        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        write_msg(
            &mut send,
            &AgentStream::InventoryUpload {
                hash: 1,
                inventory: Box::new(hostile_inventory()),
            },
            limits::BULK,
        )
        .await
        .unwrap();
        let _ = send.finish();
        let reply: UploadReply = read_msg(&mut recv, limits::CONTROL).await.unwrap();
        assert!(matches!(reply, UploadReply::Ack { hash: 1, .. }), "{reply:?}");

        // An upload announcing more than the bulk limit is refused before it is read.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&((limits::BULK + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        send.write_all(&[0u8; 1024]).await.unwrap();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            read_msg::<UploadReply>(&mut recv, limits::CONTROL),
        )
        .await
        .expect("no answer to an oversized upload");
        assert!(
            matches!(reply, Ok(UploadReply::Rejected { ref message }) if message.contains("exceeds")),
            "{reply:?}"
        );
        conn.close(0u32.into(), b"done");
    });

    // Stored bounded: strings at most 512 bytes, at most 20,000 packages, no control characters.
    let v = tech.json(&["inventory", &bad.id]);
    let inv = &v["inventory"];
    assert_eq!(inv["software"].as_array().unwrap().len(), 20_000);
    assert!(inv["host"]["kernel"].as_str().unwrap().len() <= 512);
    let all = serde_json::to_string(inv).unwrap();
    assert!(!all.contains('\u{1b}') && !all.contains('\u{7}') && !all.contains('\u{202e}'));

    // Shown escaped in the terminal.
    for args in [
        vec!["inventory", bad.id.as_str(), "--packages"],
        vec!["devices"],
        vec!["software", "pkg1*"],
    ] {
        let out = ok(tech.tether(&args));
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "{args:?}"
        );
    }

    // Guarded in CSV: no cell starts with a formula character.
    let csv = ok(tech.tether(&["inventory", "--all", "--csv"]));
    assert!(csv.contains(&format!("'{FORMULA}")), "{csv}");
    assert!(csv.contains("'+SUM"), "{csv}");
    for line in csv.lines().skip(1) {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "unguarded cell {cell:?} in {line}"
            );
        }
    }
    // And the relay still serves everyone.
    assert_eq!(tech.devices().len(), 1);
}
