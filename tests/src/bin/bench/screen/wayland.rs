//! The `screen` suite on Wayland: Tether's own session ([`tether_session`]) on a headless GNOME
//! desktop — mutter 43 `--headless` with one virtual monitor of [`WAYLAND_SIZE`], pipewire and
//! wireplumber on a private session bus (`tether_tests::wayland::WaylandSession::mutter`) — the
//! agent started with the session's environment and `--desktop wayland --desktop-user UID`, so
//! that it captures through its `tether-wayland` helper (mutter's ScreenCast API + PipeWire)
//! and injects through RemoteDesktop.
//!
//! What is on the screen: the harness's GTK test client, fullscreen (colour bands, a focused
//! text entry). The workloads, [`WORKLOAD_SECS`] each as on X11:
//! * `idle`: the client shown, nothing moves;
//! * `typing_10cps`: one character every 100 ms sent as `InputEvent::Text` through the session
//!   itself (the agent types it through RemoteDesktop) into the focused entry — on X11 the
//!   same-named workload types with xdotool into an xterm, outside the session;
//! * `animation_30fps`: a second test client with `--animate` on top (a 100×100 square moving
//!   over the bands at ~30 fps).
//!
//! Besides the X11 figures: agent CPU counts `tether-agent` and its children (the
//! `tether-wayland` helper, found as a process whose parent is the agent once the session has
//! started); compositor CPU counts mutter, pipewire and wireplumber of the session, so that what
//! capturing costs the desktop is seen too. Key to pixels is measured as on X11 (a `Text` key
//! into the entry; until the first frame has arrived here and been decoded).
//!
//! X11 runs 1280×800 and 1920×1080, not 1280×720: these numbers stand beside the 1280×800 ones
//! (11% more pixels there). There is no peer: no VNC server for mutter here.

use super::*;
use std::panic::AssertUnwindSafe;
use tether_protocol::session::InputEvent;
use tether_tests::wayland::{TestApp, WaylandSession};

/// The Wayland session's one monitor.
pub const WAYLAND_SIZE: (u32, u32) = (1280, 720);

/// Why no peer numbers stand beside these.
const NO_PEER: &str = "no VNC server for mutter here";

/// What the typing workload types: 63 characters, more than [`WORKLOAD_SECS`] at 10 a second.
const TYPED: &str = "the quick brown fox jumps over the lazy dog the quick brown fox";

/// The workloads, in order, with what each is.
const LOADS: [(&str, &str); 3] = [
    (
        "idle",
        "the test client shown, nothing moves but the entry's blinking caret",
    ),
    (
        "typing_10cps",
        "on Wayland the keys go through the session's own input (InputEvent::Text, typed by the \
         agent through RemoteDesktop) into the test client's entry; on X11 through xdotool",
    ),
    (
        "animation_30fps",
        "the test client with --animate: a 100x100 square moving at ~30 fps",
    ),
];

/// The Wayland half of the `screen` suite, into `report`; when there is no mutter session to
/// measure (not installed, `TETHER_TEST_WAYLAND=0`, failed to start), says why in the report.
pub async fn screen_wayland(report: &mut Report) {
    let (w, h) = WAYLAND_SIZE;
    let prefix = format!("screen.wayland-gnome.{w}x{h}");
    match measure().await {
        Ok(ours) => report_wayland(report, &prefix, ours),
        Err(e) => {
            let why = format!("{e:#}");
            eprintln!("  wayland-gnome unavailable: {why}");
            report.unavailable(prefix, format!("unavailable: {why}"));
        }
    }
}

/// Runs `f` (which blocks, and may panic, as the harness does) off the async workers; a panic
/// becomes an error about `what`.
fn blocking<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    tokio::task::block_in_place(|| std::panic::catch_unwind(AssertUnwindSafe(f))).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        anyhow::anyhow!("{what}: {msg}")
    })
}

/// Whether `program` is on the PATH.
fn installed(program: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .any(|d| Path::new(d).join(program).exists())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Types `.` into the session until the test client's entry shows it: the agent's RemoteDesktop
/// keyboard may take a moment to reach the client after the session starts.
fn wait_for_keyboard(app: &TestApp, tx: &Tx) -> Result<()> {
    let before = app.text();
    for _ in 0..10 {
        tx.send(ToAgent::Input(InputEvent::Text(".".into())))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if app.text() != before {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    anyhow::bail!(
        "keys sent through the session never reached the test client's entry (it shows {:?})",
        app.text()
    )
}

async fn measure() -> Result<Ours> {
    for (program, package) in [
        ("mutter", "mutter"),
        ("pipewire", "pipewire-bin"),
        ("wireplumber", "wireplumber"),
        ("dbus-daemon", "dbus-daemon"),
        ("dbus-send", "dbus-bin"),
    ] {
        anyhow::ensure!(
            installed(program),
            "{program} is not installed (Debian package {package}; deploy/install-deps.sh test)"
        );
    }
    let session = blocking("the mutter session did not start", || {
        WaylandSession::mutter(&[WAYLAND_SIZE])
    })?
    .context("TETHER_TEST_WAYLAND=0: no Wayland session")?;
    eprintln!(
        "  mutter session up in {:.1} s",
        session.startup.as_secs_f64()
    );
    let app = session.test_app();
    blocking("the test client", || app.wait_ready())?;
    let tmp = tempfile::tempdir()?;

    let mut start = |i: usize, tx: &Tx| -> Result<Box<dyn std::any::Any>> {
        Ok(match LOADS[i].0 {
            "typing_10cps" => {
                blocking("typing", || wait_for_keyboard(&app, tx))??;
                let tx = tx.clone();
                Box::new(AbortOnDrop(tokio::spawn(async move {
                    for c in TYPED.chars() {
                        if tx
                            .send(ToAgent::Input(InputEvent::Text(c.to_string())))
                            .is_err()
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })))
            }
            "animation_30fps" => {
                let anim = session.test_app_with(&["--animate"]);
                blocking("the animated test client", || anim.wait_ready())?;
                Box::new(anim)
            }
            _ => Box::new(()),
        })
    };
    let ours = tether_session(
        Desktop::Wayland(&session),
        tmp.path(),
        LOADS.len(),
        &mut start,
        &SessionOpts {
            viewer: None,
            cap_kbps: None,
            viewer_load: None,
        },
    )
    .await?;

    // The latency samples' keys must have reached the entry (the animated client is gone; the
    // first one has the keyboard again).
    let sent: String = (0..LATENCY_SAMPLES)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let text = app.text();
    if text.ends_with(&sent) {
        eprintln!("  the entry shows every key typed for key-to-pixels");
    } else {
        let tail: String = text
            .chars()
            .rev()
            .take(sent.len())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        eprintln!("  warning: the entry ends {tail:?}, not with the keys typed ({sent:?})");
    }
    drop(app);
    drop(session);
    Ok(ours)
}

fn report_wayland(report: &mut Report, prefix: &str, mut ours: Ours) {
    let no_peer = || Peer::unavailable(vnc::PEER, NO_PEER);
    let beside = "beside screen.1280x800.* (X11 has no 1280x720 run)";
    for ((name, what), m) in LOADS.iter().zip(&ours.workloads) {
        report.add_noted(
            format!("{prefix}.{name}.bytes_per_s"),
            m.bytes_per_s,
            "B/s",
            None,
            Some(no_peer()),
            format!("{what}; {beside}"),
        );
        report.add(format!("{prefix}.{name}.fps"), m.fps, "fps", None);
        report.add_noted(
            format!("{prefix}.{name}.agent_cpu"),
            m.agent_cpu,
            "% of a core",
            None,
            Some(no_peer()),
            "tether-agent + its tether-wayland helper",
        );
        report.add_noted(
            format!("{prefix}.{name}.compositor_cpu"),
            m.compositor_cpu,
            "% of a core",
            None,
            None,
            "mutter + pipewire + wireplumber",
        );
        report.add(
            format!("{prefix}.{name}.encode_ms_p50"),
            m.encode_ms_p50,
            "ms",
            None,
        );
    }
    let n = ours.latency_ms.len();
    report.add_noted(
        format!("{prefix}.key_to_pixels_ms_p50"),
        pctl(&mut ours.latency_ms, 0.5),
        "ms",
        Some("<= 20"),
        Some(no_peer()),
        format!(
            "InputEvent::Text through the session into the focused entry, to the first frame \
             decoded here; {n} of {LATENCY_SAMPLES} samples"
        ),
    );
    report.add_peer(
        format!("{prefix}.key_to_pixels_ms_p95"),
        pctl(&mut ours.latency_ms, 0.95),
        "ms",
        None,
        no_peer(),
    );
}
