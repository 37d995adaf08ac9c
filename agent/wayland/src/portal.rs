//! The desktop-portal backend: screen and input through `org.freedesktop.portal.ScreenCast` and
//! `org.freedesktop.portal.RemoteDesktop` (via `ashpd`), for Wayland desktops that are neither
//! GNOME/mutter ([`crate::gnome`]) nor wlroots ([`crate::wlr`]) — KDE Plasma and others.
//!
//! Unlike mutter's private API, the portal asks the user itself: `Start` shows the desktop's
//! own "share your screen and allow remote control?" dialog. To ask only once, the session is
//! requested with persist mode "until explicitly revoked" and the portal's restore token is
//! kept on disk ([`token`]); the next run hands it back and the portal restores the choice
//! silently. A token the portal rejects is deleted and the flow run once more without it; a
//! cancelled dialog is the user's "no" and reaches the agent as
//! [`HelperError::ScreenRefused`]. The decisions live in [`machine`] and the input lowering in
//! [`input`], both without I/O and unit-tested.
//!
//! One portal session carries input and every shared monitor (`multiple = true`): its streams,
//! in the portal's order, are the displays (the first primary), each read through PipeWire on
//! the remote the portal opens (`OpenPipeWireRemote`). The session starts on the first request
//! that needs it (displays, capture or input — the portal cannot list monitors any other way)
//! and ends with [`Backend::stop_capture`], so the desktop's sharing indicator is on only while
//! Tether uses the screen. If the desktop ends the session (the user revokes it), requests fail
//! with `ScreenRefused` until the agent stops the capture, rather than popping the dialog again.
//!
//! The helper is synchronous: `Portal` blocks on one process-wide tokio runtime, so none of
//! this may be called from inside an async runtime.
//!
//! **Untested end to end here**: no real portal could run on the development machine
//! (xdg-desktop-portal-wlr needs a GPU; see `docs/research/wayland/FINDINGS.md`). The calls
//! follow the portal specification and ashpd 0.12. The unit tests cover the token store, the
//! state machine and the input lowering; an ignored test (`fake`, run it under
//! `dbus-run-session`) drives this driver against a scripted portal on a private bus. Frames
//! are not covered: they come from `crate::pw`.

#[cfg(test)]
mod fake;
pub mod input;
pub mod machine;
pub mod token;

use crate::backend::{Backend, Capture};
use ashpd::desktop::remote_desktop::{Axis, DeviceType, KeyState, RemoteDesktop};
use ashpd::desktop::screencast::{CursorMode, Screencast, SourceType};
use ashpd::desktop::{PersistMode, ResponseError, Session};
use ashpd::enumflags2::BitFlags;
use ashpd::{Error as PortalCallError, PortalError};
use futures_util::StreamExt;
use input::{Call, Held};
use machine::{CallError, Event, Machine, Response, Step, StreamInfo};
use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tether_protocol::helper::{HelperError, PointerState};
use tether_protocol::session::{DisplayInfo, InputEvent};
use token::TokenStore;
use tokio::runtime::Runtime;

use crate::pw::PwStream;

const PORTAL_BUS_NAME: &str = "org.freedesktop.portal.Desktop";
const PORTAL_PATH: &str = "/org/freedesktop/portal/desktop";
/// ScreenCast 4 has persist mode and restore tokens.
const MIN_SCREENCAST_VERSION: u32 = 4;
/// How long [`available`] waits for the bus (the portal may be D-Bus-activated on the first
/// question, which takes a moment).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Any portal call that does not wait for the user.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the user has to answer the portal's dialog; then it is closed and the request
/// refused, so the agent is not left hanging on an empty desk.
const DIALOG_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a display's first capture waits for its first frame.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(5);

type RdSession = Session<'static, RemoteDesktop<'static>>;

/// The runtime every portal call runs on, one per process: ashpd keeps one session-bus
/// connection per process, whose tasks live on the runtime that opened it, so the runtime must
/// outlive every `Portal`. Multi-threaded (one worker) so the connection keeps reading — and the
/// session's `Closed` signal is seen — between the helper's synchronous calls.
fn runtime() -> Result<&'static Runtime, HelperError> {
    static RT: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tether-portal")
        .enable_all()
        .build()
        .map_err(|e| HelperError::Unsupported(format!("async runtime for the portal: {e}")))?;
    Ok(RT.get_or_init(|| rt))
}

/// Whether the portal versions found are enough: ScreenCast ≥ 4 (restore tokens) and a
/// RemoteDesktop portal at all (input).
pub fn versions_usable(screencast: Option<u32>, remote_desktop: Option<u32>) -> bool {
    screencast.is_some_and(|v| v >= MIN_SCREENCAST_VERSION)
        && remote_desktop.is_some_and(|v| v >= 1)
}

/// The `version` property of a portal interface, if it is there.
async fn interface_version(conn: &zbus::Connection, interface: &'static str) -> Option<u32> {
    let proxy = zbus::proxy::Builder::<zbus::Proxy<'_>>::new(conn)
        .destination(PORTAL_BUS_NAME)
        .and_then(|b| b.path(PORTAL_PATH))
        .and_then(|b| b.interface(interface))
        .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No));
    let proxy = match proxy {
        Ok(b) => b.build().await,
        Err(e) => Err(e),
    };
    match proxy {
        Ok(p) => match p.get_property::<u32>("version").await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!("{interface} version: {e}");
                None
            }
        },
        Err(e) => {
            tracing::debug!("{interface}: {e}");
            None
        }
    }
}

/// The ScreenCast and RemoteDesktop portal versions, `None` where missing; bounded by
/// [`PROBE_TIMEOUT`].
async fn probe_versions() -> (Option<u32>, Option<u32>) {
    let probe = async {
        let conn = match zbus::Connection::session().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("session bus: {e}");
                return (None, None);
            }
        };
        let sc = interface_version(&conn, "org.freedesktop.portal.ScreenCast").await;
        let rd = interface_version(&conn, "org.freedesktop.portal.RemoteDesktop").await;
        tracing::debug!(?sc, ?rd, "desktop portal versions");
        (sc, rd)
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| {
            tracing::debug!("the desktop portal did not answer within {PROBE_TIMEOUT:?}");
            (None, None)
        })
}

/// Whether the session bus has a desktop portal this backend can use (see
/// [`versions_usable`]). Asks the bus, for a few seconds at most; starts nothing the user sees.
/// Like every function here, it must not be called from inside an async runtime.
pub fn available() -> bool {
    let Ok(rt) = runtime() else {
        return false;
    };
    let (sc, rd) = rt.block_on(probe_versions());
    versions_usable(sc, rd)
}

/// The cursor as metadata when the portal offers it (the agent draws it and frames do not
/// change with every pointer move), else drawn into the frames, else hidden.
pub fn pick_cursor_mode(available: BitFlags<CursorMode>) -> CursorMode {
    if available.contains(CursorMode::Metadata) {
        CursorMode::Metadata
    } else if available.contains(CursorMode::Embedded) || available.is_empty() {
        // Empty: the portal did not say (version < 2); embedded is the safe choice.
        CursorMode::Embedded
    } else {
        CursorMode::Hidden
    }
}

/// What a failed portal call means to the state machine.
fn event_of<F>(e: PortalCallError) -> Event<F> {
    match e {
        PortalCallError::Response(ResponseError::Cancelled)
        | PortalCallError::Portal(PortalError::Cancelled(_)) => {
            Event::Answered(Response::Cancelled)
        }
        PortalCallError::Response(ResponseError::Other) => Event::Answered(Response::Other),
        PortalCallError::Portal(PortalError::InvalidArgument(m)) => Event::CallFailed(CallError {
            invalid_argument: true,
            message: format!("invalid argument: {m}"),
        }),
        e => Event::CallFailed(CallError {
            invalid_argument: false,
            message: e.to_string(),
        }),
    }
}

/// `fut`, or a call error after `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, PortalCallError>>,
) -> Result<T, PortalCallError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(PortalCallError::IO(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what}: no answer within {limit:?}"),
        ))),
    }
}

async fn close_session(session: &RdSession) {
    match tokio::time::timeout(CALL_TIMEOUT, session.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("closing the portal session: {e}"),
        Err(_) => tracing::debug!("closing the portal session: no answer"),
    }
}

/// `CreateSession`, on a task of its own: ashpd asserts that the session handle the portal
/// answers is the one it predicted, and a portal answering otherwise must fail the request, not
/// take the helper down with a panic.
async fn create_session() -> Result<RdSession, PortalCallError> {
    let task = tokio::spawn(async { RemoteDesktop::new().await?.create_session().await });
    match task.await {
        Ok(r) => r,
        Err(e) => Err(PortalCallError::IO(std::io::Error::other(format!(
            "CreateSession: {e}"
        )))),
    }
}

/// How one run of the flow ended: the machine's step and the session, if one was created.
type Run = (Step, Option<RdSession>);

/// One run of the flow with `m`'s current attempt, up to the first step that is not
/// "continue".
async fn run_once(
    remote: &RemoteDesktop<'static>,
    screencast: &Screencast<'static>,
    cursor_mode: CursorMode,
    m: &mut Machine<OwnedFd>,
) -> Result<Run, HelperError> {
    let attempt = m.begin();
    let session = match bounded(CALL_TIMEOUT, "CreateSession", create_session()).await {
        Ok(s) => s,
        Err(e) => return Ok((m.on(event_of(e)), None)),
    };
    macro_rules! step {
        ($event:expr) => {
            match m.on($event) {
                Step::Continue => {}
                other => return Ok((other, Some(session))),
            }
        };
    }
    step!(Event::Created);

    let persist = if attempt.persist {
        PersistMode::ExplicitlyRevoked
    } else {
        PersistMode::DoNot
    };
    // The persist mode and token go with the devices: for a remote-desktop session the portal
    // refuses them on SelectSources ("Remote desktop sessions cannot persist").
    let devices = bounded(CALL_TIMEOUT, "SelectDevices", async {
        remote
            .select_devices(
                &session,
                DeviceType::Keyboard | DeviceType::Pointer,
                attempt.restore_token.as_deref(),
                persist,
            )
            .await?
            .response()
    })
    .await;
    if let Err(e) = devices {
        step!(event_of(e));
    }
    let sources = bounded(CALL_TIMEOUT, "SelectSources", async {
        screencast
            .select_sources(
                &session,
                cursor_mode,
                BitFlags::from(SourceType::Monitor),
                true,
                None,
                PersistMode::DoNot,
            )
            .await?
            .response()
    })
    .await;
    if let Err(e) = sources {
        step!(event_of(e));
    }
    step!(Event::Selected);

    // The dialog: the user has DIALOG_TIMEOUT to answer.
    let started = match tokio::time::timeout(DIALOG_TIMEOUT, async {
        remote.start(&session, None).await?.response()
    })
    .await
    {
        Ok(r) => r,
        Err(_) => {
            return Ok((
                Step::Stop(HelperError::ScreenRefused(format!(
                    "nobody answered the desktop's sharing dialog within {} s",
                    DIALOG_TIMEOUT.as_secs()
                ))),
                Some(session),
            ));
        }
    };
    match started {
        Ok(selected) => {
            let streams = selected
                .streams()
                .unwrap_or_default()
                .iter()
                .map(|s| StreamInfo::new(s.pipe_wire_node_id(), s.position(), s.size()))
                .collect();
            step!(Event::Started {
                streams,
                restore_token: selected.restore_token().map(String::from),
            });
        }
        Err(e) => step!(event_of(e)),
    }

    match bounded(
        CALL_TIMEOUT,
        "OpenPipeWireRemote",
        screencast.open_pipe_wire_remote(&session),
    )
    .await
    {
        Ok(fd) => Ok((m.on(Event::Opened(fd)), Some(session))),
        Err(e) => Ok((m.on(event_of(e)), Some(session))),
    }
}

/// A started portal session.
struct Live {
    session: Arc<RdSession>,
    streams: Vec<StreamInfo>,
    /// The PipeWire remote; each display's stream connects through its own duplicate.
    fd: OwnedFd,
    captures: HashMap<u32, PwStream>,
    /// Set by `watch` when the desktop closes the session.
    closed: Arc<AtomicBool>,
    watch: tokio::task::JoinHandle<()>,
}

/// Runs the flow (retrying as the machine decides) until streaming or a stop.
async fn start_session(
    remote: &RemoteDesktop<'static>,
    screencast: &Screencast<'static>,
    cursor_mode: CursorMode,
    store: Option<&TokenStore>,
) -> Result<(RdSession, Vec<StreamInfo>, OwnedFd), HelperError> {
    let mut m = Machine::new(store.and_then(TokenStore::load));
    loop {
        let (step, session) = run_once(remote, screencast, cursor_mode, &mut m).await?;
        match step {
            Step::Streaming { save_token } => {
                if let (Some(t), Some(store)) = (save_token, store) {
                    match store.save(&t) {
                        Ok(()) => tracing::debug!("portal restore token saved"),
                        Err(e) => tracing::warn!(
                            "could not save the portal restore token ({e}); the desktop will \
                             ask again next time"
                        ),
                    }
                }
                let Some(session) = session else {
                    return Err(HelperError::ScreenRefused(
                        "internal: streaming without a portal session".into(),
                    ));
                };
                return match m.into_streaming() {
                    Some((streams, fd)) => Ok((session, streams, fd)),
                    None => {
                        close_session(&session).await;
                        Err(HelperError::ScreenRefused(
                            "internal: the portal flow ended without streams".into(),
                        ))
                    }
                };
            }
            Step::Retry { forget_token } => {
                if let Some(s) = &session {
                    close_session(s).await;
                }
                if forget_token
                    && let Some(store) = store
                    && let Err(e) = store.forget()
                {
                    tracing::warn!("could not delete the rejected portal restore token: {e}");
                }
            }
            Step::Stop(e) => {
                if let Some(s) = &session {
                    close_session(s).await;
                }
                return Err(e);
            }
            Step::Continue => {
                if let Some(s) = &session {
                    close_session(s).await;
                }
                return Err(HelperError::ScreenRefused(
                    "internal: the portal flow stopped half-way".into(),
                ));
            }
        }
    }
}

async fn send(
    remote: &RemoteDesktop<'static>,
    session: &RdSession,
    call: Call,
) -> Result<(), PortalCallError> {
    let state = |down: bool| {
        if down {
            KeyState::Pressed
        } else {
            KeyState::Released
        }
    };
    match call {
        Call::Keysym { keysym, down } => {
            remote
                .notify_keyboard_keysym(session, keysym, state(down))
                .await
        }
        Call::Keycode { code, down } => {
            remote
                .notify_keyboard_keycode(session, code, state(down))
                .await
        }
        Call::Motion { node, x, y } => {
            remote
                .notify_pointer_motion_absolute(session, node, x, y)
                .await
        }
        Call::Button { code, down } => {
            remote
                .notify_pointer_button(session, code, state(down))
                .await
        }
        Call::Axis { vertical, steps } => {
            let axis = if vertical {
                Axis::Vertical
            } else {
                Axis::Horizontal
            };
            remote
                .notify_pointer_axis_discrete(session, axis, steps)
                .await
        }
    }
}

/// The compositor as far as the environment tells (the portal does not say).
fn compositor_name(current_desktop: Option<String>) -> String {
    match current_desktop.filter(|d| !d.trim().is_empty()) {
        Some(d) => format!("{} (desktop portal)", d.trim()),
        None => "unknown (desktop portal)".into(),
    }
}

/// The portal's D-Bus proxies.
struct Proxies {
    remote: RemoteDesktop<'static>,
    screencast: Screencast<'static>,
}

/// The portal backend. See the module documentation.
pub struct Portal {
    rt: &'static Runtime,
    /// Always `Some` until dropped: zbus proxies must be dropped inside the runtime (their drop
    /// spawns a task), which `Drop for Portal` arranges by taking them out.
    proxies: Option<Proxies>,
    cursor_mode: CursorMode,
    /// `None` when there is no state directory: the user is asked every time.
    store: Option<TokenStore>,
    live: Option<Live>,
    /// Why the desktop ended the session; requests are refused with it until `stop_capture`.
    ended: Option<String>,
    held: Held,
    /// The display last captured: pointer positions are relative to it.
    current: u32,
}

/// Opens the portal's interfaces (no dialog yet: that comes with the first displays, capture
/// or input).
pub fn connect() -> Result<Portal, HelperError> {
    let store = match TokenStore::from_env() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("{e}: the desktop will ask for permission every time");
            None
        }
    };
    connect_with(store)
}

/// [`connect`] with the restore token kept in `store` (`None`: not kept).
pub fn connect_with(store: Option<TokenStore>) -> Result<Portal, HelperError> {
    let rt = runtime()?;
    let unsupported = |what: &str, e: PortalCallError| {
        HelperError::Unsupported(format!("the desktop portal's {what}: {e}"))
    };
    let (remote, screencast, cursor_mode) = rt.block_on(async {
        // ashpd takes a missing portal for version 1 of it, so ask the bus first.
        let (sc, rd) = probe_versions().await;
        if !versions_usable(sc, rd) {
            return Err(HelperError::Unsupported(format!(
                "no usable desktop portal on the session bus (ScreenCast version {}, \
                 RemoteDesktop version {}; ScreenCast {MIN_SCREENCAST_VERSION} or later and \
                 RemoteDesktop are needed)",
                sc.map_or("none".into(), |v| v.to_string()),
                rd.map_or("none".into(), |v| v.to_string()),
            )));
        }
        let remote = bounded(CALL_TIMEOUT, "RemoteDesktop", RemoteDesktop::new())
            .await
            .map_err(|e| unsupported("RemoteDesktop", e))?;
        let screencast = bounded(CALL_TIMEOUT, "ScreenCast", Screencast::new())
            .await
            .map_err(|e| unsupported("ScreenCast", e))?;
        let modes = bounded(
            CALL_TIMEOUT,
            "AvailableCursorModes",
            screencast.available_cursor_modes(),
        )
        .await
        .unwrap_or_else(|e| {
            tracing::debug!("available cursor modes: {e}");
            BitFlags::empty()
        });
        Ok::<_, HelperError>((remote, screencast, pick_cursor_mode(modes)))
    })?;
    tracing::info!(?cursor_mode, "desktop portal backend");
    Ok(Portal {
        rt,
        proxies: Some(Proxies { remote, screencast }),
        cursor_mode,
        store,
        live: None,
        ended: None,
        held: Held::default(),
        current: 0,
    })
}

impl Portal {
    /// The started session, starting it (the portal's dialog, unless the token is accepted)
    /// when there is none.
    fn live(&mut self) -> Result<&mut Live, HelperError> {
        if let Some(reason) = &self.ended {
            return Err(HelperError::ScreenRefused(reason.clone()));
        }
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.closed.load(Ordering::SeqCst))
        {
            let reason = "the desktop ended the sharing session".to_string();
            tracing::info!("{reason}");
            self.close();
            self.ended = Some(reason.clone());
            return Err(HelperError::ScreenRefused(reason));
        }
        if self.live.is_none() {
            let px = self.proxies.as_ref().ok_or_else(gone)?;
            let (session, streams, fd) = self.rt.block_on(start_session(
                &px.remote,
                &px.screencast,
                self.cursor_mode,
                self.store.as_ref(),
            ))?;
            tracing::info!(?streams, "desktop portal session started");
            let session = Arc::new(session);
            let closed = Arc::new(AtomicBool::new(false));
            // Watch for the desktop closing the session (the user revoking it). The task
            // subscribes before this returns, so a close right after the start is not missed.
            let (subscribed, ready) = tokio::sync::oneshot::channel();
            let watch = {
                let (session, closed) = (Arc::clone(&session), Arc::clone(&closed));
                self.rt.spawn(async move {
                    match session.receive_closed().await {
                        Ok(mut s) => {
                            let _ = subscribed.send(());
                            if s.next().await.is_some() {
                                closed.store(true, Ordering::SeqCst);
                            }
                        }
                        Err(e) => tracing::debug!("watching the portal session: {e}"),
                    }
                })
            };
            if self
                .rt
                .block_on(async { tokio::time::timeout(CALL_TIMEOUT, ready).await })
                .map_or(true, |r| r.is_err())
            {
                tracing::debug!("the portal session's Closed signal is not watched");
            }
            self.held = Held::default();
            self.live = Some(Live {
                session,
                streams,
                fd,
                captures: HashMap::new(),
                closed,
                watch,
            });
        }
        self.live
            .as_mut()
            .ok_or_else(|| HelperError::ScreenRefused("no portal session".into()))
    }

    /// Ends the portal session, if any.
    fn close(&mut self) {
        // The session's proxy is dropped here, which needs the runtime's context.
        let _rt = self.rt.enter();
        if let Some(live) = self.live.take() {
            live.watch.abort();
            // The PipeWire streams go first, then the session (which ends the sharing).
            drop(live.captures);
            self.rt.block_on(close_session(&live.session));
        }
        self.held = Held::default();
    }
}

impl Backend for Portal {
    fn name(&self) -> &'static str {
        "portal"
    }

    fn compositor(&self) -> String {
        compositor_name(std::env::var("XDG_CURRENT_DESKTOP").ok())
    }

    fn displays(&mut self) -> Result<Vec<DisplayInfo>, HelperError> {
        // The portal lists monitors only as the streams of a started session.
        Ok(machine::displays(&self.live()?.streams))
    }

    fn capture(&mut self, display: u32) -> Result<Capture, HelperError> {
        let live = self.live()?;
        let stream = *live
            .streams
            .get(display as usize)
            .ok_or(HelperError::NoSuchDisplay(display))?;
        if !live.captures.contains_key(&display) {
            let fd = live
                .fd
                .try_clone()
                .map_err(|e| HelperError::Capture(format!("duplicating the PipeWire fd: {e}")))?;
            let pw = PwStream::start(stream.node_id, Some(fd))?;
            live.captures.insert(display, pw);
        }
        let frame = live
            .captures
            .get(&display)
            .ok_or_else(|| HelperError::Capture("stream vanished".into()))?
            .take(FIRST_FRAME_WAIT);
        self.current = display;
        frame
    }

    fn stop_capture(&mut self) {
        self.close();
        self.ended = None;
    }

    fn input(&mut self, event: &InputEvent) -> Result<(), HelperError> {
        if matches!(event, InputEvent::ReleaseKeys) && self.live.is_none() {
            // Nothing can be held without a session.
            return Ok(());
        }
        let current = self.current as usize;
        let live = self.live()?;
        let stream = live.streams.get(current).or(live.streams.first()).copied();
        let session = Arc::clone(&live.session);
        let calls = input::lower(event, stream.as_ref(), &mut self.held)?;
        let remote = &self.proxies.as_ref().ok_or_else(gone)?.remote;
        let _rt = self.rt.enter();
        self.rt
            .block_on(bounded(CALL_TIMEOUT, "input", async {
                for c in calls {
                    send(remote, &session, c).await?;
                }
                Ok(())
            }))
            .map_err(|e| HelperError::Input(format!("the desktop portal: {e}")))
    }

    fn pointer(&mut self) -> Option<PointerState> {
        self.live.as_ref()?.captures.get(&self.current)?.pointer()
    }

    fn get_clipboard(&mut self) -> Result<String, HelperError> {
        Err(HelperError::Unsupported(
            "the clipboard through the desktop portal".into(),
        ))
    }

    fn set_clipboard(&mut self, _text: String) -> Result<(), HelperError> {
        Err(HelperError::Unsupported(
            "the clipboard through the desktop portal".into(),
        ))
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.close();
        let _rt = self.rt.enter();
        self.proxies = None;
    }
}

fn gone() -> HelperError {
    HelperError::Unsupported("the desktop portal backend was shut down".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_versions() {
        assert!(versions_usable(Some(4), Some(1)));
        assert!(versions_usable(Some(5), Some(2)));
        assert!(!versions_usable(Some(3), Some(2)), "no restore tokens");
        assert!(!versions_usable(None, Some(2)));
        assert!(!versions_usable(Some(4), None), "no input");
    }

    #[test]
    fn cursor_as_metadata_when_offered() {
        assert_eq!(
            pick_cursor_mode(CursorMode::Hidden | CursorMode::Embedded | CursorMode::Metadata),
            CursorMode::Metadata
        );
        assert_eq!(
            pick_cursor_mode(CursorMode::Hidden | CursorMode::Embedded),
            CursorMode::Embedded
        );
        assert_eq!(pick_cursor_mode(BitFlags::empty()), CursorMode::Embedded);
        assert_eq!(
            pick_cursor_mode(BitFlags::from(CursorMode::Hidden)),
            CursorMode::Hidden
        );
    }

    #[test]
    fn portal_errors_become_events() {
        let ev = |e| event_of::<()>(e);
        assert!(matches!(
            ev(PortalCallError::Response(ResponseError::Cancelled)),
            Event::Answered(Response::Cancelled)
        ));
        assert!(matches!(
            ev(PortalCallError::Response(ResponseError::Other)),
            Event::Answered(Response::Other)
        ));
        assert!(matches!(
            ev(PortalCallError::Portal(PortalError::InvalidArgument(
                "Remote desktop sessions cannot persist".into()
            ))),
            Event::CallFailed(CallError {
                invalid_argument: true,
                ..
            })
        ));
        assert!(matches!(
            ev(PortalCallError::Portal(PortalError::Failed("x".into()))),
            Event::CallFailed(CallError {
                invalid_argument: false,
                ..
            })
        ));
        assert!(matches!(
            ev(PortalCallError::NoResponse),
            Event::CallFailed(_)
        ));
    }

    #[test]
    fn timeouts_are_call_errors() {
        let rt = runtime().unwrap();
        let r: Result<(), _> = rt.block_on(bounded(
            Duration::from_millis(10),
            "Test",
            std::future::pending(),
        ));
        match r {
            Err(e) => assert!(e.to_string().contains("Test: no answer")),
            Ok(()) => panic!("a pending call must time out"),
        }
    }

    #[test]
    fn compositor_from_the_environment() {
        assert_eq!(compositor_name(Some("KDE".into())), "KDE (desktop portal)");
        assert_eq!(
            compositor_name(Some(" ".into())),
            "unknown (desktop portal)"
        );
        assert_eq!(compositor_name(None), "unknown (desktop portal)");
    }
}
