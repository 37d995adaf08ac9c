//! The agent's connection to the relay: connect, hello, status, heartbeats through
//! [`AgentConn`], and reconnect with jittered exponential backoff (0.5 s up to 30 s) forever.

use crate::SOFTWARE;
use crate::consent::Consent;
use crate::platform::host;
use crate::reporter::{Latest, LatestRx};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tether_net::NetError;
use tether_net::client::{ClientError, Credentials, connect_with_credentials};
use tether_net::framed::{read_msg, write_msg};
use tether_net::tls::TransportOptions;
use tether_protocol::backoff::Backoff;
use tether_protocol::conn::{AgentConn, AgentEvent, Timeouts};
use tether_protocol::message::{
    AgentStatus, AgentStream, AgentToRelay, HelloReply, Intent, RelayToAgent, UploadReply,
    close_code,
};
use tether_protocol::{codec, limits};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub timeouts: Timeouts,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Root the hostname and OS are read under (the inventory root).
    pub root: std::path::PathBuf,
    /// Where health reports come from ([`crate::health::spawn`]); `None` sends none.
    pub health: Option<crate::health::HealthFeed>,
    /// Whom sessions without the root permission run as (a uid other than 0); `None`: nobody,
    /// so such sessions are refused when the agent runs as root ([`crate::account`]).
    pub session_user: Option<u32>,
    /// Which desktop sessions reach.
    pub desktop: crate::platform::DesktopSpec,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            timeouts: Timeouts::default(),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            root: "/".into(),
            health: None,
            session_user: None,
            desktop: Default::default(),
        }
    }
}

enum Ended {
    Shutdown,
    Lost(ClientError),
}

/// Runs until `shutdown` completes. Returns an error only if the credentials cannot be loaded.
/// `inventory` publishes the current inventory (see [`crate::reporter`]).
/// `consent` decides session offers; `reports` are the consent service's messages for the relay
/// (they wait in the channel while the relay is unreachable).
pub async fn run(
    creds: Credentials,
    opts: AgentOptions,
    mut inventory: LatestRx,
    consent: Consent,
    mut reports: mpsc::Receiver<AgentToRelay>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
    info!(pid = std::process::id(), identity = %creds.identity, relay = %creds.relay.addr, "agent starting");
    loop {
        let link = Link {
            consent: &consent,
            reports: &mut reports,
        };
        let busy = match session(
            &creds,
            &opts,
            &mut backoff,
            &mut inventory,
            link,
            &mut shutdown,
        )
        .await
        {
            Ended::Shutdown => return Ok(()),
            Ended::Lost(e) => {
                // With several relays, the next try starts with another one: this one may be
                // gone, and a dead relay costs a connect timeout.
                creds.fail_over();
                if matches!(&e, ClientError::Net(n) if n.is_auth()) {
                    error!("{e}; an administrator must re-enroll or un-revoke this machine");
                } else {
                    warn!("{e}");
                }
                matches!(&e, ClientError::Net(n) if n.is_busy())
            }
        };
        let delay = if busy {
            backoff.busy_delay(rand::random())
        } else {
            backoff.next_delay(rand::random())
        };
        info!("reconnecting in {:.1} s", delay.as_secs_f32());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// What a connection shares with the consent service.
struct Link<'a> {
    consent: &'a Consent,
    reports: &'a mut mpsc::Receiver<AgentToRelay>,
}

async fn session<F: Future<Output = ()>>(
    creds: &Credentials,
    opts: &AgentOptions,
    backoff: &mut Backoff,
    inventory: &mut LatestRx,
    link: Link<'_>,
    shutdown: &mut std::pin::Pin<&mut F>,
) -> Ended {
    let transport = TransportOptions {
        // The relay's QUIC keep-alive (or our heartbeats, to an older relay) keeps the path alive.
        keep_alive: None,
        // Long enough for any interval the relay picks (it offers the shorter timeout).
        idle_timeout: tether_protocol::liveness::AGENT_IDLE_TIMEOUT,
    };
    let connected = tokio::select! {
        r = connect_with_credentials(creds, Intent::Agent, SOFTWARE, transport) => r,
        () = shutdown.as_mut() => return Ended::Shutdown,
    };
    let (endpoint, conn, welcome, mut send, recv) = match connected {
        Ok(c) => c,
        Err(e) => return Ended::Lost(e),
    };
    let mut machine = AgentConn::new(Instant::now().into_std(), opts.timeouts);
    // Health goes only to a relay that said it takes it (an older one would close on it).
    let mut health = opts.health.clone().filter(|_| {
        welcome
            .capabilities
            .iter()
            .any(|c| c == tether_protocol::message::capability::HEALTH)
    });
    if let Err(e) =
        machine.handle_hello_reply(Instant::now().into_std(), HelloReply::Welcome(welcome))
    {
        return Ended::Lost(ClientError::Net(NetError::Protocol(e.to_string())));
    }
    backoff.reset();
    info!("connected to relay {}", conn.remote_address());

    let status = AgentToRelay::Status(AgentStatus {
        hostname: host::hostname_at(&opts.root),
        os: host::os_pretty_name(&opts.root),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    });
    if let Err(e) = write_msg(&mut send, &status, limits::CONTROL).await {
        return Ended::Lost(e.into());
    }
    // Tell the relay which inventory we have; it asks for an upload if it lacks it. This is how
    // an inventory not acknowledged before a disconnect is sent again after the reconnect.
    inventory.mark_changed();
    let mut acked: Option<u64> = None;
    let (upload_tx, mut upload_rx) = mpsc::channel::<Result<u64, UploadError>>(1);
    let mut uploading = false;
    let mut inventory_closed = false;

    // A fresh health report right after connecting, not one collected before.
    if let Some(h) = health.as_mut() {
        h.mark_seen();
        h.collect_now();
    }

    let mut reader = tether_net::framed::FrameReader::spawn(recv, limits::CONTROL);
    // The relay's silence is watched here when it announced its keep-alive interval: QUIC's
    // PINGs never reach the application, so the count of datagrams received says it spoke.
    let mut rx_seen = conn.stats().udp_rx.datagrams;
    let mut next_rx_check = Instant::now() + RX_CHECK;

    let ended = loop {
        let now = Instant::now().into_std();
        let mut write_err = None;
        while let Some(msg) = machine.poll_transmit(now) {
            if let Err(e) = write_msg(&mut send, &msg, limits::CONTROL).await {
                write_err = Some(e);
                break;
            }
        }
        if let Some(e) = write_err {
            break Ended::Lost(e.into());
        }
        let mut wake = machine
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        if machine.watches_silence() {
            wake = wake.min(next_rx_check);
        }
        tokio::select! {
            changed = inventory.changed(), if !inventory_closed => {
                if changed.is_err() {
                    warn!("inventory collection stopped; presence continues");
                    inventory_closed = true;
                    continue;
                }
                let hash = inventory.borrow_and_update().as_ref().map(|l| l.hash);
                if let Some(hash) = hash.filter(|h| Some(*h) != acked)
                    && let Err(e) = write_msg(&mut send, &AgentToRelay::InventoryHash { hash }, limits::CONTROL).await
                {
                    break Ended::Lost(e.into());
                }
            }
            report = crate::health::next(&mut health) => match report {
                Some(r) => {
                    if let Some(frame) = crate::health::frame(&r)
                        && let Err(e) = send.write_all(&frame).await
                    {
                        break Ended::Lost(ClientError::Net(e.into()));
                    }
                }
                None => {
                    warn!("health collection stopped; presence continues");
                    health = None;
                }
            },
            Some(report) = link.reports.recv() => {
                if let Err(e) = write_msg(&mut send, &report, limits::CONTROL).await {
                    break Ended::Lost(e.into());
                }
            }
            done = upload_rx.recv() => {
                uploading = false;
                match done {
                    Some(Ok(hash)) => acked = Some(hash),
                    Some(Err(e)) => warn!("inventory upload failed: {e}"),
                    None => {}
                }
                // The inventory may have changed while uploading.
                if inventory.borrow().as_ref().map(|l| l.hash) != acked {
                    inventory.mark_changed();
                }
            }
            frame = reader.rx.recv() => match frame {
                Some(Ok(Some(payload))) => match codec::from_payload::<RelayToAgent>(&payload) {
                    Ok(msg) => match machine.handle_message(Instant::now().into_std(), msg) {
                        Some(AgentEvent::InventoryCurrent { hash }) => acked = Some(hash),
                        Some(AgentEvent::InventoryWanted) if !uploading => {
                            if let Some(latest) = inventory.borrow().clone() {
                                uploading = true;
                                tokio::spawn(upload(conn.clone(), latest, upload_tx.clone()));
                            }
                        }
                        _ => {}
                    },
                    Err(e) => {
                        conn.close(close_code::PROTOCOL_ERROR.into(), b"bad message");
                        break Ended::Lost(ClientError::Net(e.into()));
                    }
                },
                Some(Ok(None)) => break Ended::Lost(ClientError::Net(NetError::Closed("relay ended the control stream".into()))),
                Some(Err(e)) => break Ended::Lost(e.into()),
                None => break Ended::Lost(ClientError::Net(NetError::Lost("reader ended".into()))),
            },
            stream = conn.accept_bi() => match stream {
                Ok((s, r)) => {
                    if let tether_protocol::identity::Identity::Device { id, .. } = &creds.identity {
                        tokio::spawn(crate::session::serve(creds.clone(), id.clone(), crate::session::Local { session_user: opts.session_user, desktop: opts.desktop.clone() }, link.consent.clone(), conn.clone(), s, r));
                    }
                }
                Err(e) => break Ended::Lost(ClientError::Net(NetError::from_connection(&e))),
            },
            () = tokio::time::sleep_until(wake) => {
                // Counted at every wake-up, so the deadline is never taken for silence
                // while datagrams arrived since the last count.
                let now = Instant::now();
                next_rx_check = now + RX_CHECK;
                let rx = conn.stats().udp_rx.datagrams;
                if rx != rx_seen {
                    rx_seen = rx;
                    machine.handle_transport_rx(now.into_std());
                }
                machine.handle_timeout(now.into_std());
            }
            () = shutdown.as_mut() => {
                conn.close(close_code::NORMAL.into(), b"agent stopping");
                break Ended::Shutdown;
            }
        }
        if let Some(c) = machine.poll_close() {
            conn.close(c.code.into(), c.reason.as_bytes());
            break Ended::Lost(ClientError::Net(NetError::Lost(c.reason.clone())));
        }
    };
    drop(reader);
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    ended
}

/// How often the datagrams received from the relay are counted, when its silence is watched.
const RX_CHECK: Duration = Duration::from_secs(1);

/// Why an inventory upload did not get acknowledged.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error(transparent)]
    Open(#[from] quinn::ConnectionError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("no acknowledgement within 120 s")]
    NoAck,
    #[error("{0}")]
    Rejected(String),
}

/// Uploads one inventory on its own stream, so heartbeats go on meanwhile.
async fn upload(
    conn: quinn::Connection,
    latest: Arc<Latest>,
    done: mpsc::Sender<Result<u64, UploadError>>,
) {
    let result = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let msg = AgentStream::InventoryUpload {
            hash: latest.hash,
            inventory: Box::new(latest.inventory.clone()),
        };
        write_msg(&mut send, &msg, limits::BULK).await?;
        let _ = send.finish();
        let reply = tokio::time::timeout(
            Duration::from_secs(120),
            read_msg::<UploadReply>(&mut recv, limits::CONTROL),
        )
        .await
        .map_err(|_| UploadError::NoAck)??;
        match reply {
            UploadReply::Ack { hash, changes } => {
                info!(changes, "inventory acknowledged by relay");
                Ok(hash)
            }
            UploadReply::Rejected { message } => Err(UploadError::Rejected(message)),
        }
    }
    .await;
    let _ = done.send(result).await;
}
