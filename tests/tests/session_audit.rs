//! Every session request leaves an audit record: who, which device, why, the ticket, what was
//! asked and granted, the decision, times, bytes, and the technician's resolution notes.

use tether_tests::{Agent, Relay, Tech, Xvfb, ok, stderr};

#[test]
fn sessions_are_audited_with_ticket_decision_bytes_and_notes() {
    let x = Xvfb::start(640, 400);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let bob = Tech::enroll(&relay.tech_token("bob", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let mut agent = Agent::enroll(&relay.agent_token());
    let offline = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&x.display);
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();

    let shot = tempfile::NamedTempFile::new().unwrap();
    ok(ana.tether(&[
        "screenshot",
        &agent.id,
        "-o",
        shot.path().to_str().unwrap(),
        "--reason",
        "=printer offline",
        "--ticket",
        "HD-1042",
    ]));
    let out = ana.tether(&["click", &offline.id, "1", "1", "--ticket", "HD-7"]);
    assert!(!out.status.success());
    // A viewer's attempt is refused, and recorded too.
    let val = Tech::enroll(&relay.tech_token("val", "viewer"));
    let out = val.tether(&[
        "screenshot",
        &agent.id,
        "-o",
        "/dev/null",
        "--ticket",
        "HD-9",
    ]);
    assert!(!out.status.success());

    let rows = ana.json(&["sessions"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let s = &rows[0];
    assert_eq!(s["technician"], "ana");
    assert_eq!(s["device_id"], agent.id.as_str());
    assert_eq!(s["reason"], "=printer offline");
    assert_eq!(s["ticket"], "HD-1042");
    assert_eq!(s["permissions_asked"], "view");
    assert_eq!(s["permissions_granted"], "view");
    assert_eq!(s["decision"], "approved");
    assert!(s["started_at"].is_string() && s["ended_at"].is_string());
    assert_eq!(s["ended_by"], "technician");
    // A 640x400 screenshot came back through the relay, end-to-end encrypted.
    assert!(s["bytes_down"].as_u64().unwrap() > 1000, "{s}");
    assert!(s["bytes_up"].as_u64().unwrap() > 0);
    assert_eq!(rows[1]["decision"], "failed");
    assert_eq!(rows[1]["decision_detail"], "device offline");
    assert_eq!(rows[1]["ticket"], "HD-7");

    // Resolution notes, by the session's technician only.
    let id = s["id"].as_str().unwrap().to_string();
    ok(ana.tether(&["notes", &id, "Replaced toner; printer back online."]));
    let out = bob.tether(&["notes", &id, "not mine"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no session"), "{}", stderr(&out));
    assert_eq!(
        ana.json(&["sessions"])[0]["notes"],
        "Replaced toner; printer back online."
    );

    // Technicians see their own sessions; admins see everyone's, filterable.
    assert!(bob.json(&["sessions"]).as_array().unwrap().is_empty());
    let all = boss.json(&["sessions"]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[2]["technician"], "val");
    assert_eq!(all[2]["decision"], "denied");
    assert!(
        all[2]["decision_detail"]
            .as_str()
            .unwrap()
            .contains("may not start sessions")
    );
    assert_eq!(
        boss.json(&["sessions", "--technician", "ana", "--device", &agent.id])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // CSV for the ticket system, formula cells guarded.
    let csv = ok(boss.tether(&["sessions", "--csv"]));
    assert!(csv.starts_with("id,technician,device_id"));
    assert!(csv.contains(",'=printer offline,"), "{csv}");
}
