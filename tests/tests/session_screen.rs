//! Screen sessions through a real relay, on a real X server (Xvfb): screenshots, typing and
//! clicks arrive exactly; permissions are enforced; a relay that alters bytes breaks the
//! session instead of corrupting it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tether_net::client::Credentials;
use tether_protocol::session::{InputEvent, MouseButton, Permissions};
use tether_tests::{Agent, Approver, Relay, Tech, Xvfb, read_png_rgb, stderr, wait_until};

struct Desk {
    x: Xvfb,
    relay: Relay,
    tech: Tech,
    agent: Agent,
    _user: Approver,
}

fn desk(role: &str) -> Desk {
    let x = Xvfb::start(1280, 800);
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", role));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start_on_display(&x.display);
    tech.wait_online(&agent.id);
    let _user = agent.auto_approve();
    Desk {
        x,
        relay,
        tech,
        agent,
        _user,
    }
}

#[test]
fn screenshot_through_relay_is_pixel_identical_to_local_capture() {
    let d = desk("support");
    // Something on screen besides the black root: a terminal with text.
    let _term = d.x.spawn(
        "xterm",
        &[
            "-geometry",
            "60x10+40+60",
            "-T",
            "tether-term",
            "-e",
            "sh",
            "-c",
            "echo Tether; sleep 600",
        ],
    );
    wait_until(Duration::from_secs(30), || {
        d.x.run("xdotool", &["search", "--name", "tether-term"])
            .status
            .success()
    })
    .expect("xterm did not map");

    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.png");
    let local = dir.path().join("local.png");
    // The terminal draws its text after mapping; compare until two captures agree with each
    // other, then with the remote one taken in between.
    let mut same = false;
    for _ in 0..20 {
        let out = d.tech.tether(&[
            "screenshot",
            &d.agent.id,
            "-o",
            remote.to_str().unwrap(),
            "--reason",
            "printer offline",
            "--ticket",
            "HD-1042",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let ok =
            d.x.run(
                "import",
                &["-window", "root", &format!("PNG24:{}", local.display())],
            )
            .status
            .success();
        assert!(ok, "imagemagick import failed");
        let (rw, rh, r) = read_png_rgb(&remote);
        let (lw, lh, l) = read_png_rgb(&local);
        assert_eq!((rw, rh), (1280, 800));
        assert_eq!((lw, lh), (1280, 800));
        if r == l {
            same = true;
            // And it is not just a black screen.
            assert!(r.iter().any(|&b| b > 200), "screenshot is blank");
            break;
        }
    }
    assert!(same, "remote screenshot never matched the local capture");
}

#[test]
fn typing_and_clicks_arrive_exactly() {
    let d = desk("support");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typed.txt");
    let _term = d.x.spawn(
        "xterm",
        &[
            "-geometry",
            "80x24+100+100",
            "-T",
            "tether-term",
            "-e",
            "sh",
            "-c",
            &format!("cat > {}", file.display()),
        ],
    );
    wait_until(Duration::from_secs(30), || {
        d.x.run("xdotool", &["search", "--name", "tether-term"])
            .status
            .success()
    })
    .expect("xterm did not map");

    // A click inside the terminal gives it the keyboard (no window manager: focus follows mouse).
    let out = d.tech.tether(&["click", &d.agent.id, "300", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let loc =
        String::from_utf8_lossy(&d.x.run("xdotool", &["getmouselocation"]).stdout).into_owned();
    assert!(loc.starts_with("x:300 y:200 "), "{loc}");

    let text = "Tether types: héllo wörld, ÆØÅ, ✓ 42\n";
    let out = d.tech.tether(&["type", &d.agent.id, text]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&file).is_ok_and(|s| s == text)
    })
    .unwrap_or_else(|| {
        panic!(
            "typed text did not arrive exactly: {:?}",
            std::fs::read_to_string(&file)
        )
    });
}

#[test]
fn view_only_sessions_refuse_input_and_viewers_get_no_session() {
    let d = desk("support");
    let creds = Credentials::load(&d.tech.config()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let session = tether_technician::relay::Session::open(&creds)
            .await
            .unwrap();
        let mut remote = session
            .open_remote(&creds, &d.agent.id, Permissions::VIEW, "look only", "HD-1")
            .await
            .unwrap();
        assert_eq!(remote.permissions, Permissions::VIEW);
        let err = remote
            .input(InputEvent::Click {
                x: 10,
                y: 10,
                button: MouseButton::Left,
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("view-only"), "{err}");
        // Viewing still works in the same session.
        let shot = remote.screenshot(0).await.unwrap();
        assert_eq!((shot.width, shot.height), (1280, 800));
        remote.close().await;
        session.close().await;
    });
    // The pointer never moved to (10, 10).
    let loc =
        String::from_utf8_lossy(&d.x.run("xdotool", &["getmouselocation"]).stdout).into_owned();
    assert!(!loc.starts_with("x:10 y:10 "), "{loc}");

    // A viewer may not start sessions at all.
    let viewer = Tech::enroll(&d.relay.tech_token("val", "viewer"));
    let out = viewer.tether(&["screenshot", &d.agent.id, "-o", "/dev/null"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not start sessions"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn offline_device_is_refused_clearly() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    let agent = Agent::enroll(&relay.agent_token());
    let out = tech.tether(&["click", &agent.id, "1", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("offline"), "{}", stderr(&out));
}

#[test]
fn relay_that_alters_bytes_breaks_the_session() {
    let x = Xvfb::start(800, 600);
    // A relay (the real relay library, in this process) whose splice flips one bit once the
    // session has carried 1500 bytes.
    let relay = Relay::init();
    let seen = Arc::new(AtomicUsize::new(0));
    let flips = Arc::new(AtomicUsize::new(0));
    let (s2, f2) = (seen.clone(), flips.clone());
    let filter: tether_relay::broker::SpliceFilter = Arc::new(move |buf: &mut [u8]| {
        let before = s2.fetch_add(buf.len(), Ordering::SeqCst);
        if before < 1500 && before + buf.len() >= 1500 && !buf.is_empty() {
            let i = (1500 - before).min(buf.len() - 1);
            buf[i] ^= 0x01;
            f2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tether_relay::config::DataDir::new(relay.data());
    let server = rt
        .block_on(tether_relay::server::Relay::start(
            &data,
            tether_relay::server::ServeOptions {
                splice_filter: Some(filter),
                store: relay.store_url(),
                ..tether_relay::server::ServeOptions::new("127.0.0.1:0".parse().unwrap())
            },
        ))
        .unwrap();
    let addr = server.local_addr().unwrap();
    rt.spawn(server.run(std::future::pending()));
    let token = |extra: &[&str]| {
        tether_tests::ok(tether_tests::run(
            relay
                .cli()
                .arg("token")
                .arg("--data")
                .arg(relay.data())
                .args(["--relay", &addr.to_string()])
                .args(extra),
        ))
        .trim()
        .to_string()
    };
    let tech = Tech::enroll(&token(&["--technician", "ana", "--role", "support"]));
    relay.grant(&["--technician", "ana", "--all-groups"]);
    let mut agent = Agent::enroll(&token(&["--agent"]));
    agent.start_on_display(&x.display);
    tech.wait_online(&agent.id);
    let _user = agent.auto_approve();

    let creds = Credentials::load(&tech.config()).unwrap();
    let result = rt.block_on(async {
        let session = tether_technician::relay::Session::open(&creds).await?;
        let mut remote = session
            .open_remote(&creds, &agent.id, Permissions::VIEW, "", "")
            .await?;
        let shot = remote.screenshot(0).await;
        session.close().await;
        shot
    });
    assert_eq!(flips.load(Ordering::SeqCst), 1, "the filter flipped a bit");
    match result {
        Ok(_) => panic!("a session whose bytes were altered returned a screenshot"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("integrity check") || msg.contains("TLS"),
                "unclear error: {msg}"
            );
        }
    }
}

#[test]
fn clipboard_text_travels_both_ways_only_when_granted() {
    let d = desk("support");
    // Technician → device.
    let text = "Ticket HD-1042: café ✓";
    let out = d.tech.tether(&["clipboard", &d.agent.id, "--set", text]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The session is over, yet the device's clipboard still serves the text.
    let pasted = d.x.run("xclip", &["-o", "-selection", "clipboard"]);
    assert_eq!(String::from_utf8_lossy(&pasted.stdout), text);

    // Device → technician: the user copies something on the workstation.
    let _owner = d.x.spawn(
        "sh",
        &[
            "-c",
            "printf 'from the user\\n' | xclip -i -selection clipboard -loops 5",
        ],
    );
    let got = wait_until(Duration::from_secs(10), || {
        let out = d.tech.tether(&["clipboard", &d.agent.id]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "from the user\n\n"
    });
    assert!(
        got.is_some(),
        "device clipboard never reached the technician"
    );

    // A session granted without clipboard permission cannot read it.
    let creds = Credentials::load(&d.tech.config()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let session = tether_technician::relay::Session::open(&creds)
            .await
            .unwrap();
        let mut remote = session
            .open_remote(&creds, &d.agent.id, Permissions::CONTROL, "", "")
            .await
            .unwrap();
        let err = remote.get_clipboard().await.unwrap_err();
        assert!(
            err.to_string().contains("may not use the clipboard"),
            "{err}"
        );
        remote.close().await;
        session.close().await;
    });
}

#[test]
fn pointer_position_and_image_travel_apart_from_pixels() {
    let d = desk("support");
    let rt = runtime();
    rt.block_on(async {
        use tether_protocol::session::{ToAgent, ToViewer};
        let (session, tx, mut rx) = view_session(&d).await;
        tx.send(ToAgent::StartStream {
            display: 0,
            max_in_flight: 2,
            h264: true,
        })
        .unwrap();
        // The first frame and the pointer's image arrive.
        let (mut frame, mut shape) = (false, false);
        while !(frame && shape) {
            match recv5(&mut rx).await.expect("stream stalled") {
                ToViewer::Frame(f) => {
                    frame = true;
                    tx.send(ToAgent::FrameAck { seq: f.seq }).unwrap();
                }
                ToViewer::CursorShape {
                    width,
                    height,
                    rgba,
                    ..
                } => {
                    assert_eq!(rgba.len(), usize::from(width) * usize::from(height) * 4);
                    shape = true;
                }
                _ => {}
            }
        }
        // Moving the pointer sends its position, and no pixels.
        assert!(
            d.x.run("xdotool", &["mousemove", "321", "123"])
                .status
                .success()
        );
        loop {
            match recv5(&mut rx).await.expect("no pointer position arrived") {
                ToViewer::Cursor { x: 321, y: 123 } => break,
                ToViewer::Frame(f) => {
                    panic!("moving the pointer resent pixels: {:?}", f.rects.len())
                }
                _ => {}
            }
        }
        let _ = tx.send(ToAgent::Bye);
        session.close().await;
    });
}

/// A runtime for a test that drives a session itself.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A view-only session to the desk's agent, as the technician: its messages both ways.
async fn view_session(
    d: &Desk,
) -> (
    tether_technician::relay::Session,
    tokio::sync::mpsc::UnboundedSender<tether_protocol::session::ToAgent>,
    tokio::sync::mpsc::Receiver<tether_protocol::session::ToViewer>,
) {
    let creds = Credentials::load(&d.tech.config()).unwrap();
    let session = tether_technician::relay::Session::open(&creds)
        .await
        .unwrap();
    let remote = session
        .open_remote(&creds, &d.agent.id, Permissions::VIEW, "", "")
        .await
        .unwrap();
    let (tx, rx) = remote.into_duplex();
    (session, tx, rx)
}

async fn recv5(
    rx: &mut tokio::sync::mpsc::Receiver<tether_protocol::session::ToViewer>,
) -> Option<tether_protocol::session::ToViewer> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .ok()
        .flatten()
}

/// The stream as a viewer without H.264 rebuilds it, with or without palette rectangles and
/// copies, and with or without compact frames: after anti-aliased text scrolled and its window
/// moved (a copy across), its picture equals the display's own capture. A viewer that did not
/// announce a feature (an older one) never gets it.
#[test]
fn streamed_pictures_are_exact_for_viewers_with_and_without_palette_and_copies() {
    use tether_protocol::session::{Compression, ToAgent, ToViewer, stream_feature};
    use tether_protocol::tiles::{patch, patch_xor};
    for (palette, compact) in [(false, false), (true, false), (true, true)] {
        let d = desk("support");
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("local.png");
        let kinds = rt.block_on(async {
            let (session, tx, mut rx) = view_session(&d).await;
            if palette {
                tx.send(ToAgent::StreamOptions(vec![
                    stream_feature::PALETTE.to_string(),
                    stream_feature::COPY_RECT.to_string(),
                    stream_feature::MOVE_RECT.to_string(),
                    stream_feature::RAW_PALETTE.to_string(),
                ]))
                .unwrap();
            }
            if compact {
                tx.send(ToAgent::StreamOptions(vec![
                    stream_feature::PALETTE.to_string(),
                    stream_feature::COPY_RECT.to_string(),
                    stream_feature::MOVE_RECT.to_string(),
                    stream_feature::RAW_PALETTE.to_string(),
                    stream_feature::COMPACT.to_string(),
                ]))
                .unwrap();
            }
            tx.send(ToAgent::StartStream {
                display: 0,
                max_in_flight: 2,
                h264: false,
            })
            .unwrap();
            // Anti-aliased text that scrolls, in a window that then moves.
            let _term = d.x.spawn(
                "xterm",
                &[
                    "-fa",
                    "DejaVu Sans Mono",
                    "-fs",
                    "11",
                    "-geometry",
                    "70x12+40+60",
                    "-T",
                    "tether-scroll",
                    "-e",
                    "sh",
                    "-c",
                    "for i in $(seq 1 40); do echo \"line $i: the quick brown fox jumps\"; \
                     sleep 0.05; done; \
                     xdotool search --name tether-scroll windowmove 300 200; \
                     printf '\\033]2;tether-done\\007'; sleep 600",
                ],
            );
            let (mut fb, mut w, mut h) = (Vec::new(), 0u32, 0u32);
            let mut kinds = std::collections::BTreeSet::new();
            let mut deltas = tether_protocol::session::Deltas::default();
            let mut decoder = tether_technician::remote::RectDecoder::default();
            let mut done = false;
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the streamed picture never matched the display (palette {palette}, \
                     compact {compact})"
                );
                // Frames until the stream is quiet for a moment, then compare.
                let msg = match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                    Ok(Some(ToViewer::Delta(d))) => {
                        kinds.insert("Delta".to_string());
                        Ok(Some(ToViewer::Frame(deltas.expand(d).unwrap())))
                    }
                    m => m,
                };
                match msg {
                    Ok(Some(ToViewer::Frame(f))) => {
                        if (f.width, f.height) != (w, h) {
                            (w, h) = (f.width, f.height);
                            fb = vec![0; (w * h * 4) as usize];
                        }
                        for r in &f.rects {
                            kinds.insert(format!("{:?}", r.compression));
                            if r.compression == Compression::CopyRect {
                                let c = tether_protocol::scroll::CopyRows::from_rect(r).unwrap();
                                assert!(tether_protocol::scroll::apply(&mut fb, w, h, &c));
                                if c.src_x != c.x {
                                    kinds.insert("CopyRect across".to_string());
                                }
                                continue;
                            }
                            let px = decoder.decode(r).unwrap();
                            if tether_technician::remote::is_xor(r.compression) {
                                patch_xor(&mut fb, w, h, r.rect, &px)
                            } else {
                                patch(&mut fb, w, h, r.rect, &px)
                            }
                            .unwrap();
                        }
                        tx.send(ToAgent::FrameAck { seq: f.seq }).unwrap();
                        continue;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the session ended"),
                    Err(_) => {}
                }
                if !done {
                    done =
                        d.x.run("xdotool", &["search", "--name", "tether-done"])
                            .status
                            .success();
                    continue;
                }
                assert!(
                    d.x.run(
                        "import",
                        &["-window", "root", &format!("PNG24:{}", local.display())],
                    )
                    .status
                    .success()
                );
                let (lw, lh, l) = read_png_rgb(&local);
                let ours: Vec<u8> = fb
                    .chunks_exact(4)
                    .flat_map(|p| [p[2], p[1], p[0]])
                    .collect();
                if (lw, lh) == (w, h) && l == ours {
                    break;
                }
            }
            let _ = tx.send(ToAgent::Bye);
            session.close().await;
            kinds
        });
        eprintln!("palette and copies {palette}, compact {compact}: rectangles {kinds:?}");
        let any = |names: &[&str]| names.iter().any(|n| kinds.contains(*n));
        assert_eq!(
            (
                any(&["ZstdPalette", "Indexed", "ZstdIndexed"]),
                kinds.contains("CopyRect"),
                kinds.contains("CopyRect across"),
                any(&["Delta"]),
                any(&["Indexed", "ZstdIndexed", "ZstdPlanes", "ZstdXorPlanes"]),
            ),
            (palette, palette, palette, compact, compact),
            "palette rectangles, copies and copies across (the moved window), compact frames \
             and their forms only to a viewer that announced them: {kinds:?}"
        );
    }
}

/// `--max-kbps`: with a screen that changes without pause (a directory listing pouring through
/// a large terminal, ~400 lines a second), the stream sends far more than 256 kbit/s uncapped,
/// and within 10 % of it over 10 s once the viewer asks for that cap.
#[test]
fn the_bandwidth_cap_holds_within_ten_percent_over_ten_seconds() {
    use tether_protocol::session::{ToAgent, ToViewer, stream_feature};
    let d = desk("support");
    let _pour = d.x.spawn(
        "xterm",
        &[
            "-geometry",
            "160x50+0+0",
            "-e",
            "sh",
            "-c",
            "while :; do ls -l /usr/bin; done",
        ],
    );
    let rt = runtime();
    rt.block_on(async {
        let (session, tx, mut rx) = view_session(&d).await;
        // Pixel bytes received over `secs` (frames acknowledged as they come), after `warm`.
        async fn measure(
            tx: &tokio::sync::mpsc::UnboundedSender<ToAgent>,
            rx: &mut tokio::sync::mpsc::Receiver<ToViewer>,
            warm: Duration,
            secs: Duration,
        ) -> usize {
            let start = std::time::Instant::now();
            let mut bytes = 0;
            while start.elapsed() < warm + secs {
                // A capped link may hold the next frame back for a few seconds.
                let next = tokio::time::timeout(Duration::from_secs(30), rx.recv());
                match next.await.ok().flatten().expect("stream stalled") {
                    ToViewer::Frame(f) => {
                        if start.elapsed() >= warm {
                            let n = f.rects.iter().map(|r| r.data.len()).sum::<usize>();
                            bytes += n;
                        }
                        tx.send(ToAgent::FrameAck { seq: f.seq }).unwrap();
                    }
                    _ => continue,
                }
            }
            bytes
        }
        let start = |cap: Option<u32>| {
            let mut features = vec![
                stream_feature::PALETTE.to_string(),
                stream_feature::COPY_RECT.to_string(),
            ];
            features.extend(cap.map(tether_protocol::pace::announce));
            tx.send(ToAgent::StreamOptions(features)).unwrap();
            tx.send(ToAgent::StartStream {
                display: 0,
                max_in_flight: 2,
                h264: true,
            })
            .unwrap();
        };
        let cap_bytes_per_s = 256_000.0 / 8.0;
        start(None);
        let free = measure(&tx, &mut rx, Duration::from_secs(2), Duration::from_secs(3)).await;
        let free_rate = free as f64 / 3.0;
        eprintln!("uncapped: {free_rate:.0} B/s");
        assert!(
            free_rate > 1.5 * cap_bytes_per_s,
            "the load is too light to test a cap: {free_rate:.0} B/s"
        );
        start(Some(256));
        let capped = measure(
            &tx,
            &mut rx,
            Duration::from_secs(2),
            Duration::from_secs(10),
        )
        .await;
        let rate = capped as f64 / 10.0;
        eprintln!("capped at 256 kbit/s: {rate:.0} B/s over 10 s");
        assert!(
            rate <= 1.1 * cap_bytes_per_s,
            "{rate:.0} B/s exceeds the cap of {cap_bytes_per_s:.0} B/s by more than 10 %"
        );
        assert!(
            rate > 0.25 * cap_bytes_per_s,
            "the capped stream starved: {rate:.0} B/s"
        );
        let _ = tx.send(ToAgent::Bye);
        session.close().await;
    });
}
