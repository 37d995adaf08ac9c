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
        let mut child = Command::new(bin("tether-tray"))
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
        row["rating"] == 5
    })
    .unwrap_or_else(|| panic!("rating never arrived: {row:#}"));
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["technician"], "ana");
    assert_eq!(row["reason"], "printer offline");
    assert_eq!(row["ticket"], "HD-77");
    assert_eq!(row["permissions_asked"], "view + control + clipboard");
    assert_eq!(row["permissions_granted"], "view + control + clipboard");
    assert!(row["started_at"].is_string() && row["ended_at"].is_string());
    assert!(row["bytes_down"].as_u64().unwrap() > 1000);
}

#[test]
fn deny_in_the_dialog_refuses_the_session() {
    let desktop = Xvfb::start(800, 600);
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&desktop.display);
    ana.wait_online(&agent.id);
    // The real tray icon this time (invisible without a tray host, but built).
    let tray = Tray::start(&desktop.display, &agent.socket(), &[]);
    tray.wait_for("connected to the Tether agent");
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
