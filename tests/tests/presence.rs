//! Agents online and offline, as a technician sees them, through a real relay on 127.0.0.1.

use std::time::Duration;
use tether_tests::{Agent, Relay, Tech, wait_until};

#[test]
fn enrolled_agent_shows_online_with_its_hostname() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let mut agent = Agent::enroll(&relay.agent_token_with(&["--group", "accounting"]));

    // Enrolled but not running: listed, offline.
    let devices = tech.devices();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], agent.id.as_str());
    assert_eq!(devices[0]["online"], false);
    assert_eq!(devices[0]["group"], "accounting");

    agent.start();
    tech.wait_online(&agent.id);
    let d = tech.devices();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(d[0]["hostname"], hostname.trim());
    assert!(d[0]["os"].as_str().is_some_and(|s| !s.is_empty()));

    // The table view says the same.
    let table = tether_tests::ok(tech.tether(&["devices"]));
    assert!(
        table.contains(&agent.id) && table.contains("online"),
        "{table}"
    );
}

#[test]
fn killed_agent_shows_offline_within_10s_and_restart_online_within_5s() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    tech.wait_online(&agent.id);

    // SIGKILL: no goodbye, so the relay must notice the silence.
    agent.kill();
    let took = wait_until(Duration::from_secs(10), || {
        tech.is_online(&agent.id) == Some(false)
    })
    .expect("killed agent still shown online after 10 s");
    eprintln!("offline after {took:?}");

    agent.start();
    let took = wait_until(Duration::from_secs(5), || {
        tech.is_online(&agent.id) == Some(true)
    })
    .expect("restarted agent not online within 5 s");
    eprintln!("online again after {took:?}");
}

#[test]
fn relay_restart_brings_agent_back_by_itself() {
    let mut relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    tech.wait_online(&agent.id);

    relay.restart();
    // Right after a restart nobody is online until the agent reconnects on its own.
    let took = wait_until(Duration::from_secs(15), || {
        tech.is_online(&agent.id) == Some(true)
    })
    .expect("agent did not reconnect after the relay restarted");
    eprintln!("agent back {took:?} after relay restart");

    // And the agent process never exited.
    let p = agent.proc.as_mut().unwrap();
    assert!(p.child.try_wait().unwrap().is_none());
}

#[test]
fn agent_stopped_gracefully_goes_offline_at_once() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    tech.wait_online(&agent.id);
    let status = agent.proc.take().unwrap().terminate();
    assert!(status.success(), "agent exit status {status}");
    // A graceful stop closes the connection: far quicker than the heartbeat timeout.
    wait_until(Duration::from_secs(3), || {
        tech.is_online(&agent.id) == Some(false)
    })
    .expect("stopped agent still online");
}
