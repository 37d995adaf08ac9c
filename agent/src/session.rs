//! The agent's side of a screen session: check the relay-signed grant, run TLS 1.3 as server
//! over the relay's splice (requiring the technician's org certificate), then serve screenshots
//! and input within the grant's permissions.

use crate::account::RunAs;
use crate::consent::Consent;
use crate::input;
use crate::platform::Desktop;
use crate::screen;
use quinn::{RecvStream, SendStream};
use std::sync::Arc;
use tether_net::NetError;
use tether_net::client::ClientError;
use tether_net::client::Credentials;
use tether_net::framed::{read_msg, write_msg};
use tether_net::pki;
use tether_net::pki::PkiError;
use tether_protocol::codec::CodecError;
use tether_protocol::consent::Outcome;
use tether_protocol::frame::FrameError;
use tether_protocol::identity::Identity;
use tether_protocol::session::GrantError;
use tether_protocol::session::{
    OfferReply, RefuseKind, RelayStream, SessionGate, SessionGrant, ToAgent, ToViewer, command_line,
};
use tether_protocol::{codec, frame, limits};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

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

/// Handles one stream the relay opened. `session_user` is whom shells, commands and file
/// access run as when the grant does not carry the root permission (see [`crate::account`]).
pub async fn serve(
    creds: Credentials,
    device_id: String,
    session_user: Option<u32>,
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
        match RunAs::for_session(g.permissions, session_user) {
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
    } = ctx;
    let tls = accept_technician(creds, &gate, send, recv).await?;
    let desktop = crate::platform::session_desktop();
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
                | ToAgent::KeepAlive => screen_message(msg, &mut screen, &out).await,
            },
        };
        if let Some(reply) = reply
            && out.send(reply).await.is_err()
        {
            break Err(SessionError::WriterEnded);
        }
    };
    // Ending the session ends its stream, its transfer, and its shell or command.
    screen.end();
    files.end();
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

/// The screen side of a session: the desktop, the stream of one display, and the one input
/// connection (dropping it releases every held key).
struct Screen {
    desktop: Arc<dyn Desktop>,
    stream: Option<(mpsc::UnboundedSender<u64>, tokio::task::JoinHandle<()>)>,
    input: input::Input,
}

impl Screen {
    fn new(desktop: Arc<dyn Desktop>) -> Self {
        Screen {
            input: input::Input::spawn(desktop.clone()),
            desktop,
            stream: None,
        }
    }

    fn stop_stream(&mut self) {
        if let Some((_, task)) = self.stream.take() {
            task.abort();
        }
    }

    fn end(&mut self) {
        self.stop_stream();
    }
}

/// Screenshots, streaming (start, stop, acknowledgements), input and keep-alives.
async fn screen_message(
    msg: ToAgent,
    screen: &mut Screen,
    out: &mpsc::Sender<ToViewer>,
) -> Option<ToViewer> {
    match msg {
        ToAgent::FrameAck { seq } => {
            if let Some((acks, _)) = &screen.stream {
                let _ = acks.send(seq);
            }
            None
        }
        ToAgent::StartStream {
            display,
            max_in_flight,
            h264,
        } => {
            screen.stop_stream();
            let (acks, acks_rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(crate::stream::run(
                screen.desktop.clone(),
                display,
                max_in_flight.clamp(1, 8),
                h264,
                acks_rx,
                out.clone(),
            ));
            screen.stream = Some((acks, task));
            None
        }
        ToAgent::StopStream => {
            screen.stop_stream();
            None
        }
        ToAgent::Screenshot { display } => Some(
            match tokio::task::spawn_blocking({
                let desktop = screen.desktop.clone();
                move || screen::screenshot(&mut *desktop.screen(), display)
            })
            .await
            {
                Ok(Ok(img)) => ToViewer::Screenshot(img),
                Ok(Err(e)) => ToViewer::Error {
                    message: e.to_string(),
                },
                Err(e) => ToViewer::Error {
                    message: e.to_string(),
                },
            },
        ),
        ToAgent::KeepAlive => {
            screen.input.keep_alive();
            None
        }
        ToAgent::Input(ev) => Some(match screen.input.apply(ev).await {
            Ok(()) => ToViewer::Done,
            Err(e) => ToViewer::Error {
                message: e.to_string(),
            },
        }),
        // Other families are answered elsewhere.
        _ => None,
    }
}

/// Reading and setting the desktop's clipboard.
async fn clipboard_message(msg: ToAgent, desktop: &Arc<dyn Desktop>) -> Option<ToViewer> {
    let desktop = desktop.clone();
    match msg {
        ToAgent::GetClipboard => Some(
            match tokio::task::spawn_blocking(move || desktop.clipboard().get()).await {
                Ok(Ok(text)) => ToViewer::Clipboard {
                    text: truncate(text, tether_protocol::session::MAX_CLIPBOARD),
                },
                Ok(Err(e)) => ToViewer::Error {
                    message: e.to_string(),
                },
                Err(e) => ToViewer::Error {
                    message: e.to_string(),
                },
            },
        ),
        ToAgent::SetClipboard { text } => Some(
            match tokio::task::spawn_blocking(move || desktop.clipboard().set(text)).await {
                Ok(Ok(())) => ToViewer::Done,
                Ok(Err(e)) => ToViewer::Error {
                    message: e.to_string(),
                },
                Err(e) => ToViewer::Error {
                    message: e.to_string(),
                },
            },
        ),
        // Other families are answered elsewhere.
        _ => None,
    }
}

/// The gate lets shell and file messages through only with those permissions, and then the
/// session has an account; this is the answer should that ever not hold.
fn nobody() -> ToViewer {
    ToViewer::Error {
        message: "this session may not run commands or transfer files".into(),
    }
}

/// The shell side of a session: at most one shell or command at a time (its end is reported
/// to the audit trail; dropping it ends it).
struct Shells {
    job: Option<Job>,
    /// Whom shells and commands run as (`None` without the shell permission).
    who: Option<RunAs>,
    /// Where a recorded shell's transcript goes: the relay, for this session.
    record: Option<(quinn::Connection, String)>,
}

impl Shells {
    fn busy(&self) -> bool {
        self.job.as_ref().is_some_and(|j| !j.finished())
    }
}

/// Opening a shell, typing into it and resizing it, and running one command.
async fn shell_message(
    msg: ToAgent,
    shells: &mut Shells,
    audit: &Audit,
    out: &mpsc::Sender<ToViewer>,
) -> Option<ToViewer> {
    match msg {
        ToAgent::ShellOpen { cols, rows, user } => {
            if shells.busy() {
                return Some(busy());
            }
            if let Some(message) = chosen_user(user.as_deref(), shells.who.as_ref()) {
                return Some(ToViewer::Error { message });
            }
            let Some(who) = &shells.who else {
                return Some(nobody());
            };
            let transcript = shells
                .record
                .as_ref()
                .map(|(relay, session_id)| record(relay.clone(), session_id.clone()));
            match crate::shell::Shell::open(cols, rows, who, out.clone(), transcript) {
                Ok((shell, ended)) => {
                    audit.note(format!("shell opened as {}", who.describe()));
                    shells.job = Some(Job::Shell(shell, watch_end(ended, audit, "shell".into())));
                    None
                }
                Err(e) => Some(ToViewer::Error {
                    message: e.to_string(),
                }),
            }
        }
        ToAgent::ShellInput(bytes) => match &shells.job {
            Some(Job::Shell(shell, _)) => {
                let input = shell.input();
                let _ = input.send(bytes).await;
                None
            }
            _ => Some(ToViewer::Error {
                message: "no shell is open".into(),
            }),
        },
        ToAgent::ShellResize { cols, rows } => {
            if let Some(Job::Shell(shell, _)) = &shells.job {
                shell.resize(cols, rows);
            }
            None
        }
        ToAgent::Exec { argv, timeout_ms } => {
            if shells.busy() {
                return Some(busy());
            }
            let Some(who) = &shells.who else {
                return Some(nobody());
            };
            let timeout = timeout_ms.map(std::time::Duration::from_millis);
            match crate::shell::exec(&argv, timeout, who, out.clone()) {
                Ok((exec, ended)) => {
                    let line = command_line(&argv);
                    shells.job = Some(Job::Exec(
                        exec,
                        watch_end(ended, audit, format!("exec {line}")),
                    ));
                    None
                }
                Err(message) => {
                    audit.note(format!("exec {} failed: {message}", command_line(&argv)));
                    Some(ToViewer::Error {
                        message: message.to_string(),
                    })
                }
            }
        }
        // Other families are answered elsewhere.
        _ => None,
    }
}

/// The file side of a session: the push in progress and the pull being sent.
struct Transfers {
    put: Option<crate::files::Put>,
    get: Option<tokio::task::JoinHandle<()>>,
    /// Whom file access runs as (`None` without the files permission).
    who: Option<RunAs>,
}

impl Transfers {
    fn end(&mut self) {
        if let Some(g) = self.get.take() {
            g.abort();
        }
    }
}

/// Pushes (start, chunks), looking at a path, and pulls.
async fn file_message(
    msg: ToAgent,
    files: &mut Transfers,
    audit: &Audit,
    out: &mpsc::Sender<ToViewer>,
) -> Option<ToViewer> {
    let who = || files.who.clone().ok_or_else(nobody);
    match msg {
        ToAgent::PutStart(p) => {
            let who = match who() {
                Ok(w) => w,
                Err(e) => return Some(e),
            };
            files.put = None;
            match tokio::task::block_in_place(|| crate::files::Put::start(&p, &who)) {
                Ok((mut started, offset)) => {
                    if started.is_complete() && offset == 0 {
                        // An empty file: nothing to send.
                        match tokio::task::block_in_place(|| started.finish()) {
                            Ok(d) => {
                                audit.note(started.describe());
                                Some(d)
                            }
                            Err(message) => Some(ToViewer::Error {
                                message: message.to_string(),
                            }),
                        }
                    } else {
                        files.put = Some(started);
                        Some(ToViewer::PutReady { offset })
                    }
                }
                Err(message) => {
                    audit.note(format!("push refused: {message}"));
                    Some(ToViewer::Error {
                        message: message.to_string(),
                    })
                }
            }
        }
        ToAgent::FileChunk(data) => match files.put.as_mut() {
            Some(p) => match tokio::task::block_in_place(|| p.chunk(&data)) {
                Ok(None) => None,
                Ok(Some(done)) => {
                    audit.note(p.describe());
                    files.put = None;
                    Some(done)
                }
                Err(message) => {
                    audit.note(format!("{} failed: {message}", p.describe()));
                    files.put = None;
                    Some(ToViewer::Error {
                        message: message.to_string(),
                    })
                }
            },
            None => Some(ToViewer::Error {
                message: "no push in progress".into(),
            }),
        },
        ToAgent::Stat { path } => {
            let who = match who() {
                Ok(w) => w,
                Err(e) => return Some(e),
            };
            Some(
                match tokio::task::spawn_blocking(move || crate::files::stat(&path, &who)).await {
                    Ok(Ok(entry)) => ToViewer::StatReply(entry),
                    Ok(Err(e)) => ToViewer::Error {
                        message: e.to_string(),
                    },
                    Err(e) => ToViewer::Error {
                        message: e.to_string(),
                    },
                },
            )
        }
        ToAgent::GetStart { path, offset } => {
            let who = match who() {
                Ok(w) => w,
                Err(e) => return Some(e),
            };
            files.end();
            let out = out.clone();
            let audit = audit.clone();
            files.get = Some(tokio::spawn(async move {
                match crate::files::get(path.clone(), offset, who, out.clone()).await {
                    Ok(ToViewer::FileEnd { size, sha256 }) => audit.note(format!(
                        "pull {path} ({size} bytes from offset {offset}, sha256 {sha256})"
                    )),
                    Ok(_) => {}
                    Err(message) => {
                        audit.note(format!("pull {path} failed: {message}"));
                        let _ = out
                            .send(ToViewer::Error {
                                message: message.to_string(),
                            })
                            .await;
                    }
                }
            }));
            None
        }
        // Other families are answered elsewhere.
        _ => None,
    }
}

/// Sends a recorded shell's output to the relay on a stream of its own.
fn record(relay: quinn::Connection, session_id: String) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let sent = async {
            let (mut send, _recv) = relay.open_bi().await?;
            write_msg(
                &mut send,
                &tether_protocol::message::AgentStream::Transcript {
                    session_id: session_id.clone(),
                },
                limits::CONTROL,
            )
            .await?;
            while let Some(chunk) = rx.recv().await {
                write_msg(
                    &mut send,
                    &tether_protocol::message::TranscriptChunk(chunk),
                    limits::CONTROL,
                )
                .await?;
            }
            let _ = send.finish();
            let _ = send.stopped().await;
            Ok::<_, tether_net::NetError>(())
        };
        if let Err(e) = sent.await {
            warn!(session = %session_id, "shell transcript not delivered: {e}");
        }
    });
    tx
}

/// A shell or command running in a session.
enum Job {
    Shell(crate::shell::Shell, tokio::task::JoinHandle<()>),
    /// The command is held only to kill its process group when dropped.
    Exec(
        #[allow(dead_code)] crate::shell::Exec,
        tokio::task::JoinHandle<()>,
    ),
}

impl Job {
    fn finished(&self) -> bool {
        match self {
            Job::Shell(_, w) | Job::Exec(_, w) => w.is_finished(),
        }
    }
}

/// The technician may not pick an account: a session runs as the desktop user, or as root
/// with the root permission (a `user` naming that same account is accepted, for older clients).
fn chosen_user(user: Option<&str>, who: Option<&RunAs>) -> Option<String> {
    match (user, who) {
        (None, _) => None,
        (Some(""), _) => None,
        (Some(u), Some(w)) if u == w.account.name => None,
        (Some(u), _) => Some(format!(
            "a shell cannot be opened as {}: sessions run as the desktop user, or as root when asked for with --as-root",
            tether_protocol::text::clean(u, 64)
        )),
    }
}

fn busy() -> ToViewer {
    ToViewer::Error {
        message: "a shell or command is already running in this session".into(),
    }
}

/// Records how a shell or command ended on the session's audit record.
fn watch_end(
    ended: crate::shell::Ended,
    audit: &Audit,
    what: String,
) -> tokio::task::JoinHandle<()> {
    let audit = audit.clone();
    tokio::spawn(async move {
        let how = match ended.await {
            Ok(ToViewer::Exited {
                code,
                signal,
                timed_out,
                ..
            }) => match (code, signal, timed_out) {
                (_, _, true) => "timed out, killed".to_string(),
                (Some(c), _, _) => format!("exit {c}"),
                (None, Some(s), _) => format!("killed by signal {s}"),
                _ => "ended".to_string(),
            },
            _ => "ended with the session".to_string(),
        };
        audit.note(format!("{what} → {how}"));
    })
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
    let mut header = [0u8; frame::HEADER_LEN];
    match tls.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(channel_broken(e)),
    }
    let len = frame::payload_len(header, max)?;
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).await.map_err(channel_broken)?;
    Ok(codec::from_payload(&payload).map(Some)?)
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

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use tether_protocol::identity::Role;
    use tether_protocol::session::{GRANT_TTL_MS, Permissions};

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
