//! Engagements: a technician's visit for one ticket is approved once. Further sessions by the
//! same technician for the same ticket within what was approved start without a prompt; a new
//! permission, another ticket or another technician prompts again; the user ends the whole visit
//! at once (or it idles out) and is asked for one rating, not one per command.
//!
//! The user here is a subscriber on the agent's local socket, like the tray app: it records
//! every event and approves every prompt (the tray's own windows are covered by `session_tray`).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_net::local::LocalClient;
use tether_protocol::consent::{LocalEvent, LocalRequest, Prompt};
use tether_protocol::session::{Activity, Permissions};
use tether_tests::*;

struct User {
    events: Arc<Mutex<Vec<LocalEvent>>>,
    client: LocalClient,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl User {
    fn new(agent: &Agent) -> Self {
        let mut client = agent.subscribe();
        let mut answer = client.try_clone().unwrap();
        let reader = client.try_clone().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let thread = std::thread::spawn(move || {
            while let Ok(ev) = client.recv() {
                if let LocalEvent::Prompt(p) = &ev {
                    let _ = answer.send(&LocalRequest::Approve { id: p.id.clone() });
                }
                seen.lock().unwrap().push(ev);
            }
        });
        User {
            events,
            client: reader,
            thread: Some(thread),
        }
    }

    fn prompts(&self) -> Vec<Prompt> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                LocalEvent::Prompt(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Engagements ended so far: (id, by_user).
    fn ended(&self) -> Vec<(String, bool)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                LocalEvent::EngagementEnded { id, by_user, .. } => Some((id.clone(), *by_user)),
                _ => None,
            })
            .collect()
    }

    fn wait_ended(&self, count: usize) -> Vec<(String, bool)> {
        wait_until(Duration::from_secs(120), || self.ended().len() >= count);
        let ended = self.ended();
        assert!(ended.len() >= count, "engagements ended: {ended:?}");
        ended
    }
}

impl Drop for User {
    fn drop(&mut self) {
        self.client.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rows_for(tech: &Tech, ticket: &str) -> Vec<serde_json::Value> {
    let rows = tech.json(&["sessions"]);
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ticket"] == ticket)
        .cloned()
        .collect()
}

#[test]
fn connect_then_exec_push_pull_is_one_prompt_and_one_rating() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    ana.wait_online(&agent.id);
    let user = User::new(&agent);

    // `tether connect --shell --files`: the screen, and commands and files asked for up front.
    let all = Permissions {
        shell: true,
        files: true,
        ..Permissions::FULL
    };
    let screen = open_duplex(&ana, &agent.id, all, "T-1");
    let engagement = screen.session_id.clone();
    screen.close();
    assert_eq!(user.prompts().len(), 1);
    assert_eq!(user.prompts()[0].activity, Activity::Screen);

    let out = ok(ana.tether(&["exec", &agent.id, "--ticket", "T-1", "--", "echo", "hi"]));
    assert_eq!(out, "hi\n");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("note.txt");
    std::fs::write(&local, b"printer fixed\n").unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    give_to_session_user(remote_dir.path());
    let remote = remote_dir.path().join("note.txt");
    let remote = remote.to_str().unwrap();
    ok(ana.tether(&[
        "push",
        &agent.id,
        local.to_str().unwrap(),
        remote,
        "--ticket",
        "T-1",
    ]));
    let back = work.path().join("back.txt");
    ok(ana.tether(&[
        "pull",
        &agent.id,
        remote,
        back.to_str().unwrap(),
        "--ticket",
        "T-1",
    ]));
    assert_eq!(std::fs::read(&back).unwrap(), b"printer fixed\n");
    // One prompt for the whole visit, and no rating asked while it lasts.
    assert_eq!(user.prompts().len(), 1, "{:?}", user.prompts());
    assert!(user.ended().is_empty());

    // The audit keeps every action, filed under the engagement.
    let rows = rows_for(&ana, "T-1");
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert!(rows.iter().all(|r| r["engagement"] == engagement.as_str()));
    assert_eq!(rows[0]["decision_detail"], "approved by the user");
    assert!(
        rows[1..].iter().all(|r| r["decision"] == "approved"
            && r["decision_detail"] == "approved earlier in this engagement"),
        "{rows:#?}"
    );
    let activities: Vec<&str> = rows
        .iter()
        .map(|r| r["activity"].as_str().unwrap())
        .collect();
    assert_eq!(
        activities,
        [
            "screen".to_string(),
            "command: echo hi".to_string(),
            format!("push to {remote}"),
            format!("pull {remote}"),
        ]
    );

    // The user ends the visit: one end, one rating, filed on the engagement.
    ok(agent.local(&["end", &engagement]));
    assert_eq!(user.wait_ended(1), [(engagement.clone(), true)]);
    ok(agent.local(&["rate", &engagement, "5", "--comment", "quick"]));
    wait_until(Duration::from_secs(30), || {
        rows_for(&ana, "T-1")[0]["rating"] == 5
    });
    assert_eq!(rows_for(&ana, "T-1")[0]["rating"], 5);

    // Over: the next command asks again.
    ok(ana.tether(&["exec", &agent.id, "--ticket", "T-1", "--", "true"]));
    assert_eq!(user.prompts().len(), 2);
    assert_eq!(user.ended().len(), 1);
}

#[test]
fn new_permissions_tickets_and_technicians_prompt_and_idle_visits_end() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let bo = Tech::enroll(&relay.tech_token("bo", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_with(&["--engagement-idle", "20s"]);
    ana.wait_online(&agent.id);
    let user = User::new(&agent);

    ok(ana.tether(&["exec", &agent.id, "--ticket", "T-2", "--", "true"]));
    let first = &user.prompts()[0];
    // The prompt names the command and the account it runs as (not root).
    assert_eq!(
        first.activity,
        Activity::Command {
            line: "true".into()
        }
    );
    assert_eq!(first.runs_as.as_deref(), Some("nobody"));
    assert_eq!(first.already, None);
    ok(ana.tether(&["exec", &agent.id, "--ticket", "T-2", "--", "id", "-u"]));
    assert_eq!(user.prompts().len(), 1);

    // Files were not approved: asked once more, saying what was approved already.
    let dir = tempfile::tempdir().unwrap();
    give_to_session_user(dir.path());
    let local = dir.path().join("a.txt");
    std::fs::write(&local, b"a").unwrap();
    let remote = format!("{}/b.txt", dir.path().display());
    ok(ana.tether(&[
        "push",
        &agent.id,
        local.to_str().unwrap(),
        &remote,
        "--ticket",
        "T-2",
    ]));
    let prompts = user.prompts();
    assert_eq!(prompts.len(), 2);
    assert_eq!(prompts[1].already, Some(Permissions::SHELL));
    assert_eq!(prompts[1].activity, Activity::Push { path: remote });
    ok(ana.tether(&["exec", &agent.id, "--ticket", "T-2", "--", "true"]));
    assert_eq!(user.prompts().len(), 2);

    // Another technician, or another ticket: another engagement, another prompt.
    ok(bo.tether(&["exec", &agent.id, "--ticket", "T-2", "--", "true"]));
    assert_eq!(user.prompts().len(), 3);
    ok(ana.tether(&["exec", &agent.id, "--ticket", "T-3", "--", "true"]));
    assert_eq!(user.prompts().len(), 4);

    // The technician says they are done with T-3: it ends now (once), and the next asks again.
    let done = ok(ana.tether(&["end", &agent.id, "--ticket", "T-3"]));
    assert!(done.contains("ended your engagement"), "{done}");
    let again = ok(ana.tether(&["end", &agent.id, "--ticket", "T-3"]));
    assert!(again.contains("no engagement of yours was open"), "{again}");
    // Only their own: bo's T-2 and ana's T-2 are untouched.
    assert_eq!(user.ended().len(), 1);
    ok(ana.tether(&["exec", &agent.id, "--ticket", "T-3", "--", "true"]));
    assert_eq!(user.prompts().len(), 5);

    // Nothing more: the rest idle out once each, not by the user.
    let ended = user.wait_ended(4);
    assert_eq!(ended.len(), 4, "{ended:?}");
    assert!(ended.iter().all(|(_, by_user)| !by_user));
    let mut ids: Vec<&str> = ended.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}
