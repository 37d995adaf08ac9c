//! The user's consent: deny by default (timeout, no tray app), approve and deny through the
//! agent's local socket, the user ending a session, ratings, the unattended policy, and peer
//! credentials keeping other local users out. Real relay, agent and X server throughout.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use tether_protocol::consent::{LocalEvent, LocalRequest, Outcome};
use tether_protocol::session::{Permissions, ToViewer};
use tether_tests::{Agent, Relay, Tech, Xvfb, ok, open_duplex, run, stderr, stdout, wait_until};

fn screenshot(tech: &Tech, device: &str, ticket: &str) -> tether_tests::Proc {
    tech.spawn(&[
        "screenshot",
        device,
        "-o",
        "/dev/null",
        "--reason",
        "printer offline",
        "--ticket",
        ticket,
    ])
}

/// Waits for the agent to list exactly one waiting request and returns its id.
fn waiting_request(agent: &Agent) -> String {
    let mut id = None;
    wait_until(Duration::from_secs(20), || {
        let out = agent.local(&["sessions", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        id = v["requests"][0]["id"].as_str().map(str::to_string);
        id.is_some()
    });
    id.expect("the request never reached the agent")
}

#[test]
fn unanswered_prompt_is_denied_after_the_timeout() {
    let x = Xvfb::start(320, 200);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_full(&["--consent-timeout", "2s"], Some(&x.display));
    ana.wait_online(&agent.id);
    // A tray that shows the prompt but whose user never answers.
    let mut tray = agent.subscribe();

    let started = Instant::now();
    let out = screenshot(&ana, &agent.id, "HD-1").output();
    let waited = started.elapsed();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("denied: no answer from the user"),
        "{}",
        stderr(&out)
    );
    // Denied at the deadline, not at some later relay timeout.
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");

    // The prompt showed who asks (from the certificate), why, and for what.
    match tray.recv().unwrap() {
        LocalEvent::Prompt(p) => {
            assert_eq!(p.technician, "ana");
            assert_eq!(p.role.to_string(), "support");
            assert_eq!(p.reason, "printer offline");
            assert_eq!(p.ticket, "HD-1");
            assert_eq!(p.permissions, Permissions::VIEW);
            assert_eq!(p.seconds_left, 2);
        }
        other => panic!("expected a prompt, got {other:?}"),
    }
    assert!(matches!(
        tray.recv().unwrap(),
        LocalEvent::PromptClosed {
            outcome: Outcome::TimedOut,
            ..
        }
    ));
    let row = &ana.json(&["sessions"])[0];
    assert_eq!(row["decision"], "timed_out");
    assert_eq!(row["ticket"], "HD-1");
    assert!(row["started_at"].is_null());
}

#[test]
fn without_a_tray_app_requests_are_denied_at_once() {
    let x = Xvfb::start(320, 200);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&x.display);
    ana.wait_online(&agent.id);

    let out = screenshot(&ana, &agent.id, "HD-2").output();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no tray app running"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ana.json(&["sessions"])[0]["decision"], "denied");
}

#[test]
fn terminal_approve_and_deny() {
    let x = Xvfb::start(320, 200);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_full(&["--terminal-approval"], Some(&x.display));
    ana.wait_online(&agent.id);

    let pending = screenshot(&ana, &agent.id, "HD-3");
    let id = waiting_request(&agent);
    let listed = stdout(&agent.local(&["sessions"]));
    assert!(
        listed.contains("ana (support) asks view") && listed.contains("HD-3"),
        "{listed}"
    );
    let out = agent.local(&["approve", &id[..8]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pending.output();
    assert!(out.status.success(), "{}", stderr(&out));

    let pending = screenshot(&ana, &agent.id, "HD-4");
    let id = waiting_request(&agent);
    ok(agent.local(&["deny", &id]));
    let out = pending.output();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("denied by the user"),
        "{}",
        stderr(&out)
    );
    // Answering twice, or an unknown id, is a clear error.
    let out = agent.local(&["approve", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no request or session"));

    // The technician gives up (Ctrl-C) before the user answers: the prompt goes away.
    let pending = screenshot(&ana, &agent.id, "HD-5");
    waiting_request(&agent);
    ok(run(
        std::process::Command::new("kill").args(["-INT", &pending.child.id().to_string()])
    ));
    let out = pending.output();
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    wait_until(Duration::from_secs(10), || {
        let out = agent.local(&["sessions", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["requests"].as_array().is_some_and(|r| r.is_empty())
    })
    .expect("a withdrawn request stayed on the user's screen");

    let rows = ana.json(&["sessions"]);
    assert_eq!(rows[0]["decision"], "approved");
    assert_eq!(rows[0]["permissions_granted"], "view");
    assert_eq!(rows[1]["decision"], "denied");
    assert_eq!(rows[1]["decision_detail"], "denied by the user");
    assert_eq!(rows[1]["permissions_granted"], "");
    assert_eq!(rows[2]["decision"], "failed");
    assert_eq!(
        rows[2]["decision_detail"],
        "the technician cancelled the request"
    );
}

#[test]
fn user_ends_a_session_within_a_second_and_rates_it() {
    let x = Xvfb::start(320, 200);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&x.display);
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();
    let mut tray = agent.subscribe();

    let mut d = open_duplex(&ana, &agent.id, Permissions::CONTROL, "HD-5");
    let id = d.session_id.clone();
    let (rt, rx) = (&d.rt, &mut d.rx);
    // The tray learns of the running session (banner).
    let started = loop {
        match tray.recv().unwrap() {
            LocalEvent::Started(s) => break s,
            _ => continue,
        }
    };
    assert_eq!(started.id, id);
    assert!(!started.unattended);

    let t0 = Instant::now();
    ok(agent.local(&["end", &id]));
    let bye = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(ToViewer::Bye { reason })) => break Some(reason),
                Ok(Some(_)) => continue,
                _ => break None,
            }
        }
    });
    let took = t0.elapsed();
    assert_eq!(bye.as_deref(), Some("ended by the user"));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    eprintln!("user end reached the technician in {took:?}");
    d.close();

    let ended = loop {
        match tray.recv().unwrap() {
            LocalEvent::Ended { id, by_user, .. } => break (id, by_user),
            _ => continue,
        }
    };
    assert_eq!(ended, (id.clone(), true));

    // The tray asks for a rating; it lands on this session's audit row.
    let out = agent.local(&["rate", &id, "6"]);
    assert!(!out.status.success());
    ok(agent.local(&["rate", &id, "4", "--comment", "fixed it fast"]));
    let mut row = serde_json::Value::Null;
    wait_until(Duration::from_secs(10), || {
        row = ana.json(&["sessions"])[0].clone();
        !row["rating"].is_null() && row["ended_by"] == "user"
    });
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["ended_by"], "user");
    assert_eq!(row["rating"], 4);
    assert_eq!(row["rating_comment"], "fixed it fast");
    assert_eq!(row["decision"], "approved");
    assert_eq!(row["permissions_granted"], "view + control");
    // A session that never ran here cannot be rated.
    let out = agent.local(&["rate", "00000000-nope", "5"]);
    assert!(!out.status.success());

    let report = ana.json(&["report"]);
    assert_eq!(report[0]["technician"], "ana");
    assert_eq!(report[0]["approved"], 1);
    assert_eq!(report[0]["mean_rating"], 4.0);
}

#[test]
fn unattended_only_where_policy_allows_and_only_for_admins() {
    let x = Xvfb::start(320, 200);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let mut server = Agent::enroll(&relay.agent_token_with(&["--group", "servers"]));
    server.start_on_display(&x.display);
    let mut desk = Agent::enroll(&relay.agent_token());
    desk.start_on_display(&x.display);
    boss.wait_online(&server.id);
    boss.wait_online(&desk.id);
    let policy = |args: &[&str]| {
        ok(run(relay
            .cli()
            .args(["policy", "--data"])
            .arg(relay.data())
            .args(args)))
    };

    // Off by default: nobody is at either machine, so every request is denied.
    assert!(
        !screenshot(&boss, &server.id, "OPS-1")
            .output()
            .status
            .success()
    );
    let out = policy(&["--group", "servers", "--unattended", "on"]);
    assert!(out.contains("unattended access ON"), "{out}");
    let listed: serde_json::Value = serde_json::from_str(&policy(&["--json"])).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "servers" && g["unattended"] == true),
        "{listed}"
    );
    let mut tray = server.subscribe();
    let out = screenshot(&boss, &server.id, "OPS-2").output();
    assert!(out.status.success(), "{}", stderr(&out));
    // Still shown to whoever is at the machine.
    let started = loop {
        match tray.recv().unwrap() {
            LocalEvent::Started(s) => break s,
            LocalEvent::Prompt(p) => panic!("unattended session prompted: {p:?}"),
            _ => continue,
        }
    };
    assert!(started.unattended);
    assert_eq!(started.technician, "boss");
    drop(tray);
    // Not for support technicians, not for other groups.
    let out = screenshot(&ana, &server.id, "OPS-3").output();
    assert!(!out.status.success());
    let out = screenshot(&boss, &desk.id, "OPS-4").output();
    assert!(!out.status.success());
    policy(&["--group", "servers", "--unattended", "off"]);
    assert!(
        !screenshot(&boss, &server.id, "OPS-5")
            .output()
            .status
            .success()
    );

    let rows = boss.json(&["sessions"]);
    let decisions: Vec<(&str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ticket"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("OPS-1", "denied"),
            ("OPS-2", "unattended"),
            ("OPS-3", "denied"),
            ("OPS-4", "denied"),
            ("OPS-5", "denied"),
        ]
    );
    let report = boss.json(&["report"]);
    let boss_row = report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["technician"] == "boss")
        .unwrap();
    assert_eq!(boss_row["unattended"], 1);
    assert_eq!(boss_row["denied"], 3);
}

#[test]
fn another_local_user_cannot_answer_for_the_desktop() {
    let x = Xvfb::start(320, 200);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    // The socket's directory is reachable by everyone here, so only the peer-credential check
    // stands between another user and the prompt.
    let ipc = agent.socket().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&ipc).unwrap();
    for d in [agent.dir.path(), ipc.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    agent.start_full(
        &["--terminal-approval", "--desktop-user", "root"],
        Some(&x.display),
    );
    ana.wait_online(&agent.id);
    let pending = screenshot(&ana, &agent.id, "HD-6");
    let id = waiting_request(&agent);

    let socket = agent.socket();
    let as_nobody = |args: &[&str]| {
        run(std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(tether_tests::bin("tether-agent"))
            .args(args)
            .arg("--socket")
            .arg(&socket))
    };
    for verb in ["approve", "deny"] {
        let out = as_nobody(&[verb, &id]);
        assert!(!out.status.success(), "{verb} as nobody succeeded");
        assert!(
            stderr(&out).contains("uid 65534 does not own this desktop"),
            "{}",
            stderr(&out)
        );
    }
    let out = as_nobody(&["sessions"]);
    assert!(!out.status.success());
    // The request is still waiting for the real user, who approves it.
    assert_eq!(waiting_request(&agent), id);
    ok(agent.local(&["approve", &id]));
    let out = pending.output();
    assert!(out.status.success(), "{}", stderr(&out));

    // The same refusal at the protocol level.
    let mut c = tether_net::local::LocalClient::connect(&socket).unwrap();
    c.send(&LocalRequest::List).unwrap();
    assert!(matches!(c.recv().unwrap(), LocalEvent::Snapshot { .. }));
}

#[test]
fn a_message_reaches_the_user_and_their_reply_comes_back() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    ana.wait_online(&agent.id);

    // Nobody there to read it: a clear error, at once.
    let out = ana.tether(&["say", &agent.id, "hello?"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no tray app running"),
        "{}",
        stderr(&out)
    );

    let mut tray = agent.subscribe();
    let asking = ana.spawn(&[
        "say",
        &agent.id,
        "Please save your work \u{1b}[31m",
        "--wait",
        "30s",
    ]);
    let msg = loop {
        match tray.recv().unwrap() {
            LocalEvent::Message(m) => break m,
            _ => continue,
        }
    };
    assert_eq!(msg.technician, "ana");
    assert_eq!(msg.text, "Please save your work [31m");
    assert_eq!(msg.seconds_left, 30);
    let listed = stdout(&agent.local(&["sessions"]));
    assert!(listed.contains(&format!("message {}", msg.id)), "{listed}");
    ok(agent.local(&["reply", &msg.id[..8], "saved, go ahead"]));
    let out = asking.output();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "saved, go ahead\n");
    assert!(matches!(
        tray.recv().unwrap(),
        LocalEvent::MessageClosed { .. }
    ));

    let rows = ana.json(&["sessions"]);
    assert_eq!(rows[0]["permissions_asked"], "message");
    assert_eq!(rows[0]["decision"], "failed");
    assert_eq!(rows[1]["reason"], "Please save your work [31m");
    assert_eq!(rows[1]["decision"], "message");
    assert_eq!(rows[1]["decision_detail"], "reply: saved, go ahead");
    // Messages are not session requests: `tether report` counted them in REQUESTS only.
    let report = ana.json(&["report"]);
    assert_eq!(report.as_array().map(Vec::len), Some(0), "{report:#}");
}
