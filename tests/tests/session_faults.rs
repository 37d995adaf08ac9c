//! Faults during a session: the device vanishing mid-session is reported to the technician
//! within two seconds, and the audit record is closed.

use std::time::{Duration, Instant};
use tether_protocol::session::{Permissions, ToAgent, ToViewer};
use tether_tests::{Agent, Relay, Tech, open_duplex, wait_until};

#[test]
fn agent_killed_mid_session_is_reported_within_two_seconds() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    ana.wait_online(&agent.id);
    let user = agent.auto_approve();
    let mut d = open_duplex(&ana, &agent.id, Permissions::SHELL, "HD-90");
    let (rt, tx, rx) = (&d.rt, &d.tx, &mut d.rx);
    tx.send(ToAgent::ShellOpen {
        cols: 80,
        rows: 24,
        user: None,
    })
    .unwrap();
    // The shell is up and idle: nothing flows but keep-alives.
    rt.block_on(async {
        loop {
            match rx.recv().await {
                Some(ToViewer::Output { .. }) => break,
                Some(_) => continue,
                None => panic!("session ended"),
            }
        }
    });
    drop(user);
    let t0 = Instant::now();
    agent.kill();
    let reason = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(ToViewer::Bye { reason })) => break reason,
                Ok(Some(_)) => continue,
                other => panic!("no goodbye: {other:?}"),
            }
        }
    });
    let took = t0.elapsed();
    eprintln!("device loss reported after {took:?}: {reason}");
    assert!(reason.contains("device disconnected"), "{reason}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    d.close();
    let mut row = serde_json::Value::Null;
    let closed = wait_until(Duration::from_secs(10), || {
        row = ana.json(&["sessions"])[0].clone();
        row["ended_at"].is_string()
    });
    assert!(closed.is_some(), "the audit record stayed open");
    assert_eq!(row["ended_by"], "device lost");
}

#[test]
fn relay_restart_ends_sessions_with_a_clear_error_and_technicians_reconnect() {
    let mut relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();
    let mut shell = std::process::Command::new(tether_tests::bin("tether"))
        .arg("--config")
        .arg(ana.config())
        .args(["shell", &agent.id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = shell.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"echo up-$((1+1))\n").unwrap();
    let mut out = shell.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("up-2") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "shell ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    relay.restart();
    let status = shell.wait().unwrap();
    drop(input);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut shell.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("relay closed the connection"),
        "unclear error: {err}"
    );
    eprintln!("technician saw: {}", err.trim());
    // The agent comes back by itself, and the technician simply runs the next command.
    ana.wait_online(&agent.id);
    let out = ana.tether(&["exec", &agent.id, "--", "true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `tether exec DEVICE -- sh -c 'echo started; sleep 60'` and returns once the command
/// runs on the device.
fn long_exec(tech: &Tech, device: &str) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = std::process::Command::new(tether_tests::bin("tether"))
        .arg("--config")
        .arg(tech.config())
        .args(["exec", device, "--", "sh", "-c", "echo started; sleep 60"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("started") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "exec ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    (child, out)
}

/// Reproduces the review finding: an agent killed during `tether exec` was reported after
/// ~3.5 s (the client waited 2 s more for a goodbye from a device it knew was gone), beyond the
/// 2 s promised, and the audit could record the technician as having ended the session.
#[test]
fn agent_killed_mid_exec_is_reported_within_two_seconds_and_audited_as_lost() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    ana.wait_online(&agent.id);
    let user = agent.auto_approve();
    let (mut exec, _out) = long_exec(&ana, &agent.id);
    drop(user);
    let t0 = Instant::now();
    agent.kill();
    let status = exec.wait().unwrap();
    let took = t0.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut exec.stderr.take().unwrap(), &mut err).unwrap();
    eprintln!(
        "device loss reported to exec after {took:?}: {}",
        err.trim()
    );
    assert!(!status.success());
    assert!(err.contains("device disconnected"), "{err}");
    // The promise is 2 s (measured ~1.5 s); a little slack for a loaded machine.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let mut row = serde_json::Value::Null;
    let closed = wait_until(Duration::from_secs(10), || {
        row = ana.json(&["sessions"])[0].clone();
        row["ended_at"].is_string()
    });
    assert!(closed.is_some(), "the audit record stayed open");
    assert_eq!(row["ended_by"], "device lost", "{row:#}");
}
