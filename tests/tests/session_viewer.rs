//! The viewer window (`tether connect`) under Xvfb: it shows the remote screen exactly and
//! forwards what is typed into it.

use std::time::Duration;
use tether_tests::{Agent, Relay, Tech, Xvfb, read_png_rgb, wait_until};

/// Finds the top-left corner of `needle` (w×h RGB) inside `hay` (W×H RGB), if present exactly.
fn find(hay: &[u8], hw: u32, hh: u32, needle: &[u8], nw: u32, nh: u32) -> Option<(u32, u32)> {
    let (hw, hh, nw, nh) = (hw as usize, hh as usize, nw as usize, nh as usize);
    let first = &needle[..nw * 3];
    for y in 0..=hh.saturating_sub(nh) {
        for x in 0..=hw.saturating_sub(nw) {
            let at = (y * hw + x) * 3;
            if &hay[at..at + nw * 3] != first {
                continue;
            }
            let all = (1..nh).all(|r| {
                let h = ((y + r) * hw + x) * 3;
                hay[h..h + nw * 3] == needle[r * nw * 3..(r + 1) * nw * 3]
            });
            if all {
                return Some((x as u32, y as u32));
            }
        }
    }
    None
}

/// An xterm on `remote` with a yellow background, its input going to `typed`.
fn remote_term(remote: &Xvfb, typed: &std::path::Path) -> tether_tests::Proc {
    let term = remote.spawn(
        "xterm",
        &[
            "-geometry",
            "40x10+30+30",
            "-T",
            "remote-term",
            "-bg",
            "yellow",
            "-fg",
            "black",
            "-e",
            "sh",
            "-c",
            &format!("echo Workstation screen; cat > {}", typed.display()),
        ],
    );
    wait_until(Duration::from_secs(30), || {
        remote
            .run("xdotool", &["search", "--name", "remote-term"])
            .status
            .success()
    })
    .expect("remote xterm did not map");
    term
}

/// `tether connect --actual-size` on `local` (with `env`), and its window's id once it maps.
fn start_viewer(
    local: &Xvfb,
    tech: &Tech,
    device: &str,
    env: &[(&str, &str)],
) -> (tether_tests::Proc, String) {
    let viewer = tech.viewer(local, device, &["--reason", "viewer test"], env);
    let win_id = tether_tests::viewer_window(local);
    (viewer, win_id)
}

/// The remote screen around the terminal (400×200 from 20,20), as RGB, with both pointers
/// moved away from it (the viewer draws the remote pointer).
fn remote_crop(remote: &Xvfb, local: &Xvfb, dir: &std::path::Path) -> (u32, u32, Vec<u8>) {
    remote_area(remote, local, dir, (20, 20, 400, 200))
}

/// The area `(x, y, w, h)` of the remote screen, as RGB, with both pointers moved away (the
/// remote one to 630,390, which the area must leave out).
fn remote_area(
    remote: &Xvfb,
    local: &Xvfb,
    dir: &std::path::Path,
    (x0, y0, cw, ch): (u32, u32, u32, u32),
) -> (u32, u32, Vec<u8>) {
    assert!(
        local
            .run("xdotool", &["mousemove", "999", "699"])
            .status
            .success()
    );
    assert!(
        remote
            .run("xdotool", &["mousemove", "630", "390"])
            .status
            .success()
    );
    let src = dir.join("src.png");
    assert!(
        remote
            .run(
                "import",
                &["-window", "root", &format!("PNG24:{}", src.display())]
            )
            .status
            .success()
    );
    let (w, _h, px) = read_png_rgb(&src);
    let mut crop = Vec::with_capacity((cw * ch * 3) as usize);
    for y in y0..y0 + ch {
        let start = ((y * w + x0) * 3) as usize;
        crop.extend_from_slice(&px[start..start + (cw * 3) as usize]);
    }
    (cw, ch, crop)
}

/// Waits until `crop` (from [`remote_crop`]) appears exactly in a screenshot of `local`, and
/// returns where.
fn wait_shown(local: &Xvfb, dir: &std::path::Path, crop: &(u32, u32, Vec<u8>)) -> (u32, u32) {
    let (sw, sh, spx) = crop;
    let shot = dir.join("viewer.png");
    let mut at = None;
    wait_until(Duration::from_secs(60), || {
        local
            .run(
                "import",
                &["-window", "root", &format!("PNG24:{}", shot.display())],
            )
            .status
            .success()
            && {
                let (lw, lh, lpx) = read_png_rgb(&shot);
                at = find(&lpx, lw, lh, spx, *sw, *sh);
                at.is_some()
            }
    });
    at.expect("the viewer never showed the remote screen exactly")
}

/// A remote display with the terminal, a local one for the viewer, a relay, a technician and
/// an agent on the remote display whose user approves every session.
struct Scene {
    remote: Xvfb,
    local: Xvfb,
    dir: tempfile::TempDir,
    typed: std::path::PathBuf,
    _term: tether_tests::Proc,
    _relay: Relay,
    tech: Tech,
    agent: Agent,
    _user: tether_tests::Approver,
}

impl Scene {
    fn start() -> Scene {
        let remote = Xvfb::start(640, 400);
        let local = Xvfb::start(1000, 700);
        let dir = tempfile::tempdir().unwrap();
        let typed = dir.path().join("typed.txt");
        let _term = remote_term(&remote, &typed);
        let relay = Relay::start();
        let tech = Tech::enroll(&relay.tech_token("ana", "support"));
        let mut agent = Agent::enroll(&relay.agent_token());
        agent.start_on_display(&remote.display);
        tech.wait_online(&agent.id);
        let _user = agent.auto_approve();
        Scene {
            remote,
            local,
            dir,
            typed,
            _term,
            _relay: relay,
            tech,
            agent,
            _user,
        }
    }
}

#[test]
fn viewer_shows_the_remote_screen_forwards_typing_and_files_notes_at_the_end() {
    let Scene {
        remote,
        local,
        dir,
        typed,
        _term,
        _relay,
        tech,
        agent,
        _user,
    } = Scene::start();

    let (mut viewer, win_id) = start_viewer(&local, &tech, &agent.id, &[]);
    // The remote screen around the terminal appears exactly, at 1:1, somewhere in the viewer
    // window on the local display (drawn into the viewer's child window, `present.rs`).
    let crop = remote_crop(&remote, &local, dir.path());
    let (sw, sh, spx) = &crop;
    let (cx, cy) = wait_shown(&local, dir.path(), &crop);
    let tree = local.run("xwininfo", &["-tree", "-id", &win_id]);
    let tree = String::from_utf8_lossy(&tree.stdout);
    assert!(tree.contains("1 child"), "{tree}");
    // Screen origin in the viewer.
    let (ox, oy) = (cx - 20, cy - 20);
    // Typing into the viewer reaches the remote terminal: point at it (the viewer moves the
    // remote pointer, and focus follows it), then type.
    let tx = (ox + 100).to_string();
    let ty = (oy + 60).to_string();
    assert!(
        local
            .run("xdotool", &["mousemove", &tx, &ty])
            .status
            .success()
    );
    wait_until(Duration::from_secs(60), || {
        let loc = String::from_utf8_lossy(&remote.run("xdotool", &["getmouselocation"]).stdout)
            .into_owned();
        loc.starts_with("x:100 y:60 ")
    })
    .expect("remote pointer did not follow the viewer's");
    // No window manager here: give the viewer the keyboard as a desktop would on click.
    assert!(
        local
            .run("xdotool", &["windowfocus", "--sync", &win_id])
            .status
            .success()
    );
    assert!(
        local
            .run("xdotool", &["type", "--delay", "20", "hello viewer"])
            .status
            .success()
    );
    assert!(local.run("xdotool", &["key", "Return"]).status.success());
    wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&typed).is_ok_and(|s| s == "hello viewer\n")
    })
    .unwrap_or_else(|| panic!("typed: {:?}", std::fs::read_to_string(&typed)));

    // The user ends the session; the viewer asks for resolution notes, which land on the
    // session's audit record.
    let id = tech.json(&["sessions"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(agent.local(&["end", &id]).status.success());
    // The form replaces the remote screen and takes the keyboard: wait until the screen is
    // gone from the window (typing before would go to the remote).
    let shot = dir.path().join("ended.png");
    wait_until(Duration::from_secs(60), || {
        local
            .run(
                "import",
                &["-window", "root", &format!("PNG24:{}", shot.display())],
            )
            .status
            .success()
            && {
                let (lw, lh, lpx) = read_png_rgb(&shot);
                find(&lpx, lw, lh, spx, *sw, *sh).is_none()
            }
    })
    .expect("the viewer kept showing the remote screen after the user ended the session");
    assert!(
        local
            .run("xdotool", &["type", "--delay", "20", "Replaced toner"])
            .status
            .success()
    );
    assert!(
        local
            .run("xdotool", &["key", "ctrl+Return"])
            .status
            .success()
    );
    let exited = wait_until(Duration::from_secs(60), || {
        viewer.child.try_wait().ok().flatten().is_some()
    });
    assert!(exited.is_some(), "viewer did not close after saving notes");
    let row = &tech.json(&["sessions"])[0];
    assert_eq!(row["notes"], "Replaced toner");
    assert_eq!(row["ended_by"], "user");
}

/// Anti-aliased text scrolls in a window that is then dragged across the screen: the stream
/// carries it as palettes, row copies and copies across (what the viewer announces), and the
/// viewer's window then shows the remote screen exactly.
#[test]
fn the_viewer_shows_the_screen_exactly_after_scrolling_and_dragging() {
    let scene = Scene::start();
    let (_viewer, _win) = start_viewer(&scene.local, &scene.tech, &scene.agent.id, &[]);
    wait_shown(
        &scene.local,
        scene.dir.path(),
        &remote_crop(&scene.remote, &scene.local, scene.dir.path()),
    );
    let _term = scene.remote.spawn(
        "xterm",
        &[
            "-fa",
            "DejaVu Sans Mono",
            "-fs",
            "10",
            "-geometry",
            "40x8+30+150",
            "-T",
            "tether-drag",
            "-e",
            "sh",
            "-c",
            "for i in $(seq 1 30); do echo \"line $i: the quick brown fox\"; sleep 0.03; done; \
             for x in $(seq 30 8 230); do xdotool search --name tether-drag windowmove $x 120; \
             sleep 0.02; done; printf '\\033]2;tether-done\\007'; sleep 600",
        ],
    );
    let done = wait_until(Duration::from_secs(60), || {
        scene
            .remote
            .run("xdotool", &["search", "--name", "tether-done"])
            .status
            .success()
    });
    assert!(done.is_some(), "the terminal never finished");
    // The whole screen but the corner where the remote pointer is parked.
    let area = remote_area(
        &scene.remote,
        &scene.local,
        scene.dir.path(),
        (0, 0, 600, 360),
    );
    wait_shown(&scene.local, scene.dir.path(), &area);
}

/// Where the presenter cannot be used (or `TETHER_VIEWER_DRAW=egui`), egui draws the screen:
/// exactly as well.
#[test]
fn egui_drawing_shows_the_remote_screen_exactly() {
    let Scene {
        remote,
        local,
        dir,
        typed: _,
        _term,
        _relay,
        tech,
        agent,
        _user,
    } = Scene::start();
    let (_viewer, win_id) =
        start_viewer(&local, &tech, &agent.id, &[("TETHER_VIEWER_DRAW", "egui")]);
    let crop = remote_crop(&remote, &local, dir.path());
    wait_shown(&local, dir.path(), &crop);
    // No child window: egui drew it.
    let tree = local.run("xwininfo", &["-tree", "-id", &win_id]);
    let tree = String::from_utf8_lossy(&tree.stdout);
    assert!(tree.contains("0 children"), "{tree}");
}
