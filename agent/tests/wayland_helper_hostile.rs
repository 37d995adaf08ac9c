//! The agent's side of the Wayland helper facing a hostile helper. `tether-wayland` runs as the
//! desktop user, who can replace or drive it, so whatever it answers is untrusted: here a
//! stand-in (`TETHER_WAYLAND_HELPER`, a script replaying prepared bytes) greets correctly and
//! then lies. The agent refuses without allocating what the lie claims and without panicking.
//! (Its own process: the helper is chosen through the environment.)

// `std::env::set_var` is unsafe in edition 2024; this test is alone in its process.
#![allow(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use tether_agent::platform::{DesktopKind, DesktopSpec, desktop_for};
use tether_protocol::codec;
use tether_protocol::helper::{FrameHeader, FromHelper, HELPER_VERSION, MESSAGE_LIMIT};
use tether_protocol::session::DisplayInfo;

fn msg(m: &FromHelper) -> Vec<u8> {
    codec::to_frame(m, MESSAGE_LIMIT).unwrap()
}

#[test]
fn lies_from_the_helper_are_refused_without_allocating_them() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _socket = UnixListener::bind(runtime.join("wayland-7")).unwrap();

    // Hello, then the display list, then a frame header claiming 16384×16384 (1 GiB) — over
    // the limit — with no pixels behind it.
    let mut replies = msg(&FromHelper::Hello {
        version: HELPER_VERSION,
        backend: "gnome".into(),
        compositor: "liar".into(),
    });
    replies.extend(msg(&FromHelper::Displays(vec![DisplayInfo {
        index: 0,
        width: 640,
        height: 480,
        primary: true,
    }])));
    replies.extend(msg(&FromHelper::Frame(FrameHeader {
        width: 16_384,
        height: 16_384,
        damage: None,
    })));
    let bytes = dir.path().join("replies.bin");
    std::fs::write(&bytes, &replies).unwrap();
    let helper = dir.path().join("fake-helper");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat '{}'\nexec cat > /dev/null\n",
            bytes.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();

    // SAFETY of the environment: this test is alone in its process.
    unsafe {
        std::env::set_var("TETHER_WAYLAND_HELPER", &helper);
        std::env::set_var("XDG_RUNTIME_DIR", &runtime);
        std::env::set_var("WAYLAND_DISPLAY", "wayland-7");
        std::env::remove_var("DISPLAY");
    }
    let desktop = desktop_for(&DesktopSpec {
        kind: Some(DesktopKind::Wayland),
        user: None,
    })
    .expect("a Wayland desktop");
    assert_eq!(desktop.kind(), DesktopKind::Wayland);
    assert_eq!(desktop.screens().unwrap()[0].width, 640);

    let mut screen = desktop.screen();
    let _ = screen.damage(0);
    let err = screen
        .capture(0)
        .expect_err("an oversized frame is refused");
    assert!(
        err.to_string().contains("16384"),
        "the error names the size: {err}"
    );
    // The helper that lied is gone; the next request fails at once (no restart storm) with a
    // reason, not a panic.
    let again = desktop.screens().expect_err("no helper now");
    assert!(again.to_string().contains("retrying"), "{again}");
}
