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
