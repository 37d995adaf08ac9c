//! `tether-relay migrate-store`: a relay's store, filled through the product (enrollments,
//! inventories and their history, a command session with its audit rows, health and alerts,
//! policies, a revocation, a token not yet used), copied into an empty store; a relay started on
//! the copy with the same data directory answers every query as before, byte for byte, and goes
//! on writing. A destination that is not empty, and bad URLs, are refused in one line.
//!
//! On the default (SQLite) pass the copy goes to a database of the private PostgreSQL cluster
//! (the move the command is for); with `TETHER_TEST_STORE=postgres` the relay starts on
//! PostgreSQL and the copy goes the other way, to a SQLite file.

use serde_json::Value;
use std::process::Output;
use std::time::Duration;
use tether_tests::{Agent, FixtureRoot, Relay, Tech, ok, run, stderr, stdout, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// `tether-relay migrate-store ARGS…`.
fn migrate(args: &[&str]) -> Output {
    run(tether_tests::relay_command(None)
        .arg("migrate-store")
        .args(args))
}

fn relay_cmd(relay: &Relay, args: &[&str]) -> String {
    ok(run(relay.cli().args(args).arg("--data").arg(relay.data())))
}

/// `tether devices` with its "LAST SEEN" ages ("now", "12 s ago"), which follow the clock, as
/// `AGO` (and runs of spaces, which follow the column's width, as one).
fn without_ages(table: &str) -> String {
    table
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let mut out = Vec::new();
            let mut i = 0;
            while i < words.len() {
                if i + 2 < words.len()
                    && words[i].parse::<u64>().is_ok()
                    && ["s", "min", "h", "d"].contains(&words[i + 1])
                    && words[i + 2] == "ago"
                {
                    out.push("AGO");
                    i += 3;
                } else if words[i] == "now" {
                    out.push("AGO");
                    i += 1;
                } else {
                    out.push(words[i]);
                    i += 1;
                }
            }
            out.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything the technicians and the admin read from the store, as printed.
fn outputs(relay: &Relay, boss: &Tech, ana: &Tech, devices: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut tether = |who: &Tech, args: &[&str]| {
        let text = ok(who.tether(args));
        out.push((args.join(" "), text));
    };
    tether(boss, &["devices", "--json"]);
    tether(boss, &["inventory", "--all", "--csv"]);
    tether(boss, &["inventory", "--all", "--json"]);
    tether(boss, &["sessions", "--json"]);
    tether(boss, &["sessions", "--csv"]);
    tether(ana, &["sessions", "--json"]);
    tether(boss, &["report", "--json"]);
    tether(boss, &["alerts", "--all", "--json"]);
    tether(boss, &["software", "curl", "--json"]);
    for d in devices {
        tether(boss, &["history", d]);
        tether(boss, &["history", d, "--json"]);
        tether(boss, &["inventory", d, "--json"]);
    }
    let table = ok(boss.tether(&["devices"]));
    out.push(("devices".into(), without_ages(&table)));
    for d in devices {
        // The report's age follows the clock.
        let mut v: Value =
            serde_json::from_str(&ok(boss.tether(&["health", d, "--json"]))).expect("health JSON");
        v.as_object_mut().expect("health object").remove("age_s");
        out.push((format!("health {d}"), v.to_string()));
    }
    for args in [
        &["certificates"][..],
        &["policy"],
        &["alerts-policy", "--json"],
    ] {
        out.push((
            format!("tether-relay {}", args.join(" ")),
            relay_cmd(relay, args),
        ));
    }
    out
}

fn agent_args(root: &FixtureRoot) -> [&str; 4] {
    let root = root.path().to_str().expect("fixture path");
    ["--inventory-root", root, "--health-interval", "1s"]
}

/// Whether every one of `ids` has an open "no report" alert.
fn all_silent(boss: &Tech, ids: &[&str]) -> bool {
    boss.json(&["alerts"]).as_array().is_some_and(|a| {
        ids.iter().all(|id| {
            a.iter()
                .any(|x| x["device_id"] == *id && x["kind"] == "silent")
        })
    })
}

fn assert_same(before: &[(String, String)], after: &[(String, String)]) {
    assert_eq!(before.len(), after.len());
    for ((what, a), (_, b)) in before.iter().zip(after) {
        assert_eq!(a, b, "`{what}` differs after the move");
    }
}

fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", stdout(o));
    let e = stderr(o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(stdout(o).is_empty(), "{}", stdout(o));
    e
}

#[test]
fn a_populated_store_moves_and_reads_the_same() {
    let mut relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let val = Tech::enroll(&relay.tech_token("val", "viewer"));
    // A token nobody used yet, a revoked technician, policies.
    relay.agent_token_with(&["--group", "lab", "--ttl", "48h"]);
    relay_cmd(
        &relay,
        &["revoke", "--technician", "val", "--reason", "left"],
    );
    drop(val);
    relay_cmd(&relay, &["policy", "--group", "lab", "--allow-root", "on"]);
    // A device silent for 3 s has an alert (the agents report every second until they go).
    relay_cmd(
        &relay,
        &[
            "alerts-policy",
            "--group",
            "default",
            "--silent-after",
            "3s",
        ],
    );

    let roots = [
        FixtureRoot::new("ws-mig-a", &[("curl", "7.88.1-10"), ("vim", "2:9.0")]),
        FixtureRoot::new("ws-mig-b", &[("curl", "7.88.1-10")]),
    ];
    let mut agents: Vec<Agent> = roots
        .iter()
        .map(|root| {
            let mut a = Agent::enroll(&relay.agent_token());
            a.start_with(&agent_args(root));
            a
        })
        .collect();
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for id in &ids {
        boss.wait_online(id);
        wait_until(WAIT, || !boss.history(id).is_empty())
            .unwrap_or_else(|| panic!("no inventory from {id}"));
    }
    // A change, for the history.
    roots[0].set_packages(&[("curl", "7.88.1-10+deb12u5"), ("htop", "3.2.2-2")]);
    agents[0].refresh_inventory();
    wait_until(WAIT, || boss.history(ids[0]).len() > 1).expect("the change never arrived");

    // A command session: its audit row and actions, and notes.
    {
        let _user = agents[0].auto_approve();
        ok(ana.tether(&[
            "exec",
            ids[0],
            "--reason",
            "disk check",
            "--ticket",
            "HD-77",
            "--",
            "true",
        ]));
    }
    let sessions = boss.json(&["sessions"]);
    let session = sessions[0]["id"].as_str().expect("session id").to_string();
    ok(ana.tether(&["notes", &session, "moved to PostgreSQL next"]));
    for id in &ids {
        wait_until(WAIT, || {
            boss.tether(&["health", id, "--json"]).status.success()
        })
        .unwrap_or_else(|| panic!("no health report from {id}"));
    }

    // The agents go: offline, last seen settled, silence alerts open. Then what everyone reads.
    for a in &mut agents {
        a.kill();
    }
    for id in &ids {
        wait_until(WAIT, || boss.is_online(id) == Some(false))
            .unwrap_or_else(|| panic!("{id} stayed online"));
    }
    wait_until(WAIT, || all_silent(&boss, &ids)).expect("no silence alerts");
    let before = outputs(&relay, &boss, &ana, &ids);
    relay.stop();

    // From whichever store this pass runs on to the other backend.
    let from = relay
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", relay.data().join("tether.db").display()));
    let moved = tempfile::tempdir().unwrap();
    let to = if relay.store.is_some() {
        format!("sqlite://{}", moved.path().join("moved.db").display())
    } else {
        tether_pg::database("migrated")
    };

    let o = migrate(&["--from", &from, "--to", &to, "--json"]);
    let report: Value = serde_json::from_str(&ok(o)).expect("migrate-store --json");
    let tables = report["tables"].as_array().expect("tables");
    assert!(tables.len() >= 16, "{report}");
    for t in tables {
        assert_eq!(t["source_rows"], t["copied_rows"], "{t}");
    }
    let rows = |name: &str| {
        tables
            .iter()
            .find(|t| t["table"] == name)
            .and_then(|t| t["copied_rows"].as_u64())
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    };
    assert_eq!(rows("devices"), 2);
    assert_eq!(rows("technicians"), 3);
    assert!(rows("sessions") >= 1 && rows("session_actions") >= 1);
    assert!(rows("inventory_changes") >= 3 && rows("device_packages") >= 3);
    assert!(rows("revoked_certs") >= 1 && rows("alerts") >= 2 && rows("tokens") >= 6);
    assert!(rows("health") == 2 && rows("alert_policy") == 1 && rows("group_policy") == 1);

    // Again into the same, now filled, store: refused, nothing changed (the outputs below).
    let e = one_line_error(&migrate(&["--from", &from, "--to", &to]));
    assert!(
        e.contains("not empty") && e.contains("devices: 2 rows"),
        "{e}"
    );
    // Bad URLs: one line each, and a password never shows.
    let e = one_line_error(&migrate(&["--from", &from, "--to", "mysql://db/tether"]));
    assert!(e.contains("unknown store type"), "{e}");
    let e = one_line_error(&migrate(&[
        "--from",
        "sqlite:///nonexistent/t.db",
        "--to",
        &to,
    ]));
    assert!(e.contains("no store at /nonexistent/t.db"), "{e}");
    let e = one_line_error(&migrate(&[
        "--from",
        &from,
        "--to",
        "postgres://tether:s3cret@127.0.0.1:1/tether",
    ]));
    assert!(!e.contains("s3cret") && e.contains("tether:***@"), "{e}");
    let e = one_line_error(&migrate(&["--from", &from, "--to", &from]));
    assert!(e.contains("same store"), "{e}");

    // The relay on the copy, same data directory (CA and keys) and address.
    relay.store = Some(to);
    relay.serve(relay.addr());
    let after = outputs(&relay, &boss, &ana, &ids);
    assert_same(&before, &after);

    // And it goes on: an agent comes back, a new session is recorded after the copied one.
    agents[0].start_with(&agent_args(&roots[0]));
    boss.wait_online(ids[0]);
    // The alert engine took up the copied alerts: the device's silence alert closes.
    wait_until(WAIT, || !all_silent(&boss, &ids[..1])).expect("the silence alert stayed open");
    {
        let _user = agents[0].auto_approve();
        ok(ana.tether(&["exec", ids[0], "--ticket", "HD-78", "--", "true"]));
    }
    let sessions = boss.json(&["sessions"]);
    assert_eq!(sessions.as_array().map(Vec::len), Some(2), "{sessions}");
}
