//! The PostgreSQL server goes away under two running relays and comes back: requests during
//! the outage fail with a one-line reason instead of hanging, the relays reconnect by
//! themselves, and what was acknowledged before is still there.
//!
//! A test binary of its own: it stops and starts its process's private PostgreSQL server, which
//! no other test may share. PostgreSQL in both passes of `tests/run.sh`, so it runs in the SQLite
//! pass only.

use std::time::{Duration, Instant};
use tether_tests::{Agent, Relay, Tech, ok, run, stderr, stdout, wait_until};

#[test]
fn relays_ride_out_a_postgresql_restart_and_lose_nothing_acknowledged() {
    if std::env::var("TETHER_TEST_STORE").as_deref() == Ok("postgres") {
        return;
    }
    let db = tether_pg::database("outage");
    let mut a = Relay::init_cluster(&db, "relay-a");
    let mut b = Relay::join(&a, "relay-b");
    a.serve("127.0.0.1:0".parse().unwrap());
    b.serve("127.0.0.1:0".parse().unwrap());
    let boss = Tech::enroll(&a.tech_token("boss", "admin"));
    let token = ok(run(a
        .cli()
        .args(["token", "--agent", "--relay"])
        .arg(format!("{},{}", b.addr(), a.addr()))
        .arg("--data")
        .arg(a.data())));
    let mut agent = Agent::enroll(token.trim());
    agent.start_with(&["--health-interval", "1s"]);
    let _user = agent.auto_approve();
    boss.wait_online(&agent.id);
    let inventoried = wait_until(Duration::from_secs(30), || {
        boss.tether(&["inventory", &agent.id]).status.success()
    });
    assert!(inventoried.is_some(), "no inventory before the outage");
    let out = boss.tether(&["exec", &agent.id, "--", "echo", "before"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sessions_before = boss.json(&["sessions", "--device", &agent.id]);

    tether_pg::stop_server().unwrap();
    // A request during the outage: a clear error, soon.
    let t0 = Instant::now();
    let out = boss.tether(&["inventory", "--all"]);
    let took = t0.elapsed();
    eprintln!(
        "a request during the outage failed after {took:?}: {}",
        stderr(&out)
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("store unavailable"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");

    tether_pg::start_server().unwrap();
    let t0 = Instant::now();
    // The relays reconnect by themselves: A answers from the store again, and sees the agent
    // that B holds online.
    let back = wait_until(Duration::from_secs(60), || {
        boss.tether(&["inventory", "--all"]).status.success()
            && boss.is_online(&agent.id) == Some(true)
    });
    assert!(
        back.is_some(),
        "the relays did not come back after PostgreSQL did"
    );
    eprintln!(
        "relays answering again {:?} after PostgreSQL restarted",
        t0.elapsed()
    );
    // What was acknowledged before is there, and B records new sessions.
    assert!(boss.tether(&["inventory", &agent.id]).status.success());
    let out = boss.tether(&["exec", &agent.id, "--", "echo", "after"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("after"));
    let sessions_after = boss.json(&["sessions", "--device", &agent.id]);
    assert_eq!(
        sessions_after.as_array().unwrap().len(),
        sessions_before.as_array().unwrap().len() + 1,
        "{sessions_after:#}"
    );
}
