//! The platform layer: everything the agent asks of the desktop and of the machine it runs on,
//! behind one seam, so the session and stream code never name X11 or Linux.
//!
//! * What a desktop gives a session — screens (list, capture, damage), the pointer (position, image),
//!   input, the clipboard — is a [`Desktop`], chosen at run time among desktop kinds
//!   ([`DesktopKind`]: X11 today; Wayland is recognised but not supported yet).
//! * What a machine gives the service — local IPC with peer identity, paths and the state
//!   directory, users and acting as one, shells (pseudo-terminals) and commands, file creation
//!   without following links, mounted filesystems, failed service units, the inventory's
//!   sources — is chosen by
//!   `cfg(target_os)`: [`linux`], and [`windows`] (cross-built, tested under Wine). Shells on
//!   pseudo-terminals ([`pty`]: portable-pty's, ConPTY on Windows) are shared.

pub mod clipboard;
pub mod collector;
pub mod firmware;
pub mod fsinfo;
#[cfg(any(target_os = "linux", windows))]
pub mod helper;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod pty;
#[cfg(target_os = "linux")]
mod wayland;
pub mod wincmdline;
#[cfg(windows)]
pub mod windows;
#[cfg(target_os = "linux")]
mod x11;

use std::ffi::OsString;
use std::sync::Arc;
use tether_protocol::session::{DisplayInfo, InputEvent};
use tether_protocol::tiles::Rect;
use thiserror::Error;

pub use clipboard::ClipboardError;

/// The machine side, for this operating system.
#[cfg(target_os = "linux")]
pub use linux::{
    credentials, fs, host, inventory, ipc as local, mounts, paths::default_state_dir, process,
    units, users, users::parse_user,
};
#[cfg(windows)]
pub use windows::{
    credentials, fs, host, inventory, ipc as local, paths::default_state_dir, process, units,
    users, users::parse_user,
};

/// Whether this is the Windows agent under Wine (its tests), where some sysinfo calls crash:
/// the user list (Wine's LsaEnumerateLogonSessions answers with no buffer, which sysinfo's debug
/// build aborts on) and CPU usage after the first sample (PdhEnumObjectsW is not implemented).
/// Those parts of the health report are then left out, with the reason.
pub fn under_wine() -> bool {
    #[cfg(windows)]
    return windows::under_wine();
    #[cfg(not(windows))]
    false
}

/// Why the platform cannot give what was asked.
#[derive(Debug, Error)]
pub enum PlatformError {
    #[error(
        "no Wayland session found{0} (WAYLAND_DISPLAY is not set and /run/user/<uid> has no wayland socket)"
    )]
    NoWaylandSession(String),
    #[error("no supported desktop on this operating system")]
    UnsupportedOs,
}

#[derive(Debug, Error)]
pub enum ScreenError {
    #[error("no X display to capture (is DISPLAY set and the X server running?): {0}")]
    NoDisplay(std::io::Error),
    #[error("display {0} does not exist")]
    NoSuchDisplay(u32),
    #[error("capture failed: {0}")]
    Capture(std::io::Error),
    #[error("compression failed: {0}")]
    Compress(std::io::Error),
}

#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot open the input device (is DISPLAY set?): {0}")]
    Open(String),
    #[error("input failed: {0}")]
    Failed(String),
}

/// Which parts of a display changed since the last capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Not known: anything may have changed (the whole screen is compared).
    Unknown,
    /// Only these areas may have changed (none: nothing did).
    Areas(Vec<Rect>),
}

/// A window the platform saw move since the last capture: its top-left `from` then, `to` now
/// (screen coordinates; either may be partly off the screen), `size` unchanged. A hint the
/// encoder checks against the pixels before it copies anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowMove {
    pub from: (i32, i32),
    pub to: (i32, i32),
    pub size: (u32, u32),
}

/// Something that can list displays and capture one as BGRX pixels. It may be tied to the
/// thread that made it (X11's shared-memory capturer is), so it is made where it is used.
pub trait ScreenSource {
    fn displays(&self) -> Result<Vec<DisplayInfo>, ScreenError>;
    /// One full frame of `display`, rows packed (stride = width × 4).
    fn capture(&mut self, display: u32) -> Result<(u32, u32, Vec<u8>), ScreenError>;
    /// What changed on `display` since the last capture; asked just before capturing, so a
    /// change that lands between the two is reported again next time rather than lost. A
    /// source that cannot tell says [`Damage::Unknown`] (the default).
    fn damage(&mut self, display: u32) -> Damage {
        let _ = display;
        Damage::Unknown
    }
    /// Areas drawn since [`Self::damage`] was asked, seen right after the capture: compared in
    /// this frame too (what was drawn before the copy is in it; a change that landed between
    /// the damage and the capture would otherwise wait a poll), and reported again by the next
    /// `damage`, so nothing drawn after the copy is lost.
    fn late_damage(&mut self, display: u32) -> Vec<Rect> {
        let _ = display;
        Vec::new()
    }
    /// Blocks until something is drawn on `display` or `timeout` passes; false (at once) when
    /// the source cannot tell, and the caller sleeps instead.
    fn wait_damage(&mut self, display: u32, timeout: std::time::Duration) -> bool {
        let _ = (display, timeout);
        false
    }
    /// Whether [`Self::wait_damage`] also wakes when the pointer moves or changes its image on
    /// `display`: then the caller may wait far longer than a poll on a still screen.
    fn wakes_on_pointer(&mut self, display: u32) -> bool {
        let _ = display;
        false
    }
    /// Called when [`Self::wait_damage`] woke for a drawing: waits until nothing more has been
    /// drawn for `quiet` (at most `max` in all), so an application's update (a key's echo and
    /// its cursor, a scroll step) is captured whole, as one frame. The default waits `quiet`.
    fn settle(&mut self, display: u32, quiet: std::time::Duration, max: std::time::Duration) {
        let _ = (display, max);
        std::thread::sleep(quiet);
    }
    /// Refreshes only `areas` of `frame` (a `width` × `height` capture of `display` from
    /// before, rows packed) from the screen: for a change small enough that a whole capture
    /// would cost more. False (and `frame` possibly half refreshed) where the source cannot:
    /// the caller then captures in full (the default).
    fn capture_areas(
        &mut self,
        display: u32,
        frame: &mut [u8],
        width: u32,
        height: u32,
        areas: &[Rect],
    ) -> Result<bool, ScreenError> {
        let _ = (display, frame, width, height, areas);
        Ok(false)
    }
    /// Windows that moved on `display` since the last call (asked with [`Self::damage`]), for
    /// copies instead of pixels; none where the source cannot tell (the default).
    fn moves(&mut self, display: u32) -> Vec<WindowMove> {
        let _ = display;
        Vec::new()
    }
}

/// The pointer's image: premultiplied RGBA, at most 256×256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointerImage {
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    pub rgba: Vec<u8>,
}

/// Where the pointer is, and what it looks like.
pub trait Pointer {
    /// The position, and the image when it changed since the last poll (and is known).
    /// `None` when the position cannot be read.
    fn poll(&mut self) -> Option<((i32, i32), Option<PointerImage>)>;
}

/// A session's mouse and keyboard on the desktop. Devices open on first use; dropping the sink
/// releases every key still held and restores whatever it changed (the keymap).
pub trait InputSink {
    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError>;
    /// Releases the keys held, if any (the viewer went silent holding them).
    fn release_if_held(&mut self);
}

/// The desktop's clipboard (text). Blocking: call from a blocking context.
pub trait Clipboard: Send + Sync {
    fn get(&self) -> Result<String, ClipboardError>;
    fn set(&self, text: String) -> Result<(), ClipboardError>;
}

/// What a desktop gives a session.
pub trait Desktop: Send + Sync {
    fn kind(&self) -> DesktopKind;
    /// The displays, the first being the primary.
    fn screens(&self) -> Result<Vec<DisplayInfo>, ScreenError>;
    /// A capturer; it may not move between threads, so make it on the thread that captures.
    fn screen(&self) -> Box<dyn ScreenSource>;
    /// The pointer, when its position can be read at all.
    fn pointer(&self) -> Option<Box<dyn Pointer>>;
    /// The session's input; make it on the thread that applies the events.
    fn input(&self) -> Box<dyn InputSink>;
    fn clipboard(&self) -> &dyn Clipboard;
    /// The uid of the user whose desktop this is, when the desktop says.
    fn owner(&self) -> Option<u32>;
    /// What the user should be told before the desktop is first used (a dialog of the desktop's
    /// own will ask them), if anything.
    fn notice(&self) -> Option<String> {
        None
    }
}

/// The kinds of desktop the agent knows of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DesktopKind {
    X11,
    Wayland,
    /// The Windows desktop of the interactive session (GDI capture, SendInput).
    Windows,
}

impl DesktopKind {
    /// The kind of desktop the environment describes: Wayland wherever `WAYLAND_DISPLAY` is set
    /// (X11 through XWayland would see only X clients) or `XDG_SESSION_TYPE=wayland`; else X11
    /// (whose requests fail saying `DISPLAY` is not set when it is not).
    pub fn detect(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
        if set("WAYLAND_DISPLAY") || var("XDG_SESSION_TYPE").is_some_and(|v| v == "wayland") {
            return DesktopKind::Wayland;
        }
        DesktopKind::X11
    }

    /// `x11`, `wayland`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x11" => Some(DesktopKind::X11),
            "wayland" => Some(DesktopKind::Wayland),
            _ => None,
        }
    }
}

/// Which desktop sessions serve: a kind forced by the admin (`tether-agent run --desktop`) or
/// found, and the desktop user whose session it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesktopSpec {
    /// `None`: find it ([`session_desktop`]).
    pub kind: Option<DesktopKind>,
    /// The desktop user, when known (`--desktop-user`, or the owner of the X display).
    pub user: Option<u32>,
}

/// The desktop `spec` names. Wayland when forced or found: the session this process's
/// environment names (`WAYLAND_DISPLAY`), else the desktop user's (`/run/user/<uid>`); X11
/// otherwise.
pub fn desktop_for(spec: &DesktopSpec) -> Result<Arc<dyn Desktop>, PlatformError> {
    #[cfg(target_os = "linux")]
    {
        let from_env = || {
            wayland::SessionEnv::from_env(|n| {
                std::env::var_os(n).and_then(|v| v.into_string().ok())
            })
        };
        let found = || from_env().or_else(|| spec.user.and_then(wayland::SessionEnv::for_user));
        match spec.kind {
            Some(DesktopKind::Windows) => Err(PlatformError::UnsupportedOs),
            Some(DesktopKind::X11) => Ok(Arc::new(x11::X11Desktop)),
            Some(DesktopKind::Wayland) => match found() {
                Some(env) => Ok(Arc::new(wayland::desktop(env))),
                None => Err(PlatformError::NoWaylandSession(
                    spec.user
                        .map(|u| format!(" for uid {u}"))
                        .unwrap_or_default(),
                )),
            },
            None => match found() {
                Some(env) => Ok(Arc::new(wayland::desktop(env))),
                None => Ok(Arc::new(x11::X11Desktop)),
            },
        }
    }
    #[cfg(windows)]
    {
        let _ = spec;
        windows::desktop()
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = spec;
        Err(PlatformError::UnsupportedOs)
    }
}

/// The desktop this process's environment describes, without a known desktop user.
pub fn desktop() -> Result<Arc<dyn Desktop>, PlatformError> {
    desktop_for(&DesktopSpec::default())
}

/// The desktop a session serves. Where there is none (a Wayland session was asked for and is
/// not there), that is logged and the session still runs (shell and files work) while screen,
/// input and clipboard requests fail with the reason.
pub fn session_desktop(spec: &DesktopSpec) -> Arc<dyn Desktop> {
    match desktop_for(spec) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("{e}");
            Arc::new(NoDesktop(e.to_string()))
        }
    }
}

/// A desktop that has nothing: every request fails with the reason.
struct NoDesktop(String);

impl Clipboard for NoDesktop {
    fn get(&self) -> Result<String, ClipboardError> {
        Err(ClipboardError::Unavailable(self.0.clone()))
    }
    fn set(&self, _: String) -> Result<(), ClipboardError> {
        Err(ClipboardError::Unavailable(self.0.clone()))
    }
}

struct Nothing(String);

impl ScreenSource for Nothing {
    fn displays(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        Err(ScreenError::NoDisplay(std::io::Error::other(
            self.0.clone(),
        )))
    }
    fn capture(&mut self, _: u32) -> Result<(u32, u32, Vec<u8>), ScreenError> {
        Err(ScreenError::NoDisplay(std::io::Error::other(
            self.0.clone(),
        )))
    }
}

impl InputSink for Nothing {
    fn apply(&mut self, _: &InputEvent) -> Result<(), InputError> {
        Err(InputError::Open(self.0.clone()))
    }
    fn release_if_held(&mut self) {}
}

impl Desktop for NoDesktop {
    fn kind(&self) -> DesktopKind {
        DesktopKind::X11
    }
    fn screens(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        Nothing(self.0.clone()).displays()
    }
    fn screen(&self) -> Box<dyn ScreenSource> {
        Box::new(Nothing(self.0.clone()))
    }
    fn pointer(&self) -> Option<Box<dyn Pointer>> {
        None
    }
    fn input(&self) -> Box<dyn InputSink> {
        Box::new(Nothing(self.0.clone()))
    }
    fn clipboard(&self) -> &dyn Clipboard {
        self
    }
    fn owner(&self) -> Option<u32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_desktop_kind_follows_the_environment() {
        assert_eq!(
            DesktopKind::detect(env(&[("DISPLAY", ":0")])),
            DesktopKind::X11
        );
        // XWayland too: X11 there sees only X clients.
        let xwayland = [
            ("DISPLAY", ":1"),
            ("WAYLAND_DISPLAY", "wayland-0"),
            ("XDG_SESSION_TYPE", "wayland"),
        ];
        assert_eq!(DesktopKind::detect(env(&xwayland)), DesktopKind::Wayland);
        let wayland = [("WAYLAND_DISPLAY", "wayland-0")];
        assert_eq!(DesktopKind::detect(env(&wayland)), DesktopKind::Wayland);
        let wayland = [("DISPLAY", ""), ("XDG_SESSION_TYPE", "wayland")];
        assert_eq!(DesktopKind::detect(env(&wayland)), DesktopKind::Wayland);
        // Nothing at all: X11, as before (its errors say DISPLAY is not set).
        assert_eq!(DesktopKind::detect(env(&[])), DesktopKind::X11);
        // Wayland asked for where there is none: a reason, not a desktop.
        let spec = DesktopSpec {
            kind: Some(DesktopKind::Wayland),
            user: Some(u32::MAX - 1),
        };
        if std::env::var_os("WAYLAND_DISPLAY").is_none() {
            assert!(matches!(
                desktop_for(&spec),
                Err(PlatformError::NoWaylandSession(_))
            ));
        }
    }
}
