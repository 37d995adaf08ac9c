//! The agent's side of a screen session: check the relay-signed grant, run TLS 1.3 as server
//! over the relay's splice (requiring the technician's org certificate), then serve the
//! technician's messages within the grant's permissions, each family by a module of its own:
//! the desktop (screen, input, clipboard: [`desktop`]), shells and commands ([`jobs`]) and file
//! transfers ([`transfers`]).

use crate::account::RunAs;
use crate::consent::Consent;
use quinn::{RecvStream, SendStream};
use tether_net::NetError;
use tether_net::client::{ClientError, Credentials};
use tether_net::framed::{read_msg, write_msg};
use tether_net::pki::{self, PkiError};
use tether_protocol::codec::{self, CodecError, Decoded};
use tether_protocol::consent::Outcome;
use tether_protocol::frame::{self, FrameError};
use tether_protocol::identity::Identity;
use tether_protocol::limits;
use tether_protocol::session::{
    GrantError, OfferReply, RefuseKind, RelayStream, SessionGate, SessionGrant, ToAgent, ToViewer,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

mod desktop;
mod jobs;
mod transfers;

use desktop::{Screen, clipboard_message, screen_message};
use jobs::{Shells, shell_message};
use transfers::{Transfers, file_message};

/// Why a session offer is refused before anyone is asked.
#[derive(Debug, Error)]
pub enum OfferError {
    #[error(transparent)]
    Credentials(#[from] ClientError),
    #[error(transparent)]
    Signer(#[from] PkiError),
    #[error("session grant is not signed by this organisation")]
    NotSigned,
    #[error(transparent)]
    Decode(#[from] CodecError),
    #[error(transparent)]
    Grant(#[from] GrantError),
}

/// Why an accepted session ended early.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Credentials(#[from] ClientError),
    #[error(transparent)]
    Tls(#[from] NetError),
    #[error("end-to-end TLS failed (relay or peer tampering?): {0}")]
    Handshake(std::io::Error),
    #[error("technician presented no certificate")]
    NoPeerCertificate,
    #[error(transparent)]
    PeerCertificate(#[from] PkiError),
    #[error("session peer is {0}, not the granted technician")]
    WrongPeer(String),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("session writer ended")]
    WriterEnded,
}

/// Why the end-to-end session channel broke. Only data failing TLS's integrity check may be
/// tampering; a reset stream or a lost connection is the technician or the relay going away.
#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("session channel failed its integrity check (relay or peer tampering?): {0}")]
    Integrity(std::io::Error),
    #[error("the technician's side closed the session channel: {0}")]
    PeerClosed(std::io::Error),
    #[error("connection to the relay lost: {0}")]
    RelayLost(std::io::Error),
    #[error("session channel broken: {0}")]
    Broken(std::io::Error),
    #[error("{0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the machine gives sessions: whom shells, commands and file access run as when the
/// grant does not carry the root permission (see [`crate::account`]), and which desktop
/// screen, input and clipboard requests reach.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub session_user: Option<u32>,
    pub desktop: crate::platform::DesktopSpec,
}

/// Handles one stream the relay opened.
pub async fn serve(
    creds: Credentials,
    device_id: String,
    local: Local,
    consent: Consent,
    relay: quinn::Connection,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let offer: RelayStream = match read_msg(&mut recv, limits::CONTROL).await {
        Ok(o) => o,
        Err(e) => {
            warn!("bad stream from relay: {e}");
            return;
        }
    };
    let (grant, signature, signer_cert) = match offer {
        RelayStream::SessionOffer {
            grant,
            signature,
            signer_cert,
        } => (grant, signature, signer_cert),
        RelayStream::EndEngagement {
            technician,
            role,
            ticket,
        } => {
            let reply = match consent.technician_ends(technician, role, ticket).await {
                Some(_) => tether_protocol::session::EngagementReply::Ended,
                None => tether_protocol::session::EngagementReply::NoneOpen,
            };
            let _ = write_msg(&mut send, &reply, limits::CONTROL).await;
            let _ = send.finish();
            return;
        }
        RelayStream::Message(m) => {
            let reply = tokio::select! {
                r = consent.message(m) => r,
                _ = send.stopped() => return,
            };
            let _ = write_msg(&mut send, &reply, limits::CONTROL).await;
            let _ = send.finish();
            return;
        }
    };
    let gate = match check_offer(&creds, &device_id, &grant, &signature, &signer_cert) {
        Ok(g) => g,
        Err(message) => {
            warn!("session refused: {message}");
            let reply = OfferReply::Refuse {
                kind: RefuseKind::Invalid,
                message: message.to_string(),
            };
            let _ = write_msg(&mut send, &reply, limits::CONTROL).await;
            let _ = send.finish();
            return;
        }
    };
    let g = gate.grant().clone();
    // Who the session acts as follows from the signed grant alone: root only with its root
    // permission. Decided before the user is asked, so nobody approves what cannot run.
    let who = if g.permissions.shell || g.permissions.files {
        match RunAs::for_session(g.permissions, local.session_user) {
            Ok(w) => Some(w),
            Err(message) => {
                warn!(session = %g.session_id, "session refused: {message}");
                let reply = OfferReply::Refuse {
                    kind: RefuseKind::Invalid,
                    message: message.to_string(),
                };
                let _ = write_msg(&mut send, &reply, limits::CONTROL).await;
                let _ = send.finish();
                return;
            }
        }
    } else {
        None
    };
    // The user's answer (or the policy, or deny by default). The relay's request waits for it.
    let runs_as = who.as_ref().map(|w| w.account.name.clone());
    let decided = tokio::select! {
        o = consent.offer(g.clone(), runs_as) => o,
        // The technician gave up (or the relay went away): take the prompt off the screen.
        _ = send.stopped() => {
            info!(session = %g.session_id, "request withdrawn before the user answered");
            consent.withdraw(g.session_id.clone()).await;
            return;
        }
    };
    let outcome = decided.outcome;
    if !outcome.accepted() {
        let kind = match outcome {
            Outcome::TimedOut => RefuseKind::TimedOut,
            _ => RefuseKind::Denied,
        };
        let reply = OfferReply::Refuse {
            kind,
            message: outcome.message().to_string(),
        };
        let _ = write_msg(&mut send, &reply, limits::CONTROL).await;
        let _ = send.finish();
        return;
    }
    let unattended = outcome == Outcome::Unattended;
    if write_msg(
        &mut send,
        &OfferReply::Accept {
            unattended,
            engagement: decided.engagement.clone(),
        },
        limits::CONTROL,
    )
    .await
    .is_err()
    {
        return;
    }
    info!(
        session = %g.session_id, technician = %g.technician, permissions = %g.permissions.describe(),
        reason = %g.reason, ticket = %g.ticket, unattended, activity = %g.activity.describe(),
        engagement = %decided.engagement.as_deref().unwrap_or("-"),
        runs_as = %who.as_ref().map(RunAs::describe).unwrap_or_default(), "session accepted"
    );
    let ended_by_user = consent.started(g.clone(), unattended).await;
    let ctx = Ctx {
        consent: &consent,
        relay: &relay,
        who,
        desktop: &local.desktop,
    };
    if let Err(e) = run(&creds, gate, send, recv, ended_by_user, ctx).await {
        warn!(session = %g.session_id, "session ended: {e}");
    } else {
        info!(session = %g.session_id, "session ended");
    }
    consent.ended(g.session_id).await;
}

fn check_offer(
    creds: &Credentials,
    device_id: &str,
    grant: &[u8],
    signature: &[u8],
    signer_cert: &[u8],
) -> Result<SessionGate, OfferError> {
    let ca = creds.ca()?;
    verify_offer(&ca, device_id, grant, signature, signer_cert, now_ms())
}

/// Accepts a grant only when `signer_cert` is this organisation's grant signer (issued by the
/// CA pinned at enrollment, valid now, marked with the grant-signer key usage — a device's or
/// technician's certificate is not one) and `signature` over `grant` verifies with its key.
fn verify_offer(
    ca_der: &[u8],
    device_id: &str,
    grant: &[u8],
    signature: &[u8],
    signer_cert: &[u8],
    now_ms: i64,
) -> Result<SessionGate, OfferError> {
    let now_secs = u64::try_from(now_ms / 1000).unwrap_or(0);
    pki::verify_grant_signer(ca_der, signer_cert, now_secs)?;
    if !pki::verify_signature(signer_cert, grant, signature) {
        return Err(OfferError::NotSigned);
    }
    let grant: SessionGrant = codec::from_payload(grant)?;
    Ok(SessionGate::new(grant, device_id, now_ms)?)
}

/// What a running session works with besides its streams.
struct Ctx<'a> {
    consent: &'a Consent,
    relay: &'a quinn::Connection,
    /// Whom shells, commands and file access run as (`None` without shell or files).
    who: Option<RunAs>,
    desktop: &'a crate::platform::DesktopSpec,
}

async fn run(
    creds: &Credentials,
    gate: SessionGate,
    send: SendStream,
    recv: RecvStream,
    mut ended_by_user: tokio::sync::watch::Receiver<bool>,
    ctx: Ctx<'_>,
) -> Result<(), SessionError> {
    let Ctx {
        consent,
        relay,
        who,
        desktop,
    } = ctx;
    let tls = accept_technician(creds, &gate, send, recv).await?;
    let desktop = crate::platform::session_desktop(desktop);
    if let Some(text) = desktop.notice() {
        consent.notice(gate.grant().session_id.clone(), text).await;
    }
    let displays = desktop.screens().unwrap_or_default();
    let (mut rd, wr) = tokio::io::split(tls);
    let (out, writer) = spawn_writer(wr);
    let _ = out
        .send(ToViewer::Ready {
            session_id: gate.grant().session_id.clone(),
            displays,
            permissions: gate.grant().permissions,
        })
        .await;
    let audit = Audit {
        consent: consent.clone(),
        session_id: gate.grant().session_id.clone(),
    };
    let mut screen = Screen::new(desktop);
    let mut shell = Shells {
        job: None,
        who: who.clone(),
        record: gate
            .grant()
            .record_shell
            .then(|| (relay.clone(), audit.session_id.clone())),
    };
    let mut files = Transfers {
        put: None,
        get: None,
        who,
    };
    let result = loop {
        let received = tokio::select! {
            r = recv_msg(&mut rd, limits::CONTROL) => r,
            // The user pressed "End session": say so and close. (Cancelling a half-read frame
            // is fine, nothing more is read after it.)
            () = user_ends(&mut ended_by_user) => {
                let _ = out.send(ToViewer::Bye { reason: "ended by the user".into() }).await;
                break Ok(());
            }
        };
        let msg: ToAgent = match received {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        let reply = match gate.check(&msg) {
            Err(denied) => Some(ToViewer::Error {
                message: denied.to_string(),
            }),
            Ok(()) => match msg {
                ToAgent::Bye => {
                    let _ = out
                        .send(ToViewer::Bye {
                            reason: "ended by technician".into(),
                        })
                        .await;
                    break Ok(());
                }
                ToAgent::ShellOpen { .. }
                | ToAgent::ShellInput(_)
                | ToAgent::ShellResize { .. }
                | ToAgent::Exec { .. } => shell_message(msg, &mut shell, &audit, &out).await,
                ToAgent::PutStart(_)
                | ToAgent::FileChunk(_)
                | ToAgent::Stat { .. }
                | ToAgent::GetStart { .. } => file_message(msg, &mut files, &audit, &out).await,
                ToAgent::GetClipboard | ToAgent::SetClipboard { .. } => {
                    clipboard_message(msg, &screen.desktop).await
                }
                ToAgent::Screenshot { .. }
                | ToAgent::StartStream { .. }
                | ToAgent::StopStream
                | ToAgent::FrameAck { .. }
                | ToAgent::Input(_)
                | ToAgent::KeepAlive
                | ToAgent::StreamOptions(_) => screen_message(msg, &mut screen, &out).await,
            },
        };
        if let Some(reply) = reply
            && out.send(reply).await.is_err()
        {
            break Err(SessionError::WriterEnded);
        }
    };
    // Ending the session ends its stream, its transfer, and its shell or command.
    screen.stop_stream();
    files.stop_pull();
    drop(shell);
    drop(out);
    let _ = writer.await;
    result
}

/// Runs TLS 1.3 as server over the relay's splice and checks that the peer is the technician
/// the relay granted the session to.
async fn accept_technician(
    creds: &Credentials,
    gate: &SessionGate,
    send: SendStream,
    recv: RecvStream,
) -> Result<tokio_rustls::server::TlsStream<tokio::io::Join<RecvStream, SendStream>>, SessionError>
{
    let (chain, key) = creds.identity_material()?;
    let ca = creds.ca()?;
    let cfg = tether_net::tls::session_server_config(&ca, chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let tls = acceptor
        .accept(tokio::io::join(recv, send))
        .await
        .map_err(SessionError::Handshake)?;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(SessionError::NoPeerCertificate)?;
    let info = pki::cert_info(peer)?;
    match &info.identity {
        Identity::Technician { name, .. } if *name == gate.grant().technician => Ok(tls),
        other => Err(SessionError::WrongPeer(other.to_string())),
    }
}

/// The session's one writer: replies, frames and cursor updates share the channel in order,
/// and a keep-alive goes out whenever nothing did for a while. Ends after a `Bye`.
fn spawn_writer<W>(mut wr: W) -> (mpsc::Sender<ToViewer>, tokio::task::JoinHandle<()>)
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut out_rx) = mpsc::channel::<ToViewer>(8);
    let writer = tokio::spawn(async move {
        let idle = std::time::Duration::from_millis(tether_protocol::session::KEEPALIVE_MS);
        loop {
            let msg = match tokio::time::timeout(idle, out_rx.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => ToViewer::KeepAlive,
            };
            let bye = matches!(msg, ToViewer::Bye { .. });
            if send_msg(&mut wr, &msg).await.is_err() {
                return;
            }
            if bye {
                let _ = wr.shutdown().await;
                return;
            }
        }
    });
    (out, writer)
}

/// Reports a session's actions for its audit record.
#[derive(Clone)]
struct Audit {
    consent: Consent,
    session_id: String,
}

impl Audit {
    fn note(&self, action: String) {
        self.consent.audit(&self.session_id, action);
    }
}

/// The gate lets shell and file messages through only with those permissions, and then the
/// session has an account; this is the answer should that ever not hold.
fn nobody() -> ToViewer {
    ToViewer::Error {
        message: "this session may not run commands or transfer files".into(),
    }
}

/// Resolves when the user ends the session (never, if the consent service is gone).
async fn user_ends(ended: &mut tokio::sync::watch::Receiver<bool>) {
    if ended.wait_for(|e| *e).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn send_msg<W: tokio::io::AsyncWrite + Unpin>(
    tls: &mut W,
    msg: &ToViewer,
) -> Result<(), ChannelError> {
    let bytes = codec::to_frame(msg, limits::BULK)?;
    tls.write_all(&bytes).await.map_err(ChannelError::Write)?;
    tls.flush().await.map_err(ChannelError::Write)
}

async fn recv_msg<R: tokio::io::AsyncRead + Unpin>(
    tls: &mut R,
    max: usize,
) -> Result<Option<ToAgent>, ChannelError> {
    loop {
        let mut header = [0u8; frame::HEADER_LEN];
        match tls.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(channel_broken(e)),
        }
        let len = frame::payload_len(header, max)?;
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).await.map_err(channel_broken)?;
        match codec::from_payload_extensible(&payload)? {
            Decoded::Known(msg) => return Ok(Some(msg)),
            // A newer viewer's message: what it asks for, this agent does not offer.
            Decoded::Newer(index) => debug!(index, "skipping a message from a newer viewer"),
        }
    }
}

/// Why the session channel broke (see [`ChannelError`]).
fn channel_broken(e: std::io::Error) -> ChannelError {
    match e.kind() {
        std::io::ErrorKind::InvalidData => ChannelError::Integrity(e),
        std::io::ErrorKind::ConnectionReset => ChannelError::PeerClosed(e),
        std::io::ErrorKind::NotConnected | std::io::ErrorKind::ConnectionAborted => {
            ChannelError::RelayLost(e)
        }
        _ => ChannelError::Broken(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use tether_protocol::codec::Extensible;
    use tether_protocol::identity::Role;
    use tether_protocol::session::{GRANT_TTL_MS, Permissions};

    /// A message from a newer viewer is skipped; the session reads on.
    #[tokio::test]
    async fn a_newer_viewers_message_is_skipped() {
        let (mut viewer, mut agent) = tokio::io::duplex(1024);
        let mut newer = codec::to_bytes(&ToAgent::KNOWN).unwrap();
        newer.extend_from_slice(b"fields of a later version");
        let mut wire = frame::encode(&newer, limits::CONTROL).unwrap();
        wire.extend(codec::to_frame(&ToAgent::GetClipboard, limits::CONTROL).unwrap());
        tokio::io::AsyncWriteExt::write_all(&mut viewer, &wire)
            .await
            .unwrap();
        drop(viewer);
        let got = recv_msg(&mut agent, limits::CONTROL).await.unwrap();
        assert_eq!(got, Some(ToAgent::GetClipboard));
        assert_eq!(recv_msg(&mut agent, limits::CONTROL).await.unwrap(), None);
    }

    fn ca(name: &str) -> (Issuer<'static, KeyPair>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        (Issuer::new(p, key), cert.der().to_vec())
    }

    /// A key and a certificate from `issuer`, as the relay's CA makes them.
    fn leaf(
        issuer: &Issuer<'static, KeyPair>,
        cn: &str,
        ou: &str,
        eku: Vec<ExtendedKeyUsagePurpose>,
    ) -> (KeyPair, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, ou);
        p.extended_key_usages = eku;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, issuer).unwrap();
        (key, cert.der().to_vec())
    }

    fn grant_bytes(device: &str, now: i64) -> Vec<u8> {
        codec::to_bytes(&SessionGrant {
            session_id: "s1".into(),
            device_id: device.into(),
            technician: "ana".into(),
            role: Role::Admin,
            permissions: Permissions::FULL,
            reason: "r".into(),
            ticket: "t".into(),
            issued_at_unix_ms: now,
            expires_at_unix_ms: now + GRANT_TTL_MS,
            unattended: true,
            record_shell: false,
            activity: tether_protocol::session::Activity::Screen,
        })
        .unwrap()
    }

    /// Only the organisation's grant signer may sign grants. Before grants had a signer of
    /// their own, the agent checked the signature against the CA key; a signer certificate that
    /// is merely CA-issued is not enough, or any device or technician — who hold CA-issued
    /// certificates and their keys — could sign an unattended admin grant for any device.
    #[test]
    fn only_the_grant_signer_certificate_is_accepted() {
        let (org, org_der) = ca("Tether CA (org)");
        let (other, _) = ca("Tether CA (other)");
        let now = now_ms();
        let device = "3f2a";
        let grant = grant_bytes(device, now);
        let signer_eku = || {
            vec![ExtendedKeyUsagePurpose::Other(
                pki::GRANT_SIGNER_EKU.to_vec(),
            )]
        };
        let offer = |key: &KeyPair, cert: &[u8]| {
            use rcgen::SigningKey;
            let sig = key.sign(&grant).unwrap();
            verify_offer(&org_der, device, &grant, &sig, cert, now)
        };

        let (key, cert) = leaf(&org, "grant-signer:relay", "grant-signer", signer_eku());
        let gate = offer(&key, &cert).expect("the organisation's grant signer");
        assert_eq!(gate.grant().device_id, device);

        // A device's certificate (its agent holds the key) is not a grant signer.
        let (key, cert) = leaf(
            &org,
            "device:9b1c",
            "default",
            vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
        );
        let e = offer(&key, &cert).unwrap_err().to_string();
        assert!(e.contains("grant signer"), "{e}");
        // Nor is a technician's.
        let (key, cert) = leaf(
            &org,
            "tech:mallory",
            "viewer",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        assert!(offer(&key, &cert).is_err());
        // Nor one that names a technician even with the signer's key usage.
        let (key, cert) = leaf(&org, "tech:mallory", "admin", signer_eku());
        assert!(offer(&key, &cert).is_err());
        // Nor another organisation's grant signer.
        let (key, cert) = leaf(&other, "grant-signer:relay", "grant-signer", signer_eku());
        assert!(offer(&key, &cert).is_err());

        // The right certificate with a signature by another key, or over another grant.
        let (_, cert) = leaf(&org, "grant-signer:relay", "grant-signer", signer_eku());
        let (stranger, _) = leaf(&org, "grant-signer:x", "grant-signer", signer_eku());
        let e = offer(&stranger, &cert).unwrap_err().to_string();
        assert!(e.contains("not signed"), "{e}");
        // Garbage instead of a certificate.
        assert!(verify_offer(&org_der, device, &grant, b"sig", b"junk", now).is_err());
    }
}
