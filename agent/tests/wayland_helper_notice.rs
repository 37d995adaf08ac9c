//! Through the desktop portal the desktop asks the user which screen to share: the agent learns
//! the backend from the helper's greeting and has a notice for the banner before the first
//! request that would make the dialog appear. (A stand-in helper replays a greeting; its own
//! process, since the helper is chosen through the environment.)

// `std::env::set_var` is unsafe in edition 2024; this test is alone in its process.
#![allow(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use tether_agent::platform::{DesktopKind, DesktopSpec, desktop_for};
use tether_protocol::codec;
use tether_protocol::helper::{FromHelper, HELPER_VERSION, MESSAGE_LIMIT};

#[test]
fn the_portal_backend_brings_a_notice_for_the_banner() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _socket = UnixListener::bind(runtime.join("wayland-3")).unwrap();
    let hello = |backend: &str| {
        codec::to_frame(
            &FromHelper::Hello {
                version: HELPER_VERSION,
                backend: backend.into(),
                compositor: "KDE (desktop portal)".into(),
            },
            MESSAGE_LIMIT,
        )
        .unwrap()
    };
    let helper = dir.path().join("fake-helper");
    // The backend comes from a file the script reads, so one script serves both cases.
    let which = dir.path().join("which.bin");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat '{}'\nexec cat > /dev/null\n",
            which.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    unsafe {
        std::env::set_var("TETHER_WAYLAND_HELPER", &helper);
        std::env::set_var("XDG_RUNTIME_DIR", &runtime);
        std::env::set_var("WAYLAND_DISPLAY", "wayland-3");
    }
    let spec = DesktopSpec {
        kind: Some(DesktopKind::Wayland),
        user: None,
    };

    std::fs::write(&which, hello("portal")).unwrap();
    let notice = desktop_for(&spec).unwrap().notice().expect("a notice");
    assert!(notice.contains("which screen to share"), "{notice}");

    std::fs::write(&which, hello("gnome")).unwrap();
    assert_eq!(
        desktop_for(&spec).unwrap().notice(),
        None,
        "mutter asks nothing"
    );
}
