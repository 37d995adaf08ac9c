//! The whole consent flow as people see it, on real X servers: `tether connect` asks, the
//! user's tray app shows the consent dialog, a click on Allow starts the session, the banner's
//! End session ends it, the user rates it, and the audit record holds all of it; a technician's
//! message (`tether say`) is answered from the tray.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tether_tests::{Agent, Proc, Relay, Tech, Xvfb, bin, log_filter, wait_until};

/// `tether-tray` on a display, its log lines readable as they come.
struct Tray {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
}

impl Tray {
    fn start(display: &str, socket: &std::path::Path, extra: &[&str]) -> Tray {
        Tray::start_on(display, socket, extra, None)
    }

    /// With `bus` (an address) as its D-Bus session bus.
    fn start_on(
        display: &str,
        socket: &std::path::Path,
        extra: &[&str],
        bus: Option<&str>,
    ) -> Tray {
        let mut cmd = Command::new(bin("tether-tray"));
        if let Some(bus) = bus {
            // Without the accessibility bridge, which would look for an a11y bus there.
            cmd.env("DBUS_SESSION_BUS_ADDRESS", bus)
                .env("NO_AT_BRIDGE", "1");
        }
        let mut child = cmd
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .env("DISPLAY", display)
            .env("RUST_LOG", format!("{},tether_tray=info", log_filter()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tether-tray");
        let stderr = child.stderr.take().expect("tray stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("tray: {line}");
                let _ = tx.send(line);
            }
        });
        Tray {
            _proc: Proc { child },
            lines,
        }
    }

    /// The next log line containing `what`.
    fn wait_for(&self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => continue,
                Err(e) => panic!("tray never logged {what:?}: {e}"),
            }
        }
    }

    /// Log lines containing each of `what`, in whatever order they come.
    fn wait_for_all(&self, what: &[&str]) {
        let mut left = what.to_vec();
        while !left.is_empty() {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => left.retain(|w| !l.contains(w)),
                Err(e) => panic!("tray never logged {left:?}: {e}"),
            }
        }
    }
}

/// A private D-Bus session bus (`dbus-daemon`), stopped with the test. It starts no services
/// (no accessibility bus, nothing of the machine's), so only what a test serves is on it.
struct SessionBus {
    _proc: Proc,
    _dir: tempfile::TempDir,
    address: String,
}

impl SessionBus {
    fn start() -> SessionBus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("session.conf");
        std::fs::write(
            &config,
            format!(
                r#"<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().join("bus").display()
            ),
        )
        .expect("bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn dbus-daemon (Debian package dbus-daemon)");
        let mut address = String::new();
        BufReader::new(child.stdout.take().expect("dbus-daemon stdout"))
            .read_line(&mut address)
            .expect("dbus-daemon address");
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
        SessionBus {
            _proc: Proc { child },
            _dir: dir,
            address: address.trim().to_string(),
        }
    }

    /// Serves `org.kde.StatusNotifierWatcher` with a host registered, as a desktop's panel
    /// does (enough for libayatana-appindicator3 to publish its icon), until the test ends.
    fn serve_watcher_with_host(&self) {
        use gio::glib::{self, ToVariant};
        const XML: &str = r#"<node><interface name="org.kde.StatusNotifierWatcher">
            <method name="RegisterStatusNotifierItem"><arg name="service" type="s" direction="in"/></method>
            <method name="RegisterStatusNotifierHost"><arg name="service" type="s" direction="in"/></method>
            <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
            <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
            <property name="ProtocolVersion" type="i" access="read"/>
        </interface></node>"#;
        let address = self.address.clone();
        let (ready, started) = mpsc::channel();
        std::thread::spawn(move || {
            let context = glib::MainContext::new();
            let serve = context.with_thread_default(|| {
                let bus = gio::DBusConnection::for_address_sync(
                    &address,
                    gio::DBusConnectionFlags::AUTHENTICATION_CLIENT
                        | gio::DBusConnectionFlags::MESSAGE_BUS_CONNECTION,
                    None,
                    gio::Cancellable::NONE,
                )
                .expect("connect to the private bus");
                let node = gio::DBusNodeInfo::for_xml(XML).expect("watcher interface");
                let watcher = node
                    .lookup_interface("org.kde.StatusNotifierWatcher")
                    .expect("watcher interface");
                bus.register_object(
                    "/StatusNotifierWatcher",
                    &watcher,
                    |_, _, _, _, _, _, call| call.return_value(None),
                    |_, _, _, _, property| match property {
                        "IsStatusNotifierHostRegistered" => true.to_variant(),
                        "ProtocolVersion" => 0i32.to_variant(),
                        _ => Vec::<String>::new().to_variant(),
                    },
                    |_, _, _, _, _, _| false,
                )
                .expect("register the watcher");
                bus.call_sync(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "RequestName",
                    // DBUS_NAME_FLAG_DO_NOT_QUEUE
                    Some(&("org.kde.StatusNotifierWatcher", 4u32).to_variant()),
                    None,
                    gio::DBusCallFlags::NONE,
                    5_000,
                    gio::Cancellable::NONE,
                )
                .expect("own org.kde.StatusNotifierWatcher");
                let _ = ready.send(());
                glib::MainLoop::new(Some(&context), false).run();
            });
            serve.expect("watcher main context");
        });
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("the stand-in watcher never started");
    }
}

/// The value of `field=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + key.len();
    line[start..].split_whitespace().next().unwrap_or_default()
}

fn point(s: &str) -> (String, String) {
    let (x, y) = s.split_once(',').expect("x,y");
    (x.to_string(), y.to_string())
}

/// Clicks `at` (window-relative) in the window titled exactly `title`.
fn click(x: &Xvfb, title: &str, at: (String, String)) {
    let found = x.run("xdotool", &["search", "--name", &format!("^{title}$")]);
    assert!(found.status.success(), "no window titled {title:?}");
    let wid = String::from_utf8_lossy(&found.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let out = x.run(
        "xdotool",
        &["mousemove", "--window", &wid, &at.0, &at.1, "click", "1"],
    );
    assert!(out.status.success(), "click in {title:?} failed");
}

#[test]
fn allow_in_the_dialog_starts_the_session_and_end_in_the_banner_ends_it() {
    let desktop = Xvfb::start(1024, 700);
    let local = Xvfb::start(1024, 768);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&desktop.display);
    ana.wait_online(&agent.id);
    let tray = Tray::start(&desktop.display, &agent.socket(), &["--no-tray-icon"]);
    // Logged once the agent has it as a place to ask (after the agent's snapshot).
    tray.wait_for("connected to the Tether agent");

    let _viewer = Proc {
        child: Command::new(bin("tether"))
            .arg("--config")
            .arg(ana.config())
            .args([
                "connect",
                &agent.id,
                "--reason",
                "printer offline",
                "--ticket",
                "HD-77",
            ])
            .env("DISPLAY", &local.display)
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let shown = tray.wait_for("consent dialog shown");
    assert!(
        desktop
            .run(
                "xdotool",
                &["search", "--name", "^Tether: remote support request$"]
            )
            .status
            .success()
    );
    click(
        &desktop,
        "Tether: remote support request",
        point(field(&shown, "allow_button")),
    );
    // Approved: the viewer opens on the technician's screen, the banner on the user's.
    let viewer = wait_until(Duration::from_secs(30), || {
        local
            .run("xdotool", &["search", "--name", "^Tether: .*control"])
            .status
            .success()
    });
    assert!(viewer.is_some(), "the viewer never opened after Allow");
    let banner = tray.wait_for("banner shown");
    let id = field(&banner, "id").to_string();
    assert_eq!(ana.json(&["sessions"])[0]["decision"], "approved");

    click(
        &desktop,
        "Tether: session active",
        point(field(&banner, "end_button")),
    );
    let ended = wait_until(Duration::from_secs(10), || {
        ana.json(&["sessions"])[0]["ended_by"] == "user"
    });
    assert!(ended.is_some(), "End session did not end the session");

    // The tray asks the user for a rating; five stars land on the session.
    let rating = tray.wait_for("rating shown");
    let stars: Vec<&str> = field(&rating, "star_buttons").split(';').collect();
    assert_eq!(stars.len(), 5);
    click(
        &desktop,
        "Tether: rate your support session",
        point(stars[4]),
    );
    click(
        &desktop,
        "Tether: rate your support session",
        point(field(&rating, "send_button")),
    );
    let mut row = serde_json::Value::Null;
    wait_until(Duration::from_secs(10), || {
        row = ana.json(&["sessions"])[0].clone();
        // (The end time is filed once both directions of the splice have closed.)
        row["rating"] == 5 && row["ended_at"].is_string()
    })
    .unwrap_or_else(|| panic!("rating never arrived: {row:#}"));
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["technician"], "ana");
    assert_eq!(row["reason"], "printer offline");
    assert_eq!(row["ticket"], "HD-77");
    assert_eq!(row["permissions_asked"], "view + control + clipboard");
    assert_eq!(row["permissions_granted"], "view + control + clipboard");
    assert!(row["started_at"].is_string() && row["ended_at"].is_string());
    assert!(row["bytes_down"].as_u64().unwrap() > 1000, "{row:#}");
}

#[test]
fn deny_in_the_dialog_refuses_the_session() {
    let desktop = Xvfb::start(800, 600);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&desktop.display);
    ana.wait_online(&agent.id);
    // The real tray icon this time, for a (stand-in) panel's tray host.
    let bus = SessionBus::start();
    bus.serve_watcher_with_host();
    let tray = Tray::start_on(&desktop.display, &agent.socket(), &[], Some(&bus.address));
    tray.wait_for_all(&["tray icon created", "connected to the Tether agent"]);
    let pending = ana.spawn(&[
        "screenshot",
        &agent.id,
        "-o",
        "/dev/null",
        "--ticket",
        "HD-78",
    ]);
    let shown = tray.wait_for("consent dialog shown");
    click(
        &desktop,
        "Tether: remote support request",
        point(field(&shown, "deny_button")),
    );
    let out = pending.output();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("denied by the user"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_message_is_answered_from_the_tray() {
    let desktop = Xvfb::start(800, 600);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&desktop.display);
    ana.wait_online(&agent.id);
    let tray = Tray::start(&desktop.display, &agent.socket(), &["--no-tray-icon"]);
    tray.wait_for("connected to the Tether agent");

    let said = ana.spawn(&["say", &agent.id, "Please save your work", "--wait", "30s"]);
    let shown = tray.wait_for("message shown");
    let title = "Tether: message from ana";
    let found = desktop.run("xdotool", &["search", "--name", &format!("^{title}$")]);
    assert!(found.status.success(), "no window titled {title:?}");
    let wid = String::from_utf8_lossy(&found.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let entry = point(field(&shown, "entry"));
    let out = desktop.run(
        "xdotool",
        &[
            "mousemove",
            "--window",
            &wid,
            &entry.0,
            &entry.1,
            "click",
            "1",
        ],
    );
    assert!(out.status.success(), "click in the reply box failed");
    // Real key events (XTEST) to the window under the pointer: GTK ignores the synthetic ones
    // `xdotool type --window` would send.
    let out = desktop.run("xdotool", &["type", "saved"]);
    assert!(out.status.success(), "typing the reply failed");
    click(&desktop, title, point(field(&shown, "send_button")));

    let out = said.output();
    assert!(
        out.status.success(),
        "tether say failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "saved");
    let window_gone = || {
        wait_until(Duration::from_secs(10), || {
            !desktop
                .run("xdotool", &["search", "--name", &format!("^{title}$")])
                .status
                .success()
        })
        .is_some()
    };
    assert!(window_gone(), "the message window stayed open after Send");

    // Dismiss answers "no reply" at once.
    let said = ana.spawn(&["say", &agent.id, "Reboot now?", "--wait", "30s"]);
    let shown = tray.wait_for("message shown");
    click(&desktop, title, point(field(&shown, "dismiss_button")));
    let out = said.output();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reply"));
    assert!(
        window_gone(),
        "the message window stayed open after Dismiss"
    );

    // Unanswered, the window goes away when the time runs out.
    let said = ana.spawn(&["say", &agent.id, "Still there?", "--wait", "5s"]);
    tray.wait_for("message shown");
    let out = said.output();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reply"));
    assert!(
        window_gone(),
        "the message window stayed open after its time ran out"
    );

    // A message still waiting when the tray (re)starts is shown from the agent's snapshot.
    let said = ana.spawn(&["say", &agent.id, "Are you back?", "--wait", "30s"]);
    let id = field(&tray.wait_for("message shown"), "id").to_string();
    drop(tray);
    assert!(window_gone(), "the message window outlived its tray");
    let tray = Tray::start(&desktop.display, &agent.socket(), &["--no-tray-icon"]);
    let shown = tray.wait_for("message shown");
    assert_eq!(field(&shown, "id"), id);
    click(&desktop, title, point(field(&shown, "entry")));
    assert!(desktop.run("xdotool", &["type", "yes"]).status.success());
    click(&desktop, title, point(field(&shown, "send_button")));
    let out = said.output();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
}

/// Whether a window titled exactly `title` is on `x` (mapped or not).
fn has_window(x: &Xvfb, title: &str) -> bool {
    x.run("xdotool", &["search", "--name", &format!("^{title}$")])
        .status
        .success()
}

#[test]
fn without_a_tray_host_the_tray_shows_its_window_and_with_one_its_icon() {
    let desktop = Xvfb::start(800, 600);
    let bus = SessionBus::start();
    // No agent: which way the tray shows itself is settled before it looks for one.
    let socket = std::path::Path::new("/nonexistent/tether-agent.sock");

    // The appindicator library is installed, but no panel shows icons: the status window.
    let tray = Tray::start_on(&desktop.display, socket, &[], Some(&bus.address));
    let why = tray.wait_for("showing a status window instead");
    assert!(why.contains("no StatusNotifier watcher"), "{why}");
    tray.wait_for("tether-tray started");
    let shown = wait_until(Duration::from_secs(10), || has_window(&desktop, "Tether"));
    assert!(shown.is_some(), "no status window without a tray host");
    drop(tray);
    let gone = wait_until(Duration::from_secs(10), || !has_window(&desktop, "Tether"));
    assert!(gone.is_some(), "the status window outlived its tray");

    // A panel with a tray host: the icon, and no window.
    bus.serve_watcher_with_host();
    let tray = Tray::start_on(&desktop.display, socket, &[], Some(&bus.address));
    tray.wait_for("a StatusNotifier host is registered");
    tray.wait_for("tray icon created");
    tray.wait_for("tether-tray started");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !has_window(&desktop, "Tether"),
        "a status window despite the tray icon"
    );
}
