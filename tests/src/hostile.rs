//! A hostile agent: an enrolled device's real credentials, driven by the test instead of
//! `tether-agent`, so it can say whatever a compromised agent could (within a valid session:
//! the relay-signed offer, the end-to-end TLS as the device).

use std::path::Path;
use tether_net::client::{Credentials, connect_with_credentials};
use tether_net::framed::{read_msg, write_msg};
use tether_net::tls::TransportOptions;
use tether_protocol::message::{AgentStatus, AgentToRelay, Intent};
use tether_protocol::session::{OfferReply, RefuseKind, RelayStream, ToAgent, ToViewer};
use tether_protocol::{codec, frame, limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the hostile agent does with each session the relay offers it.
#[derive(Debug, Clone)]
pub enum Script {
    /// Refuses the offer with this message.
    Refuse(String),
    /// Accepts, then sends `Error` instead of `Ready`.
    ErrorFirst(String),
    /// Accepts, says `Ready`, and answers the technician's first request with `Error`.
    ErrorOnRequest(String),
    /// Accepts, says `Ready`, and answers the technician's first request with `Bye`.
    ByeOnRequest(String),
}

/// Runs until dropped, on a thread of its own.
pub struct HostileAgent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileAgent {
    /// Connects with the credentials in `state` (an agent enrolled with
    /// [`crate::Agent::enroll`], not running), reports `hostname`, and plays `script` to every
    /// session offer.
    pub fn start(state: &Path, hostname: &str, script: Script) -> Self {
        let creds = Credentials::load(state).expect("device credentials");
        let hostname = hostname.to_string();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let transport = TransportOptions {
                    keep_alive: None,
                    idle_timeout: tether_protocol::liveness::AGENT_IDLE_TIMEOUT,
                };
                let (_ep, conn, _welcome, mut send, _recv) =
                    connect_with_credentials(&creds, Intent::Agent, "hostile", transport)
                        .await
                        .expect("hostile agent connects");
                let status = AgentToRelay::Status(AgentStatus {
                    hostname,
                    os: "Hostile".into(),
                    agent_version: "0".into(),
                });
                write_msg(&mut send, &status, limits::CONTROL)
                    .await
                    .expect("status");
                loop {
                    tokio::select! {
                        s = conn.accept_bi() => match s {
                            Ok((s, r)) => {
                                tokio::spawn(play(creds.clone(), script.clone(), s, r));
                            }
                            Err(_) => return,
                        },
                        _ = &mut stopped => {
                            conn.close(0u32.into(), b"bye");
                            return;
                        }
                    }
                }
            });
        });
        HostileAgent {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HostileAgent {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn send_msg<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, msg: &ToViewer) {
    let bytes = codec::to_frame(msg, limits::BULK).expect("frame");
    let _ = w.write_all(&bytes).await;
    let _ = w.flush().await;
}

async fn recv_msg<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<ToAgent> {
    let mut header = [0u8; frame::HEADER_LEN];
    r.read_exact(&mut header).await.ok()?;
    let len = frame::payload_len(header, limits::CONTROL).ok()?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.ok()?;
    codec::from_payload(&payload).ok()
}

async fn play(
    creds: Credentials,
    script: Script,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let Ok(RelayStream::SessionOffer { .. }) =
        read_msg::<RelayStream>(&mut recv, limits::CONTROL).await
    else {
        return;
    };
    if let Script::Refuse(message) = &script {
        let reply = OfferReply::Refuse {
            kind: RefuseKind::Denied,
            message: message.clone(),
        };
        let _ = write_msg(&mut send, &reply, limits::CONTROL).await;
        let _ = send.finish();
        return;
    }
    if write_msg(
        &mut send,
        &OfferReply::Accept {
            unattended: false,
            engagement: None,
        },
        limits::CONTROL,
    )
    .await
    .is_err()
    {
        return;
    }
    let (chain, key) = creds.identity_material().expect("identity");
    let cfg = tether_net::tls::session_server_config(&creds.ca().expect("ca"), chain, key)
        .expect("tls config");
    let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(cfg)
        .accept(tokio::io::join(recv, send))
        .await
    else {
        return;
    };
    let ready = ToViewer::Ready {
        session_id: String::new(),
        displays: Vec::new(),
        permissions: tether_protocol::session::Permissions::FULL,
    };
    match script {
        Script::Refuse(_) => {}
        Script::ErrorFirst(message) => send_msg(&mut tls, &ToViewer::Error { message }).await,
        Script::ErrorOnRequest(message) => {
            send_msg(&mut tls, &ready).await;
            let _ = recv_msg(&mut tls).await;
            send_msg(&mut tls, &ToViewer::Error { message }).await;
        }
        Script::ByeOnRequest(reason) => {
            send_msg(&mut tls, &ready).await;
            let _ = recv_msg(&mut tls).await;
            send_msg(&mut tls, &ToViewer::Bye { reason }).await;
        }
    }
    let _ = tls.shutdown().await;
    // Let the technician read it all before the streams go.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), recv_msg(&mut tls)).await;
}
