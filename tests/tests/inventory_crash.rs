//! The relay killed (SIGKILL) while agents upload large inventories: after the restart the
//! store is intact and every device's inventory is there exactly once (agents resend what was
//! not acknowledged), and audit records written before the crash survive.

use std::time::Duration;
use tether_tests::{Agent, FixtureRoot, Relay, Tech, ok, run, wait_until};

#[test]
fn relay_killed_during_ingest_loses_nothing() {
    let mut relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    // An audit record written before the crash.
    let mut first = Agent::enroll(&relay.agent_token());
    first.start();
    ana.wait_online(&first.id);
    {
        let _user = first.auto_approve();
        ok(ana.tether(&["exec", &first.id, "--ticket", "HD-99", "--", "true"]));
    }

    let packages: Vec<(String, String)> = (0..20_000)
        .map(|i| (format!("pkg-{i:05}"), format!("1.{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = packages
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let roots: Vec<FixtureRoot> = (0..5)
        .map(|i| FixtureRoot::new(&format!("big-{i}"), &refs))
        .collect();
    let mut agents: Vec<Agent> = roots
        .iter()
        .map(|_| Agent::enroll(&relay.agent_token()))
        .collect();
    for (a, r) in agents.iter_mut().zip(&roots) {
        a.start_with(&["--inventory-root", r.path().to_str().unwrap()]);
    }
    // As soon as the first of them is online its upload is under way: pull the plug.
    wait_until(Duration::from_secs(30), || {
        ana.devices()
            .iter()
            .any(|d| d["hostname"] == "big-0" || d["hostname"] == "big-1")
    })
    .expect("no big agent came online");
    if let Some(mut p) = relay.proc.take() {
        p.kill();
    }
    relay.serve(relay.addr());

    // Every inventory arrives, once.
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    let complete = wait_until(Duration::from_secs(120), || {
        let rows = ana.json(&["software", "pkg-19999"]);
        let rows = rows.as_array().cloned().unwrap_or_default();
        ids.iter().all(|id| {
            rows.iter()
                .filter(|r| r["device_id"] == id.as_str())
                .count()
                == 1
        })
    });
    assert!(complete.is_some(), "not every inventory arrived");
    let rows = ana.json(&["software", "pkg-00000"]);
    assert_eq!(rows.as_array().unwrap().len(), 5, "{rows:#}");
    for a in &agents {
        let inv = ana.json(&["inventory", &a.id]);
        assert_eq!(
            inv["inventory"]["software"].as_array().unwrap().len(),
            20_000
        );
    }
    let out = ok(run(relay.cli().args(["check", "--data"]).arg(relay.data())));
    assert!(out.contains("store intact"), "{out}");
    let audit = ana.json(&["sessions"]);
    assert_eq!(audit[0]["ticket"], "HD-99");
    assert_eq!(audit[0]["actions"][0], "exec true → exit 0");
}
