//! Wayland desktops end to end: a headless GNOME (mutter) and a headless sway session, a GTK
//! test client in each (a known colour pattern, a focused entry, a click area), the agent
//! reaching them through `tether-wayland` (started by the agent as the session's user), and a
//! technician working through the relay — a screenshot checked pixel for pixel, keys typed
//! into the real viewer window (`tether connect` on the technician's Xvfb) arriving in the
//! entry exactly, a click through the viewer landing where it was sent, and the clipboard.

use std::path::Path;
use std::time::Duration;
use tether_tests::wayland::{CLICK_POINT, TestApp, WaylandSession, check_pattern};
use tether_tests::{Agent, Approver, Relay, Tech, Xvfb, read_png_rgb, viewer_window, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// A relay, a technician and an agent serving `session`'s desktop, whose user approves.
struct Scene {
    _user: Approver,
    agent: Agent,
    tech: Tech,
    _relay: Relay,
    dir: tempfile::TempDir,
}

impl Scene {
    fn start(session: &WaylandSession) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let relay = Relay::start();
        let tech = Tech::enroll(&relay.tech_token("ana", "support"));
        let mut agent = Agent::enroll(&relay.agent_token());
        agent.env = session
            .env
            .iter()
            .filter(|(k, _)| k != "GDK_BACKEND" && k != "SWAYSOCK")
            .cloned()
            .collect();
        agent.log = Some((dir.path().join("agent.log"), "info,quinn=warn".into()));
        let uid = session.uid.to_string();
        agent.start_with(&["--desktop", "wayland", "--desktop-user", &uid]);
        tech.wait_online(&agent.id);
        let _user = agent.auto_approve();
        Scene {
            _user,
            agent,
            tech,
            _relay: relay,
            dir,
        }
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Screenshots through the relay until the pattern shows exactly (the client may still be
    /// mapping its window when the first is taken).
    fn screenshot_shows_the_pattern(&self) {
        let png = self.dir.path().join("shot.png");
        let mut last = String::new();
        let ok = wait_until(LONG, || {
            let out = self.tech.tether(&[
                "screenshot",
                &self.agent.id,
                "-o",
                png.to_str().unwrap(),
                "--reason",
                "wayland test",
            ]);
            if !out.status.success() {
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                return false;
            }
            let (w, h, rgb) = read_png_rgb(&png);
            match check_pattern(w, h, &rgb) {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    false
                }
            }
        });
        assert!(
            ok.is_some(),
            "the screenshot never showed the pattern: {last}\nagent log:\n{}",
            self.agent_log()
        );
    }
}

/// Where the remote screen's (0,0) lies in the viewer on `local`: found by the pattern's
/// red/green border, drawn 1:1 (`--actual-size`).
fn remote_origin(local: &Xvfb, dir: &Path) -> (u32, u32) {
    let shot = dir.join("viewer.png");
    let mut at = None;
    wait_until(LONG, || {
        if !local
            .run(
                "import",
                &["-window", "root", &format!("PNG24:{}", shot.display())],
            )
            .status
            .success()
        {
            return false;
        }
        let (w, h, px) = read_png_rgb(&shot);
        let rgb = |x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            [px[i], px[i + 1], px[i + 2]]
        };
        // The first row with 320 red pixels followed by 320 green ones, and 200 rows of it.
        'rows: for y in 0..h.saturating_sub(200) {
            let mut x = 0;
            while x + 640 < w {
                if rgb(x, y) == [255, 0, 0] && (x == 0 || rgb(x - 1, y) != [255, 0, 0]) {
                    let band = (0..320).all(|i| rgb(x + i, y) == [255, 0, 0])
                        && (320..640).all(|i| rgb(x + i, y) == [0, 255, 0])
                        && rgb(x, y + 199) == [255, 0, 0]
                        && (y == 0 || rgb(x, y - 1) != [255, 0, 0]);
                    if band {
                        at = Some((x, y));
                        break 'rows;
                    }
                }
                x += 1;
            }
        }
        at.is_some()
    });
    at.expect("the viewer never showed the remote screen at 1:1")
}

fn xdotool(local: &Xvfb, args: &[&str]) {
    let out = local.run("xdotool", args);
    assert!(out.status.success(), "xdotool {args:?}: {out:?}");
}

/// The uids of the `tether-wayland` processes serving `session` (found by its runtime
/// directory in their environment).
fn helper_uids(session: &WaylandSession) -> Vec<u32> {
    let runtime = format!("XDG_RUNTIME_DIR={}", session.runtime_dir().display());
    let mut uids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "tether-wayland" {
            continue;
        }
        let env = std::fs::read(dir.join("environ")).unwrap_or_default();
        if !env.split(|b| *b == 0).any(|v| v == runtime.as_bytes()) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if let Some(uid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse().ok())
        {
            uids.push(uid);
        }
    }
    uids
}

/// The technician's whole path on one Wayland desktop: screenshot, typing (capitals, symbols,
/// a shortcut) and a click through the viewer, and the clipboard.
fn technician_works_on(session: WaylandSession) {
    let app: TestApp = session.test_app();
    app.wait_ready();
    let scene = Scene::start(&session);
    scene.screenshot_shows_the_pattern();

    let local = Xvfb::start(1400, 900);
    let _viewer = scene.tech.viewer(
        &local,
        &scene.agent.id,
        &["--reason", "wayland keyboard test"],
        &[],
    );
    let win = viewer_window(&local);
    let (ox, oy) = remote_origin(&local, scene.dir.path());
    // Keep the local pointer off the picture while typing: only the keyboard is under test.
    xdotool(&local, &["mousemove", "0", "0"]);
    xdotool(&local, &["windowfocus", "--sync", &win]);
    let text = "Hello, World! @#";
    xdotool(&local, &["type", "--delay", "40", text]);
    app.wait_text(text, LONG).unwrap_or_else(|seen| {
        panic!(
            "typed {text:?} through the viewer, the entry shows {seen:?}\nagent log:\n{}",
            scene.agent_log()
        )
    });
    // A shortcut: select all and cut (Ctrl+A, Ctrl+X) empties the entry and fills the
    // clipboard, which the technician then reads.
    xdotool(&local, &["key", "--delay", "60", "ctrl+a", "ctrl+x"]);
    app.wait_text("", LONG)
        .unwrap_or_else(|seen| panic!("Ctrl+A Ctrl+X through the viewer left {seen:?}"));
    let mut got = String::new();
    wait_until(LONG, || {
        let out = scene.tech.tether(&["clipboard", &scene.agent.id]);
        got = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        got == text
    })
    .unwrap_or_else(|| panic!("the clipboard read back {got:?}, not {text:?}"));
    // Ctrl+V in the same viewer session pastes it back (the technician's own clipboard is
    // empty: the keys are the remote's).
    xdotool(&local, &["key", "ctrl+v"]);
    app.wait_text(text, LONG)
        .unwrap_or_else(|seen| panic!("Ctrl+V through the viewer gave {seen:?}"));

    // The helper serving this session runs as the session's user, whoever the agent is.
    let uids = helper_uids(&session);
    assert!(
        !uids.is_empty() && uids.iter().all(|u| *u == session.uid),
        "tether-wayland for this session runs as {uids:?}, the session's user is {}",
        session.uid
    );

    // A click through the viewer lands where it was sent. The pointer first travels there
    // (the viewer sends motion); mutter 43 may drop a click made at once after typing while
    // it repaints, so a lost click is made again, up to three times.
    let (cx, cy) = CLICK_POINT;
    let x = (ox as i32 + cx).to_string();
    let y = (oy as i32 + cy).to_string();
    let mut landed = None;
    for _ in 0..3 {
        xdotool(&local, &["mousemove", &x, &y]);
        xdotool(&local, &["click", "1"]);
        landed = app.wait_click(Duration::from_secs(10));
        if landed.is_some() {
            break;
        }
    }
    assert_eq!(
        landed,
        Some((1, cx, cy)),
        "the click did not land at {CLICK_POINT:?}\nagent log:\n{}",
        scene.agent_log()
    );
}

#[test]
fn gnome_screen_keys_click_and_clipboard_through_the_relay() {
    let Some(session) = WaylandSession::mutter(&[(1280, 720)]) else {
        return;
    };
    technician_works_on(session);
}

#[test]
fn sway_screen_keys_click_and_clipboard_through_the_relay() {
    let Some(session) = WaylandSession::sway(1280, 720) else {
        return;
    };
    technician_works_on(session);
}

/// Two monitors on GNOME: each display is its own stream, at its own size.
#[test]
fn gnome_monitors_are_separate_displays() {
    let Some(session) = WaylandSession::mutter(&[(1280, 720), (1024, 768)]) else {
        return;
    };
    let app = session.test_app();
    app.wait_ready();
    let scene = Scene::start(&session);
    for (display, size) in [("0", (1280, 720)), ("1", (1024, 768))] {
        let png = scene.dir.path().join(format!("display{display}.png"));
        let out = scene.tech.tether(&[
            "screenshot",
            &scene.agent.id,
            "--display",
            display,
            "-o",
            png.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "display {display}: {}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            scene.agent_log()
        );
        let (w, h, _) = read_png_rgb(&png);
        assert_eq!((w, h), size, "display {display}");
    }
    let out = scene.tech.tether(&[
        "screenshot",
        &scene.agent.id,
        "--display",
        "2",
        "-o",
        scene.dir.path().join("none.png").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a third display does not exist");
}
