//! Revocation: `tether-relay revoke` disconnects a device or a technician from a running relay
//! within a second (cutting their sessions) and refuses them from then on.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_tests::{Agent, Relay, Tech, bin, ok, run, stderr, wait_until};

fn revoke(relay: &Relay, args: &[&str]) -> String {
    ok(run(Command::new(bin("tether-relay"))
        .args(["revoke", "--data"])
        .arg(relay.data())
        .args(args)))
}

#[test]
fn a_revoked_device_is_disconnected_within_a_second_and_stays_out() {
    let relay = Relay::start();
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let mut agent = Agent::enroll(&relay.agent_token());
    let mut other = Agent::enroll(&relay.agent_token());
    agent.start();
    other.start();
    boss.wait_online(&agent.id);
    boss.wait_online(&other.id);

    let out = revoke(
        &relay,
        &["--device", &agent.id, "--reason", "laptop stolen"],
    );
    assert!(
        out.contains(&format!("revoked device:{}", agent.id)),
        "{out}"
    );
    let t0 = Instant::now();
    let offline = wait_until(Duration::from_secs(5), || {
        boss.is_online(&agent.id) == Some(false)
    });
    let took = t0.elapsed();
    assert!(offline.is_some(), "revoked device still online");
    eprintln!("revoked device offline after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // It keeps trying (with backoff) and is refused each time; the other device is unaffected.
    let back = wait_until(Duration::from_secs(3), || {
        boss.is_online(&agent.id) == Some(true)
    });
    assert!(back.is_none(), "a revoked device came back");
    assert_eq!(boss.is_online(&other.id), Some(true));

    let out = run(Command::new(bin("tether-relay"))
        .args(["revoke", "--data"])
        .arg(relay.data())
        .args(["--device", "no-such-device"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such device"));
}

#[test]
fn a_revoked_technician_loses_their_session_at_once_and_is_refused() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();

    // A shell that stays open (its stdin is held) until something cuts it.
    let mut shell = Command::new(bin("tether"))
        .arg("--config")
        .arg(ana.config())
        .args(["shell", &agent.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = shell.stdin.take().unwrap();
    input.write_all(b"echo shell-$((40+2))\n").unwrap();
    let mut out = shell.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("shell-42") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "shell ended early");
        seen.extend_from_slice(&buf[..n]);
    }

    revoke(&relay, &["--technician", "ana"]);
    let t0 = Instant::now();
    let ended = wait_until(Duration::from_secs(5), || {
        shell.try_wait().ok().flatten().is_some()
    });
    let took = t0.elapsed();
    assert!(
        ended.is_some(),
        "the revoked technician's shell kept running"
    );
    eprintln!("revoked technician's session cut after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(!shell.wait().unwrap().success());
    drop(input);

    let out = ana.tether(&["devices"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    // Others carry on; the audit record shows the session ended.
    assert!(boss.tether(&["devices"]).status.success());
    let rows = boss.json(&["sessions"]);
    assert!(rows[0]["ended_at"].is_string(), "{rows:#}");
}

/// Starts `tether exec DEVICE -- sh -c 'echo started; sleep 60'` and returns once the command
/// runs on the device.
fn long_exec(tech: &Tech, device: &str) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = Command::new(bin("tether"))
        .arg("--config")
        .arg(tech.config())
        .args(["exec", device, "--", "sh", "-c", "echo started; sleep 60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

/// Waits for `child` to end (within 5 s); returns its exit code, stderr and how long it took.
fn ended(mut child: std::process::Child) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let done = wait_until(Duration::from_secs(5), || {
        child.try_wait().ok().flatten().is_some()
    });
    let took = t0.elapsed();
    assert!(done.is_some(), "exec kept running after the revocation");
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err, took)
}

/// Reproduces the review finding: a revocation during `tether exec` was reported as "device
/// disconnected", whether the technician's or the device's certificate was revoked.
#[test]
fn a_revocation_mid_exec_is_reported_as_a_revocation() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let mut x = Agent::enroll(&relay.agent_token());
    let mut y = Agent::enroll(&relay.agent_token());
    x.start();
    y.start();
    boss.wait_online(&x.id);
    boss.wait_online(&y.id);
    let _ux = x.auto_approve();
    let _uy = y.auto_approve();

    // The device's certificate.
    let (exec, _out) = long_exec(&boss, &x.id);
    revoke(&relay, &["--device", &x.id, "--reason", "stolen"]);
    let (code, err, took) = ended(exec);
    eprintln!(
        "device revocation reported to exec after {took:?}: {}",
        err.trim()
    );
    assert!(err.contains("device's certificate was revoked"), "{err}");
    assert!(!err.contains("disconnected"), "{err}");
    assert_ne!(code, Some(0));
    let mut row = serde_json::Value::Null;
    wait_until(Duration::from_secs(10), || {
        row = boss.json(&["sessions", "--device", &x.id])[0].clone();
        row["ended_at"].is_string()
    });
    assert_eq!(row["ended_by"], "device revoked", "{row:#}");

    // The technician's certificate.
    let (exec, _out) = long_exec(&ana, &y.id);
    revoke(&relay, &["--technician", "ana"]);
    let (code, err, took) = ended(exec);
    eprintln!(
        "technician revocation reported to exec after {took:?}: {}",
        err.trim()
    );
    assert!(err.contains("revoked"), "{err}");
    assert!(!err.contains("disconnected"), "{err}");
    assert_eq!(code, Some(3), "not the authentication exit code: {err}");
}
