//! Inventory through a real relay: what an agent reports is stored, queried fleet-wide, and its
//! changes land in the history exactly once, including across a relay restart.

use std::time::Duration;
use tether_tests::{Agent, FixtureRoot, Relay, Tech, ok, wait_until};

type Entry = (String, String, Option<String>, Option<String>);

fn entry(kind: &str, subject: &str, old: Option<&str>, new: Option<&str>) -> Entry {
    (
        kind.into(),
        subject.into(),
        old.map(str::to_string),
        new.map(str::to_string),
    )
}

fn start_agent(relay: &Relay, root: &FixtureRoot) -> Agent {
    let mut agent = Agent::enroll(&relay.agent_token());
    let root = root.path().to_str().unwrap().to_string();
    agent.start_with(&["--inventory-root", &root]);
    agent
}

#[test]
fn dpkg_changes_produce_exactly_those_history_entries() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let root = FixtureRoot::new(
        "ws-hist",
        &[
            ("curl", "7.88.1-10"),
            ("vim", "2:9.0.1378-2"),
            ("oldtool", "1.0-1"),
        ],
    );
    let agent = start_agent(&relay, &root);

    wait_until(Duration::from_secs(15), || {
        !tech.history(&agent.id).is_empty()
    })
    .expect("first inventory never arrived");
    assert_eq!(
        tech.history(&agent.id),
        vec![entry(
            "first_inventory",
            "inventory",
            None,
            Some("3 packages")
        )]
    );

    // One package added, one removed, one upgraded.
    root.set_packages(&[
        ("curl", "7.88.1-10+deb12u5"),
        ("vim", "2:9.0.1378-2"),
        ("htop", "3.2.2-2"),
    ]);
    agent.refresh_inventory();
    wait_until(Duration::from_secs(15), || {
        tech.history(&agent.id).len() > 1
    })
    .expect("changes never arrived");
    let h = tech.history(&agent.id);
    assert_eq!(
        h[1..].to_vec(),
        vec![
            entry(
                "software_upgraded",
                "curl:amd64",
                Some("7.88.1-10"),
                Some("7.88.1-10+deb12u5")
            ),
            entry("software_installed", "htop:amd64", None, Some("3.2.2-2")),
            entry("software_removed", "oldtool:amd64", Some("1.0-1"), None),
        ]
    );

    // Nothing changed: a refresh records nothing and uploads nothing.
    agent.refresh_inventory();
    root.set_packages(&[
        ("curl", "7.88.1-10+deb12u5"),
        ("vim", "2:9.0.1378-2"),
        ("htop", "3.2.2-2"),
        ("marker", "1"),
    ]);
    agent.refresh_inventory();
    wait_until(Duration::from_secs(15), || {
        tech.history(&agent.id).len() > 4
    })
    .expect("marker change never arrived");
    let h = tech.history(&agent.id);
    assert_eq!(h.len(), 5, "only the marker was added: {h:?}");
    assert_eq!(
        h[4],
        entry("software_installed", "marker:amd64", None, Some("1"))
    );

    // The package index answers fleet-wide queries with the new versions.
    let sw = tech.json(&["software", "curl"]);
    assert_eq!(sw.as_array().unwrap().len(), 1);
    assert_eq!(sw[0]["version"], "7.88.1-10+deb12u5");
    assert_eq!(sw[0]["device_id"], agent.id.as_str());
    let below = tech.json(&["software", "curl", "--version-below", "7.88.1-10+deb12u6"]);
    assert_eq!(below.as_array().unwrap().len(), 1);
    let below = tech.json(&["software", "curl", "--version-below", "7.88.1-10+deb12u5"]);
    assert!(below.as_array().unwrap().is_empty());
    assert!(
        tech.json(&["software", "oldtool"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(tech.json(&["software", "v*"]).as_array().unwrap().len(), 1);
}

#[test]
fn inventory_collected_while_relay_is_down_arrives_after_restart() {
    let mut relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let root = FixtureRoot::new("ws-restart", &[("curl", "1.0")]);
    let agent = start_agent(&relay, &root);
    wait_until(Duration::from_secs(15), || {
        tech.history(&agent.id).len() == 1
    })
    .expect("first inventory never arrived");

    let addr = relay.addr();
    relay.stop();
    root.set_packages(&[("curl", "1.0"), ("zoom", "5.17")]);
    agent.refresh_inventory();
    // The agent has the new inventory but nobody acknowledged it. After the restart it must
    // reach the relay without anyone asking the agent again.
    relay.serve(addr);
    wait_until(Duration::from_secs(20), || {
        tech.history(&agent.id).len() == 2
    })
    .expect("inventory changed during the outage never arrived");
    assert_eq!(
        tech.history(&agent.id)[1],
        entry("software_installed", "zoom:amd64", None, Some("5.17"))
    );
}

#[test]
fn inventory_queries_through_the_relay() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let root = FixtureRoot::new("ws-query", &[("curl", "1.0"), ("vim", "2.0")]);
    let agent = start_agent(&relay, &root);
    let _offline = Agent::enroll(&relay.agent_token());
    wait_until(Duration::from_secs(15), || {
        !tech.history(&agent.id).is_empty()
    })
    .unwrap();

    // One device by hostname, readable and JSON.
    let text = ok(tech.tether(&["inventory", "ws-query"]));
    assert!(text.contains("hostname      ws-query"), "{text}");
    assert!(text.contains("2 packages"), "{text}");
    let v = tech.json(&["inventory", &agent.id[..8]]);
    assert_eq!(v["device"]["id"], agent.id.as_str());
    assert_eq!(v["inventory"]["host"]["hostname"], "ws-query");
    assert_eq!(
        v["inventory"]["hardware"]["memory"]["total_bytes"],
        8048576u64 * 1024
    );
    assert_eq!(v["inventory"]["software"].as_array().unwrap().len(), 2);

    // All devices: the enrolled-but-silent one has no inventory yet.
    let all = tech.json(&["inventory", "--all"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let csv = ok(tech.tether(&["inventory", "--all", "--csv"]));
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("device_id,hostname,group,online,os"));
    assert!(
        csv.contains(",ws-query,default,true,Debian GNU/Linux 12,"),
        "{csv}"
    );

    // Unknown device: one-line error, non-zero exit.
    let out = tech.tether(&["inventory", "no-such-host"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(tether_tests::stderr(&out).contains("no device matches"));
}
