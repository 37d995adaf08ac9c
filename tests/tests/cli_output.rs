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
