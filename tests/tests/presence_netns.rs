//! Network loss between agent and relay, in a network namespace this test makes itself (the
//! machine's own network is never touched): the agent notices, and reconnects by itself when
//! the network returns.

use std::process::Command;
use std::time::{Duration, Instant};
use tether_tests::{Agent, Relay, Tech, run, wait_until};

const INSIDE: &str = "TETHER_TEST_IN_NETNS";

fn ip_lo(state: &str) {
    let out = run(Command::new("ip").args(["link", "set", "lo", state]));
    assert!(out.status.success(), "ip link set lo {state}: {out:?}");
}

/// Runs the body below in a fresh network namespace (`unshare --net`, root only).
#[test]
fn agent_reconnects_after_network_loss() {
    let exe = std::env::current_exe().unwrap();
    let out = run(Command::new("unshare")
        .arg("--net")
        .arg(exe)
        .args([
            "--exact",
            "network_loss_inside_namespace",
            "--include-ignored",
            "--nocapture",
        ])
        .env(INSIDE, "1"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    for line in text.lines().filter(|l| l.contains("back online")) {
        eprintln!("{line}");
    }
}

#[test]
#[ignore = "runs inside the namespace made by agent_reconnects_after_network_loss"]
fn network_loss_inside_namespace() {
    assert_eq!(
        std::env::var(INSIDE).as_deref(),
        Ok("1"),
        "run through agent_reconnects_after_network_loss"
    );
    ip_lo("up");
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    let log = agent.dir.path().join("agent.log");
    agent.log = Some((log.clone(), "info,quinn=warn".into()));
    agent.start();
    ana.wait_online(&agent.id);

    // The cable is pulled: the agent notices when the relay's keep-alives stop (QUIC's idle
    // timeout) and starts reconnecting.
    ip_lo("down");
    let noticed = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("reconnecting in"))
    });
    assert!(noticed.is_some(), "the agent never noticed the loss");
    // Plugged back in: it comes back by itself.
    ip_lo("up");
    let t0 = Instant::now();
    let back = wait_until(Duration::from_secs(40), || {
        ana.is_online(&agent.id) == Some(true)
    });
    assert!(back.is_some(), "the agent did not reconnect");
    eprintln!(
        "agent back online {:?} after the network returned",
        t0.elapsed()
    );
}
