//! How the `tether` command behaves as a Unix filter.

use std::process::{Command, Stdio};
use tether_tests::{Agent, Relay, Tech, bin};

/// `tether inventory --all | head -1` panicked with "Broken pipe" (exit 101). Here the reader of
/// stdout is gone before anything is written, so the first write fails every time: the command
/// must end quietly and successfully, as `ls | head` does.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    tech.wait_online(&agent.id);
    for args in [
        vec!["inventory", "--all"],
        vec!["devices"],
        vec!["devices", "--json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(bin("tether"))
            .arg("--config")
            .arg(tech.config())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// With the relay down, commands took 10 s to say so even on loopback (QUIC gets no refusal):
/// they now give up after the 4 s connect timeout with a one-line error naming the relay.
#[test]
fn a_relay_that_is_down_is_reported_within_seconds() {
    let mut relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    relay.stop();
    let t0 = std::time::Instant::now();
    let out = tech.tether(&["devices"]);
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("relay down reported after {took:?}: {}", err.trim());
    assert!(!out.status.success());
    assert!(err.contains("relay"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // 4 s of timeout; the rest is slack for a loaded machine (the old code took 10 s).
    assert!(took < std::time::Duration::from_secs(8), "took {took:?}");
}

/// Empty answers say why: a technician whose groups hold no device was told "no devices
/// enrolled yet", and `software NAME --version-below V` said "no device has NAME" when devices
/// had it at V or above.
#[test]
fn empty_answers_say_what_was_asked() {
    let relay = Relay::start();
    let admin = Tech::enroll(&relay.tech_token("boss", "admin"));
    let ana = Tech::enroll(&relay.tech_token_with("ana", "support", &[]));
    relay.grant(&["--technician", "ana", "--group", "empty-group"]);
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    admin.wait_online(&agent.id);
    let out = tether_tests::ok(ana.tether(&["devices"]));
    assert!(out.contains("no device in the groups you may see"), "{out}");
    assert!(!out.contains("enrolled yet"), "{out}");

    // The agent's real inventory lists the packages of this machine: bash is there.
    tether_tests::wait_until(std::time::Duration::from_secs(60), || {
        admin
            .json(&["software", "bash"])
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .expect("the inventory never listed bash");
    let out = tether_tests::ok(admin.tether(&["software", "bash", "--version-below", "0"]));
    assert!(out.contains("no device has bash below version 0"), "{out}");
}
