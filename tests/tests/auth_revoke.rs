//! Revocation: `tether-relay revoke` disconnects a device or a technician from a running relay
//! within a second (cutting their sessions) and refuses them from then on.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_tests::{Agent, Relay, Tech, bin, ok, open_shell, run, stderr, wait_until};

fn revoke(relay: &Relay, args: &[&str]) -> String {
    ok(run(relay
        .cli()
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

    let out = run(relay
        .cli()
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
    let (mut shell, input) = open_shell(&ana, &agent.id);

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

/// The serial of an enrolled technician's certificate (lower-case hex).
fn serial_of(tech: &Tech) -> String {
    let pem = std::fs::read(tech.config().join("cert.pem")).unwrap();
    let der = tether_net::pki::certs_from_pem(&pem, "cert").unwrap();
    tether_net::pki::cert_info(&der[0]).unwrap().serial
}

/// Asserts a technician's certificate is refused as revoked (exit 3, "revoked").
fn assert_refused(tech: &Tech, args: &[&str]) {
    let out = tech.tether(args);
    assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
}

/// Reproduces the reviewer's finding: a technician enrolled as admin, re-enrolled as viewer,
/// then revoked, still used the old admin certificate (only the latest serial was kept and
/// revoked) and minted an admin token with it. Now re-enrolling needs `--replace`, which
/// revokes the old certificate when the new one is issued, revoking a technician revokes every
/// certificate they ever had, and a revoked serial stays refused after later enrollments.
#[test]
fn an_old_admin_certificate_is_refused_after_re_enrollment_and_revocation() {
    let relay = Relay::start();
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let ana_admin = Tech::enroll(&relay.tech_token("ana", "admin"));
    let old_serial = serial_of(&ana_admin);
    let addr = relay.addr().to_string();
    ok(ana_admin.tether(&["token", "--agent", "--relay", &addr]));

    // Re-enrolling a technician who holds a valid certificate is an explicit choice.
    let out = run(relay
        .cli()
        .args(["token", "--technician", "ana", "--role", "viewer", "--data"])
        .arg(relay.data()));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("already enrolled") && err.contains("--replace"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    // The same remotely.
    let out = boss.tether(&[
        "token",
        "--technician",
        "ana",
        "--role",
        "viewer",
        "--relay",
        &addr,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));

    let ana_viewer = Tech::enroll(&relay.tech_token_with("ana", "viewer", &["--replace"]));
    assert_ne!(serial_of(&ana_viewer), old_serial);
    // The replaced admin certificate is out at once; the new one is a viewer.
    assert_refused(&ana_admin, &["devices"]);
    assert_refused(&ana_admin, &["token", "--agent", "--relay", &addr]);
    ok(ana_viewer.tether(&["devices"]));
    let out = ana_viewer.tether(&["token", "--agent", "--relay", &addr]);
    assert!(stderr(&out).contains("only admins"), "{}", stderr(&out));

    let out = revoke(&relay, &["--technician", "ana"]);
    assert!(out.contains("revoked tech:ana"), "{out}");
    assert_refused(&ana_viewer, &["devices"]);
    assert_refused(&ana_admin, &["token", "--agent", "--relay", &addr]);

    // Enrolled once more (nothing valid left to replace, so no --replace needed): the new
    // certificate works, the old admin one stays refused.
    let ana_again = Tech::enroll(&relay.tech_token("ana", "support"));
    ok(ana_again.tether(&["devices"]));
    assert_refused(&ana_admin, &["token", "--agent", "--relay", &addr]);
    assert_refused(&ana_viewer, &["devices"]);
    // Every certificate is listed, and all but the newest are revoked.
    let out = ok(run(relay
        .cli()
        .args(["certificates", "--technician", "ana", "--json", "--data"])
        .arg(relay.data())));
    let certs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), 3, "{certs:#?}");
    let revoked: Vec<bool> = certs
        .iter()
        .map(|c| !c["revoked_unix_ms"].is_null())
        .collect();
    assert_eq!(revoked.iter().filter(|r| **r).count(), 2, "{certs:#?}");
    assert!(
        certs
            .iter()
            .any(|c| c["serial"] == old_serial.as_str() && !c["revoked_unix_ms"].is_null())
    );
    ok(boss.tether(&["devices"]));
}

/// `tether-relay revoke --serial` revokes one certificate (written in any case, with colons,
/// as tools print serials), disconnects it and leaves the others of the same relay alone.
#[test]
fn one_certificate_is_revoked_by_serial() {
    let relay = Relay::start();
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    boss.wait_online(&agent.id);
    ok(ana.tether(&["devices"]));

    let serial = serial_of(&ana);
    let spelled: String = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let out = revoke(&relay, &["--serial", &spelled]);
    assert!(
        out.contains("revoked tech:ana") && out.contains(&serial),
        "{out}"
    );
    assert_refused(&ana, &["devices"]);
    ok(boss.tether(&["devices"]));
    assert_eq!(boss.is_online(&agent.id), Some(true));

    // A device's certificate by serial: it is disconnected.
    let out = ok(run(relay
        .cli()
        .args(["certificates", "--device", &agent.id, "--json", "--data"])
        .arg(relay.data())));
    let certs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let device_serial = certs[0]["serial"].as_str().unwrap().to_string();
    revoke(&relay, &["--serial", &device_serial]);
    let offline = wait_until(Duration::from_secs(5), || {
        boss.is_online(&agent.id) == Some(false)
    });
    assert!(offline.is_some(), "device revoked by serial still online");

    // Serials the relay never issued, and non-hex, are refused with a clear error.
    for bad in ["0badc0ffee", "not-hex"] {
        let out = run(relay
            .cli()
            .args(["revoke", "--data"])
            .arg(relay.data())
            .args(["--serial", bad]));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("serial"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    }
}

/// Reproduces the window between the revocation check at connect and the registration of the
/// connection as live: a revocation landing there was never seen by the watcher (it scanned
/// the live connections before this one was among them), so the revoked technician stayed
/// connected. A test hook in the relay revokes the certificate right after the check and waits
/// until the watcher has made its pass; the connection must then be closed.
#[test]
fn a_revocation_right_after_the_connect_check_still_disconnects() {
    use std::sync::{Arc, Mutex, OnceLock};
    use tether_relay::server::{CertCheckHook, ServeOptions};

    let relay = Relay::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target: Arc<Mutex<Option<String>>> = Arc::default();
    let sweeps: Arc<OnceLock<tokio::sync::watch::Receiver<u64>>> = Arc::default();
    let ambushed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook: CertCheckHook = {
        let (target, sweeps, ambushed) = (target.clone(), sweeps.clone(), ambushed.clone());
        let (data, store) = (relay.data(), relay.store.clone());
        Arc::new(move |serial: String| {
            let (target, sweeps, ambushed, data, store) = (
                target.clone(),
                sweeps.clone(),
                ambushed.clone(),
                data.clone(),
                store.clone(),
            );
            Box::pin(async move {
                if target.lock().unwrap().as_deref() != Some(serial.as_str()) {
                    return;
                }
                let Some(mut rx) = sweeps.get().cloned() else {
                    return;
                };
                let before = *rx.borrow_and_update();
                let s = serial.clone();
                tokio::task::spawn_blocking(move || {
                    ok(run(tether_tests::relay_command(store.as_deref())
                        .args(["revoke", "--data"])
                        .arg(&data)
                        .args(["--serial", &s])))
                })
                .await
                .unwrap();
                // The watcher's next pass follows the revocation.
                let swept =
                    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|n| *n > before))
                        .await;
                assert!(swept.is_ok(), "the revocation watcher made no pass");
                ambushed.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        })
    };
    let server = rt
        .block_on(tether_relay::server::Relay::start(
            &tether_relay::config::DataDir::new(relay.data()),
            ServeOptions {
                after_cert_check: Some(hook),
                store: relay.store_url(),
                ..ServeOptions::new("127.0.0.1:0".parse().unwrap())
            },
        ))
        .unwrap();
    let _ = sweeps.set(server.revocation_sweeps());
    let addr = server.local_addr().unwrap();
    rt.spawn(server.run(std::future::pending()));
    let token = |name: &str| {
        ok(run(relay
            .cli()
            .args(["token", "--data"])
            .arg(relay.data())
            .args(["--relay", &addr.to_string()])
            .args(["--technician", name, "--role", "admin"])))
        .trim()
        .to_string()
    };
    let ana = Tech::enroll(&token("ana"));
    let boss = Tech::enroll(&token("boss"));
    ok(ana.tether(&["devices"]));

    *target.lock().unwrap() = Some(serial_of(&ana));
    let out = ana.tether(&["devices"]);
    // The hook ran for this connection (it finishes after the watcher's pass, which may have
    // closed the connection already).
    let ran = wait_until(Duration::from_secs(20), || {
        ambushed.load(std::sync::atomic::Ordering::SeqCst)
    });
    assert!(ran.is_some(), "the hook did not revoke the connection");
    assert_eq!(
        out.status.code(),
        Some(3),
        "a connection revoked right after its check was served: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    ok(boss.tether(&["devices"]));
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
