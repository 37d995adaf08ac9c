//! What an agent reports about sessions (audit actions, recorded shells' transcripts) is taken
//! only for sessions running on that very device, transcripts only when the grant said the shell
//! is recorded, within a per-session size cap, and actions within a per-session cap and rate.
//!
//! The device side is a raw agent connection (what a hostile agent can send); the session is
//! brokered by the relay between a raw technician and that raw agent, which accepts the offer,
//! so to the relay it runs until the technician ends it.

use std::path::Path;
use std::time::{Duration, Instant};
use tether_net::client::{Credentials, connect_with_credentials};
use tether_net::framed::{read_msg, write_msg};
use tether_net::tls::TransportOptions;
use tether_protocol::message::{
    AgentStatus, AgentStream, AgentToRelay, Intent, MAX_TRANSCRIPT, SessionRequest, TechRequest,
    TechResponse, TranscriptChunk,
};
use tether_protocol::session::{OfferReply, Permissions, RelayStream, SessionGrant};
use tether_protocol::{codec, limits};
use tether_relay::live::{ACTION_BURST, ACTION_RATE, GRACE};
use tether_tests::{Agent, Relay, Tech, ok, run, wait_until};

struct Raw {
    _ep: quinn::Endpoint,
    conn: quinn::Connection,
    control: quinn::SendStream,
    _recv: quinn::RecvStream,
}

async fn raw(credentials: &Path, intent: Intent) -> Raw {
    let creds = Credentials::load(credentials).unwrap();
    let (ep, conn, _welcome, control, recv) =
        connect_with_credentials(&creds, intent, "raw", TransportOptions::default())
            .await
            .unwrap();
    Raw {
        _ep: ep,
        conn,
        control,
        _recv: recv,
    }
}

/// A session the relay runs between the raw technician and the raw agent.
struct Running {
    id: String,
    record_shell: bool,
    tech: (quinn::SendStream, quinn::RecvStream),
    agent: (quinn::SendStream, quinn::RecvStream),
}

async fn open(tech: &Raw, agent: &Raw, device: &str, permissions: Permissions) -> Running {
    let (mut ts, mut tr) = tech.conn.open_bi().await.unwrap();
    let req = TechRequest::OpenSession(SessionRequest {
        device: device.into(),
        permissions,
        reason: "test".into(),
        ticket: String::new(),
        batch: false,
        activity: tether_protocol::session::Activity::for_permissions(permissions),
    });
    write_msg(&mut ts, &req, limits::CONTROL).await.unwrap();
    let (mut asend, mut arecv) = agent.conn.accept_bi().await.unwrap();
    let RelayStream::SessionOffer { grant, .. } =
        read_msg(&mut arecv, limits::CONTROL).await.unwrap()
    else {
        panic!("not a session offer");
    };
    let grant: SessionGrant = codec::from_payload(&grant).unwrap();
    write_msg(
        &mut asend,
        &OfferReply::Accept {
            unattended: false,
            engagement: None,
        },
        limits::CONTROL,
    )
    .await
    .unwrap();
    // (The relay may first say it is asking the user.)
    let mut answer = read_msg::<TechResponse>(&mut tr, limits::CONTROL).await;
    if matches!(answer, Ok(TechResponse::Asking)) {
        answer = read_msg::<TechResponse>(&mut tr, limits::CONTROL).await;
    }
    match answer.unwrap() {
        TechResponse::SessionReady { session_id, .. } => assert_eq!(session_id, grant.session_id),
        other => panic!("{other:?}"),
    }
    Running {
        id: grant.session_id,
        record_shell: grant.record_shell,
        tech: (ts, tr),
        agent: (asend, arecv),
    }
}

/// Both sides say goodbye: the relay ends the session at once.
fn end(running: Running) {
    let Running {
        tech: (mut ts, _tr),
        agent: (mut asend, _ar),
        ..
    } = running;
    let _ = ts.finish();
    let _ = asend.finish();
}

fn session(tech: &Tech, id: &str) -> serde_json::Value {
    tech.json(&["sessions"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no session {id}"))
}

fn actions(tech: &Tech, id: &str) -> Vec<String> {
    session(tech, id)["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Waits until the session is on record as started (the relay records it just after it tells
/// the technician it is ready).
fn wait_started(tech: &Tech, id: &str) {
    wait_until(Duration::from_secs(20), || {
        session(tech, id)["started_at"].is_string()
    })
    .expect("session never recorded as started");
}

/// Waits until the session is on record as ended, and then past the relay's grace for its
/// agent's last reports (a time rule of the relay, so waiting is the only way to observe it).
fn wait_ended_past_grace(tech: &Tech, id: &str) {
    wait_until(Duration::from_secs(20), || {
        session(tech, id)["ended_at"].is_string()
    })
    .expect("session never ended");
    std::thread::sleep(GRACE + Duration::from_secs(1));
}

/// Sends a status with `marker` as hostname after whatever the agent sent before, and waits
/// until the relay shows it: the relay handles an agent's control messages in order, so
/// everything sent before has been handled.
fn flush(rt: &tokio::runtime::Runtime, tech: &Tech, agent: &mut Raw, device: &str, marker: &str) {
    rt.block_on(write_msg(
        &mut agent.control,
        &AgentToRelay::Status(AgentStatus {
            hostname: marker.into(),
            os: "test".into(),
            agent_version: "0".into(),
        }),
        limits::CONTROL,
    ))
    .unwrap();
    wait_until(Duration::from_secs(30), || {
        tech.devices()
            .iter()
            .any(|d| d["id"] == device && d["hostname"] == marker)
    })
    .expect("the relay never handled the agent's messages");
}

fn send_actions(rt: &tokio::runtime::Runtime, agent: &mut Raw, id: &str, n: usize) {
    rt.block_on(async {
        for i in 0..n {
            write_msg(
                &mut agent.control,
                &AgentToRelay::SessionAction {
                    session_id: id.into(),
                    action: format!("forged action {i}"),
                },
                limits::CONTROL,
            )
            .await
            .unwrap();
        }
    });
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Reproduces the review's lower findings on actions: a device appended 5,004 rows to its own
/// ended session, and nothing bounded how many a running session takes. Now: another device's
/// actions are ignored, a flood is cut at the burst and rate, and an ended session takes none.
#[test]
fn actions_only_for_running_sessions_of_that_device_capped_and_rate_limited() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    let a = Agent::enroll(&relay.agent_token());
    let b = Agent::enroll(&relay.agent_token());
    let rt = rt();
    let (ta, mut aa, mut ab) = rt.block_on(async {
        (
            raw(&tech.config(), Intent::Technician).await,
            raw(&a.state(), Intent::Agent).await,
            raw(&b.state(), Intent::Agent).await,
        )
    });
    tech.wait_online(&a.id);
    tech.wait_online(&b.id);
    let running = rt.block_on(open(&ta, &aa, &a.id, Permissions::VIEW));
    let id = running.id.clone();
    wait_started(&tech, &id);

    // Another device cannot write into it.
    send_actions(&rt, &mut ab, &id, 10);
    flush(&rt, &tech, &mut ab, &b.id, "b-done");
    assert!(actions(&tech, &id).is_empty());

    // Its own device, flooding: the burst is kept, the rest cut, and the cut noted once.
    let started = Instant::now();
    send_actions(&rt, &mut aa, &id, 5_000);
    flush(&rt, &tech, &mut aa, &a.id, "flood-done");
    let secs = started.elapsed().as_secs_f64();
    let kept = actions(&tech, &id);
    let allowed = ACTION_BURST + ACTION_RATE * secs + 1.0;
    eprintln!(
        "{} of 5,000 flooded actions recorded in {secs:.1} s (allowed {allowed:.0})",
        kept.len()
    );
    assert!(kept.len() as f64 <= allowed, "{} recorded", kept.len());
    assert!(kept.len() as f64 >= ACTION_BURST, "{} recorded", kept.len());
    assert_eq!(
        kept.iter().filter(|a| a.contains("not recorded")).count(),
        1,
        "the cut is not noted once"
    );

    // Ended: nothing more is appended.
    end(running);
    wait_ended_past_grace(&tech, &id);
    let before = actions(&tech, &id).len();
    send_actions(&rt, &mut aa, &id, 100);
    flush(&rt, &tech, &mut aa, &a.id, "after-end");
    assert_eq!(
        actions(&tech, &id).len(),
        before,
        "actions added after the end"
    );
}

/// Writes a transcript for `session` on a new stream: `total` bytes in 60,000-byte chunks, or
/// until the relay stops the stream. Returns the bytes written and whether it was stopped.
async fn pour(conn: &quinn::Connection, session: &str, total: usize) -> (usize, bool) {
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    write_msg(
        &mut send,
        &AgentStream::Transcript {
            session_id: session.into(),
        },
        limits::CONTROL,
    )
    .await
    .unwrap();
    let chunk = TranscriptChunk(vec![b'x'; 60_000]);
    let mut sent = 0;
    while sent < total {
        if write_msg(&mut send, &chunk, limits::CONTROL).await.is_err() {
            return (sent, true);
        }
        sent += chunk.0.len();
    }
    let _ = send.finish();
    // Stopped by the relay (refused or cut), or acknowledged whole.
    let stopped = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await;
    (sent, matches!(stopped, Ok(Ok(Some(_)))))
}

/// Whether the relay refuses a transcript for `session` on this connection: it stops the
/// stream (without a refusal the stream stays open; 10 s is generous for a refusal).
async fn refused(conn: &quinn::Connection, session: &str) -> bool {
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let opened = write_msg(
        &mut send,
        &AgentStream::Transcript {
            session_id: session.into(),
        },
        limits::CONTROL,
    )
    .await;
    if opened.is_err() {
        return true;
    }
    let _ = write_msg(
        &mut send,
        &TranscriptChunk(b"forged".to_vec()),
        limits::CONTROL,
    )
    .await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await;
    let _ = send.reset(0u32.into());
    matches!(stopped, Ok(Ok(Some(_))))
}

fn transcript_notes(tech: &Tech, id: &str) -> Vec<String> {
    actions(tech, id)
        .into_iter()
        .filter(|a| a.starts_with("shell transcript /"))
        .collect()
}

/// Reproduces the review's lower findings on transcripts: they were accepted for sessions that
/// were never recorded or had ended, and capped per stream, not per session (84 MB written for
/// one). Now only a running session of that device whose grant records the shell takes one, at
/// most `MAX_TRANSCRIPT` bytes over all its streams.
#[test]
fn transcripts_only_for_recorded_running_sessions_and_capped_per_session() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    ok(run(relay
        .cli()
        .args(["policy", "--data"])
        .arg(relay.data())
        .args(["--group", "default", "--record-shells", "on"])));
    let a = Agent::enroll(&relay.agent_token());
    let b = Agent::enroll(&relay.agent_token());
    let rt = rt();
    let (ta, aa, ab) = rt.block_on(async {
        (
            raw(&tech.config(), Intent::Technician).await,
            raw(&a.state(), Intent::Agent).await,
            raw(&b.state(), Intent::Agent).await,
        )
    });
    tech.wait_online(&a.id);
    tech.wait_online(&b.id);
    let recorded = rt.block_on(open(&ta, &aa, &a.id, Permissions::SHELL));
    let plain = rt.block_on(open(&ta, &aa, &a.id, Permissions::VIEW));
    assert!(recorded.record_shell && !plain.record_shell);
    let id = recorded.id.clone();
    wait_started(&tech, &id);
    wait_started(&tech, &plain.id);
    let dir = relay.data().join("transcripts");
    let file = dir.join(format!("{id}.log"));

    // A session whose shell is not recorded takes no transcript.
    assert!(
        rt.block_on(refused(&aa.conn, &plain.id)),
        "unrecorded session"
    );
    assert!(!dir.join(format!("{}.log", plain.id)).exists());
    // Nor does another device's session.
    assert!(
        rt.block_on(refused(&ab.conn, &id)),
        "another device's session"
    );
    assert!(!file.exists());

    // Two streams of 40 MiB each for the recorded one: at most MAX_TRANSCRIPT kept in all.
    let started = Instant::now();
    let ((x, _), (y, _)) = rt.block_on(async {
        tokio::join!(pour(&aa.conn, &id, 40 << 20), pour(&aa.conn, &id, 40 << 20))
    });
    wait_until(Duration::from_secs(60), || {
        transcript_notes(&tech, &id).len() == 2
    })
    .unwrap_or_else(|| panic!("transcripts not noted: {:?}", transcript_notes(&tech, &id)));
    let size = std::fs::metadata(&file).unwrap().len();
    eprintln!(
        "two transcript streams sent {x} + {y} bytes in {:.1} s; kept {size}",
        started.elapsed().as_secs_f64()
    );
    assert!(size <= MAX_TRANSCRIPT, "kept {size} bytes");
    assert!(size > MAX_TRANSCRIPT - (1 << 20), "kept only {size} bytes");
    assert!(
        transcript_notes(&tech, &id)
            .iter()
            .any(|n| n.contains("cut at the session's size limit")),
        "{:?}",
        transcript_notes(&tech, &id)
    );

    // Ended: no more transcript for it.
    end(recorded);
    end(plain);
    wait_ended_past_grace(&tech, &id);
    assert!(rt.block_on(refused(&aa.conn, &id)), "ended session");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
}
