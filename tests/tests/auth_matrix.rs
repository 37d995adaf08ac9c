//! Who may do what: every role against every kind of action, and device groups limiting what a
//! technician sees and reaches (`tether-relay grant`).

use std::process::Command;
use tether_tests::{Agent, FixtureRoot, Relay, Tech, bin, ok, run, stderr};

#[test]
fn roles_against_actions() {
    let relay = Relay::start();
    let val = Tech::enroll(&relay.tech_token("val", "viewer"));
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let root = FixtureRoot::new("ws-matrix", &[("openssl", "3.0.11-1")]);
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_with(&["--inventory-root", root.path().to_str().unwrap()]);
    boss.wait_online(&agent.id);
    let _user = agent.auto_approve();
    let id = agent.id.as_str();

    // Reading is for everyone.
    for t in [&val, &ana, &boss] {
        for args in [
            vec!["devices"],
            vec!["inventory", id],
            vec!["software", "openssl"],
            vec!["history", id],
            vec!["alerts"],
        ] {
            let out = t.tether(&args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
    }
    // Sessions, commands, messages: support and admin (with the user's consent), not viewers.
    for args in [
        vec!["exec", id, "--", "true"],
        vec!["screenshot", id, "-o", "/dev/null"],
        vec!["say", id, "hi", "--wait", "5s"],
        vec!["connect", id],
    ] {
        let out = val.tether(&args);
        assert!(!out.status.success(), "viewer ran {args:?}");
        assert!(stderr(&out).contains("viewer may not"), "{}", stderr(&out));
        // Refused by the relay: nobody was asked, nothing was shown.
        assert!(
            !stderr(&out).contains("asking the user") && !stderr(&out).contains("message shown"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    for t in [&ana, &boss] {
        ok(t.tether(&["exec", id, "--", "true"]));
    }
    // Allowed, the message is shown (and goes unanswered here: the approver only approves).
    let out = ana.tether(&["say", id, "hi", "--wait", "5s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("message shown on"),
        "{}",
        stderr(&out)
    );
    // The audit trail: your own sessions, admins everyone's.
    let mine = ana.json(&["sessions", "--technician", "boss"]);
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|r| r["technician"] == "ana")
    );
    let all = boss.json(&["sessions", "--technician", "ana"]);
    assert!(!all.as_array().unwrap().is_empty());
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|r| r["technician"] == "ana")
    );
    // Group runs (unattended) are for admins only.
    ok(run(relay
        .cli()
        .args(["policy", "--data"])
        .arg(relay.data())
        .args(["--group", "default", "--unattended", "on"])));
    drop(_user);
    assert!(
        boss.tether(&["exec", "--group", "default", "--", "true"])
            .status
            .success()
    );
    assert!(
        !ana.tether(&["exec", "--group", "default", "--", "true"])
            .status
            .success()
    );
    // A session request that passes the relay's checks says the user is being asked before the
    // agent's answer (no tray app now, so a refusal).
    let out = ana.tether(&["connect", id]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let asked = err
        .find("asking the user at")
        .unwrap_or_else(|| panic!("{err}"));
    let refused = err
        .find("no tray app running")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(asked < refused, "{err}");
}

#[test]
fn device_groups_limit_what_a_technician_sees() {
    let relay = Relay::start();
    // Neither is granted anything: a technician without grants sees no device, an admin all.
    let ana = Tech::enroll(&relay.tech_token_with("ana", "support", &[]));
    let boss = Tech::enroll(&relay.tech_token_with("boss", "admin", &[]));
    let acc_root = FixtureRoot::new("acc-01", &[("openssl", "3.0.11-1")]);
    let lab_root = FixtureRoot::new("lab-01", &[("openssl", "3.0.11-1")]);
    let mut acc = Agent::enroll(&relay.agent_token_with(&["--group", "accounting"]));
    let mut lab = Agent::enroll(&relay.agent_token_with(&["--group", "lab"]));
    acc.start_with(&["--inventory-root", acc_root.path().to_str().unwrap()]);
    lab.start_with(&["--inventory-root", lab_root.path().to_str().unwrap()]);
    boss.wait_online(&acc.id);
    boss.wait_online(&lab.id);
    let _u1 = acc.auto_approve();
    let _u2 = lab.auto_approve();
    assert!(ana.devices().is_empty());
    assert_reaches_nothing(&ana, &[&acc, &lab]);

    let out = relay.grant(&["--technician", "ana", "--group", "accounting"]);
    assert!(out.contains("ana sees groups: accounting"), "{out}");
    let seen: Vec<String> = ana
        .devices()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, vec![acc.id.clone()]);
    // The other group's device does not exist for her, by id or hostname, for any action.
    for args in [
        vec!["inventory", lab.id.as_str()],
        vec!["history", "lab-01"],
        vec!["health", lab.id.as_str()],
        vec!["exec", lab.id.as_str(), "--", "true"],
    ] {
        let out = ana.tether(&args);
        assert!(!out.status.success(), "{args:?} reached another group");
        assert!(
            stderr(&out).contains("no device matches"),
            "{}",
            stderr(&out)
        );
    }
    let hits = ana.json(&["software", "openssl"]);
    let hosts: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hostname"].as_str().unwrap())
        .collect();
    assert!(!hosts.contains(&"lab-01"), "{hosts:?}");
    ok(ana.tether(&["exec", &acc.id, "--", "true"]));
    // Admins always see everything, without any grant.
    assert_eq!(boss.devices().len(), 2);

    // Reproduces finding 8: withdrawing her last grant used to lift the restriction (no grant
    // meant every group). Now it leaves her with no device at all.
    let out = relay.grant(&["--technician", "ana", "--group", "accounting", "--remove"]);
    assert!(out.contains("ana sees no device"), "{out}");
    assert!(ana.devices().is_empty(), "{:#?}", ana.devices());
    assert_reaches_nothing(&ana, &[&acc, &lab]);
    assert_eq!(boss.devices().len(), 2);

    // "Every group" is a grant of its own, and withdrawing it withdraws it.
    let out = relay.grant(&["--technician", "ana", "--all-groups"]);
    assert!(out.contains("ana sees every device group"), "{out}");
    assert_eq!(ana.devices().len(), 2);
    ok(ana.tether(&["exec", &lab.id, "--", "true"]));
    relay.grant(&["--technician", "ana", "--all-groups", "--remove"]);
    assert!(ana.devices().is_empty());
    assert_reaches_nothing(&ana, &[&acc, &lab]);
}

/// No read, session or message reaches any of `agents` for `tech`.
fn assert_reaches_nothing(tech: &Tech, agents: &[&Agent]) {
    for a in agents {
        for args in [
            vec!["inventory", a.id.as_str()],
            vec!["history", a.id.as_str()],
            vec!["health", a.id.as_str()],
            vec!["exec", a.id.as_str(), "--", "true"],
            vec!["say", a.id.as_str(), "hi", "--wait", "1s"],
        ] {
            let out = tech.tether(&args);
            assert!(!out.status.success(), "{args:?} reached a device");
            assert!(
                stderr(&out).contains("no device matches"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
    let hits = tech.json(&["software", "openssl"]);
    assert_eq!(hits.as_array().map(Vec::len), Some(0), "{hits:#}");
    let rows = tech.json(&["inventory", "--all"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(0), "{rows:#}");
}

#[test]
fn admins_manage_tokens_and_policy_remotely_and_nobody_else_does() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let vic = Tech::enroll(&relay.tech_token("vic", "viewer"));
    for t in [&ana, &vic] {
        let out = t.tether(&["token", "--agent", "--group", "lab"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("only admins"), "{}", stderr(&out));
        let out = t.tether(&["policy", "--group", "lab", "--unattended", "on"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("only admins"), "{}", stderr(&out));
    }
    // An admin's token enrolls a machine into the group it names, once.
    let addr = relay.addr().to_string();
    let token = ok(boss.tether(&[
        "token", "--agent", "--group", "lab", "--ttl", "10m", "--relay", &addr,
    ]));
    let mut agent = Agent::enroll(token.trim());
    agent.start();
    boss.wait_online(&agent.id);
    let dev = boss
        .devices()
        .into_iter()
        .find(|d| d["id"] == agent.id.as_str())
        .unwrap();
    assert_eq!(dev["group"], "lab");
    let again = run(Command::new(bin("tether-agent"))
        .args(["enroll", "--token", token.trim(), "--state"])
        .arg(tempfile::tempdir().unwrap().path().join("s")));
    assert!(!again.status.success(), "a token enrolled twice");
    // A technician token carries the role the admin chose.
    let t = ok(boss.tether(&[
        "token",
        "--technician",
        "val",
        "--role",
        "viewer",
        "--json",
        "--relay",
        &addr,
    ]));
    let t: serde_json::Value = serde_json::from_str(&t).unwrap();
    let val = Tech::enroll(t["token"].as_str().unwrap());
    assert!(
        !val.tether(&["exec", &agent.id, "--", "true"])
            .status
            .success()
    );
    assert!(val.tether(&["devices"]).status.success());
    // Policy set remotely takes effect: boss gets unattended access to `lab` (no user there).
    assert!(
        !boss
            .tether(&["exec", &agent.id, "--", "true"])
            .status
            .success()
    );
    ok(boss.tether(&["policy", "--group", "lab", "--unattended", "on"]));
    ok(boss.tether(&["exec", &agent.id, "--", "true"]));
    // Bad names are refused with a clear error.
    let out = boss.tether(&["token", "--agent", "--group", "bad group!"]);
    assert!(!out.status.success());
}

/// `grant` to a name the relay does not know was accepted silently, and a grant on an admin said
/// it limited them (admins see every group whatever their grants).
#[test]
fn grants_name_known_technicians_and_say_what_they_do_for_admins() {
    let relay = Relay::start();
    let _boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let out = run(relay
        .cli()
        .args([
            "grant",
            "--technician",
            "nobody-here",
            "--group",
            "a",
            "--data",
        ])
        .arg(relay.data()));
    assert!(
        !out.status.success(),
        "a grant to an unknown name was accepted"
    );
    let err = stderr(&out);
    assert!(err.contains("no technician named nobody-here"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let said = relay.grant(&["--technician", "boss", "--group", "a"]);
    assert!(said.contains("admins see every device group"), "{said}");
    assert!(!said.contains("sees groups"), "{said}");
    // An invited technician (token not yet used) may be granted groups ahead of enrolling.
    let _token = relay.tech_token_with("carl", "support", &[]);
    let said = relay.grant(&["--technician", "carl", "--group", "a"]);
    assert!(said.contains("carl sees groups: a"), "{said}");
}
