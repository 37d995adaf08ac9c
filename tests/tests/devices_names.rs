//! Device names: a device chooses its own hostname, so ids and id prefixes win over hostnames,
//! and a hostname two devices share (or one shaped like an id) is refused with the candidates
//! listed, for technicians' requests and for `tether-relay revoke` alike (review finding 6).

use std::time::Duration;
use tether_tests::{Agent, FixtureRoot, Relay, Tech, ok, run, stderr, wait_until};

fn start_named(agent: &mut Agent, root: &FixtureRoot) {
    agent.start_with(&["--inventory-root", root.path().to_str().unwrap()]);
}

/// Waits until `tech` sees device `id` online under `hostname`.
fn wait_named(tech: &Tech, id: &str, hostname: &str) {
    wait_until(Duration::from_secs(20), || {
        tech.devices()
            .iter()
            .any(|d| d["id"] == id && d["hostname"] == hostname && d["online"] == true)
    })
    .unwrap_or_else(|| panic!("{id} never came online as {hostname}"));
}

/// Reproduces finding 6: device B named itself like device A's id prefix and received
/// `tether exec <prefix>`, which was meant for A (hostnames were preferred over id prefixes).
#[test]
fn an_id_prefix_reaches_its_device_never_one_named_like_it() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut a = Agent::enroll(&relay.agent_token());
    let mut b = Agent::enroll(&relay.agent_token());
    let prefix = a.id[..8].to_string();
    let (root_a, root_b) = (
        FixtureRoot::new("ws-a", &[]),
        FixtureRoot::new(&prefix, &[]),
    );
    start_named(&mut a, &root_a);
    start_named(&mut b, &root_b);
    wait_named(&ana, &a.id, "ws-a");
    wait_named(&ana, &b.id, &prefix);
    // Both would approve: only the audit says who was reached.
    let _ua = a.auto_approve();
    let _ub = b.auto_approve();
    for query in [prefix.as_str(), &prefix.to_uppercase(), a.id.as_str()] {
        let out = ana.tether(&["exec", query, "--", "true"]);
        assert!(out.status.success(), "{query}: {}", stderr(&out));
    }
    let rows = ana.json(&["sessions"]);
    let reached: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["device_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reached.len(), 3, "{rows:#}");
    assert!(
        reached.iter().all(|d| *d == a.id),
        "B was reached: {reached:?}"
    );
    // B is still reachable by its own id.
    ok(ana.tether(&["exec", &b.id[..8], "--", "true"]));
}

/// Reproduces finding 6: with two devices named "twin", `tether-relay revoke --device twin`
/// revoked the first one and left the other online; requests listed only ids.
#[test]
fn a_shared_hostname_is_refused_with_the_candidates_and_revokes_nothing() {
    let relay = Relay::start();
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let mut t1 = Agent::enroll(&relay.agent_token());
    let mut t2 = Agent::enroll(&relay.agent_token_with(&["--group", "lab"]));
    let root = FixtureRoot::new("twin", &[]);
    start_named(&mut t1, &root);
    start_named(&mut t2, &root);
    wait_named(&boss, &t1.id, "twin");
    wait_named(&boss, &t2.id, "twin");
    let _u1 = t1.auto_approve();
    let _u2 = t2.auto_approve();

    let candidates = |text: &str| {
        assert!(
            text.contains(&format!("{} (twin, group default)", t1.id))
                && text.contains(&format!("{} (twin, group lab)", t2.id)),
            "candidates not listed: {text}"
        );
    };
    for args in [
        vec!["exec", "twin", "--", "true"],
        vec!["inventory", "twin"],
        vec!["say", "twin", "hello", "--wait", "5s"],
    ] {
        let out = boss.tether(&args);
        assert!(!out.status.success(), "{args:?} picked a twin");
        candidates(&stderr(&out));
    }
    assert!(boss.json(&["sessions"]).as_array().unwrap().is_empty());

    let out = run(relay
        .cli()
        .args(["revoke", "--data"])
        .arg(relay.data())
        .args(["--device", "twin"]));
    assert!(!out.status.success(), "revoke picked a twin");
    candidates(&stderr(&out));
    assert!(stderr(&out).contains("nothing revoked"), "{}", stderr(&out));
    // Nothing was revoked: both stay online (the relay acts on revocations within 250 ms).
    let lost = wait_until(Duration::from_secs(2), || {
        boss.is_online(&t1.id) != Some(true) || boss.is_online(&t2.id) != Some(true)
    });
    assert!(lost.is_none(), "a twin went offline");
    // By id, each one is reached.
    for id in [&t1.id, &t2.id] {
        ok(boss.tether(&["exec", id, "--", "true"]));
    }
}
