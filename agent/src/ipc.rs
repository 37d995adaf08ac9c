//! The agent's local socket, server side: the tray app and the `tether-agent` terminal commands
//! connect here to see prompts and answer them. The kernel tells us who connected
//! (`SO_PEERCRED`); only the desktop's owner or root may talk ([`may_answer`]), so another local
//! user cannot approve a session on someone else's screen.

use crate::consent::Consent;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tether_protocol::consent::{Answer, LocalEvent, LocalRequest, may_answer};
use tether_protocol::{codec, frame, limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Local connections served at once; more wait in the kernel's backlog.
const MAX_CLIENTS: usize = 32;

/// Binds `path` (replacing a stale socket) and serves it until the task is dropped.
pub fn listen(path: &Path, desktop_uid: u32, consent: Consent) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        // The runtime dir belongs to the desktop user, as logind would have made it.
        std::os::unix::fs::chown(dir, Some(desktop_uid), None)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    // Anyone who can reach the directory may connect; who may *answer* is decided per peer
    // from its credentials, so a refused user gets a clear message instead of EACCES.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    info!(socket = %path.display(), desktop_uid, "local consent socket ready");
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let path: PathBuf = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
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

async fn client(stream: UnixStream, desktop_uid: u32, consent: Consent) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            warn!("cannot read local peer credentials: {e}");
            return;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
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
                let _ = out.send(LocalEvent::Error { message: e }).await;
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

fn done(r: Result<String, String>, what: &str) -> LocalEvent {
    match r {
        Ok(id) => LocalEvent::Done {
            message: format!("{what} {id}"),
        },
        Err(message) => LocalEvent::Error { message },
    }
}

async fn write(wr: &mut tokio::net::unix::OwnedWriteHalf, ev: &LocalEvent) -> Result<(), String> {
    let bytes = codec::to_frame(ev, limits::CONTROL).map_err(|e| e.to_string())?;
    wr.write_all(&bytes).await.map_err(|e| e.to_string())
}

async fn read(rd: &mut tokio::net::unix::OwnedReadHalf) -> Result<Option<LocalRequest>, String> {
    let mut header = [0u8; frame::HEADER_LEN];
    match rd.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = frame::payload_len(header, limits::CONTROL).map_err(|e| e.to_string())?;
    let mut payload = vec![0u8; len];
    rd.read_exact(&mut payload)
        .await
        .map_err(|e| e.to_string())?;
    codec::from_payload(&payload)
        .map(Some)
        .map_err(|e| format!("bad request: {e}"))
}

/// The uid whose desktop this agent serves: the owner of the X server's socket for `$DISPLAY`
/// (`/tmp/.X11-unix/X<n>`), else the agent's own uid.
pub fn desktop_owner() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let display = std::env::var("DISPLAY").unwrap_or_default();
    let number = display
        .rsplit_once(':')
        .map(|(_, n)| n.split('.').next().unwrap_or(n).to_string());
    number
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| std::fs::metadata(format!("/tmp/.X11-unix/X{n}")).ok())
        .map(|m| m.uid())
        .unwrap_or_else(tether_net::local::current_uid)
}

/// A user name (looked up in `/etc/passwd`) or a numeric uid.
pub fn parse_user(s: &str) -> Result<u32, String> {
    if let Ok(uid) = s.parse() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&s))
        .and_then(|f| f.get(2).and_then(|uid| uid.parse().ok()))
        .ok_or_else(|| format!("no user named {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_or_number() {
        assert_eq!(parse_user("0"), Ok(0));
        assert_eq!(parse_user("root"), Ok(0));
        assert!(parse_user("no-such-user-here").is_err());
    }
}
