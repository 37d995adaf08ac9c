//! The relay's QUIC endpoint: accepts connections, authenticates them by certificate, runs the
//! hello through [`RelayConn`], and hands each connection to the enrollment, agent or technician
//! handler. One task per connection: a misbehaving peer is closed without touching the others.

use crate::ca::{Ca, CaError};
use crate::config::{ConfigError, DataDir};
use crate::presence::LocalPresence;
pub use crate::state::{CertCheckHook, State};
use crate::state::{DeviceUploads, UPLOADS_PER_DEVICE};
use crate::store::{CertStatus, Store, StoreError, now_ms};
use crate::{enroll, tech};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tether_net::framed::{read_payload, write_msg};
use tether_net::pki::{self, CertInfo};
use tether_net::tls::{self, TransportOptions};
use tether_protocol::conn::{Close, RelayConn, RelayConnState, Timeouts};
use tether_protocol::identity::Identity;
use tether_protocol::inventory::Limits;
use tether_protocol::message::{
    AgentStream, AgentToRelay, Intent, RelayToAgent, TranscriptChunk, UploadReply, close_code,
};
use tether_protocol::{codec, limits, liveness, text};
use thiserror::Error;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

#[derive(Debug, Error)]
pub enum RelayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Net(#[from] tether_net::NetError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub timeouts: Timeouts,
    /// Fault injection for tests only: applied to every spliced session byte.
    pub splice_filter: Option<crate::state::SpliceFilter>,
    /// New connections allowed per source address.
    pub admission: crate::admission::Limits,
    /// Where the store lives; `None`: the SQLite file in the data directory.
    pub store: Option<crate::store::StoreUrl>,
    /// Tests only: runs (with the certificate's serial) right after a peer's certificate passed
    /// the revocation check at connect, so a test can land a revocation exactly there.
    pub after_cert_check: Option<CertCheckHook>,
    /// Where technicians and agents reach this relay, told to the other relays sharing the
    /// store (`None`: the settings' `public_addr`). Port 0: the port it listens on.
    pub public_addr: Option<String>,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            timeouts: Timeouts::default(),
            splice_filter: None,
            admission: Default::default(),
            store: None,
            after_cert_check: None,
            public_addr: None,
        }
    }
}

/// Handshakes in progress at once; more attempts are refused until some finish.
const MAX_HANDSHAKES: usize = 4096;

/// Concurrent inventory uploads the relay reads; the rest wait (the agents' uploads are patient).
const MAX_CONCURRENT_UPLOADS: usize = 16;
/// Shell transcript streams open at once over all devices. Each is admitted only for a running
/// recorded session of its device (at most two per session, `live::MAX_TRANSCRIPT_STREAMS`).
const MAX_TRANSCRIPT_STREAMS: usize = 1024;
/// How long a stream an agent opens has to send its first frame's header (and a small first
/// frame whole) before it is dropped. Nothing is reserved for it meanwhile.
const FIRST_FRAME: Duration = Duration::from_secs(10);
/// How long an upload's body may take once its turn came.
const UPLOAD_BODY: Duration = Duration::from_secs(60);

/// The keep-alive interval for new connections and the server configuration that carries it:
/// each connection is accepted with the pair read at once, so the interval its `Welcome`
/// announces is the one QUIC runs (see [`liveness::announce_interval`]).
type Keepalive = Arc<std::sync::RwLock<(Duration, Arc<quinn::ServerConfig>)>>;

pub struct Relay {
    state: Arc<State>,
    endpoint: Endpoint,
    /// The server configuration without keep-alive; see [`with_keepalive`].
    base_cfg: quinn::ServerConfig,
    keepalive: Keepalive,
    admission: Arc<std::sync::Mutex<crate::admission::Admission>>,
    handshakes: Arc<tokio::sync::Semaphore>,
}

impl Relay {
    /// Loads the data directory, opens the store and binds the endpoint.
    pub async fn start(data: &DataDir, opts: ServeOptions) -> Result<Self, RelayError> {
        let settings = data.load_settings()?;
        let ca = Ca::load(data)?;
        if ca.renew_server_if_needed(data, &settings.name)? {
            info!("issued a new server certificate for {}", settings.name);
        }
        let signer = crate::ca::GrantSigner::load_or_issue(data, &ca, &settings.name)?;
        let chain = pki::load_certs(&data.server_cert())?;
        let key = pki::load_key(&data.server_key())?;
        let url = opts
            .store
            .clone()
            .unwrap_or_else(|| crate::store::StoreUrl::in_data_dir(data));
        let store = Store::open(&url).await?;
        // With several relays on the store, one at a time evaluates the fleet's alerts.
        let shared = store.cluster().is_some();
        let seat: Arc<dyn crate::alerts::Seat> = if shared {
            Arc::new(crate::cluster::Lead::new(store.clone()))
        } else {
            Arc::new(crate::alerts::SoleRelay)
        };
        let alerts =
            crate::alerts::Alerts::spawn(store.clone(), settings.name.clone(), seat, shared);
        // Liveness is QUIC's keep-alive, at an interval set by the fleet's size (see
        // `tether_protocol::liveness`); `run` adapts it as devices enroll.
        let base_cfg = tls::server_config(
            chain,
            key,
            &ca.cert_der,
            TransportOptions {
                keep_alive: None,
                idle_timeout: Duration::from_secs(15),
            },
        )?;
        let devices = store.device_count().await?;
        let relays = crate::cluster::serving_relays(&store).await;
        let interval = liveness::keepalive_interval_shared(devices, relays);
        let server_cfg = with_keepalive(&base_cfg, interval)?;
        let keepalive: Keepalive = Arc::new(std::sync::RwLock::new((
            interval,
            Arc::new(server_cfg.clone()),
        )));
        info!(
            devices,
            relays,
            "keep-alive every {interval:?}: a silent device is offline within {:?}",
            liveness::offline_within(interval)
        );
        let endpoint =
            Endpoint::server(server_cfg, opts.listen).map_err(|source| RelayError::Bind {
                addr: opts.listen,
                source,
            })?;
        let bound = endpoint.local_addr().map_err(|source| RelayError::Bind {
            addr: opts.listen,
            source,
        })?;
        let me = crate::cluster::Me {
            id: settings.id().to_string(),
            addr: advertised(
                opts.public_addr.as_deref().unwrap_or(&settings.public_addr),
                bound.port(),
            ),
        };
        let presence: Arc<dyn crate::presence::Presence> = if store.cluster().is_some() {
            info!(id = %me.id, addr = %me.addr, "sharing the store with other relays: presence through leases");
            crate::cluster::SharedPresence::start(store.clone(), me.clone()).await
        } else {
            Arc::new(LocalPresence::default())
        };
        Ok(Self {
            state: Arc::new(State {
                store,
                ca,
                signer,
                presence,
                me,
                timeouts: opts.timeouts,
                next_conn_id: AtomicU64::new(1),
                uploads: tokio::sync::Semaphore::new(MAX_CONCURRENT_UPLOADS),
                device_uploads: DeviceUploads::default(),
                // Leave a core to the async workers: decoding a hostile 16 MiB frame costs CPU.
                decoders: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism()
                        .map_or(1, |n| n.get().saturating_sub(1))
                        .max(1),
                ),
                transcript_streams: tokio::sync::Semaphore::new(MAX_TRANSCRIPT_STREAMS),
                live_sessions: Default::default(),
                splice_filter: opts.splice_filter.clone(),
                transcripts: data.transcripts(),
                settings: settings.clone(),
                live: Default::default(),
                alerts,
                after_cert_check: opts.after_cert_check.clone(),
                sweeps: tokio::sync::watch::Sender::new(0),
            }),
            endpoint,
            base_cfg,
            keepalive,
            admission: Arc::new(std::sync::Mutex::new(crate::admission::Admission::new(
                opts.admission,
            ))),
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
        })
    }

    /// Counts the revocation watcher's passes that closed the live connections of newly
    /// revoked certificates (each pass follows a change in the store's revocations).
    pub fn revocation_sweeps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state.sweeps.subscribe()
    }

    pub fn local_addr(&self) -> Result<SocketAddr, RelayError> {
        self.endpoint
            .local_addr()
            .map_err(|source| RelayError::Bind {
                addr: ([0, 0, 0, 0], 0).into(),
                source,
            })
    }

    /// Serves until `shutdown` completes, then closes every connection and the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let watcher = tokio::spawn(watch_revocations(self.state.clone()));
        let toucher = tokio::spawn(touch_online(self.state.clone()));
        let adapter = tokio::spawn(adapt_keepalive(
            self.state.clone(),
            self.keepalive.clone(),
            self.base_cfg.clone(),
        ));
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let remote = incoming.remote_address();
                    let verdict = self
                        .admission
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .handle_attempt(remote.ip(), Instant::now().into_std());
                    if let crate::admission::Verdict::Refuse { log, refused } = verdict {
                        if log {
                            warn!(%remote, refused, "too many new connections from this address; refusing");
                        }
                        incoming.refuse();
                        continue;
                    }
                    let Ok(slot) = self.handshakes.clone().try_acquire_owned() else {
                        warn!(%remote, "too many handshakes in progress; refusing");
                        incoming.refuse();
                        continue;
                    };
                    let state = self.state.clone();
                    let span = info_span!("conn", remote = %remote);
                    let admission = self.admission.clone();
                    let keepalive = self
                        .keepalive
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    tokio::spawn(
                        handle_incoming(state, incoming, keepalive, slot, admission)
                            .instrument(span),
                    );
                }
                () = &mut shutdown => break,
            }
        }
        watcher.abort();
        adapter.abort();
        toucher.abort();
        info!(
            "shutting down: closing {} agent connections",
            self.state.presence.count()
        );
        self.endpoint
            .close(close_code::SHUTDOWN.into(), b"relay shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        self.state.store.close().await;
    }
}

/// `addr` with port 0 replaced by `port` (the one the relay is bound to).
fn advertised(addr: &str, port: u16) -> String {
    match addr.rsplit_once(':') {
        Some((host, "0")) => format!("{host}:{port}"),
        _ => addr.to_string(),
    }
}

/// `base` with QUIC keep-alives every `interval` and the idle timeout that goes with it.
fn with_keepalive(
    base: &quinn::ServerConfig,
    interval: Duration,
) -> Result<quinn::ServerConfig, RelayError> {
    let mut cfg = base.clone();
    cfg.transport_config(tls::transport(TransportOptions {
        keep_alive: Some(interval),
        idle_timeout: liveness::idle_timeout(interval),
    })?);
    Ok(cfg)
}

/// How often the fleet's size is re-read to adapt the keep-alive interval.
const FLEET_POLL: Duration = Duration::from_secs(60);

/// Keeps the keep-alive interval of new connections in step with the number of devices (and of
/// relays sharing them).
async fn adapt_keepalive(state: Arc<State>, keepalive: Keepalive, base: quinn::ServerConfig) {
    loop {
        tokio::time::sleep(FLEET_POLL).await;
        let devices = match state.store.device_count().await {
            Ok(n) => n,
            Err(e) => {
                debug!("store error counting devices: {e}");
                continue;
            }
        };
        let relays = crate::cluster::serving_relays(&state.store).await;
        let next = liveness::keepalive_interval_shared(devices, relays);
        let interval = keepalive.read().unwrap_or_else(|e| e.into_inner()).0;
        if next == interval {
            continue;
        }
        match with_keepalive(&base, next) {
            Ok(cfg) => {
                *keepalive.write().unwrap_or_else(|e| e.into_inner()) = (next, Arc::new(cfg));
                info!(
                    devices,
                    relays,
                    "keep-alive now every {next:?} for new connections: offline within {:?}",
                    liveness::offline_within(next)
                );
            }
            Err(e) => warn!("cannot change the keep-alive interval: {e}"),
        }
    }
}

/// How often the store is checked for new revocations (`tether-relay revoke` runs as another
/// process): a revoked peer is disconnected within this time.
const REVOCATION_POLL: Duration = Duration::from_millis(250);
/// The same, while revocations also arrive as wake-ups from the store (`LISTEN`).
const REVOCATION_POLL_LISTENING: Duration = Duration::from_secs(1);

/// Closes the live connections of certificates revoked while they were connected.
async fn watch_revocations(state: Arc<State>) {
    let mut seen = match state.store.revocation_mark().await {
        Ok(m) => m,
        Err(e) => {
            warn!("store error reading revocations: {e}");
            (0, 0)
        }
    };
    // Several relays: a revocation made anywhere wakes this one at once (PostgreSQL NOTIFY);
    // the polling stays as the safety net for wake-ups lost while the listener reconnects.
    let mut changes = match state.store.cluster() {
        Some(c) => match c.changes().await {
            Ok(ch) => Some(ch),
            Err(e) => {
                warn!("cannot listen for changes from other relays (polling instead): {e}");
                None
            }
        },
        None => None,
    };
    loop {
        match changes.as_mut() {
            Some(ch) => tokio::select! {
                () = tokio::time::sleep(REVOCATION_POLL_LISTENING) => {}
                woke = ch.next() => {
                    if let Err(e) = woke {
                        debug!("listening for changes: {e}");
                        tokio::time::sleep(REVOCATION_POLL).await;
                    }
                }
            },
            None => tokio::time::sleep(REVOCATION_POLL).await,
        }
        let mark = match state.store.revocation_mark().await {
            Ok(m) => m,
            Err(e) => {
                debug!("store error reading revocations: {e}");
                continue;
            }
        };
        if mark == seen {
            continue;
        }
        seen = mark;
        let live: Vec<(u64, String, Connection)> = match state.live.lock() {
            Ok(l) => l
                .iter()
                .map(|(id, (serial, c))| (*id, serial.clone(), c.clone()))
                .collect(),
            Err(_) => continue,
        };
        for (_, serial, conn) in live {
            if matches!(
                state.store.certificate_status(&serial).await,
                Ok(CertStatus::Revoked | CertStatus::Unknown)
            ) {
                info!(remote = %conn.remote_address(), serial, "certificate revoked: disconnecting");
                conn.close(close_code::REVOKED.into(), b"certificate revoked");
            }
        }
        state.sweeps.send_modify(|n| *n += 1);
    }
}

/// Keeps a connection in [`State::live`] while it exists.
struct LiveGuard<'a> {
    state: &'a State,
    id: u64,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut l) = self.state.live.lock() {
            l.remove(&self.id);
        }
    }
}

fn close(conn: &Connection, c: &Close) {
    conn.close(c.code.into(), c.reason.as_bytes());
}

async fn handle_incoming(
    state: Arc<State>,
    incoming: quinn::Incoming,
    (interval, cfg): (Duration, Arc<quinn::ServerConfig>),
    slot: tokio::sync::OwnedSemaphorePermit,
    admission: Arc<std::sync::Mutex<crate::admission::Admission>>,
) {
    let connecting = match incoming.accept_with(cfg) {
        Ok(c) => c,
        Err(e) => {
            info!("handshake failed: {e}");
            return;
        }
    };
    let conn = match tokio::time::timeout(state.timeouts.hello, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // Most often a client certificate our CA did not issue.
            info!("handshake failed: {e}");
            return;
        }
        Err(_) => {
            info!("handshake did not complete in time");
            return;
        }
    };
    let cert = match peer_cert(&conn) {
        Ok(c) => c,
        Err(close_with) => {
            warn!("refused: {}", close_with.reason);
            close(&conn, &close_with);
            return;
        }
    };
    let identity = cert.as_ref().map(|c| c.identity.clone());
    // Registered as live *before* the revocation check: a revocation that lands after the check
    // is then found by the watcher, whose pass follows it. (Checked first and registered after,
    // a revocation in between was missed for good.)
    let _live = cert.as_ref().map(|c| {
        let id = state
            .next_conn_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut l) = state.live.lock() {
            l.insert(id, (c.serial.clone(), conn.clone()));
        }
        LiveGuard { state: &state, id }
    });
    if let Some(c) = &cert {
        if let Err(close_with) = check_not_revoked(&state, c).await {
            warn!("refused: {}", close_with.reason);
            close(&conn, &close_with);
            return;
        }
        if let Some(hook) = &state.after_cert_check {
            hook(c.serial.clone()).await;
        }
    }
    let mut machine = RelayConn::new(Instant::now().into_std(), state.timeouts, identity.clone());
    machine.set_keepalive(interval);

    // The hello must arrive before the machine's deadline.
    let deadline = machine
        .poll_timeout()
        .map(Instant::from_std)
        .unwrap_or_else(Instant::now);
    let first = tokio::time::timeout_at(deadline, async {
        let (send, mut recv) = conn.accept_bi().await?;
        let payload = read_payload(&mut recv, limits::HELLO).await?;
        Ok::<_, tether_net::NetError>((send, recv, payload))
    })
    .await;
    let (mut send, recv, payload) = match first {
        Err(_) => {
            machine.handle_timeout(Instant::now().into_std());
            if let Some(c) = machine.poll_close() {
                info!("closed: {}", c.reason);
                close(&conn, c);
            }
            return;
        }
        Ok(Err(e)) => {
            info!("closed before hello: {e}");
            conn.close(close_code::PROTOCOL_ERROR.into(), e.to_string().as_bytes());
            return;
        }
        Ok(Ok((_, _, None))) => {
            conn.close(
                close_code::PROTOCOL_ERROR.into(),
                b"stream ended without hello",
            );
            return;
        }
        Ok(Ok((send, recv, Some(payload)))) => (send, recv, payload),
    };
    let reply = machine.handle_hello(Instant::now().into_std(), &payload);
    let written = write_msg(&mut send, &reply, limits::HELLO).await;
    if let Some(c) = machine.poll_close() {
        info!("refused: {}", c.reason);
        // Let the refusal reach the peer before the connection goes.
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        close(&conn, c);
        return;
    }
    if let Err(e) = written {
        debug!("hello reply not delivered: {e}");
        return;
    }
    let RelayConnState::Established { intent, .. } = machine.state().clone() else {
        return;
    };
    // Past the hello: no longer a handshake in progress.
    drop(slot);
    // A peer that proves who it is (certificate, or a valid token below) gives its admission
    // token back: the per-address limit is for attempts that fail.
    let authenticated = || {
        admission
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handle_authenticated(conn.remote_address().ip());
    };
    if identity.is_some() {
        authenticated();
    }
    match (intent, identity) {
        (Intent::Enroll, _) => {
            if enroll::handle(&state, send, recv).await {
                authenticated();
            }
            conn.close(close_code::NORMAL.into(), b"done");
        }
        (Intent::Agent, Some(Identity::Device { id, .. })) => {
            run_agent(&state, &conn, machine, &id, send, recv)
                .instrument(info_span!("agent", device = %id))
                .await;
        }
        (Intent::Technician, Some(Identity::Technician { name, role })) => {
            let caps = crate::broker::Caps {
                asking: machine.peer_takes_asking(),
                follows: machine.peer_follows_elsewhere(),
            };
            run_technician(&state, &conn, &name, role, caps)
                .instrument(info_span!("technician", %name))
                .await;
        }
        // RelayConn only establishes intents that match the certificate.
        _ => conn.close(close_code::PROTOCOL_ERROR.into(), b"internal error"),
    }
}

/// Reads the peer's certificate, if any, and checks it is a Tether identity.
fn peer_cert(conn: &Connection) -> Result<Option<CertInfo>, Close> {
    let Some(chain) = tls::peer_certs(conn) else {
        return Ok(None);
    };
    let Some(leaf) = chain.first() else {
        return Ok(None);
    };
    pki::cert_info(leaf).map(Some).map_err(|e| Close {
        code: close_code::REFUSED,
        reason: e.to_string(),
    })
}

/// Refuses a revoked certificate, and one the store has no record of (every certificate the
/// relay issues is recorded before it is handed out).
async fn check_not_revoked(state: &State, info: &CertInfo) -> Result<(), Close> {
    match state.store.certificate_status(&info.serial).await {
        Ok(CertStatus::Valid) => Ok(()),
        Ok(CertStatus::Revoked) => Err(Close {
            code: close_code::REVOKED,
            reason: format!("certificate of {} was revoked", info.identity),
        }),
        Ok(CertStatus::Unknown) => Err(Close {
            code: close_code::REVOKED,
            reason: format!(
                "certificate of {} is no longer valid (replaced by a newer enrollment)",
                info.identity
            ),
        }),
        Err(e) => {
            warn!("store error checking revocation: {e}");
            // Not a shutdown: the relay runs, its store does not answer (clients retry).
            Err(Close {
                code: close_code::REFUSED,
                reason: "relay store unavailable; try again shortly".into(),
            })
        }
    }
}

/// How often the `last_seen` of every online device is written through to the store.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Writes `last_seen` of all online devices in one transaction a minute (connects and
/// disconnects write their own at once), rather than one write per agent.
async fn touch_online(state: Arc<State>) {
    loop {
        tokio::time::sleep(TOUCH_EVERY).await;
        let online = state.presence.devices();
        if let Err(e) = state.store.touch_devices(&online, now_ms()).await {
            warn!(
                "store error updating last seen of {} devices: {e}",
                online.len()
            );
        }
    }
}

async fn run_agent(
    state: &Arc<State>,
    conn: &Connection,
    mut machine: RelayConn,
    device: &str,
    mut send: SendStream,
    recv: RecvStream,
) {
    let conn_id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    state.presence.register(device, conn_id, conn.clone());
    let _ = state.store.touch_device(device, now_ms()).await;
    info!("online");

    let mut reader = tether_net::framed::FrameReader::spawn(recv, limits::CONTROL);

    let why = loop {
        let wake = machine
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            frame = reader.rx.recv() => {
                let now = Instant::now();
                match frame {
                    Some(Ok(Some(payload))) => {
                        machine.handle_frame(now.into_std());
                        match codec::from_payload::<AgentToRelay>(&payload) {
                            Ok(AgentToRelay::Heartbeat { seq }) => {
                                if let Err(e) = write_msg(&mut send, &RelayToAgent::HeartbeatAck { seq }, limits::CONTROL).await {
                                    break format!("lost: {e}");
                                }
                            }
                            Ok(AgentToRelay::InventoryHash { hash }) => {
                                let current = match state.store.inventory_hash(device).await {
                                    Ok(h) => h == Some(hash),
                                    Err(e) => {
                                        warn!("store error: {e}");
                                        true // ask again on the next connect rather than now
                                    }
                                };
                                if let Err(e) = write_msg(&mut send, &RelayToAgent::InventoryKnown { hash, current }, limits::CONTROL).await {
                                    break format!("lost: {e}");
                                }
                            }
                            Ok(AgentToRelay::Status(s)) => {
                                let hostname = text::clean(&s.hostname, 255);
                                let os = text::clean(&s.os, 255);
                                let version = text::clean(&s.agent_version, 64);
                                if let Err(e) = state.store.update_device_status(device, &hostname, &os, &version, now_ms()).await {
                                    warn!("store error: {e}");
                                }
                            }
                            Ok(AgentToRelay::SessionEndedByUser { session_id }) => {
                                match state.store.session_ended_by_user(&session_id, device).await {
                                    Ok(true) => info!(session = %session_id, device, "session ended by the user"),
                                    Ok(false) => warn!(device, "agent reported the end of an unknown session"),
                                    Err(e) => warn!("store error: {e}"),
                                }
                            }
                            Ok(AgentToRelay::Rating { session_id, rating, comment }) => {
                                let comment = text::clean(&comment, tether_protocol::consent::MAX_COMMENT);
                                if !(1..=5).contains(&rating) {
                                    machine.handle_protocol_error(format!("rating {rating} out of range"));
                                } else {
                                    match state.store.rate_session(&session_id, device, rating, &comment).await {
                                        Ok(true) => info!(session = %session_id, device, rating, "session rated"),
                                        Ok(false) => warn!(device, "agent rated an unknown session"),
                                        Err(e) => warn!("store error: {e}"),
                                    }
                                }
                            }
                            Ok(AgentToRelay::SessionAction { session_id, action }) => {
                                // Only for a session running on this device, capped and rate-limited.
                                let action = match state.live_sessions.action(&session_id, device) {
                                    crate::live::Action::Record => Some(text::clean(&action, tether_protocol::message::MAX_ACTION)),
                                    crate::live::Action::Drop { note } => {
                                        if let Some(n) = &note {
                                            warn!(session = %session_id, device, "{n}");
                                        }
                                        note
                                    }
                                    crate::live::Action::Unknown => {
                                        debug!(device, "action reported for a session not running on this device: ignored");
                                        None
                                    }
                                };
                                if let Some(action) = action {
                                    match state.store.session_action(&session_id, device, &action, now_ms()).await {
                                        Ok(true) => {}
                                        Ok(false) => warn!(device, "agent reported an action in an unknown session"),
                                        Err(e) => warn!("store error: {e}"),
                                    }
                                }
                            }
                            Ok(AgentToRelay::Health(report)) => state.alerts.ingest(device, *report).await,
                            Err(e) => machine.handle_protocol_error(format!("bad message from agent: {e}")),
                        }
                    }
                    Some(Ok(None)) => break "agent closed its control stream".to_string(),
                    Some(Err(e)) => {
                        if matches!(e, tether_net::NetError::Protocol(_)) {
                            machine.handle_protocol_error(e.to_string());
                        } else {
                            break e.to_string();
                        }
                    }
                    None => break "reader ended".to_string(),
                }
            }
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let state = state.clone();
                    let device = device.to_string();
                    tokio::spawn(async move { agent_stream(&state, &device, send, recv).await }.in_current_span());
                }
                Err(e) => break tether_net::NetError::from_connection(&e).to_string(),
            },
            () = tokio::time::sleep_until(wake) => machine.handle_timeout(Instant::now().into_std()),
        }
        if let Some(c) = machine.poll_close() {
            close(conn, c);
            break c.reason.clone();
        }
    };
    drop(reader);
    if state.presence.unregister(device, conn_id) {
        let _ = state.store.touch_device(device, now_ms()).await;
        info!("offline: {why}");
    } else {
        debug!("superseded connection ended: {why}");
    }
}

/// An upload's first frame: decoded already (small), or still to be read (large).
enum UploadBody {
    Decoded {
        hash: u64,
        inventory: Box<tether_protocol::inventory::Inventory>,
    },
    Unread {
        recv: RecvStream,
        len: usize,
    },
}

/// A stream the agent opened: an inventory upload, or a shell transcript.
///
/// Nothing is reserved for a stream before its first frame's header arrived (within
/// [`FIRST_FRAME`]): idle streams cost no upload slot. A frame over the control limit can only
/// be an upload; it waits for its device's turn (one at a time per device) and then for one of
/// the [`MAX_CONCURRENT_UPLOADS`] slots before its body is read. A small first frame is read
/// and decoded at once: a transcript goes its own way with its own budget, never through an
/// upload slot.
async fn agent_stream(state: &State, device: &str, mut send: SendStream, mut recv: RecvStream) {
    let deadline = Instant::now() + FIRST_FRAME;
    let mut header = [0u8; tether_protocol::frame::HEADER_LEN];
    match tokio::time::timeout_at(deadline, recv.read_exact(&mut header)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!("agent stream ended before its first frame: {e}");
            return;
        }
        Err(_) => {
            debug!("agent stream sent no first frame within {FIRST_FRAME:?}: dropped");
            let _ = recv.stop(1u32.into());
            let _ = send.reset(1u32.into());
            return;
        }
    }
    let len = match tether_protocol::frame::payload_len(header, limits::BULK) {
        Ok(len) => len,
        Err(e) => {
            warn!("bad upload: {e}");
            upload_reply(
                &mut send,
                &UploadReply::Rejected {
                    message: e.to_string(),
                },
            )
            .await;
            return;
        }
    };
    if len > limits::CONTROL {
        upload(state, device, send, UploadBody::Unread { recv, len }).await;
        return;
    }
    let mut payload = vec![0u8; len];
    match tokio::time::timeout_at(deadline, recv.read_exact(&mut payload)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!("agent stream ended in its first frame: {e}");
            return;
        }
        Err(_) => {
            debug!("agent stream's first frame not received within {FIRST_FRAME:?}: dropped");
            let _ = recv.stop(1u32.into());
            let _ = send.reset(1u32.into());
            return;
        }
    }
    // At most a control frame: decoding it is quick (lists are bounded while decoding).
    match codec::from_payload::<AgentStream>(&payload) {
        Ok(AgentStream::Transcript { session_id }) => {
            drop(payload);
            transcript(state, device, &session_id, recv).await;
            let _ = send.finish();
        }
        Ok(AgentStream::InventoryUpload { hash, inventory }) => {
            drop(payload);
            upload(state, device, send, UploadBody::Decoded { hash, inventory }).await;
        }
        Err(e) => {
            warn!("bad upload: {e}");
            upload_reply(
                &mut send,
                &UploadReply::Rejected {
                    message: e.to_string(),
                },
            )
            .await;
        }
    }
}

async fn upload_reply(send: &mut SendStream, reply: &UploadReply) {
    if write_msg(send, reply, limits::CONTROL).await.is_ok() {
        let _ = send.finish();
    }
}

/// Reads (when large), decodes and cleans an inventory off the async workers, and stores it.
async fn upload(state: &State, device: &str, mut send: SendStream, body: UploadBody) {
    let Some(ticket) = state.device_uploads.admit(device) else {
        warn!("more than {UPLOADS_PER_DEVICE} uploads from this device at once: refused");
        upload_reply(
            &mut send,
            &UploadReply::Rejected {
                message: "another upload from this device is in progress; will retry".into(),
            },
        )
        .await;
        return;
    };
    let Ok(_turn) = ticket.turn.acquire().await else {
        return;
    };
    let Ok(_slot) = state.uploads.acquire().await else {
        return;
    };
    let decoded = match body {
        UploadBody::Decoded { hash, inventory } => Ok((hash, inventory)),
        UploadBody::Unread { mut recv, len } => {
            let mut payload = vec![0u8; len];
            match tokio::time::timeout(UPLOAD_BODY, recv.read_exact(&mut payload)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!("upload ended early: {e}");
                    return;
                }
                Err(_) => {
                    warn!("upload not received within {UPLOAD_BODY:?}");
                    let _ = recv.stop(1u32.into());
                    let _ = send.reset(1u32.into());
                    return;
                }
            }
            drop(recv);
            // Decoding up to 16 MiB is CPU work: on the blocking pool, a few at a time, so the
            // async workers keep serving technicians and agents' keep-alives.
            let Ok(_cpu) = state.decoders.acquire().await else {
                return;
            };
            match tokio::task::spawn_blocking(move || codec::from_payload::<AgentStream>(&payload))
                .await
            {
                Ok(Ok(AgentStream::InventoryUpload { hash, inventory })) => Ok((hash, inventory)),
                Ok(Ok(AgentStream::Transcript { .. })) => {
                    Err("a transcript's first frame over the control limit".to_string())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => {
                    warn!("upload decoding failed: {e}");
                    return;
                }
            }
        }
    };
    let (hash, inventory) = match decoded {
        Ok(x) => x,
        Err(message) => {
            warn!("bad upload: {message}");
            upload_reply(&mut send, &UploadReply::Rejected { message }).await;
            return;
        }
    };
    // Untrusted: bound and clean every string and list before storing anything (off the async
    // workers too: 20,000 packages of 512-byte strings).
    let cleaned = tokio::task::spawn_blocking(move || {
        let mut inventory = inventory;
        let cleaned = inventory.sanitize(&Limits::default());
        (inventory, cleaned)
    })
    .await;
    let Ok((inventory, cleaned)) = cleaned else {
        warn!("upload cleaning failed");
        return;
    };
    if !cleaned.is_empty() {
        info!("inventory cleaned: {}", cleaned.join("; "));
    }
    let reply = match state
        .store
        .ingest_inventory(device, hash, &inventory, now_ms())
        .await
    {
        Ok(changes) => {
            info!(
                changes,
                packages = inventory.software.len(),
                "inventory stored"
            );
            UploadReply::Ack { hash, changes }
        }
        Err(e) => {
            warn!("store error: {e}");
            UploadReply::Rejected {
                message: "relay store unavailable; will retry".into(),
            }
        }
    };
    upload_reply(&mut send, &reply).await;
}

/// How often an idle transcript stream checks that its session still runs.
const TRANSCRIPT_CHECK: Duration = Duration::from_secs(1);

/// Appends a recorded shell's output to `DATA/transcripts/<session>.log`, for a session running
/// on this device whose grant asked for recording, up to [`tether_protocol::message::MAX_TRANSCRIPT`] bytes per session
/// over all its streams (a recorded shell's output is bounded by what a technician can read;
/// past it the relay stops keeping, and the agent ends the shell, since what is seen is what is
/// kept). A stream of a session that ended more than `live::GRACE` ago is cut.
async fn transcript(state: &State, device: &str, session_id: &str, recv: RecvStream) {
    let refuse = |mut recv: RecvStream, why: &dyn std::fmt::Display| {
        warn!(device, "transcript refused: {why}");
        let _ = recv.stop(1u32.into());
    };
    let Ok(_budget) = state.transcript_streams.try_acquire() else {
        refuse(recv, &"too many transcript streams on the relay");
        return;
    };
    let admitted = match state.live_sessions.open_transcript(session_id, device) {
        Ok(t) => t,
        Err(why) => {
            refuse(recv, &why);
            return;
        }
    };
    if uuid::Uuid::parse_str(session_id).is_err() {
        refuse(recv, &"not a session id");
        return;
    }
    // The registry above decides; the store may not show the session as started yet (the
    // relay records that just after telling the technician it is ready).
    if let Err(e) = state
        .store
        .session_action(
            session_id,
            device,
            "shell transcript recording started",
            now_ms(),
        )
        .await
    {
        warn!("store error: {e}");
    }
    let dir = state.transcripts.clone();
    let path = dir.join(format!("{session_id}.log"));
    let opened = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .await
    }
    .await;
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            warn!("cannot write transcript {}: {e}", path.display());
            let _ = { recv }.stop(1u32.into());
            return;
        }
    };
    let mut reader = tether_net::framed::FrameReader::spawn(recv, limits::CONTROL);
    let mut written = 0u64;
    let mut cut = None;
    loop {
        let frame = tokio::select! {
            f = reader.rx.recv() => f,
            () = tokio::time::sleep(TRANSCRIPT_CHECK) => {
                if admitted.open() {
                    continue;
                }
                cut = Some("the session ended");
                break;
            }
        };
        let Some(Ok(Some(p))) = frame else {
            break;
        };
        let Ok(TranscriptChunk(data)) = codec::from_payload(&p) else {
            break;
        };
        match admitted.claim(data.len() as u64) {
            crate::live::Chunk::Write => {}
            crate::live::Chunk::Full => {
                cut = Some("the session's size limit");
                break;
            }
            crate::live::Chunk::Ended => {
                cut = Some("the session ended");
                break;
            }
        }
        if tokio::io::AsyncWriteExt::write_all(&mut file, &data)
            .await
            .is_err()
        {
            break;
        }
        written += data.len() as u64;
    }
    // Dropping the reader stops the stream: the agent learns the relay no longer keeps it.
    drop(reader);
    let _ = tokio::io::AsyncWriteExt::flush(&mut file).await;
    let note = format!(
        "shell transcript {} ({written} bytes{})",
        path.display(),
        cut.map(|c| format!(", cut at {c}")).unwrap_or_default()
    );
    if let Err(e) = state
        .store
        .session_action(session_id, device, &note, now_ms())
        .await
    {
        warn!("store error: {e}");
    }
}

async fn run_technician(
    state: &Arc<State>,
    conn: &Connection,
    name: &str,
    role: tether_protocol::identity::Role,
    caps: crate::broker::Caps,
) {
    debug!(%role, "connected");
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                // One task per request stream; quinn bounds how many streams a peer may open.
                let state = state.clone();
                let name = name.to_string();
                tokio::spawn(
                    async move { tech::handle_stream(&state, &name, role, caps, send, recv).await }
                        .in_current_span(),
                );
            }
            Err(e) => {
                debug!(
                    "disconnected: {}",
                    tether_net::NetError::from_connection(&e)
                );
                break;
            }
        }
    }
}
