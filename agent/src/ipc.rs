//! The agent's local socket, server side: the tray app and the `tether-agent` terminal commands
//! connect here to see prompts and answer them. The platform tells us who connected
//! ([`crate::platform::local::peer_uid`]: on Linux the kernel, `SO_PEERCRED`); only the desktop's owner or root may talk ([`may_answer`]), so another local
//! user cannot approve a session on someone else's screen.

use crate::consent::{Consent, ConsentError};
use crate::platform::local::{self, LocalStream};
use std::path::{Path, PathBuf};
use tether_protocol::codec::CodecError;
use tether_protocol::consent::{Answer, LocalEvent, LocalRequest, may_answer};
use tether_protocol::frame::FrameError;
use tether_protocol::{codec, frame, limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Local connections served at once; more wait in the kernel's backlog.
const MAX_CLIENTS: usize = 32;

/// Binds `path` (replacing a stale socket) and serves it until the task is dropped.
pub fn listen(path: &Path, desktop_uid: u32, consent: Consent) -> std::io::Result<()> {
    let listener = local::listen(path, desktop_uid)?;
    info!(socket = %path.display(), desktop_uid, "local consent socket ready");
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let path: PathBuf = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!("local socket {}: {e}", path.display());
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!("too many local clients; refusing one");
                continue;
            };
            let consent = consent.clone();
            tokio::spawn(async move {
                client(stream, desktop_uid, consent).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn client(stream: LocalStream, desktop_uid: u32, consent: Consent) {
    let uid = match local::peer_uid(&stream) {
        Ok(uid) => uid,
        Err(e) => {
            warn!("cannot read local peer credentials: {e}");
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    if !may_answer(uid, desktop_uid) {
        info!(
            uid,
            desktop_uid, "local client refused: not the desktop's user"
        );
        let refusal = LocalEvent::Error {
            message: format!(
                "permission denied: uid {uid} does not own this desktop (uid {desktop_uid}); only that user or root may answer for it"
            ),
        };
        let _ = write(&mut wr, &refusal).await;
        return;
    }
    // One writer: replies and (after Subscribe) events share the socket in order.
    let (out, mut out_rx) = mpsc::channel::<LocalEvent>(64);
    let writer = tokio::spawn(async move {
        while let Some(ev) = out_rx.recv().await {
            if write(&mut wr, &ev).await.is_err() {
                return;
            }
        }
    });
    loop {
        let req: LocalRequest = match read(&mut rd).await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                let _ = out
                    .send(LocalEvent::Error {
                        message: e.to_string(),
                    })
                    .await;
                break;
            }
        };
        debug!(uid, ?req, "local request");
        let reply = match req {
            LocalRequest::Subscribe => {
                consent.subscribe(out.clone()).await;
                continue;
            }
            LocalRequest::List => consent.snapshot().await,
            LocalRequest::Approve { id } => done(
                consent.answer(id, Answer::Approve).await,
                "approved session",
            ),
            LocalRequest::Deny { id } => {
                done(consent.answer(id, Answer::Deny).await, "denied session")
            }
            LocalRequest::End { id } => done(consent.end(id).await, "ended session"),
            LocalRequest::Rate {
                id,
                rating,
                comment,
            } => done(consent.rate(id, rating, comment).await, "rated session"),
            LocalRequest::Reply { id, text } => {
                done(consent.reply(id, text).await, "replied to message")
            }
        };
        if out.send(reply).await.is_err() {
            break;
        }
    }
    drop(out);
    let _ = writer.await;
}

fn done(r: Result<String, ConsentError>, what: &str) -> LocalEvent {
    match r {
        Ok(id) => LocalEvent::Done {
            message: format!("{what} {id}"),
        },
        Err(e) => LocalEvent::Error {
            message: e.to_string(),
        },
    }
}

/// Why a local connection's frame could not be read or written.
#[derive(Debug, thiserror::Error)]
enum LocalIoError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Encode(CodecError),
    #[error("bad request: {0}")]
    BadRequest(CodecError),
}

async fn write<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    ev: &LocalEvent,
) -> Result<(), LocalIoError> {
    let bytes = codec::to_frame(ev, limits::CONTROL).map_err(LocalIoError::Encode)?;
    Ok(wr.write_all(&bytes).await?)
}

async fn read<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<Option<LocalRequest>, LocalIoError> {
    let mut header = [0u8; frame::HEADER_LEN];
    match rd.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame::payload_len(header, limits::CONTROL)?;
    let mut payload = vec![0u8; len];
    rd.read_exact(&mut payload).await?;
    codec::from_payload(&payload)
        .map(Some)
        .map_err(LocalIoError::BadRequest)
}

/// The uid whose desktop this agent serves: its owner as the desktop says (on X11, the owner of
/// the X server's socket for `$DISPLAY`), else the agent's own uid.
pub fn desktop_owner() -> u32 {
    // Windows: the user at the console (see `platform::windows::ipc`).
    #[cfg(windows)]
    return local::interactive_uid();
    #[cfg(not(windows))]
    crate::platform::desktop()
        .ok()
        .and_then(|d| d.owner())
        .unwrap_or_else(tether_net::local::current_uid)
}

/// A user name or a numeric uid.
pub use crate::platform::parse_user;
