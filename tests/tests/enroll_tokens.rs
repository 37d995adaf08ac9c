//! Enrollment: tokens are single-use, expire, cannot be forged; certificates from another CA
//! are refused as an authentication failure.

use std::process::Command;
use tether_protocol::token::EnrollToken;
use tether_tests::{Agent, Relay, Tech, bin, run, stderr};

fn enroll_agent(token: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(bin("tether-agent"))
        .args(["enroll", "--token", token, "--state"])
        .arg(dir.path().join("s")))
}

#[test]
fn token_used_twice_is_refused() {
    let relay = Relay::start();
    let token = relay.agent_token();
    let _first = Agent::enroll(&token);
    let second = enroll_agent(&token);
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(err.contains("already used"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
}

#[test]
fn expired_token_is_refused() {
    let relay = Relay::start();
    let token = relay.agent_token_with(&["--ttl", "1ms"]);
    let out = enroll_agent(&token);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[test]
fn forged_token_is_refused() {
    let relay = Relay::start();
    // Right relay, right CA fingerprint, but a secret the relay never issued.
    let real = EnrollToken::decode(&relay.agent_token()).unwrap();
    let forged = EnrollToken {
        secret: [0x42; 32],
        ..real
    };
    let out = enroll_agent(&forged.encode());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown enrollment token"),
        "{}",
        stderr(&out)
    );

    // Garbage that is not a token at all.
    let out = enroll_agent("tether1_AAAA");
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    let out = enroll_agent("hello");
    assert!(
        stderr(&out).contains("not a Tether enrollment token"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn token_pinning_another_ca_refuses_the_relay() {
    let relay = Relay::start();
    // A token whose CA fingerprint is not this relay's CA: the client must not trust the relay
    // (and so never send it the secret).
    let real = EnrollToken::decode(&relay.agent_token()).unwrap();
    let pinned_elsewhere = EnrollToken {
        ca_fingerprint: [0x11; 32],
        ..real.clone()
    };
    let out = enroll_agent(&pinned_elsewhere.encode());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("relay certificate not trusted"), "{err}");
    // The real token was never spent.
    let _agent = Agent::enroll(&real.encode());
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    let relay = Relay::start();
    let other = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "admin"));
    let stranger = Tech::enroll(&other.tech_token("mallory", "admin"));

    // Mallory trusts our relay's CA and points at our relay, but her certificate was issued by
    // another organisation's CA.
    std::fs::copy(relay.ca_pem(), stranger.config().join("ca.pem")).unwrap();
    std::fs::copy(
        tech.config().join("relay.json"),
        stranger.config().join("relay.json"),
    )
    .unwrap();
    let out = stranger.tether(&["devices"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "auth failures exit 3: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("certificate not accepted by relay"), "{err}");
    assert!(!err.contains("connection lost"), "{err}");

    // Our technician is unaffected.
    assert!(tech.devices().is_empty());
}

#[test]
fn technician_role_is_in_the_certificate() {
    let relay = Relay::start();
    let out = Tech::enroll(&relay.tech_token("bob", "viewer"));
    let pem = std::fs::read(out.config().join("cert.pem")).unwrap();
    let der = tether_net::pki::certs_from_pem(&pem, "cert").unwrap();
    let info = tether_net::pki::cert_info(&der[0]).unwrap();
    assert_eq!(
        info.identity,
        tether_protocol::identity::Identity::Technician {
            name: "bob".into(),
            role: tether_protocol::identity::Role::Viewer
        }
    );
    // The private key never left the client, and is owner-only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out.config().join("key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn bad_role_and_name_are_refused_by_the_cli() {
    let relay = Relay::start();
    let out = run(relay
        .cli()
        .args(["token", "--technician", "ana", "--role", "root", "--data"])
        .arg(relay.data()));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("viewer, support or admin"),
        "{}",
        stderr(&out)
    );
    let out = run(relay
        .cli()
        .args([
            "token",
            "--technician",
            "ana\u{1b}[31m",
            "--role",
            "admin",
            "--data",
        ])
        .arg(relay.data()));
    assert!(!out.status.success());
}

/// Two tokens made for the same new technician: the first enrolls them; the second, made
/// without `--replace`, must not enroll a second certificate beside the first (the old one
/// would stay valid with its own role). It is refused without being spent, so it works once
/// the first certificate is revoked.
#[test]
fn a_second_token_for_an_enrolled_name_is_refused_unspent() {
    let relay = Relay::start();
    let first = relay.tech_token_with("zoe", "admin", &[]);
    let second = relay.tech_token_with("zoe", "viewer", &[]);
    let _zoe = Tech::enroll(&first);
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(bin("tether"))
        .arg("--config")
        .arg(dir.path().join("c"))
        .args(["enroll", "--token", &second]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("already enrolled") && err.contains("--replace"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");

    tether_tests::ok(run(relay
        .cli()
        .args(["revoke", "--technician", "zoe", "--data"])
        .arg(relay.data())));
    let zoe = Tech::enroll(&second);
    let pem = std::fs::read(zoe.config().join("cert.pem")).unwrap();
    let der = tether_net::pki::certs_from_pem(&pem, "cert").unwrap();
    assert_eq!(
        tether_net::pki::cert_info(&der[0]).unwrap().identity,
        tether_protocol::identity::Identity::Technician {
            name: "zoe".into(),
            role: tether_protocol::identity::Role::Viewer
        }
    );
}
