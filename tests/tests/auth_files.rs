//! Keys, databases and transcripts are created owner-only, and secrets (enrollment tokens,
//! private keys) never reach a log, even at debug level.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use tether_tests::{Agent, Relay, Tech, bin, ok, run};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn secrets_are_owner_only_and_never_logged() {
    let logs = tempfile::tempdir().unwrap();
    let relay_log = logs.path().join("relay.log");
    let agent_log = logs.path().join("agent.log");
    let debug = "debug,quinn=info,quinn_proto=info,rustls=info,sqlx=info".to_string();
    let mut relay = Relay::init();
    relay.log = Some((relay_log.clone(), debug.clone()));
    relay.serve("127.0.0.1:0".parse().unwrap());

    let agent_token = relay.agent_token();
    let tech_token = relay.tech_token("ana", "support");
    let ana = Tech::enroll(&tech_token);
    let mut agent = Agent::enroll(&agent_token);
    agent.log = Some((agent_log.clone(), debug));
    agent.start();
    ana.wait_online(&agent.id);
    // A recorded shell, so a transcript exists too.
    ok(run(relay
        .cli()
        .args(["policy", "--data"])
        .arg(relay.data())
        .args(["--group", "default", "--record-shells", "on"])));
    let _user = agent.auto_approve();
    let mut shell = Command::new(bin("tether"))
        .arg("--config")
        .arg(ana.config())
        .args(["shell", &agent.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut shell.stdin.take().unwrap(), b"exit\n").unwrap();
    assert!(shell.wait().unwrap().success());

    let data = relay.data();
    assert_eq!(mode(&data), 0o700);
    for f in ["ca-key.pem", "relay-key.pem", "tether.db", "tether.db-wal"] {
        // No WAL file once checkpointed; no database file when the store is PostgreSQL.
        if (f.ends_with("-wal") || relay.store.is_some()) && !data.join(f).exists() {
            continue;
        }
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&agent.state().join("key.pem")), 0o600);
    assert_eq!(mode(&ana.config().join("key.pem")), 0o600);
    let transcripts: Vec<_> = tether_tests::wait_for_files(&data.join("transcripts"));
    for t in &transcripts {
        assert_eq!(mode(t), 0o600, "{}", t.display());
    }

    let agent_key = std::fs::read_to_string(agent.state().join("key.pem")).unwrap();
    let key_body: String = agent_key.lines().nth(1).unwrap().to_string();
    let secret = |token: &str| token.trim().trim_start_matches("tether1_").to_string();
    relay.stop();
    agent.kill();
    for (name, log) in [("relay", &relay_log), ("agent", &agent_log)] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.len() > 1000, "{name} log is nearly empty: {text}");
        for token in [&agent_token, &tech_token] {
            assert!(!text.contains(token.trim()), "{name} log holds a token");
            // Nor a long piece of one (the secret inside the token's encoding).
            let s = secret(token);
            for w in s.as_bytes().windows(24).step_by(12) {
                let piece = String::from_utf8_lossy(w);
                assert!(
                    !text.contains(piece.as_ref()),
                    "{name} log holds part of a token"
                );
            }
        }
        assert!(!text.contains(&key_body), "{name} log holds a private key");
        assert!(
            !text.contains("PRIVATE KEY"),
            "{name} log mentions a private key block"
        );
    }
}
