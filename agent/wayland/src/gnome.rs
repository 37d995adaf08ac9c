//! GNOME (mutter): the screen through `org.gnome.Mutter.ScreenCast`, input and the clipboard
//! through `org.gnome.Mutter.RemoteDesktop`, on the user's session bus — what
//! gnome-remote-desktop uses. Mutter asks nothing of the user on this API (only processes of the
//! session can reach its bus), so Tether's consent dialog stays the user's one decision; GNOME
//! shows its own "screen is being shared" indicator while a stream runs.
//!
//! A remote-desktop session and a screen-cast session linked to it are made on first need
//! (capture, input or clipboard), with one stream per monitor (unconsumed streams cost mutter
//! nothing: it paints a stream only when a PipeWire consumer is linked). Frames come from
//! [`crate::pw`]. Traps of mutter 43 handled here (docs/research/wayland/FINDINGS.md §9): the
//! first input event of a session is dropped (a Shift tap and a repeated first motion absorb
//! it); absolute motion names the stream as a string; linked sessions start through the
//! remote-desktop session; the clipboard's read fd is non-blocking.

use crate::backend::{Backend, Capture};
use crate::pw::PwStream;
use futures_util::StreamExt;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_protocol::helper::{HelperError, MAX_CLIPBOARD, PointerState, key_events};
use tether_protocol::keys::{KeyEvent, KeyMode};
use tether_protocol::session::{DisplayInfo, InputEvent, MouseButton};
use zbus::zvariant::{OwnedObjectPath, Value};

mod dbus {
    //! The mutter interfaces used (each proxy with a `Closed` signal in a module of its own:
    //! zbus names the generated signal types after the signal).
    use std::collections::HashMap;
    use zbus::proxy;
    use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

    #[proxy(
        interface = "org.gnome.Mutter.ScreenCast",
        default_service = "org.gnome.Mutter.ScreenCast",
        default_path = "/org/gnome/Mutter/ScreenCast"
    )]
    pub trait ScreenCast {
        fn create_session(
            &self,
            properties: HashMap<&str, Value<'_>>,
        ) -> zbus::Result<OwnedObjectPath>;
        #[zbus(property)]
        fn version(&self) -> zbus::Result<i32>;
    }

    pub mod sc {
        use super::*;
        #[proxy(
            interface = "org.gnome.Mutter.ScreenCast.Session",
            default_service = "org.gnome.Mutter.ScreenCast"
        )]
        pub trait ScreenCastSession {
            fn record_monitor(
                &self,
                connector: &str,
                properties: HashMap<&str, Value<'_>>,
            ) -> zbus::Result<OwnedObjectPath>;
        }
    }

    #[proxy(
        interface = "org.gnome.Mutter.ScreenCast.Stream",
        default_service = "org.gnome.Mutter.ScreenCast"
    )]
    pub trait ScreenCastStream {
        #[zbus(signal, name = "PipeWireStreamAdded")]
        fn pipewire_stream_added(&self, node_id: u32) -> zbus::Result<()>;
    }

    #[proxy(
        interface = "org.gnome.Mutter.RemoteDesktop",
        default_service = "org.gnome.Mutter.RemoteDesktop",
        default_path = "/org/gnome/Mutter/RemoteDesktop"
    )]
    pub trait RemoteDesktop {
        fn create_session(&self) -> zbus::Result<OwnedObjectPath>;
    }

    pub mod rd {
        use super::*;
        #[proxy(
            interface = "org.gnome.Mutter.RemoteDesktop.Session",
            default_service = "org.gnome.Mutter.RemoteDesktop"
        )]
        pub trait RemoteDesktopSession {
            fn start(&self) -> zbus::Result<()>;
            fn stop(&self) -> zbus::Result<()>;
            fn notify_keyboard_keycode(&self, keycode: u32, pressed: bool) -> zbus::Result<()>;
            fn notify_keyboard_keysym(&self, keysym: u32, pressed: bool) -> zbus::Result<()>;
            fn notify_pointer_button(&self, button: i32, pressed: bool) -> zbus::Result<()>;
            fn notify_pointer_axis_discrete(&self, axis: u32, steps: i32) -> zbus::Result<()>;
            /// `stream` is the stream's object path as a string (`(sdd)`, not `(odd)`).
            fn notify_pointer_motion_absolute(
                &self,
                stream: &str,
                x: f64,
                y: f64,
            ) -> zbus::Result<()>;
            fn enable_clipboard(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
            fn set_selection(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
            fn selection_write(&self, serial: u32) -> zbus::Result<zbus::zvariant::OwnedFd>;
            fn selection_write_done(&self, serial: u32, success: bool) -> zbus::Result<()>;
            fn selection_read(&self, mime_type: &str) -> zbus::Result<zbus::zvariant::OwnedFd>;
            #[zbus(signal)]
            fn selection_transfer(&self, mime_type: String, serial: u32) -> zbus::Result<()>;
            #[zbus(property)]
            fn session_id(&self) -> zbus::Result<String>;
            #[zbus(signal, name = "Closed")]
            fn closed(&self) -> zbus::Result<()>;
        }
    }

    #[proxy(
        interface = "org.gnome.Mutter.DisplayConfig",
        default_service = "org.gnome.Mutter.DisplayConfig",
        default_path = "/org/gnome/Mutter/DisplayConfig"
    )]
    pub trait DisplayConfig {
        #[allow(clippy::type_complexity)]
        fn get_current_state(
            &self,
        ) -> zbus::Result<(
            u32,
            Vec<(
                (String, String, String, String),
                Vec<(
                    String,
                    i32,
                    i32,
                    f64,
                    f64,
                    Vec<f64>,
                    HashMap<String, OwnedValue>,
                )>,
                HashMap<String, OwnedValue>,
            )>,
            Vec<(
                i32,
                i32,
                f64,
                u32,
                bool,
                Vec<(String, String, String, String)>,
                HashMap<String, OwnedValue>,
            )>,
            HashMap<String, OwnedValue>,
        )>;
    }
}

const TEXT_MIME: &str = "text/plain;charset=utf-8";
/// How long the first frame of a new stream may take (a busy software-rendered desktop).
const FIRST_FRAME: Duration = Duration::from_secs(10);
const BTN_LEFT: i32 = 0x110;
const BTN_RIGHT: i32 = 0x111;
const BTN_MIDDLE: i32 = 0x112;

/// A monitor as mutter lays it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub connector: String,
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub primary: bool,
}

/// The running remote-desktop session.
struct Session {
    rd: dbus::rd::RemoteDesktopSessionProxy<'static>,
    /// Per display: the stream's object path and PipeWire node.
    streams: Vec<(OwnedObjectPath, u32)>,
    /// Consumers started so far, per display.
    consumers: HashMap<u32, PwStream>,
    /// The next pointer event repeats its motion (mutter drops a session's first).
    first_pointer: bool,
    /// The text this session offers as the clipboard, while it owns it.
    offered: Arc<Mutex<Option<String>>>,
    transfers: tokio::task::JoinHandle<()>,
}

pub struct Gnome {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
    monitors: Vec<Monitor>,
    session: Option<Session>,
    /// The display input coordinates refer to: the one last captured.
    current: u32,
    held_syms: BTreeSet<u32>,
    held_codes: BTreeSet<u16>,
    compositor: String,
}

fn fail(what: &str) -> impl Fn(zbus::Error) -> HelperError + '_ {
    move |e| HelperError::Capture(format!("{what}: {e}"))
}

fn input_fail(e: zbus::Error) -> HelperError {
    HelperError::Input(e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, HelperError> {
    // One worker: zbus's reader and the clipboard's transfer task run while no call is made.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| HelperError::Unsupported(format!("cannot start a runtime: {e}")))
}

/// Whether mutter's ScreenCast service is on the session bus.
pub fn available() -> bool {
    let Ok(rt) = runtime() else { return false };
    rt.block_on(async {
        let Ok(Ok(conn)) =
            tokio::time::timeout(Duration::from_secs(5), zbus::Connection::session()).await
        else {
            return false;
        };
        let Ok(dbus) = zbus::fdo::DBusProxy::new(&conn).await else {
            return false;
        };
        let Ok(name) = zbus::names::BusName::try_from("org.gnome.Mutter.ScreenCast") else {
            return false;
        };
        dbus.name_has_owner(name).await.unwrap_or(false)
    })
}

fn u32_of(v: i32) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(0)
}

/// The monitors, primary first, from `DisplayConfig.GetCurrentState`.
async fn monitors(conn: &zbus::Connection) -> Result<Vec<Monitor>, HelperError> {
    let dc = dbus::DisplayConfigProxy::new(conn)
        .await
        .map_err(fail("mutter's DisplayConfig"))?;
    let (_serial, physical, logical, _props) = dc
        .get_current_state()
        .await
        .map_err(fail("reading mutter's monitors"))?;
    let mut out = Vec::new();
    for (x, y, scale, _transform, primary, members, _) in logical {
        let Some((connector, ..)) = members.first() else {
            continue;
        };
        // The current mode of that connector gives the size in pixels.
        let mode = physical
            .iter()
            .filter(|(spec, ..)| &spec.0 == connector)
            .flat_map(|(_, modes, _)| modes.iter())
            .find(|m| {
                m.6.get("is-current")
                    .and_then(|v| bool::try_from(v).ok())
                    .unwrap_or(false)
            });
        let Some((_, w, h, ..)) = mode else { continue };
        let _ = scale;
        out.push(Monitor {
            connector: connector.clone(),
            x,
            y,
            width: u32_of(*w),
            height: u32_of(*h),
            primary,
        });
    }
    out.sort_by_key(|m| !m.primary);
    Ok(out)
}

impl Gnome {
    pub fn connect() -> Result<Gnome, HelperError> {
        let rt = runtime()?;
        let conn = rt
            .block_on(zbus::Connection::session())
            .map_err(|e| HelperError::Unsupported(format!("no session bus: {e}")))?;
        let monitors = rt.block_on(monitors(&conn))?;
        let version = rt
            .block_on(async { dbus::ScreenCastProxy::new(&conn).await?.version().await })
            .map_err(fail("mutter's ScreenCast"))?;
        Ok(Gnome {
            rt,
            conn,
            monitors,
            session: None,
            current: 0,
            held_syms: BTreeSet::new(),
            held_codes: BTreeSet::new(),
            compositor: format!("mutter (ScreenCast API {version})"),
        })
    }

    /// The session, made and started on first need.
    fn session(&mut self) -> Result<&mut Session, HelperError> {
        if self.session.is_none() {
            let s = self
                .rt
                .block_on(start_session(&self.conn, &self.monitors))?;
            self.session = Some(s);
        }
        self.session
            .as_mut()
            .ok_or_else(|| HelperError::Capture("no session".into()))
    }

    fn key(&mut self, k: &KeyEvent) -> Result<(), HelperError> {
        let rd = self.session()?.rd.clone();
        if k.mode == KeyMode::Physical && k.code != 0 {
            self.rt
                .block_on(rd.notify_keyboard_keycode(u32::from(k.code), k.down))
                .map_err(input_fail)?;
            if k.down {
                self.held_codes.insert(k.code);
            } else {
                self.held_codes.remove(&k.code);
            }
        } else {
            // Mutter finds the key (and the Shift it needs) in the user's layout; a keysym the
            // layout lacks is dropped by mutter 43 without an error.
            self.rt
                .block_on(rd.notify_keyboard_keysym(k.keysym, k.down))
                .map_err(input_fail)?;
            if k.down {
                self.held_syms.insert(k.keysym);
            } else {
                self.held_syms.remove(&k.keysym);
            }
        }
        Ok(())
    }

    fn motion(&mut self, x: i32, y: i32) -> Result<(), HelperError> {
        let current = self.current as usize;
        let s = self.session()?;
        let Some((path, _)) = s.streams.get(current).or_else(|| s.streams.first()) else {
            return Err(HelperError::Input("no monitor to point at".into()));
        };
        let (rd, path) = (s.rd.clone(), path.to_string());
        let repeat = std::mem::take(&mut s.first_pointer);
        self.rt
            .block_on(async {
                if repeat {
                    rd.notify_pointer_motion_absolute(&path, f64::from(x), f64::from(y))
                        .await?;
                }
                rd.notify_pointer_motion_absolute(&path, f64::from(x), f64::from(y))
                    .await
            })
            .map_err(input_fail)
    }

    fn button(&mut self, b: MouseButton, down: bool) -> Result<(), HelperError> {
        let rd = self.session()?.rd.clone();
        let code = match b {
            MouseButton::Left => BTN_LEFT,
            MouseButton::Right => BTN_RIGHT,
            MouseButton::Middle => BTN_MIDDLE,
        };
        self.rt
            .block_on(rd.notify_pointer_button(code, down))
            .map_err(input_fail)
    }

    fn release_all(&mut self) {
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let rd = s.rd.clone();
        let syms = std::mem::take(&mut self.held_syms);
        let codes = std::mem::take(&mut self.held_codes);
        self.rt.block_on(async {
            for k in syms {
                let _ = rd.notify_keyboard_keysym(k, false).await;
            }
            for c in codes {
                let _ = rd.notify_keyboard_keycode(u32::from(c), false).await;
            }
        });
    }
}

async fn start_session(
    conn: &zbus::Connection,
    monitors: &[Monitor],
) -> Result<Session, HelperError> {
    let refused = |what: &'static str| {
        move |e: zbus::Error| HelperError::ScreenRefused(format!("{what}: {e}"))
    };
    let rdm = dbus::RemoteDesktopProxy::new(conn)
        .await
        .map_err(refused("mutter's RemoteDesktop"))?;
    let rd_path = rdm
        .create_session()
        .await
        .map_err(refused("creating a remote desktop session"))?;
    let rd = dbus::rd::RemoteDesktopSessionProxy::builder(conn)
        .path(rd_path)
        .map_err(refused("session path"))?
        .build()
        .await
        .map_err(refused("session"))?;
    let id = rd.session_id().await.map_err(refused("session id"))?;
    let scm = dbus::ScreenCastProxy::new(conn)
        .await
        .map_err(refused("mutter's ScreenCast"))?;
    let sc_path = scm
        .create_session(HashMap::from([
            ("remote-desktop-session-id", Value::from(id)),
            ("disable-animations", Value::from(true)),
        ]))
        .await
        .map_err(refused("creating a screen cast session"))?;
    let sc = dbus::sc::ScreenCastSessionProxy::builder(conn)
        .path(sc_path)
        .map_err(refused("screen cast path"))?
        .build()
        .await
        .map_err(refused("screen cast session"))?;
    let mut paths = Vec::new();
    let mut added = Vec::new();
    for m in monitors {
        // cursor-mode 2: the pointer travels as metadata, not drawn into the frames.
        let path = sc
            .record_monitor(
                &m.connector,
                HashMap::from([("cursor-mode", Value::U32(2))]),
            )
            .await
            .map_err(refused("recording a monitor"))?;
        let stream = dbus::ScreenCastStreamProxy::builder(conn)
            .path(path.clone())
            .map_err(refused("stream path"))?
            .build()
            .await
            .map_err(refused("stream"))?;
        // Subscribed before Start: the signal comes within milliseconds of it.
        added.push(
            stream
                .receive_pipewire_stream_added()
                .await
                .map_err(refused("stream signal"))?,
        );
        paths.push(path);
    }
    rd.start().await.map_err(refused("starting the session"))?;
    let mut streams = Vec::new();
    for (path, mut sig) in paths.into_iter().zip(added) {
        let node = tokio::time::timeout(Duration::from_secs(10), sig.next())
            .await
            .ok()
            .flatten()
            .and_then(|s| s.args().ok().map(|a| a.node_id))
            .ok_or_else(|| {
                HelperError::ScreenRefused("mutter gave no PipeWire stream within 10 s".into())
            })?;
        streams.push((path, node));
    }
    // Mutter 43 drops the first input event of a session: spend it on a Shift tap.
    let _ = rd.notify_keyboard_keysym(0xffe1, true).await;
    let _ = rd.notify_keyboard_keysym(0xffe1, false).await;
    let _ = rd.enable_clipboard(HashMap::new()).await;
    let offered: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let transfers = tokio::spawn(answer_transfers(rd.clone(), offered.clone()));
    tracing::info!(
        streams = streams.len(),
        "mutter remote desktop session started"
    );
    Ok(Session {
        rd,
        streams,
        consumers: HashMap::new(),
        first_pointer: true,
        offered,
        transfers,
    })
}

/// Answers every request of an application for the clipboard this session offers (GTK may ask
/// more than once per paste).
async fn answer_transfers(
    rd: dbus::rd::RemoteDesktopSessionProxy<'static>,
    offered: Arc<Mutex<Option<String>>>,
) {
    let Ok(mut transfers) = rd.receive_selection_transfer().await else {
        return;
    };
    while let Some(t) = transfers.next().await {
        let Ok(args) = t.args() else { continue };
        let serial = args.serial;
        let text = offered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        let ok = match rd.selection_write(serial).await {
            Ok(fd) => {
                let fd: std::os::fd::OwnedFd = fd.into();
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    std::fs::File::from(fd).write_all(text.as_bytes()).is_ok()
                })
                .await
                .unwrap_or(false)
            }
            Err(e) => {
                tracing::warn!("clipboard transfer: {e}");
                false
            }
        };
        let _ = rd.selection_write_done(serial, ok).await;
    }
}

/// Reads the selection's fd to its end, at most [`MAX_CLIPBOARD`] bytes (mutter hands it out
/// non-blocking).
fn read_selection(fd: std::os::fd::OwnedFd) -> Result<String, HelperError> {
    use std::io::Read;
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| HelperError::Clipboard(e.to_string()))?;
    rustix::fs::fcntl_setfl(&fd, flags - rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| HelperError::Clipboard(e.to_string()))?;
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_CLIPBOARD as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| HelperError::Clipboard(e.to_string()))?;
    if buf.len() > MAX_CLIPBOARD {
        return Err(HelperError::Clipboard(format!(
            "the clipboard holds more than {} KiB of text",
            MAX_CLIPBOARD / 1024
        )));
    }
    String::from_utf8(buf)
        .map_err(|_| HelperError::Clipboard("the clipboard is not UTF-8 text".into()))
}

impl Backend for Gnome {
    fn name(&self) -> &'static str {
        "gnome"
    }

    fn compositor(&self) -> String {
        self.compositor.clone()
    }

    fn displays(&mut self) -> Result<Vec<DisplayInfo>, HelperError> {
        if self.session.is_none() {
            // Monitors may have changed since start; the streams keep the session's layout.
            self.monitors = self.rt.block_on(monitors(&self.conn))?;
        }
        Ok(self
            .monitors
            .iter()
            .enumerate()
            .map(|(i, m)| DisplayInfo {
                index: i as u32,
                width: m.width,
                height: m.height,
                primary: m.primary,
            })
            .collect())
    }

    fn capture(&mut self, display: u32) -> Result<Capture, HelperError> {
        if display as usize >= self.monitors.len() {
            return Err(HelperError::NoSuchDisplay(display));
        }
        self.current = display;
        let s = self.session()?;
        if !s.consumers.contains_key(&display) {
            let (_, node) = s
                .streams
                .get(display as usize)
                .ok_or(HelperError::NoSuchDisplay(display))?;
            let pw = PwStream::start(*node, None)?;
            s.consumers.insert(display, pw);
        }
        match s.consumers.get(&display) {
            Some(pw) => pw.take(FIRST_FRAME),
            None => Err(HelperError::NoSuchDisplay(display)),
        }
    }

    fn stop_capture(&mut self) {
        // zbus proxies unsubscribe on drop, which needs the runtime.
        let _rt = self.rt.enter();
        self.release_all();
        if let Some(s) = self.session.take() {
            drop(s.consumers);
            s.transfers.abort();
            let _ = self.rt.block_on(s.rd.stop());
            tracing::info!("mutter remote desktop session stopped");
        }
    }

    fn input(&mut self, event: &InputEvent) -> Result<(), HelperError> {
        match event {
            InputEvent::MouseMove { x, y } => self.motion(*x, *y),
            InputEvent::Button { button, down } => self.button(*button, *down),
            InputEvent::Click { x, y, button } => {
                self.motion(*x, *y)?;
                self.button(*button, true)?;
                self.button(*button, false)
            }
            InputEvent::Scroll { dx, dy } => {
                let rd = self.session()?.rd.clone();
                self.rt
                    .block_on(async {
                        // Axis 0 is vertical, 1 horizontal; positive steps scroll down/right.
                        if *dy != 0 {
                            rd.notify_pointer_axis_discrete(0, *dy).await?;
                        }
                        if *dx != 0 {
                            rd.notify_pointer_axis_discrete(1, *dx).await?;
                        }
                        Ok(())
                    })
                    .map_err(input_fail)
            }
            InputEvent::ReleaseKeys => {
                self.release_all();
                Ok(())
            }
            other => {
                for k in key_events(other) {
                    self.key(&k)?;
                }
                Ok(())
            }
        }
    }

    fn pointer(&mut self) -> Option<PointerState> {
        let s = self.session.as_ref()?;
        s.consumers.get(&self.current)?.pointer()
    }

    fn get_clipboard(&mut self) -> Result<String, HelperError> {
        let (rd, offered) = {
            let s = self.session()?;
            (s.rd.clone(), s.offered.clone())
        };
        match self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), rd.selection_read(TEXT_MIME)).await
        }) {
            Ok(Ok(fd)) => {
                // Read on a thread of its own: an application that never finishes writing must
                // not hold the helper.
                let fd: std::os::fd::OwnedFd = fd.into();
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name("clipboard-read".into())
                    .spawn(move || {
                        let _ = tx.send(read_selection(fd));
                    })
                    .map_err(|e| HelperError::Clipboard(e.to_string()))?;
                rx.recv_timeout(Duration::from_secs(5)).map_err(|_| {
                    HelperError::Clipboard(
                        "the application owning the clipboard did not finish within 5 s".into(),
                    )
                })?
            }
            // The session owns the selection: it is what the technician put there.
            Ok(Err(e)) if e.to_string().contains("own selection") => Ok(offered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default()),
            Ok(Err(e)) => Err(HelperError::Clipboard(e.to_string())),
            Err(_) => Err(HelperError::Clipboard(
                "the application owning the clipboard did not answer within 5 s".into(),
            )),
        }
    }

    fn set_clipboard(&mut self, text: String) -> Result<(), HelperError> {
        if text.len() > MAX_CLIPBOARD {
            return Err(HelperError::Clipboard("text too long".into()));
        }
        let (rd, offered) = {
            let s = self.session()?;
            (s.rd.clone(), s.offered.clone())
        };
        *offered.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
        let mimes: Vec<&str> = vec![TEXT_MIME, "text/plain", "UTF8_STRING", "STRING", "TEXT"];
        self.rt
            .block_on(rd.set_selection(HashMap::from([("mime-types", Value::from(mimes))])))
            .map_err(|e| HelperError::Clipboard(e.to_string()))
    }
}

impl Drop for Gnome {
    fn drop(&mut self) {
        self.stop_capture();
    }
}
