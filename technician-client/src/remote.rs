//! The technician's side of a screen session: ask the relay, then run TLS 1.3 as client over the
//! relay's splice, checking that the peer is the device asked for (its org certificate carries
//! `<device id>.device.tether`). Nothing in the session is readable by the relay.

use crate::relay::{RequestError, Session};
use quinn::{RecvStream, SendStream};
use rustls_pki_types::ServerName;
use tether_net::NetError;
use tether_net::client::Credentials;
use tether_net::framed::write_msg;
use tether_protocol::message::{ErrorCode, SessionRequest, TechRequest, TechResponse};
use tether_protocol::session::{
    Activity, Compression, DisplayInfo, Image, InputEvent, Permissions, SILENT_MS, ToAgent,
    ToViewer, splice_reset,
};
use tether_protocol::{codec, frame, limits, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Widest and tallest screen accepted from a device (8K UHD is 7680×4320). The agent states a
/// frame's size and the viewer allocates a framebuffer for it, so this bounds that allocation
/// (8192 × 8192 × 4 bytes = 256 MiB).
pub const MAX_SCREEN_SIDE: u32 = 8192;

/// Bytes of a `width × height` BGRX image, refused (not allocated) above
/// [`MAX_SCREEN_SIDE`] on either side.
pub fn pixels_len(width: u32, height: u32) -> Result<usize, RequestError> {
    if width > MAX_SCREEN_SIDE || height > MAX_SCREEN_SIDE {
        return Err(session_err(format!(
            "the device announced a {width}x{height} screen; at most {MAX_SCREEN_SIDE}x{MAX_SCREEN_SIDE} is accepted"
        )));
    }
    (width as usize)
        .checked_mul(height as usize)
        .and_then(|p| p.checked_mul(4))
        .ok_or_else(|| session_err("screen size overflows"))
}

type Tls = tokio_rustls::client::TlsStream<tokio::io::Join<RecvStream, SendStream>>;

pub struct RemoteSession {
    tls: Tls,
    /// The other relay's connection when the session was sent there (kept open with it).
    _via: Option<Box<Session>>,
    /// The connection to the relay the session runs over (to tell why it ended).
    relay: quinn::Connection,
    /// The channel broke or the device went quiet: [`RemoteSession::close`] then has nobody to
    /// wait for.
    broken: bool,
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
    /// Opens a session for the usual activity of `permissions` ([`Activity::for_permissions`]).
    pub async fn open_remote(
        &self,
        creds: &Credentials,
        device: &str,
        permissions: Permissions,
        reason: &str,
        ticket: &str,
    ) -> Result<RemoteSession, RequestError> {
        let activity = Activity::for_permissions(permissions);
        self.open_remote_as(creds, device, permissions, activity, reason, ticket)
            .await
    }

    /// Opens a session for `activity`, which the user sees in the prompt and the banner.
    pub async fn open_remote_as(
        &self,
        creds: &Credentials,
        device: &str,
        permissions: Permissions,
        activity: Activity,
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
                activity,
            },
        )
        .await
    }

    pub async fn open_remote_with(
        &self,
        creds: &Credentials,
        req: SessionRequest,
    ) -> Result<RemoteSession, RequestError> {
        match self.open_remote_here(creds, req.clone()).await? {
            Opened::Session(s) => Ok(*s),
            // The device is on another relay: the session runs through that one, once.
            Opened::Elsewhere { relay_id, addr } => {
                let other = self.follow(&relay_id, &addr).await?;
                match other.open_remote_here(creds, req).await? {
                    Opened::Session(mut s) => {
                        s._via = Some(Box::new(other));
                        Ok(*s)
                    }
                    Opened::Elsewhere { .. } => Err(RequestError::Offline(
                        "the relays disagree on which holds the device; try again".into(),
                    )),
                }
            }
        }
    }

    async fn open_remote_here(
        &self,
        creds: &Credentials,
        req: SessionRequest,
    ) -> Result<Opened, RequestError> {
        let (mut send, mut recv) = self.conn().open_bi().await.map_err(NetError::from)?;
        write_msg(&mut send, &TechRequest::OpenSession(req), limits::CONTROL).await?;
        self.asking_if_relay_cannot_tell();
        let answer = self.answer(&mut recv, limits::CONTROL).await?;
        let (session_id, device_id, hostname) = match answer {
            TechResponse::SessionReady {
                session_id,
                device_id,
                hostname,
            } => (
                // From the relay: printed and put in titles, so cleaned like agent text.
                text::clean(&session_id, 64),
                device_id,
                text::clean(&hostname, 256),
            ),
            TechResponse::Error {
                code: ErrorCode::Offline,
                message,
            } => return Err(RequestError::Offline(message)),
            TechResponse::Error { message, .. } => return Err(RequestError::Denied(message)),
            TechResponse::Elsewhere {
                relay_id,
                relay_addr,
            } => {
                return Ok(Opened::Elsewhere {
                    relay_id,
                    addr: relay_addr,
                });
            }
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
        match recv_msg(&mut tls, self.conn()).await? {
            ToViewer::Ready {
                displays,
                permissions,
                ..
            } => Ok(Opened::Session(Box::new(RemoteSession {
                tls,
                _via: None,
                relay: self.conn().clone(),
                broken: false,
                session_id,
                device_id,
                hostname,
                displays,
                permissions,
            }))),
            ToViewer::Error { message } | ToViewer::Bye { reason: message } => {
                Err(RequestError::Session(message))
            }
            _ => Err(RequestError::Unexpected),
        }
    }
}

/// A session request's outcome on one relay.
enum Opened {
    Session(Box<RemoteSession>),
    Elsewhere { relay_id: String, addr: String },
}

/// What the technician is told when the device goes quiet mid-session.
pub const DEVICE_GONE: &str = "device disconnected (nothing heard from it for 1.5 s)";

/// What the technician is told when the relay itself went quiet mid-session (killed, its
/// machine down, or the network to it gone).
pub const RELAY_GONE: &str = "the relay stopped answering (nothing heard from it for 1.5 s): the relay or the network to it is down";

/// Which side went quiet when the session has been silent for [`SILENT_MS`]: the relay is sent
/// something it must acknowledge (one byte on a stream of its own, which it ignores); an
/// answer means the relay is there and the device is gone.
async fn silent_side(relay: &quinn::Connection) -> &'static str {
    let heard = relay.stats().udp_rx.datagrams;
    let probe = async {
        if let Ok(mut s) = relay.open_uni().await {
            let _ = s.write_all(&[0]).await;
            let _ = s.finish();
        }
    };
    let _ = tokio::time::timeout(PROBE_WAIT, probe).await;
    let deadline = tokio::time::Instant::now() + PROBE_WAIT;
    while tokio::time::Instant::now() < deadline {
        if relay.stats().udp_rx.datagrams > heard {
            return DEVICE_GONE;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    RELAY_GONE
}

/// How long the relay has to acknowledge the probe of [`silent_side`] (many round trips of any
/// link a session is usable over).
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(700);

/// What the technician is told when the relay reports the device's certificate revoked.
pub const DEVICE_REVOKED: &str =
    "the device's certificate was revoked; the relay ended the session";

/// The next message that is not a keep-alive, or an error once the device has been silent
/// for [`SILENT_MS`] (it sends keep-alives when idle, so silence means it is gone).
async fn recv_msg<R: tokio::io::AsyncRead + Unpin>(
    tls: &mut R,
    relay: &quinn::Connection,
) -> Result<ToViewer, RequestError> {
    loop {
        match read_frame(tls, relay).await? {
            ToViewer::KeepAlive => continue,
            other => return Ok(other),
        }
    }
}

/// Why the session channel broke, in words the technician can act on: the relay's reason for
/// closing our connection first (this technician's certificate revoked, a relay restart), then
/// the code the relay reset the channel with (the device revoked or lost), else a broken channel.
///
/// A relay shutting down closes every connection at once, and the device's closing may reach us
/// first as a reset of the channel: so the relay's close is awaited briefly
/// ([`CLOSE_GRACE_MS`]) before the reset is taken as the reason.
async fn channel_broken(relay: &quinn::Connection, e: std::io::Error) -> RequestError {
    if relay.close_reason().is_none() {
        let grace = std::time::Duration::from_millis(CLOSE_GRACE_MS);
        let _ = tokio::time::timeout(grace, relay.closed()).await;
    }
    if let Some(closed) = relay.close_reason() {
        return NetError::from_connection(&closed).into();
    }
    let reset = match e
        .get_ref()
        .and_then(|i| i.downcast_ref::<quinn::ReadError>())
    {
        Some(quinn::ReadError::Reset(code)) => u32::try_from(code.into_inner()).ok(),
        _ => None,
    };
    match reset {
        Some(splice_reset::DEVICE_REVOKED) => RequestError::Session(DEVICE_REVOKED.into()),
        Some(splice_reset::DEVICE_LOST) => RequestError::Session(DEVICE_GONE.into()),
        // Only data failing TLS's integrity check may be tampering.
        _ if e.kind() == std::io::ErrorKind::InvalidData => RequestError::Session(format!(
            "session channel failed its integrity check (a relay altering the session?): {e}"
        )),
        _ => RequestError::Session(format!(
            "session channel broken (the device disconnected): {e}"
        )),
    }
}

/// How long a broken channel waits for the relay's own close to explain it.
const CLOSE_GRACE_MS: u64 = 500;

/// Reads one frame. Only the wait for its start is bounded by [`SILENT_MS`]: a large frame may
/// take longer to arrive over a slow link.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    tls: &mut R,
    relay: &quinn::Connection,
) -> Result<ToViewer, RequestError> {
    loop {
        match codec::from_payload_extensible(&read_payload(tls, relay).await?)
            .map_err(session_err)?
        {
            codec::Decoded::Known(msg) => return Ok(msg),
            // A newer agent's message this client has no use for.
            codec::Decoded::Newer(index) => {
                tracing::debug!(index, "skipping a message from a newer agent")
            }
        }
    }
}

async fn read_payload<R: tokio::io::AsyncRead + Unpin>(
    tls: &mut R,
    relay: &quinn::Connection,
) -> Result<Vec<u8>, RequestError> {
    let mut header = [0u8; frame::HEADER_LEN];
    let silent = std::time::Duration::from_millis(SILENT_MS);
    match tokio::time::timeout(silent, tls.read(&mut header[..1])).await {
        Err(_) => return Err(RequestError::Session(silent_side(relay).await.into())),
        Ok(Ok(0)) => {
            return Err(channel_broken(relay, std::io::ErrorKind::UnexpectedEof.into()).await);
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(channel_broken(relay, e).await),
    }
    if let Err(e) = tls.read_exact(&mut header[1..]).await {
        return Err(channel_broken(relay, e).await);
    }
    let len = frame::payload_len(header, limits::BULK).map_err(session_err)?;
    let mut payload = vec![0u8; len];
    if let Err(e) = tls.read_exact(&mut payload).await {
        return Err(channel_broken(relay, e).await);
    }
    Ok(payload)
}

impl RemoteSession {
    /// Sends one message (waits while the channel is full: flow control).
    pub async fn send(&mut self, msg: &ToAgent) -> Result<(), RequestError> {
        let bytes = codec::to_frame(msg, limits::CONTROL).map_err(session_err)?;
        self.tls.write_all(&bytes).await.map_err(session_err)?;
        self.tls.flush().await.map_err(session_err)
    }

    /// The next message from the agent (keep-alives are consumed here). After an error the
    /// session is over: [`RemoteSession::close`] then returns at once.
    pub async fn recv(&mut self) -> Result<ToViewer, RequestError> {
        let r = recv_msg(&mut self.tls, &self.relay).await;
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    pub async fn screenshot(&mut self, display: u32) -> Result<Screenshot, RequestError> {
        self.send(&ToAgent::Screenshot { display }).await?;
        match self.recv().await? {
            ToViewer::Screenshot(img) => decode(img),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            ToViewer::Bye { reason } => Err(RequestError::Session(reason)),
            _ => Err(RequestError::Unexpected),
        }
    }

    pub async fn get_clipboard(&mut self) -> Result<String, RequestError> {
        self.send(&ToAgent::GetClipboard).await?;
        match self.recv().await? {
            ToViewer::Clipboard { text } => Ok(text),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            ToViewer::Bye { reason } => Err(RequestError::Session(reason)),
            _ => Err(RequestError::Unexpected),
        }
    }

    pub async fn set_clipboard(&mut self, text: String) -> Result<(), RequestError> {
        self.send(&ToAgent::SetClipboard { text }).await?;
        match self.recv().await? {
            ToViewer::Done => Ok(()),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            ToViewer::Bye { reason } => Err(RequestError::Session(reason)),
            _ => Err(RequestError::Unexpected),
        }
    }

    pub async fn input(&mut self, event: InputEvent) -> Result<(), RequestError> {
        self.send(&ToAgent::Input(event)).await?;
        match self.recv().await? {
            ToViewer::Done => Ok(()),
            ToViewer::Error { message } => Err(RequestError::Denied(message)),
            ToViewer::Bye { reason } => Err(RequestError::Session(reason)),
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
                match recv_msg(&mut rd, &relay).await {
                    Ok(m) => {
                        if from_agent_tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // `recv_msg` already says why (relay gone, device lost or revoked).
                        let reason = match e {
                            RequestError::Session(m) => m,
                            other => other.to_string(),
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
    /// After the channel broke (device gone, revoked, relay gone) there is nobody to wait for:
    /// it returns at once, so a lost device is reported within [`SILENT_MS`], not 2 s later.
    pub async fn close(mut self) {
        if self.broken {
            return;
        }
        let _ = self.send(&ToAgent::Bye).await;
        let _ = self.tls.shutdown().await;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            recv_msg(&mut self.tls, &self.relay),
        )
        .await;
    }
}

/// Decompresses one rectangle of a frame update, refusing sizes that do not match.
/// Decodes a stream's rectangles into pixels (4 bytes each) to patch into the picture, or to
/// XOR into it for [`Compression::ZstdXor`] and [`Compression::ZstdXorPlanes`]. It keeps the
/// last palette sent ([`tether_protocol::indexed`]), so one decoder serves one stream, in order.
#[derive(Debug, Default)]
pub struct RectDecoder {
    palette: tether_protocol::indexed::Memory,
}

impl RectDecoder {
    /// The pixels of one rectangle. Untrusted: sizes are bounded before decompressing.
    pub fn decode(
        &mut self,
        r: &tether_protocol::session::EncodedRect,
    ) -> Result<Vec<u8>, RequestError> {
        let len = pixels_len(r.rect.w, r.rect.h)?;
        let px = match r.compression {
            Compression::None => r.data.clone(),
            Compression::Zstd | Compression::ZstdXor => {
                zstd::bulk::decompress(&r.data, len).map_err(session_err)?
            }
            Compression::ZstdPlanes | Compression::ZstdXorPlanes => {
                let planes = zstd::bulk::decompress(&r.data, len).map_err(session_err)?;
                tether_protocol::planes::join(&planes).map_err(session_err)?
            }
            Compression::ZstdPalette => {
                let bound = tether_protocol::palette::max_encoded_len(r.rect.w, r.rect.h);
                let indexed = zstd::bulk::decompress(&r.data, bound).map_err(session_err)?;
                tether_protocol::palette::decode(&indexed, r.rect.w, r.rect.h)
                    .map_err(session_err)?
            }
            Compression::Palette => tether_protocol::palette::decode(&r.data, r.rect.w, r.rect.h)
                .map_err(session_err)?,
            Compression::Indexed => {
                tether_protocol::indexed::decode(&r.data, r.rect.w, r.rect.h, &mut self.palette)
                    .map_err(session_err)?
            }
            Compression::ZstdIndexed => {
                let bound = tether_protocol::indexed::max_encoded_len(r.rect.w, r.rect.h);
                let form = zstd::bulk::decompress(&r.data, bound).map_err(session_err)?;
                tether_protocol::indexed::decode(&form, r.rect.w, r.rect.h, &mut self.palette)
                    .map_err(session_err)?
            }
            Compression::H264 => return Err(session_err("H.264 frames are decoded by the viewer")),
            Compression::CopyRect => return Err(session_err("copies are applied by the viewer")),
        };
        if px.len() != len {
            return Err(session_err("a rectangle's pixels do not match its size"));
        }
        Ok(px)
    }
}

/// Whether `c`'s pixels are XORed into the picture rather than written over it.
pub fn is_xor(c: Compression) -> bool {
    matches!(c, Compression::ZstdXor | Compression::ZstdXorPlanes)
}

fn decode(img: Image) -> Result<Screenshot, RequestError> {
    let len = pixels_len(img.width, img.height)?;
    let bgrx = match img.compression {
        Compression::None => img.data,
        Compression::Zstd => zstd::bulk::decompress(&img.data, len).map_err(session_err)?,
        Compression::ZstdXor
        | Compression::H264
        | Compression::ZstdPalette
        | Compression::Palette
        | Compression::Indexed
        | Compression::ZstdIndexed
        | Compression::ZstdPlanes
        | Compression::ZstdXorPlanes
        | Compression::CopyRect => {
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
