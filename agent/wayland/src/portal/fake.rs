//! A scripted stand-in for `xdg-desktop-portal` on a private session bus, to run the real
//! driver ([`super::Portal`]: ashpd, the Request/Response dance, the token store, the retries)
//! without a desktop. It owns `org.freedesktop.portal.Desktop` on the bus and answers
//! RemoteDesktop/ScreenCast as the portal would, recording every call.
//!
//! Needs a session bus of its own, so the test is ignored by default:
//! `dbus-run-session -- cargo test -p tether-wayland portal -- --ignored`.

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.portal.Error")]
enum FakeError {
    #[zbus(error)]
    ZBus(zbus::Error),
    InvalidArgument(String),
}

/// How the fake behaves, and what it saw.
#[derive(Default)]
struct Script {
    /// Start answers "other" (2) when `SelectDevices` carried this token.
    reject_token: Option<String>,
    /// Start answers "cancelled" (1).
    cancel: bool,
    /// `SelectDevices` with a persist mode fails with InvalidArgument.
    refuse_persist: bool,
    /// Tokens handed out so far.
    issued: u32,
    /// The token of the session being set up.
    token_in: Option<String>,
    persist_in: u32,
    /// The caller and path of the newest session, to close it from the desktop's side.
    last_session: Option<(String, OwnedObjectPath)>,
    log: Vec<String>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<Script>>);

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

fn sender_path(hdr: &Header<'_>, kind: &str, token: &str) -> Result<OwnedObjectPath, FakeError> {
    let sender = hdr
        .sender()
        .map(|s| s.trim_start_matches(':').replace('.', "_"))
        .unwrap_or_default();
    ObjectPath::try_from(format!(
        "/org/freedesktop/portal/desktop/{kind}/{sender}/{token}"
    ))
    .map(OwnedObjectPath::from)
    .map_err(|e| FakeError::ZBus(e.into()))
}

fn token_of(options: &HashMap<String, OwnedValue>, key: &str) -> Option<String> {
    options
        .get(key)
        .and_then(|v| String::try_from(v.clone()).ok())
}

/// Emits `Request::Response(code, results)` on the caller's request object.
async fn respond(
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    options: &HashMap<String, OwnedValue>,
    code: u32,
    results: HashMap<&str, Value<'_>>,
) -> Result<OwnedObjectPath, FakeError> {
    let token = token_of(options, "handle_token").unwrap_or_default();
    let path = sender_path(hdr, "request", &token)?;
    conn.emit_signal(
        hdr.sender().cloned(),
        &path,
        "org.freedesktop.portal.Request",
        "Response",
        &(code, results),
    )
    .await?;
    Ok(path)
}

struct FakeSession(Fake);

#[zbus::interface(name = "org.freedesktop.portal.Session")]
impl FakeSession {
    async fn close(&self) {
        self.0.with(|s| s.log.push("Session.Close".into()));
    }
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        1
    }
}

struct FakeRemoteDesktop(Fake);

#[zbus::interface(name = "org.freedesktop.portal.RemoteDesktop")]
impl FakeRemoteDesktop {
    async fn create_session(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, FakeError> {
        let token = token_of(&options, "session_handle_token").unwrap_or_default();
        let session = sender_path(&hdr, "session", &token)?;
        server
            .at(&session, FakeSession(self.0.clone()))
            .await
            .map_err(FakeError::ZBus)?;
        let caller = hdr.sender().map(|s| s.to_string()).unwrap_or_default();
        self.0.with(|s| {
            s.log.push("CreateSession".into());
            s.last_session = Some((caller, session.clone()));
        });
        let mut r = HashMap::new();
        r.insert("session_handle", Value::from(session.as_str().to_string()));
        respond(conn, &hdr, &options, 0, r).await
    }

    async fn select_devices(
        &self,
        _session: OwnedObjectPath,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<OwnedObjectPath, FakeError> {
        let token = token_of(&options, "restore_token");
        let persist = options
            .get("persist_mode")
            .and_then(|v| u32::try_from(v.clone()).ok())
            .unwrap_or(0);
        let refuse = self.0.with(|s| {
            s.log
                .push(format!("SelectDevices token={token:?} persist={persist}"));
            s.token_in = token;
            s.persist_in = persist;
            s.refuse_persist && persist != 0
        });
        if refuse {
            return Err(FakeError::InvalidArgument(
                "Remote desktop sessions cannot persist".into(),
            ));
        }
        respond(conn, &hdr, &options, 0, HashMap::new()).await
    }

    async fn start(
        &self,
        _session: OwnedObjectPath,
        _parent_window: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<OwnedObjectPath, FakeError> {
        let (code, token) = self.0.with(|s| {
            s.log.push("Start".into());
            if s.cancel {
                return (1, None);
            }
            if s.token_in.is_some() && s.token_in == s.reject_token {
                return (2, None);
            }
            s.issued += 1;
            (0, (s.persist_in == 2).then(|| format!("tok-{}", s.issued)))
        });
        let mut r: HashMap<&str, Value<'_>> = HashMap::new();
        if code == 0 {
            let stream = |node: u32, x: i32, w: i32, h: i32| {
                let mut p: HashMap<&str, Value<'_>> = HashMap::new();
                p.insert("position", Value::from((x, 0i32)));
                p.insert("size", Value::from((w, h)));
                p.insert("source_type", Value::from(1u32));
                (node, p)
            };
            r.insert("devices", Value::from(3u32));
            r.insert(
                "streams",
                Value::from(vec![stream(40, 0, 1280, 720), stream(42, 1280, 1024, 768)]),
            );
            if let Some(t) = token {
                r.insert("restore_token", Value::from(t));
            }
        }
        respond(conn, &hdr, &options, code, r).await
    }

    async fn notify_keyboard_keysym(
        &self,
        _session: OwnedObjectPath,
        _options: HashMap<String, OwnedValue>,
        keysym: i32,
        state: u32,
    ) {
        self.0
            .with(|s| s.log.push(format!("Keysym {keysym:#x} {state}")));
    }

    async fn notify_keyboard_keycode(
        &self,
        _session: OwnedObjectPath,
        _options: HashMap<String, OwnedValue>,
        keycode: i32,
        state: u32,
    ) {
        self.0
            .with(|s| s.log.push(format!("Keycode {keycode} {state}")));
    }

    async fn notify_pointer_motion_absolute(
        &self,
        _session: OwnedObjectPath,
        _options: HashMap<String, OwnedValue>,
        stream: u32,
        x: f64,
        y: f64,
    ) {
        self.0
            .with(|s| s.log.push(format!("Motion {stream} {x} {y}")));
    }

    async fn notify_pointer_button(
        &self,
        _session: OwnedObjectPath,
        _options: HashMap<String, OwnedValue>,
        button: i32,
        state: u32,
    ) {
        self.0
            .with(|s| s.log.push(format!("Button {button:#x} {state}")));
    }

    async fn notify_pointer_axis_discrete(
        &self,
        _session: OwnedObjectPath,
        _options: HashMap<String, OwnedValue>,
        axis: u32,
        steps: i32,
    ) {
        self.0.with(|s| s.log.push(format!("Axis {axis} {steps}")));
    }

    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        2
    }

    #[zbus(property)]
    fn available_device_types(&self) -> u32 {
        3
    }
}

struct FakeScreenCast(Fake);

#[zbus::interface(name = "org.freedesktop.portal.ScreenCast")]
impl FakeScreenCast {
    async fn select_sources(
        &self,
        _session: OwnedObjectPath,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<OwnedObjectPath, FakeError> {
        let cursor = options
            .get("cursor_mode")
            .and_then(|v| u32::try_from(v.clone()).ok());
        let multiple = options
            .get("multiple")
            .and_then(|v| bool::try_from(v.clone()).ok());
        let persist = options
            .get("persist_mode")
            .and_then(|v| u32::try_from(v.clone()).ok())
            .unwrap_or(0);
        self.0.with(|s| {
            s.log.push(format!(
                "SelectSources cursor={cursor:?} multiple={multiple:?}"
            ))
        });
        // As xdg-desktop-portal does for a remote-desktop session.
        if persist != 0 || options.contains_key("restore_token") {
            return Err(FakeError::InvalidArgument(
                "Remote desktop sessions cannot persist".into(),
            ));
        }
        respond(conn, &hdr, &options, 0, HashMap::new()).await
    }

    async fn open_pipe_wire_remote(
        &self,
        _session: OwnedObjectPath,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<zbus::zvariant::OwnedFd, FakeError> {
        self.0.with(|s| s.log.push("OpenPipeWireRemote".into()));
        let (r, _w) = rustix::pipe::pipe()
            .map_err(|e| FakeError::ZBus(zbus::Error::InputOutput(Arc::new(e.into()))))?;
        Ok(zbus::zvariant::OwnedFd::from(r))
    }

    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        4
    }

    #[zbus(property)]
    fn available_cursor_modes(&self) -> u32 {
        7
    }

    #[zbus(property)]
    fn available_source_types(&self) -> u32 {
        1
    }
}

fn take_log(fake: &Fake) -> Vec<String> {
    fake.with(|s| std::mem::take(&mut s.log))
}

#[test]
#[ignore = "needs a private session bus: dbus-run-session -- cargo test -p tether-wayland portal -- --ignored"]
fn the_driver_against_a_scripted_portal() {
    let rt = runtime().unwrap();
    let fake = Fake(Arc::new(Mutex::new(Script {
        reject_token: Some("stale".into()),
        ..Script::default()
    })));
    let server = rt
        .block_on(async {
            zbus::connection::Builder::session()?
                .name(PORTAL_BUS_NAME)?
                .serve_at(PORTAL_PATH, FakeRemoteDesktop(fake.clone()))?
                .serve_at(PORTAL_PATH, FakeScreenCast(fake.clone()))?
                .build()
                .await
        })
        .unwrap();
    assert!(available());

    let dir = std::env::temp_dir().join(format!("tether-portal-fake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = TokenStore::at(dir.join("tether"));
    store.save("stale").unwrap();
    let mut p = connect_with(Some(store.clone())).unwrap();
    assert_eq!(p.cursor_mode, CursorMode::Metadata);
    assert_eq!(p.name(), "portal");

    // A stale token: Start answers 2, the token is dropped and the flow run again.
    let d = p.displays().unwrap();
    assert_eq!(
        d.iter()
            .map(|d| (d.width, d.height, d.primary))
            .collect::<Vec<_>>(),
        vec![(1280, 720, true), (1024, 768, false)]
    );
    assert_eq!(
        take_log(&fake),
        vec![
            "CreateSession",
            "SelectDevices token=Some(\"stale\") persist=2",
            "SelectSources cursor=Some(4) multiple=Some(true)",
            "Start",
            "Session.Close",
            "CreateSession",
            "SelectDevices token=None persist=2",
            "SelectSources cursor=Some(4) multiple=Some(true)",
            "Start",
            "OpenPipeWireRemote",
        ]
    );
    assert_eq!(
        store.read().unwrap().as_deref(),
        Some("tok-1"),
        "the new token is kept"
    );

    // Input to the stream of the display viewed (display 0 until a capture says otherwise).
    p.input(&InputEvent::Click {
        x: 5000,
        y: 10,
        button: tether_protocol::session::MouseButton::Left,
    })
    .unwrap();
    p.input(&InputEvent::Text("a".into())).unwrap();
    p.input(&InputEvent::Scroll { dx: 0, dy: 1 }).unwrap();
    assert_eq!(
        take_log(&fake),
        vec![
            "Motion 40 1279 10",
            "Button 0x110 1",
            "Button 0x110 0",
            "Keysym 0x61 1",
            "Keysym 0x61 0",
            "Axis 0 1",
        ]
    );
    assert_eq!(p.capture(2), Err(HelperError::NoSuchDisplay(2)));
    // The PipeWire consumer is a stand-in until merged; the fd was duplicated for it.
    assert!(p.capture(1).is_err());

    // Stop closes the session; the next start uses the saved token without a retry.
    p.stop_capture();
    assert_eq!(take_log(&fake), vec!["Session.Close"]);
    p.displays().unwrap();
    let log = take_log(&fake);
    assert_eq!(log[1], "SelectDevices token=Some(\"tok-1\") persist=2");
    assert_eq!(log.iter().filter(|l| *l == "Start").count(), 1);
    assert_eq!(store.read().unwrap().as_deref(), Some("tok-2"));
    p.stop_capture();
    take_log(&fake);

    // The user cancels the dialog.
    fake.with(|s| s.cancel = true);
    match p.displays() {
        Err(HelperError::ScreenRefused(m)) => assert_eq!(m, machine::CANCELLED),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        take_log(&fake).last().map(String::as_str),
        Some("Session.Close")
    );
    assert_eq!(
        store.read().unwrap().as_deref(),
        Some("tok-2"),
        "a cancel keeps the token"
    );

    // A portal that refuses persistence: asked again without it; nothing to keep.
    fake.with(|s| {
        s.cancel = false;
        s.refuse_persist = true;
    });
    store.forget().unwrap();
    p.displays().unwrap();
    let log = take_log(&fake);
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("SelectDevices"))
            .collect::<Vec<_>>(),
        vec![
            "SelectDevices token=None persist=2",
            "SelectDevices token=None persist=0"
        ]
    );
    assert_eq!(store.read(), Ok(None));

    // The user ends the sharing from the desktop: requests are refused, no dialog pops up,
    // until the agent stops the capture.
    let (caller, session) = fake.with(|s| s.last_session.clone()).unwrap();
    rt.block_on(server.emit_signal(
        Some(caller.as_str()),
        &session,
        "org.freedesktop.portal.Session",
        "Closed",
        &HashMap::<String, OwnedValue>::new(),
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..2 {
        match p.input(&InputEvent::MouseMove { x: 1, y: 1 }) {
            Err(HelperError::ScreenRefused(m)) => assert!(m.contains("ended"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        take_log(&fake),
        vec!["Session.Close"],
        "no new session, no input"
    );
    p.stop_capture();
    p.displays().unwrap();
    assert!(
        take_log(&fake).contains(&"Start".to_string()),
        "started afresh"
    );
    drop(p);
    assert_eq!(
        take_log(&fake),
        vec!["Session.Close"],
        "dropping the backend ends the session"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _rt = rt.enter();
    drop(server);
}
