//! The client side of a relay connection, shared by the agent and the technician client:
//! enrollment with a token, the credentials it leaves on disk, and the hello handshake.

use crate::NetError;
use crate::framed::{read_msg, write_msg};
use crate::pki::{self, PkiError, load_certs, load_key, write_private, write_public};
use crate::tls::{self, TransportOptions};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tether_protocol::conn::{HandshakeError, check_hello_reply};
use tether_protocol::identity::Identity;
use tether_protocol::limits;
use tether_protocol::message::{EnrollReply, EnrollRequest, Hello, HelloReply, Intent, Welcome};
use tether_protocol::token::EnrollToken;
use thiserror::Error;

/// How long a connection attempt may take. A relay that is down never answers (QUIC gets no
/// refusal on loopback or through most firewalls), so this is how soon a command says so; 4 s
/// still allows several lost handshake packets on a slow link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the relay may take to answer the hello once connected (a busy relay is slow, not gone).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("enrollment refused by relay: {0}")]
    EnrollRefused(String),
    #[error("not enrolled: {dir} has no credentials (run enroll with a token from your IT admin)")]
    NotEnrolled { dir: String },
    #[error("credentials in {dir} are damaged: {reason}")]
    BadCredentials { dir: String, reason: String },
    #[error("cannot create a key pair: {0}")]
    Key(String),
}

/// Where the relay is: saved next to the certificate after enrollment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayInfo {
    pub addr: String,
    pub server_name: String,
}

const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
const RELAY_FILE: &str = "relay.json";

/// A client's enrolled identity, as stored in its state or config directory.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub dir: PathBuf,
    pub relay: RelayInfo,
    pub identity: Identity,
    /// Which of several relay addresses is tried first (the last that worked, moved on by
    /// [`Credentials::fail_over`]); shared by clones.
    first: Arc<AtomicUsize>,
}

impl Credentials {
    pub fn exists(dir: &Path) -> bool {
        dir.join(CERT_FILE).exists() && dir.join(KEY_FILE).exists()
    }

    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        if !Self::exists(dir) {
            return Err(ClientError::NotEnrolled {
                dir: dir.display().to_string(),
            });
        }
        let bad = |reason: String| ClientError::BadCredentials {
            dir: dir.display().to_string(),
            reason,
        };
        let relay: RelayInfo = std::fs::read(dir.join(RELAY_FILE))
            .map_err(|e| bad(format!("{RELAY_FILE}: {e}")))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| bad(format!("{RELAY_FILE}: {e}")))
            })?;
        let cert = load_certs(&dir.join(CERT_FILE))?;
        let info = pki::cert_info(&cert[0]).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            relay,
            identity: info.identity,
            first: Arc::default(),
        })
    }

    /// These credentials for the relay at `addr` (another relay of the organisation, where a
    /// request was sent on).
    pub fn at_relay(&self, addr: &str) -> Self {
        Self {
            relay: RelayInfo {
                addr: addr.to_string(),
                server_name: self.relay.server_name.clone(),
            },
            first: Arc::default(),
            ..self.clone()
        }
    }

    /// The connection to the current relay was lost: the next connect starts with the next
    /// relay address, if there are several (a relay that just died would cost a connect
    /// timeout before the others were tried).
    pub fn fail_over(&self) {
        self.first.fetch_add(1, Ordering::Relaxed);
    }

    /// The org CA certificate (DER).
    pub fn ca(&self) -> Result<rustls_pki_types::CertificateDer<'static>, ClientError> {
        Ok(load_certs(&self.dir.join(CA_FILE))?.remove(0))
    }

    /// Our certificate chain and key, for the end-to-end session TLS.
    pub fn identity_material(
        &self,
    ) -> Result<
        (
            Vec<rustls_pki_types::CertificateDer<'static>>,
            rustls_pki_types::PrivateKeyDer<'static>,
        ),
        ClientError,
    > {
        Ok((
            load_certs(&self.dir.join(CERT_FILE))?,
            load_key(&self.dir.join(KEY_FILE))?,
        ))
    }

    pub fn quic_config(&self, opts: TransportOptions) -> Result<quinn::ClientConfig, ClientError> {
        let ca = load_certs(&self.dir.join(CA_FILE))?;
        let chain = load_certs(&self.dir.join(CERT_FILE))?;
        let key = load_key(&self.dir.join(KEY_FILE))?;
        Ok(tls::client_config(&ca[0], chain, key, opts)?)
    }

    fn save(
        dir: &Path,
        relay: &RelayInfo,
        key_pem: &str,
        cert_pem: &str,
        ca_pem: &str,
    ) -> Result<(), ClientError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        write_private(&dir.join(KEY_FILE), key_pem.as_bytes())?;
        write_public(&dir.join(CERT_FILE), cert_pem.as_bytes())?;
        write_public(&dir.join(CA_FILE), ca_pem.as_bytes())?;
        let relay_json = serde_json::to_vec_pretty(relay).unwrap_or_default();
        write_public(&dir.join(RELAY_FILE), &relay_json)?;
        Ok(())
    }
}

/// Resolves `host:port`.
pub async fn resolve(addr: &str) -> Result<SocketAddr, NetError> {
    let unreachable = |reason: String| NetError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| unreachable("name did not resolve".into()))
}

/// Opens a QUIC connection and completes the TLS handshake.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    server_name: &str,
    config: quinn::ClientConfig,
) -> Result<Connection, NetError> {
    let connecting = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|e| NetError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(match NetError::from_connection(&e) {
            NetError::Timeout(_) => NetError::Unreachable {
                addr: addr.to_string(),
                reason: "no answer (is the relay running and reachable?)".into(),
            },
            other => other,
        }),
        Err(_) => Err(NetError::Unreachable {
            addr: addr.to_string(),
            reason: format!(
                "no answer within {} s (is the relay running and reachable?)",
                CONNECT_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// Opens the control stream, says hello and reads the relay's answer.
///
/// This is where a refused client certificate first shows (TLS 1.3 lets `connect` succeed):
/// the error comes back as [`NetError::AuthRejected`].
pub async fn handshake(
    conn: &Connection,
    hello: &Hello,
) -> Result<(Welcome, SendStream, RecvStream), NetError> {
    let fut = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        write_msg(&mut send, hello, limits::HELLO).await?;
        let reply: HelloReply = read_msg(&mut recv, limits::HELLO).await?;
        match check_hello_reply(reply) {
            Ok(w) => Ok((w, send, recv)),
            Err(HandshakeError::Refused(r)) => Err(NetError::Refused(r.message)),
            Err(e) => Err(NetError::Protocol(e.to_string())),
        }
    };
    match tokio::time::timeout(HELLO_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(NetError::Timeout("relay did not answer the hello".into())),
    }
}

/// Connects with stored credentials and completes the hello. With several relay addresses (or
/// a name with several addresses), tries each in turn, starting with the last that worked,
/// until one answers; an error every relay would give (a refused certificate) ends the tries.
pub async fn connect_with_credentials(
    creds: &Credentials,
    intent: Intent,
    software: &str,
    opts: TransportOptions,
) -> Result<(Endpoint, Connection, Welcome, SendStream, RecvStream), ClientError> {
    let (mut candidates, mut last) = candidates(&creds.relay.addr).await;
    if !candidates.is_empty() {
        let n = candidates.len();
        candidates.rotate_left(creds.first.load(Ordering::Relaxed) % n);
    }
    let several = candidates.len() > 1;
    for (k, addr) in candidates.into_iter().enumerate() {
        match connect_one(creds, addr, intent, software, opts).await {
            Ok(c) => {
                if k > 0 {
                    creds.first.fetch_add(k, Ordering::Relaxed);
                }
                return Ok(c);
            }
            Err(ClientError::Net(e)) if !e.is_auth() => {
                if several {
                    tracing::info!("relay {addr}: {e}; trying the next relay");
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(ClientError::Net(last.unwrap_or_else(|| {
        NetError::Unreachable {
            addr: creds.relay.addr.clone(),
            reason: "no relay address".into(),
        }
    })))
}

/// Every address of every relay in `list` ([`tether_protocol::token::relay_addrs`]), and the
/// last resolution error (a name that no longer resolves while the others do is skipped).
async fn candidates(list: &str) -> (Vec<SocketAddr>, Option<NetError>) {
    let mut out = Vec::new();
    let mut last = None;
    for relay in tether_protocol::token::relay_addrs(list) {
        match tokio::net::lookup_host(relay).await {
            Ok(addrs) => {
                for a in addrs {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Err(e) => {
                last = Some(NetError::Unreachable {
                    addr: relay.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
    (out, last)
}

async fn connect_one(
    creds: &Credentials,
    addr: SocketAddr,
    intent: Intent,
    software: &str,
    opts: TransportOptions,
) -> Result<(Endpoint, Connection, Welcome, SendStream, RecvStream), ClientError> {
    let endpoint = tls::client_endpoint(addr)?;
    let conn = connect(
        &endpoint,
        addr,
        &creds.relay.server_name,
        creds.quic_config(opts)?,
    )
    .await?;
    let (welcome, send, recv) = handshake(&conn, &Hello::new(intent, software)).await?;
    Ok((endpoint, conn, welcome, send, recv))
}

/// Enrolls with a one-time token: makes a key pair here, sends only a CSR, and stores the
/// certificate the relay's CA issues. Returns the identity the relay assigned.
pub async fn enroll(
    token: &EnrollToken,
    dir: &Path,
    hostname: &str,
    software: &str,
) -> Result<Identity, ClientError> {
    let key = rcgen::KeyPair::generate().map_err(|e| ClientError::Key(e.to_string()))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|csr| csr.pem())
        .map_err(|e| ClientError::Key(e.to_string()))?;

    let (candidates, mut last) = candidates(&token.relay_addr).await;
    let mut connected = None;
    for addr in candidates {
        let endpoint = tls::client_endpoint(addr)?;
        let config = tls::enroll_client_config(token.ca_fingerprint, TransportOptions::default())?;
        match connect(&endpoint, addr, &token.server_name, config).await {
            Ok(conn) => {
                connected = Some((endpoint, conn));
                break;
            }
            Err(e) if e.is_auth() => return Err(e.into()),
            Err(e) => last = Some(e),
        }
    }
    let Some((endpoint, conn)) = connected else {
        return Err(ClientError::Net(last.unwrap_or_else(|| {
            NetError::Unreachable {
                addr: token.relay_addr.clone(),
                reason: "no relay address".into(),
            }
        })));
    };
    let (_welcome, mut send, mut recv) =
        handshake(&conn, &Hello::new(Intent::Enroll, software)).await?;
    write_msg(
        &mut send,
        &EnrollRequest {
            token_secret: token.secret,
            csr_pem: csr,
            hostname: hostname.to_string(),
        },
        limits::ENROLL,
    )
    .await?;
    let reply: EnrollReply = read_msg(&mut recv, limits::ENROLL).await?;
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;
    match reply {
        EnrollReply::Refused { message, .. } => Err(ClientError::EnrollRefused(message)),
        EnrollReply::Issued {
            identity,
            cert_pem,
            ca_pem,
        } => {
            // Check what we were given before storing it: the CA must be the pinned one and the
            // certificate must carry the identity the relay claims.
            let ca = pki::certs_from_pem(ca_pem.as_bytes(), "issued CA")?;
            if pki::fingerprint(&ca[0]) != token.ca_fingerprint {
                return Err(ClientError::EnrollRefused(
                    "relay returned a CA that does not match the token".into(),
                ));
            }
            let cert = pki::certs_from_pem(cert_pem.as_bytes(), "issued certificate")?;
            let info = pki::cert_info(&cert[0])?;
            if info.identity != identity {
                return Err(ClientError::EnrollRefused(
                    "issued certificate does not match the identity the relay announced".into(),
                ));
            }
            let relay = RelayInfo {
                addr: token.relay_addr.clone(),
                server_name: token.server_name.clone(),
            };
            Credentials::save(dir, &relay, &key.serialize_pem(), &cert_pem, &ca_pem)?;
            Ok(identity)
        }
    }
}
