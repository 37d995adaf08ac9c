//! The Windows tray app (`tether-tray.exe`, cross-built) under Wine, with the Windows agent
//! asking it (no `--terminal-approval`): real clicks (xdotool, on Wine's X display) on Allow runs
//! the technician's command, on Deny refuses the request, on the banner's End session ends a
//! screen session, and the rating dialog's fifth star and Send land on the audit record. The
//! tray logs each window's button centres in screen coordinates, which Wine (no virtual desktop)
//! maps 1:1 onto the X root.

use std::sync::mpsc;
use std::time::{Duration, Instant};
use tether_tests::wine::{self, Wine, WineAgent, wait_wine};
use tether_tests::{Proc, Relay, Tech, Xvfb, log_filter, stderr};

/// Deadline for anything the tray shows: Wine is slow on a busy machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// `tether-tray.exe` in the prefix, its log lines readable as they come.
struct WineTray {
    proc: Proc,
    lines: mpsc::Receiver<String>,
}

impl WineTray {
    fn start(wine: &Wine, args: &[&str]) -> WineTray {
        let filter = format!("{},tether_tray=info", log_filter());
        let (proc, lines) = wine.spawn_logged(
            &wine::dist().join("tether-tray.exe"),
            args,
            &[("RUST_LOG", &filter)],
            "tray",
        );
        WineTray { proc, lines }
    }

    /// A log line containing each of `what` (in that order), whatever order they come in.
    fn wait_for_all(&self, what: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; what.len()];
        let deadline = Instant::now() + PATIENCE;
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(i) =
                        (0..what.len()).find(|&i| found[i].is_none() && l.contains(what[i]))
                    {
                        found[i] = Some(l);
                    }
                }
                Err(e) => panic!("the tray never logged all of {what:?}: {e}"),
            }
        }
        found.into_iter().flatten().collect()
    }

    /// The next log line containing `what`.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => continue,
                Err(e) => panic!("the tray never logged {what:?}: {e}"),
            }
        }
    }
}

/// The value of `field=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + key.len();
    line[start..].split_whitespace().next().unwrap_or_default()
}

/// Clicks the screen point "x,y" once the window titled exactly `title` is on screen.
fn click(x: &Xvfb, title: &str, at: &str) {
    let (px, py) = at
        .split_once(',')
        .unwrap_or_else(|| panic!("not a point: {at:?}"));
    wait_wine(&format!("the window {title:?} on screen"), || {
        x.run(
            "xdotool",
            &["search", "--onlyvisible", "--name", &format!("^{title}$")],
        )
        .status
        .success()
    });
    let out = x.run("xdotool", &["mousemove", "--sync", px, py, "click", "1"]);
    assert!(out.status.success(), "click at {at} in {title:?}: {out:?}");
}

/// The session row `id` of `tether sessions --json`.
fn session(tech: &Tech, id: &str) -> serde_json::Value {
    let all = tech.json(&["sessions"]);
    all.as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id).cloned())
        .unwrap_or_default()
}

#[test]
fn windows_tray_under_wine_allows_denies_ends_and_rates() {
    if !wine::enabled() {
        return;
    }
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "admin"));
    // Commands on Windows run as the service's account, root's place: allowed, and asked for.
    tech.tether(&["policy", "--group", "default", "--allow-root", "on"]);
    let wine = Wine::start();
    let mut agent = WineAgent::enroll(&wine, &relay.agent_token());
    // No --terminal-approval: the agent asks the user through the tray, and denies without one.
    agent.start(&wine, &[]);
    wait_wine("the Windows agent online", || {
        tech.is_online(&agent.id) == Some(true)
    });
    let tray = WineTray::start(&wine, &[]);
    tray.wait_for("connected to the Tether agent");
    let dev = agent.id.as_str();

    // A second tray in the same session (started by hand besides the one from sign-in) leaves.
    let second = tether_tests::run(
        wine.command("timeout")
            .args(["60", "wine"])
            .arg(wine::dist().join("tether-tray.exe")),
    );
    assert!(!second.status.success(), "{second:?}");
    assert!(
        stderr(&second).contains("already running in this session"),
        "{}",
        stderr(&second)
    );

    // Allow: the command runs and its exit code comes back. (A ticket per step: an approved
    // visit would let the next request in without asking.)
    let exec = tech.spawn(&[
        "exec",
        dev,
        "--as-root",
        "--ticket",
        "WT-1",
        "--",
        "cmd",
        "/c",
        "exit 7",
    ]);
    let shown = tray.wait_for("consent dialog shown");
    click(
        &wine.x,
        "Tether: remote support request",
        field(&shown, "allow_button"),
    );
    let out = exec.output();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    // Deny: the request fails with the user's answer.
    let work = tempfile::tempdir().unwrap();
    let shot = work.path().join("denied.png");
    let denied = tech.spawn(&[
        "screenshot",
        dev,
        "-o",
        shot.to_str().unwrap(),
        "--ticket",
        "WT-2",
    ]);
    let shown = tray.wait_for("consent dialog shown");
    click(
        &wine.x,
        "Tether: remote support request",
        field(&shown, "deny_button"),
    );
    let out = denied.output();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("denied by the user"),
        "{}",
        stderr(&out)
    );
    assert!(!shot.exists());

    // A screen session: allowed, the banner shows it, End session ends it, the user rates it.
    let local = Xvfb::start(1300, 900);
    let _viewer = tech.viewer(
        &local,
        dev,
        &["--reason", "tray test", "--ticket", "WT-3"],
        &[],
    );
    let shown = tray.wait_for("consent dialog shown");
    click(
        &wine.x,
        "Tether: remote support request",
        field(&shown, "allow_button"),
    );
    let banner = tray.wait_for("banner shown");
    let id = field(&banner, "id").to_string();
    assert_eq!(session(&tech, &id)["decision"], "approved");
    click(
        &wine.x,
        "Tether: session active",
        field(&banner, "end_button"),
    );
    wait_wine("the session ended by the user", || {
        session(&tech, &id)["ended_by"] == "user"
    });

    let rating = tray.wait_for("rating shown");
    let stars: Vec<&str> = field(&rating, "star_buttons").split(';').collect();
    assert_eq!(stars.len(), 5, "{rating}");
    click(&wine.x, "Tether: rate your support session", stars[4]);
    click(
        &wine.x,
        "Tether: rate your support session",
        field(&rating, "send_button"),
    );
    let mut row = serde_json::Value::Null;
    wait_wine("the rating on the session", || {
        row = session(&tech, &id);
        row["rating"] == 5
    });
    assert_eq!(row["technician"], "ana", "{row:#}");
    assert_eq!(row["reason"], "tray test", "{row:#}");
    assert_eq!(row["ticket"], "WT-3", "{row:#}");

    // A technician's message, answered in its window's reply box (typed on Wine's display).
    let said = tech.spawn(&["say", dev, "Please save your work", "--wait", "90s"]);
    let shown = tray.wait_for("message shown");
    let title = "Tether: message from ana";
    click(&wine.x, title, field(&shown, "entry"));
    let out = wine.x.run("xdotool", &["type", "--delay", "50", "saved"]);
    assert!(out.status.success(), "typing the reply: {out:?}");
    click(&wine.x, title, field(&shown, "send_button"));
    let out = said.output();
    assert!(out.status.success(), "tether say: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "saved");
}

/// Without a notification area (here `--no-tray-icon`) the status window stands in for the icon:
/// its End session ends what runs, and Quit denies the request still waiting and leaves.
#[test]
fn windows_tray_status_window_ends_the_session_and_quits() {
    if !wine::enabled() {
        return;
    }
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    let wine = Wine::start();
    let mut agent = WineAgent::enroll(&wine, &relay.agent_token());
    agent.start(&wine, &[]);
    wait_wine("the Windows agent online", || {
        tech.is_online(&agent.id) == Some(true)
    });
    let mut tray = WineTray::start(&wine, &["--no-tray-icon"]);
    let status = tray
        .wait_for_all(&["status window shown", "connected to the Tether agent"])
        .remove(0);
    let dev = agent.id.as_str();

    let local = Xvfb::start(1300, 900);
    let _viewer = tech.viewer(&local, dev, &["--ticket", "WT-4"], &[]);
    let shown = tray.wait_for("consent dialog shown");
    click(
        &wine.x,
        "Tether: remote support request",
        field(&shown, "allow_button"),
    );
    let id = field(&tray.wait_for("banner shown"), "id").to_string();
    click(&wine.x, "Tether", field(&status, "end_button"));
    wait_wine("the session ended from the status window", || {
        session(&tech, &id)["ended_by"] == "user"
    });

    let pending = tech.spawn(&["screenshot", dev, "-o", "/dev/null", "--ticket", "WT-5"]);
    tray.wait_for("consent dialog shown");
    click(&wine.x, "Tether", field(&status, "quit_button"));
    let out = pending.output();
    assert!(
        stderr(&out).contains("denied by the user"),
        "{}",
        stderr(&out)
    );
    wait_wine("the tray gone after Quit", || {
        matches!(tray.proc.child.try_wait(), Ok(Some(_)))
    });
}

/// `install-service` makes the tray start at every user's sign-in (the machine's Run key names
/// `tether-tray.exe` beside the agent); `uninstall-service` takes that away again.
#[test]
fn windows_service_install_registers_the_tray_at_sign_in() {
    if !wine::enabled() {
        return;
    }
    let relay = Relay::start();
    let wine = Wine::start();
    let _session = wine.user_session();
    let agent = WineAgent::enroll(&wine, &relay.agent_token());
    let run_key = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
    let query = || wine.run("reg", &["query", run_key, "/v", "Tether"]);
    assert!(!query().status.success(), "a Tether value before install");
    tether_tests::ok(wine.agent(&["install-service", "--state", &agent.state]));
    let out = query();
    let listed = tether_tests::stdout(&out);
    let tray = wine.path(&wine::dist().join("tether-tray.exe"));
    assert!(
        out.status.success() && listed.contains(&format!("\"{tray}\"")),
        "Run value: {listed}"
    );
    tether_tests::ok(wine.agent(&["uninstall-service"]));
    assert!(
        !query().status.success(),
        "the Tether value outlived uninstall"
    );
}
