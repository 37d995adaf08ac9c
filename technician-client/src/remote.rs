//! The technician's side of a screen session: ask the relay, then run TLS 1.3 as client over the
//! relay's splice, checking that the peer is the device asked for (its org certificate carries
//! `<device id>.device.tether`). Nothing in the session is readable by the relay.

use crate::relay::{RequestError, Session};
use quinn::{RecvStream, SendStream};
use rustls_pki_types::ServerName;
use tether_net::NetError;
use tether_net::client::Credentials;
use tether_net::framed::{read_msg, write_msg};
use tether_protocol::message::{ErrorCode, SessionRequest, TechRequest, TechResponse};
use tether_protocol::session::{
    Compression, DisplayInfo, Image, InputEvent, Permissions, SILENT_MS, ToAgent, ToViewer,
};
use tether_protocol::{codec, frame, limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Largest decompressed screenshot accepted (8K UHD is 132 MB).
const MAX_PIXELS_BYTES: usize = 256 * 1024 * 1024;

type Tls = tokio_rustls::client::TlsStream<tokio::io::Join<RecvStream, SendStream>>;

pub struct RemoteSession {
    tls: Tls,
    /// The connection to the relay the session runs over (to tell why it ended).
    relay: quinn::Connection,
    pub session_id: String,
    pub device_id: String,
    pub hostname: String,
    pub displays: Vec<DisplayInfo>,
    pub permissions: Permissions,
}

/// A decoded screenshot: packed BGRX rows.
pub struct Screenshot {
    pub width: u32,
    pub height: u32,
    pub bgrx: Vec<u8>,
}

fn session_err(e: impl std::fmt::Display) -> RequestError {
    RequestError::Session(e.to_string())
}

impl Session {
    pub async fn open_remote(
        &self,
        creds: &Credentials,
        device: &str,
        permissions: Permissions,
        reason: &str,
        ticket: &str,
    ) -> Result<RemoteSession, RequestError> {
        self.open_remote_with(
            creds,
            SessionRequest {
                device: device.to_string(),
                permissions,
                reason: reason.to_string(),
                ticket: ticket.to_string(),
                batch: false,
            },
        )
        .await
    }

    pub async fn open_remote_with(
        &self,
        creds: &Credentials,
        req: SessionRequest,
    ) -> Result<RemoteSession, RequestError> {
        let (mut send, mut recv) = self.conn().open_bi().await.map_err(NetError::from)?;
        write_msg(&mut send, &TechRequest::OpenSession(req), limits::CONTROL).await?;
        let (session_id, device_id, hostname) = match read_msg(&mut recv, limits::CONTROL).await? {
            TechResponse::SessionReady {
                session_id,
                device_id,
                hostname,
            } => (session_id, device_id, hostname),
            TechResponse::Error {
                code: ErrorCode::Offline,
                message,
            } => return Err(RequestError::Offline(message)),
            TechResponse::Error { message, .. } => return Err(RequestError::Denied(message)),
            _ => return Err(RequestError::Unexpected),
        };
        let (chain, key) = creds.identity_material()?;
        let cfg = tether_net::tls::session_client_config(&creds.ca()?, chain, key)?;
        let name = ServerName::try_from(tether_net::tls::device_server_name(&device_id))
            .map_err(session_err)?;
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tokio::io::join(recv, send))
            .await
            .map_err(|e| {
                RequestError::Session(format!(
                    "end-to-end TLS with the device failed (a relay altering the session?): {e}"
                ))
            })?;
        match recv_msg(&mut tls).await? {
            ToViewer::Ready {
                displays,
                permissions,
                ..
            } => Ok(RemoteSession {
                tls,
                relay: self.conn().clone(),
                session_id,
                device_id,
                hostname,
                displays,
                permissions,
            }),
            ToViewer::Error { message } | ToViewer::Bye { reason: message } => {
                Err(RequestError::Session(message))
            }
            _ => Err(RequestError::Unexpected),
        }
    }
}

/// What the technician is told when the device goes quiet mid-session.
pub const DEVICE_GONE: &str = "device disconnected (nothing heard from it for 1.5 s)";

/// The next message that is not a keep-alive, or an error once the device has been silent
/// for [`SILENT_MS`] (it sends keep-alives when idle, so silence means it is gone).
async fn recv_msg<R: tokio::io::AsyncRead + Unpin>(tls: &mut R) -> Result<ToViewer, RequestError> {
    loop {
        match read_frame(tls).await? {
            ToViewer::KeepAlive => continue,
            other => return Ok(other),
        }
    }
}

/// Reads one frame. Only the wait for its start is bounded by [`SILENT_MS`]: a large frame may
/// take longer to arrive over a slow link.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    tls: &mut R,
) -> Result<ToViewer, RequestError> {
    let broken = |e: std::io::Error| {
        RequestError::Session(format!(
            "session channel broken (device disconnected, or a relay altering the session): {e}"
        ))
    };
    let mut header = [0u8; frame::HEADER_LEN];
    let silent = std::time::Duration::from_millis(SILENT_MS);
    match tokio::time::timeout(silent, tls.read(&mut header[..1])).await {
        Err(_) => return Err(RequestError::Session(DEVICE_GONE.into())),
        Ok(Ok(0)) => {
            return Err(broken(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(broken(e)),
    }
    tls.read_exact(&mut header[1..]).await.map_err(broken)?;
    let len = frame::payload_len(header, limits::BULK).map_err(session_err)?;
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).await.map_err(broken)?;
    codec::from_payload(&payload).map_err(session_err)
}

impl RemoteSession {
    /// Sends one message (waits while the channel is full: flow control).
    pub async fn send(&mut self, msg: &ToAgent) -> Result<(), RequestError> {
        let bytes = codec::to_frame(msg, limits::CONTROL).map_err(session_err)?;
        self.tls.write_all(&bytes).await.map_err(session_err)?;
        self.tls.flush().await.map_err(session_err)
    }

    /// The next message from the agent (keep-alives are consumed here).
    pub async fn recv(&mut self) -> Result<ToViewer, RequestError> {
        recv_msg(&mut self.tls).await
    }

    pub async fn screenshot(&mut self, display: u32) -> Result<Screenshot, RequestError> {
        self.send(&ToAgent::Screenshot { display }).await?;
        match recv_msg(&mut self.tls).await? {
            ToViewer::Screenshot(img) => decode(img),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            _ => Err(RequestError::Unexpected),
        }
    }

    pub async fn get_clipboard(&mut self) -> Result<String, RequestError> {
        self.send(&ToAgent::GetClipboard).await?;
        match recv_msg(&mut self.tls).await? {
            ToViewer::Clipboard { text } => Ok(text),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            _ => Err(RequestError::Unexpected),
        }
    }

    pub async fn set_clipboard(&mut self, text: String) -> Result<(), RequestError> {
        self.send(&ToAgent::SetClipboard { text }).await?;
        match recv_msg(&mut self.tls).await? {
            ToViewer::Done => Ok(()),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            _ => Err(RequestError::Unexpected),
        }
    }

    pub async fn input(&mut self, event: InputEvent) -> Result<(), RequestError> {
        self.send(&ToAgent::Input(event)).await?;
        match recv_msg(&mut self.tls).await? {
            ToViewer::Done => Ok(()),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            _ => Err(RequestError::Unexpected),
        }
    }

    /// Splits the session for streaming: messages to the agent go into the returned sender,
    /// everything the agent sends comes out of the receiver. The tasks run on the current runtime.
    pub fn into_duplex(self) -> (mpsc::UnboundedSender<ToAgent>, mpsc::Receiver<ToViewer>) {
        let relay = self.relay.clone();
        let (mut rd, mut wr) = tokio::io::split(self.tls);
        let (to_agent, mut to_agent_rx) = mpsc::unbounded_channel::<ToAgent>();
        let (from_agent_tx, from_agent) = mpsc::channel::<ToViewer>(4);
        tokio::spawn(async move {
            while let Some(msg) = to_agent_rx.recv().await {
                let Ok(bytes) = codec::to_frame(&msg, limits::CONTROL) else {
                    continue;
                };
                if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        tokio::spawn(async move {
            loop {
                match recv_msg(&mut rd).await {
                    Ok(m) => {
                        if from_agent_tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let reason = match (e, relay.close_reason()) {
                            (RequestError::Session(m), _) if m == DEVICE_GONE => m,
                            // The relay went away (restart, network): say so, not "device".
                            (_, Some(closed)) => NetError::from_connection(&closed).to_string(),
                            (other, None) => format!("connection to the device lost ({other})"),
                        };
                        let _ = from_agent_tx.send(ToViewer::Bye { reason }).await;
                        return;
                    }
                }
            }
        });
        (to_agent, from_agent)
    }

    /// Ends the session: says bye and closes our direction first (so the relay's audit records
    /// the technician as the one who ended it), then waits briefly for the agent's goodbye.
    pub async fn close(mut self) {
        let _ = self.send(&ToAgent::Bye).await;
        let _ = self.tls.shutdown().await;
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), recv_msg(&mut self.tls)).await;
    }
}

/// Decompresses one rectangle of a frame update, refusing sizes that do not match.
pub fn decode_rect(r: &tether_protocol::session::EncodedRect) -> Result<Vec<u8>, RequestError> {
    let len = (r.rect.w as usize)
        .checked_mul(r.rect.h as usize)
        .and_then(|p| p.checked_mul(4))
        .filter(|&n| n <= MAX_PIXELS_BYTES)
        .ok_or_else(|| session_err("update rectangle is too large"))?;
    match r.compression {
        Compression::None => Ok(r.data.clone()),
        Compression::Zstd | Compression::ZstdXor => {
            zstd::bulk::decompress(&r.data, len).map_err(session_err)
        }
        Compression::H264 => Err(session_err("H.264 frames are decoded by the viewer")),
    }
}

fn decode(img: Image) -> Result<Screenshot, RequestError> {
    let len = (img.width as usize)
        .checked_mul(img.height as usize)
        .and_then(|p| p.checked_mul(4))
        .filter(|&n| n <= MAX_PIXELS_BYTES)
        .ok_or_else(|| session_err("screenshot dimensions are too large"))?;
    let bgrx = match img.compression {
        Compression::None => img.data,
        Compression::Zstd => zstd::bulk::decompress(&img.data, len).map_err(session_err)?,
        Compression::ZstdXor | Compression::H264 => {
            return Err(session_err("a screenshot must be lossless and whole"));
        }
    };
    if bgrx.len() != len {
        return Err(session_err("screenshot size does not match its dimensions"));
    }
    Ok(Screenshot {
        width: img.width,
        height: img.height,
        bgrx,
    })
}

impl Screenshot {
    /// RGB bytes (for PNG), dropping the unused fourth byte.
    pub fn rgb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bgrx.len() / 4 * 3);
        for px in self.bgrx.chunks_exact(4) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        out
    }

    pub fn write_png(&self, path: &std::path::Path) -> Result<(), std::io::Error> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut enc = png::Encoder::new(file, self.width, self.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(&self.rgb())
            .map_err(std::io::Error::other)?;
        w.finish().map_err(std::io::Error::other)
    }
}
