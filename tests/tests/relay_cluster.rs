//! Several relays on one PostgreSQL store: one fleet seen from any relay, sessions that meet
//! the agent at the relay holding it, revocations that reach every relay, and agents that move
//! to the others when their relay is killed.
//!
//! Always on PostgreSQL (the private cluster of `tether_pg`), so these run in the SQLite pass
//! of `tests/run.sh` and are skipped in the PostgreSQL pass, which would only repeat them.

use serde_json::Value;
use std::io::Read;
use std::time::{Duration, Instant};
use tether_tests::{Agent, Relay, Tech, ok, open_shell, run, stderr, stdout, wait_until};

fn postgres_pass() -> bool {
    std::env::var("TETHER_TEST_STORE").as_deref() == Ok("postgres")
}

/// Relays `relay-a`, `relay-b`, `relay-c` of one organisation on one fresh database, started
/// in the order `c_first` says (the first to start evaluates the fleet's alerts), each logging
/// to `<its dir>/relay.log`.
fn three_relays(hint: &str, c_first: bool) -> [Relay; 3] {
    let db = tether_pg::database(hint);
    let mut a = Relay::init_cluster(&db, "relay-a");
    let mut b = Relay::join(&a, "relay-b");
    let mut c = Relay::join(&a, "relay-c");
    for r in [&mut a, &mut b, &mut c] {
        r.log = Some((
            r.dir.path().join("relay.log"),
            "info,quinn=warn,sqlx=warn".into(),
        ));
    }
    let order = if c_first {
        [&mut c, &mut a, &mut b]
    } else {
        [&mut a, &mut b, &mut c]
    };
    for (i, r) in order.into_iter().enumerate() {
        r.serve("127.0.0.1:0".parse().unwrap());
        if i == 0 {
            // The first relay takes the lead for alerts before the others start.
            let lead = wait_until(Duration::from_secs(20), || {
                logged(r, "now evaluates the fleet's alerts")
            });
            assert!(
                lead.is_some(),
                "the first relay did not take the lead for alerts"
            );
        }
    }
    let seen = wait_until(Duration::from_secs(20), || {
        relays(&a)
            .iter()
            .filter(|r| r["alive"] == Value::Bool(true))
            .count()
            == 3
    });
    assert!(
        seen.is_some(),
        "the relays did not see each other: {:#?}",
        relays(&a)
    );
    [a, b, c]
}

/// Whether `relay`'s log says `what`.
fn logged(relay: &Relay, what: &str) -> bool {
    std::fs::read_to_string(relay.dir.path().join("relay.log")).is_ok_and(|l| l.contains(what))
}

/// `tether-relay alerts-policy ARGS` on `relay`'s store.
fn alerts_policy(relay: &Relay, args: &[&str]) {
    ok(run(relay
        .cli()
        .arg("alerts-policy")
        .arg("--data")
        .arg(relay.data())
        .args(args)));
}

/// Open "no report" alerts of `device`, as the technician sees them.
fn silent_alerts(tech: &Tech, device: &str) -> usize {
    tech.json(&["alerts"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["device_id"] == device && a["kind"] == "silent")
        .count()
}

/// `tether-relay relays --json` on `relay`'s store.
fn relays(relay: &Relay) -> Vec<Value> {
    let out = ok(run(relay
        .cli()
        .args(["relays", "--json", "--data"])
        .arg(relay.data())));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

/// The id of the relay holding `device`, from the store's leases.
fn holder(relay: &Relay, device: &str) -> Option<String> {
    relays(relay).into_iter().find_map(|r| {
        r["devices"]
            .as_array()?
            .iter()
            .any(|d| d == device)
            .then(|| r["id"].as_str().unwrap().to_string())
    })
}

/// An agent token made on `relay` that lists the relays in `order` (the agent tries them in
/// that order: it enrolls at the first and runs there while it answers).
fn agent_token(relay: &Relay, order: &[&Relay]) -> String {
    let list: Vec<String> = order.iter().map(|r| r.addr().to_string()).collect();
    ok(run(relay
        .cli()
        .args(["token", "--agent", "--relay", &list.join(","), "--data"])
        .arg(relay.data())))
    .trim()
    .to_string()
}

#[test]
fn three_relays_serve_one_fleet_and_sessions_meet_the_agent_where_it_is() {
    if postgres_pass() {
        return;
    }
    let [a, b, c] = three_relays("cluster_fleet", false);
    // A token made without --relay lists every live relay, this one first.
    let token = ok(run(a
        .cli()
        .args(["token", "--agent", "--data"])
        .arg(a.data())));
    let decoded = tether_protocol::token::EnrollToken::decode(token.trim()).unwrap();
    let listed: Vec<&str> = tether_protocol::token::relay_addrs(&decoded.relay_addr).collect();
    let mut expected: Vec<String> = [&b, &c].iter().map(|r| r.addr().to_string()).collect();
    expected.insert(0, a.addr().to_string());
    assert_eq!(listed, expected, "{}", decoded.relay_addr);

    let boss = Tech::enroll(&a.tech_token("boss", "admin"));
    let ana = Tech::enroll(&a.tech_token("ana", "support"));
    let mut on_a = Agent::enroll(&agent_token(&a, &[&a, &b, &c]));
    let mut on_b = Agent::enroll(&agent_token(&a, &[&b, &c, &a]));
    let mut on_c = Agent::enroll(&agent_token(&a, &[&c, &a, &b]));
    for agent in [&mut on_a, &mut on_b, &mut on_c] {
        agent.start();
    }
    let _users = [
        on_a.auto_approve(),
        on_b.auto_approve(),
        on_c.auto_approve(),
    ];
    // The technician is on relay A; it sees the whole fleet online.
    for agent in [&on_a, &on_b, &on_c] {
        boss.wait_online(&agent.id);
    }
    assert_eq!(holder(&a, &on_a.id).as_deref(), Some("relay-a"));
    assert_eq!(holder(&a, &on_b.id).as_deref(), Some("relay-b"));
    assert_eq!(holder(&a, &on_c.id).as_deref(), Some("relay-c"));
    let table = ok(run(a.cli().args(["relays", "--data"]).arg(a.data())));
    assert!(
        table.contains("relay-c") && table.contains("alive"),
        "{table}"
    );

    // Inventory uploaded to C reads from A.
    let got = wait_until(Duration::from_secs(30), || {
        boss.tether(&["inventory", &on_c.id]).status.success()
    });
    assert!(got.is_some(), "no inventory of the agent on relay C");

    // A command on the agent held by C, asked on A: the session runs through C.
    let out = boss.tether(&["exec", &on_c.id, "--", "echo", "cross-relay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cross-relay"), "{}", stdout(&out));
    let rows = boss.json(&["sessions", "--device", &on_c.id]);
    assert!(
        rows.as_array().is_some_and(|r| !r.is_empty()),
        "no audit row: {rows:#}"
    );
    // A message goes the same way: shown to the user at the agent on B (who does not answer).
    let said = boss.tether(&["say", &on_b.id, "hello", "--wait", "5s", "--json"]);
    assert!(said.status.success(), "{}", stderr(&said));
    let rows = boss.json(&["sessions", "--device", &on_b.id]);
    assert!(
        rows.to_string().contains("no reply"),
        "the message through B is not on the record: {rows:#}"
    );

    // A revocation made on A cuts a session running through B within a second.
    let (mut shell, input) = open_shell(&ana, &on_b.id);
    ok(run(a
        .cli()
        .args(["revoke", "--technician", "ana", "--data"])
        .arg(a.data())));
    let t0 = Instant::now();
    let ended = wait_until(Duration::from_secs(5), || {
        shell.try_wait().ok().flatten().is_some()
    });
    let took = t0.elapsed();
    assert!(
        ended.is_some(),
        "the revoked technician's shell on relay B kept running"
    );
    eprintln!("revocation on relay A cut the session on relay B after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(!shell.wait().unwrap().success());
    drop(input);
}

#[test]
fn a_killed_relay_s_agents_come_back_on_the_others_and_nothing_acknowledged_is_lost() {
    if postgres_pass() {
        return;
    }
    // C starts first, so it evaluates the fleet's alerts until it dies.
    let [a, b, mut c] = three_relays("cluster_kill", true);
    assert!(!logged(&a, "now evaluates the fleet's alerts"));
    assert!(!logged(&b, "now evaluates the fleet's alerts"));
    // Silence longer than a move between relays takes, far shorter than the default.
    alerts_policy(&a, &["--group", "moving", "--silent-after", "15s"]);
    let boss = Tech::enroll(&a.tech_token("boss", "admin"));
    let token = |order: &[&Relay]| {
        let list: Vec<String> = order.iter().map(|r| r.addr().to_string()).collect();
        ok(run(a
            .cli()
            .args([
                "token",
                "--agent",
                "--group",
                "moving",
                "--relay",
                &list.join(","),
            ])
            .arg("--data")
            .arg(a.data())))
        .trim()
        .to_string()
    };
    let mut on_c = Agent::enroll(&token(&[&c, &a, &b]));
    let mut also_c = Agent::enroll(&token(&[&c, &b, &a]));
    on_c.start_with(&["--health-interval", "1s"]);
    also_c.start_with(&["--health-interval", "1s"]);
    let _user = on_c.auto_approve();
    boss.wait_online(&on_c.id);
    boss.wait_online(&also_c.id);
    assert_eq!(holder(&a, &on_c.id).as_deref(), Some("relay-c"));
    let inventoried = wait_until(Duration::from_secs(30), || {
        boss.tether(&["inventory", &on_c.id]).status.success()
    });
    assert!(
        inventoried.is_some(),
        "no inventory of the agent on relay C"
    );
    let before = boss.json(&["sessions", "--device", &on_c.id]);

    let (mut shell, input) = open_shell(&boss, &on_c.id);
    c.kill9();
    let t0 = Instant::now();
    // The session through C ends with a reason; the agents are back on A or B.
    let ended = wait_until(Duration::from_secs(30), || {
        shell.try_wait().ok().flatten().is_some()
    });
    assert!(
        ended.is_some(),
        "the session through the killed relay kept running"
    );
    let mut err = String::new();
    shell
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    eprintln!(
        "session through the killed relay ended after {:?}: {err}",
        t0.elapsed()
    );
    assert!(!shell.wait().unwrap().success());
    assert!(err.contains("the relay stopped answering"), "{err}");
    drop(input);
    for agent in [&on_c, &also_c] {
        let back = wait_until(Duration::from_secs(30), || {
            holder(&a, &agent.id).is_some_and(|r| r == "relay-a" || r == "relay-b")
                && boss.is_online(&agent.id) == Some(true)
        });
        let took = t0.elapsed();
        assert!(
            back.is_some(),
            "agent {} not back on relay A or B",
            agent.id
        );
        eprintln!(
            "agent back on {:?} {took:?} after relay C was killed",
            holder(&a, &agent.id)
        );
    }
    // The relay list says C is gone.
    let gone = wait_until(Duration::from_secs(10), || {
        relays(&a)
            .iter()
            .any(|r| r["id"] == "relay-c" && r["alive"] == Value::Bool(false))
    });
    assert!(gone.is_some(), "{:#?}", relays(&a));
    // What C acknowledged is in the shared store: the inventory and the audit rows.
    assert!(boss.tether(&["inventory", &on_c.id]).status.success());
    let after = boss.json(&["sessions", "--device", &on_c.id]);
    assert!(
        after.as_array().unwrap().len() > before.as_array().unwrap().len(),
        "the session through C is not on the record: {after:#}"
    );
    // And the agent serves sessions on its new relay.
    let out = boss.tether(&["exec", &on_c.id, "--", "echo", "moved"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("moved"));

    // The lead for alerts moved to A or B, and the agents that only moved raised no "no
    // report" alert, past their silence time since C died.
    let moved = wait_until(Duration::from_secs(20), || {
        logged(&a, "now evaluates the fleet's alerts")
            || logged(&b, "now evaluates the fleet's alerts")
    });
    assert!(
        moved.is_some(),
        "nobody took over the alerts from the killed relay"
    );
    let past_silence = wait_until(Duration::from_secs(60), || {
        t0.elapsed() > Duration::from_secs(20)
            && silent_alerts(&boss, &on_c.id) == 0
            && silent_alerts(&boss, &also_c.id) == 0
    });
    assert!(past_silence.is_some());
    assert_eq!(
        silent_alerts(&boss, &on_c.id),
        0,
        "a device that only moved was called silent"
    );
    assert_eq!(
        silent_alerts(&boss, &also_c.id),
        0,
        "a device that only moved was called silent"
    );
    // The new evaluator does call a device silent that is: one of them stops.
    let mut stopped = also_c;
    stopped.kill();
    let raised = wait_until(Duration::from_secs(60), || {
        silent_alerts(&boss, &stopped.id) == 1
    });
    assert!(
        raised.is_some(),
        "the new evaluator raised no alert for a silent device"
    );
    assert_eq!(silent_alerts(&boss, &on_c.id), 0);
}
