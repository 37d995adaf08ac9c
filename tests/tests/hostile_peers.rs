//! Peers that misbehave at the connection level are closed, and the relay keeps serving others.

use std::time::Duration;
use tether_net::client::{Credentials, connect};
use tether_net::tls::{self, TransportOptions};
use tether_protocol::message::close_code;
use tether_protocol::token::EnrollToken;
use tether_tests::{Agent, Relay, Tech};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens a QUIC connection to the relay as an enrolling client (no client certificate).
async fn anonymous(relay: &Relay) -> (quinn::Endpoint, quinn::Connection) {
    let token = EnrollToken::decode(&relay.agent_token()).unwrap();
    let cfg = tls::enroll_client_config(token.ca_fingerprint, TransportOptions::default()).unwrap();
    let ep = tls::client_endpoint(relay.addr()).unwrap();
    let conn = connect(&ep, relay.addr(), "localhost", cfg).await.unwrap();
    (ep, conn)
}

/// Opens a QUIC connection with a technician's certificate, without saying hello.
async fn as_tech(tech: &Tech) -> (quinn::Endpoint, quinn::Connection) {
    let creds = Credentials::load(&tech.config()).unwrap();
    let ep = tls::client_endpoint(creds.relay.addr.parse().unwrap()).unwrap();
    let conn = connect(
        &ep,
        creds.relay.addr.parse().unwrap(),
        &creds.relay.server_name,
        creds.quic_config(TransportOptions::default()).unwrap(),
    )
    .await
    .unwrap();
    (ep, conn)
}

fn app_code(e: &quinn::ConnectionError) -> Option<u32> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            u32::try_from(c.error_code.into_inner()).ok()
        }
        _ => None,
    }
}

#[test]
fn garbage_instead_of_hello_is_closed_and_others_are_served() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    tech.wait_online(&agent.id);

    rt().block_on(async {
        for garbage in [
            vec![0xff; 64],                           // frame header announcing 4 GiB
            vec![0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8], // well-framed nonsense
            vec![0, 0, 0, 0],                         // empty frame
        ] {
            let (_ep, conn) = as_tech(&tech).await;
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            send.write_all(&garbage).await.unwrap();
            let _ = send.finish();
            let err = tokio::time::timeout(Duration::from_secs(5), conn.closed())
                .await
                .expect("relay did not close a garbage connection");
            let code = app_code(&err);
            assert!(
                code == Some(close_code::PROTOCOL_ERROR) || code == Some(close_code::REFUSED),
                "{garbage:?}: {err:?}"
            );
        }
    });
    // The agent stayed online and the technician is still served.
    assert_eq!(tech.is_online(&agent.id), Some(true));
}

#[test]
fn connection_that_never_says_hello_is_closed() {
    let mut relay = Relay::init().with_hello_timeout("1s");
    relay.serve("127.0.0.1:0".parse().unwrap());
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    rt().block_on(async {
        let (_ep1, silent_anon) = anonymous(&relay).await;
        let (_ep2, silent_tech) = as_tech(&tech).await;
        // A stream opened but nothing written on it is silence too.
        let (mut _send, _recv) = silent_tech.open_bi().await.unwrap();
        _send.write_all(&[0, 0]).await.unwrap();
        for conn in [silent_anon, silent_tech] {
            let err = tokio::time::timeout(Duration::from_secs(5), conn.closed())
                .await
                .expect("silent connection was not closed");
            assert_eq!(app_code(&err), Some(close_code::HELLO_TIMEOUT), "{err:?}");
        }
    });
    assert!(tech.devices().is_empty());
}

#[test]
fn unauthenticated_peer_may_only_enroll() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    rt().block_on(async {
        let (_ep, conn) = anonymous(&relay).await;
        let hello = tether_protocol::message::Hello::new(
            tether_protocol::message::Intent::Technician,
            "test",
        );
        let err = tether_net::client::handshake(&conn, &hello)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("enroll first"), "{err}");
    });
    assert!(tech.devices().is_empty());
}

#[test]
fn garbage_from_an_enrolled_agent_after_hello_disconnects_only_it() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "viewer"));
    let mut good = Agent::enroll(&relay.agent_token());
    good.start();
    let bad = Agent::enroll(&relay.agent_token());
    tech.wait_online(&good.id);

    rt().block_on(async {
        let creds = Credentials::load(&bad.state()).unwrap();
        let (_ep, conn, _w, mut send, _recv) = tether_net::client::connect_with_credentials(
            &creds,
            tether_protocol::message::Intent::Agent,
            "bad-agent",
            TransportOptions::default(),
        )
        .await
        .unwrap();
        // Valid frame, invalid message.
        send.write_all(&[0, 0, 0, 3, 0xee, 0xee, 0xee])
            .await
            .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("bad agent not disconnected");
        assert_eq!(app_code(&err), Some(close_code::PROTOCOL_ERROR), "{err:?}");
    });
    assert_eq!(tech.is_online(&bad.id), Some(false));
    assert_eq!(tech.is_online(&good.id), Some(true));
}

/// Frames a streaming session receives in `window`.
async fn frames_in(
    tx: &tokio::sync::mpsc::UnboundedSender<tether_protocol::session::ToAgent>,
    rx: &mut tokio::sync::mpsc::Receiver<tether_protocol::session::ToViewer>,
    window: Duration,
) -> usize {
    use tether_protocol::session::{ToAgent, ToViewer};
    let end = tokio::time::Instant::now() + window;
    let mut frames = 0;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Err(_) => return frames,
            Ok(Some(ToViewer::Frame(f))) => {
                frames += 1;
                let _ = tx.send(ToAgent::FrameAck { seq: f.seq });
            }
            Ok(Some(ToViewer::Bye { reason })) => {
                panic!("session ended during the abuse: {reason}")
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("session ended during the abuse"),
        }
    }
}

#[test]
fn floods_of_connections_and_streams_do_not_harm_a_running_session() {
    use tether_protocol::session::{Permissions, ToAgent};
    let x = tether_tests::Xvfb::start(640, 400);
    // Something that keeps changing on screen, so the session streams frames.
    let _ticker = x.spawn(
        "xterm",
        &[
            "-e",
            "sh",
            "-c",
            "while true; do date +%N; sleep 0.05; done",
        ],
    );
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mallory = Tech::enroll(&relay.tech_token("mallory", "viewer"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&x.display);
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();

    let mut d = tether_tests::open_duplex(&ana, &agent.id, Permissions::VIEW, "");
    let (rt, tx, rx) = (&d.rt, &d.tx, &mut d.rx);
    tx.send(ToAgent::StartStream {
        display: 0,
        max_in_flight: 2,
        h264: false,
    })
    .unwrap();
    let before = rt.block_on(frames_in(tx, rx, Duration::from_secs(2)));
    assert!(before > 0, "no frames before the abuse");

    // The abuse, from another loopback address: 2,000 connection attempts as fast as they go,
    // and an enrolled viewer opening 3,000 streams of garbage.
    let relay_addr = relay.addr();
    let token = EnrollToken::decode(&relay.agent_token()).unwrap();
    let mallory_creds = Credentials::load(&mallory.config()).unwrap();
    let abuse = rt.spawn(async move {
        let ep = quinn::Endpoint::client("127.0.0.2:0".parse().unwrap()).unwrap();
        let cfg =
            tls::enroll_client_config(token.ca_fingerprint, TransportOptions::default()).unwrap();
        let (mut admitted, mut refused) = (0u32, 0u32);
        let flood_started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..2000 {
            let (ep, cfg) = (ep.clone(), cfg.clone());
            tasks.spawn(async move { connect(&ep, relay_addr, "localhost", cfg).await.is_ok() });
            if tasks.len() >= 64 {
                match tasks.join_next().await {
                    Some(Ok(true)) => admitted += 1,
                    _ => refused += 1,
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(true) => admitted += 1,
                _ => refused += 1,
            }
        }
        let flood_secs = flood_started.elapsed().as_secs_f64();
        // An enrolled viewer who said hello properly, then opens streams of garbage.
        let mut streams = 0u32;
        let hello = tether_net::client::connect_with_credentials(
            &mallory_creds,
            tether_protocol::message::Intent::Technician,
            "mallory",
            TransportOptions::default(),
        )
        .await;
        if let Ok((_ep, conn, _welcome, _send, _recv)) = hello {
            for _ in 0..3000 {
                match conn.open_bi().await {
                    Ok((mut s, _r)) => {
                        let _ = s.write_all(&[0xff; 32]).await;
                        let _ = s.finish();
                        streams += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        (admitted, refused, streams, flood_secs)
    });
    let during = rt.block_on(frames_in(tx, rx, Duration::from_secs(3)));
    let (admitted, refused, streams, flood_secs) = rt.block_on(abuse).unwrap();
    eprintln!(
        "frames: {before} in 2 s before, {during} in 3 s during the abuse; connections admitted {admitted}, refused {refused} in {flood_secs:.1} s; garbage streams {streams}"
    );
    assert!(refused > 0, "a flood of 2,000 connections was not limited");
    // The default limit: a burst of 200, then 50 per second.
    let allowed = 200.0 + 50.0 * flood_secs + 5.0;
    assert!(
        f64::from(admitted) <= allowed,
        "admitted {admitted} (limit {allowed:.0})"
    );
    assert!(streams > 0, "the stream flood never got going");
    assert!(during > 0, "the session stopped streaming during the abuse");
    // Others still get in while the flooding address is being refused.
    assert!(ana.tether(&["devices"]).status.success());
    d.close();
}
