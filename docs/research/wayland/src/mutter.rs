//! Mutter's private screen-cast / remote-desktop D-Bus API (what gnome-remote-desktop uses).
//! Interfaces: org.gnome.Mutter.ScreenCast (Version 4 in mutter 43.8) and
//! org.gnome.Mutter.RemoteDesktop (Version 1, SupportedDeviceTypes = 7 = keyboard|pointer|touch).
//! Both live on the *session* bus of the desktop user. The client must stay connected:
//! mutter closes the sessions when the creating connection goes away.

use std::collections::HashMap;
use zbus::proxy;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

#[proxy(
    interface = "org.gnome.Mutter.ScreenCast",
    default_service = "org.gnome.Mutter.ScreenCast",
    default_path = "/org/gnome/Mutter/ScreenCast"
)]
pub trait ScreenCast {
    /// properties: "remote-desktop-session-id" (s), "disable-animations" (b)
    fn create_session(&self, properties: HashMap<&str, Value<'_>>) -> zbus::Result<OwnedObjectPath>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<i32>;
}

/// (own module: each proxy's `Closed` signal generates a type named `Closed`)
pub mod sc_session {
    use super::*;
#[proxy(
    interface = "org.gnome.Mutter.ScreenCast.Session",
    default_service = "org.gnome.Mutter.ScreenCast"
)]
pub trait ScreenCastSession {
    /// Only for a session NOT linked to a remote-desktop session (else start the RD session).
    fn start(&self) -> zbus::Result<()>;
    fn stop(&self) -> zbus::Result<()>;
    /// connector "" = primary monitor. properties: "cursor-mode" (u: 0 hidden, 1 embedded,
    /// 2 metadata), "is-recording" (b)
    fn record_monitor(
        &self,
        connector: &str,
        properties: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal, name = "Closed")]
    fn closed(&self) -> zbus::Result<()>;
}

}
pub use sc_session::ScreenCastSessionProxy;

#[proxy(
    interface = "org.gnome.Mutter.ScreenCast.Stream",
    default_service = "org.gnome.Mutter.ScreenCast"
)]
pub trait ScreenCastStream {
    #[zbus(signal, name = "PipeWireStreamAdded")]
    fn pipewire_stream_added(&self, node_id: u32) -> zbus::Result<()>;
    /// "position" (ii), "size" (ii)
    #[zbus(property)]
    fn parameters(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
}

#[proxy(
    interface = "org.gnome.Mutter.RemoteDesktop",
    default_service = "org.gnome.Mutter.RemoteDesktop",
    default_path = "/org/gnome/Mutter/RemoteDesktop"
)]
pub trait RemoteDesktop {
    fn create_session(&self) -> zbus::Result<OwnedObjectPath>;
    #[zbus(property)]
    fn supported_device_types(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<i32>;
}

pub mod rd_session {
    use super::*;
#[proxy(
    interface = "org.gnome.Mutter.RemoteDesktop.Session",
    default_service = "org.gnome.Mutter.RemoteDesktop"
)]
pub trait RemoteDesktopSession {
    fn start(&self) -> zbus::Result<()>;
    fn stop(&self) -> zbus::Result<()>;
    fn notify_keyboard_keycode(&self, keycode: u32, pressed: bool) -> zbus::Result<()>;
    fn notify_keyboard_keysym(&self, keysym: u32, pressed: bool) -> zbus::Result<()>;
    /// evdev button code (BTN_LEFT = 0x110)
    fn notify_pointer_button(&self, button: i32, pressed: bool) -> zbus::Result<()>;
    /// flags: 1 = finish (end of scroll), 2..8 = source (wheel/finger/continuous)
    fn notify_pointer_axis(&self, dx: f64, dy: f64, flags: u32) -> zbus::Result<()>;
    /// axis 0 = vertical, 1 = horizontal
    fn notify_pointer_axis_discrete(&self, axis: u32, steps: i32) -> zbus::Result<()>;
    fn notify_pointer_motion_relative(&self, dx: f64, dy: f64) -> zbus::Result<()>;
    /// stream = the ScreenCast *stream* object path (from RecordMonitor), passed as a STRING
    /// (signature "sdd", not "odd": an ObjectPath gives InvalidArgs); x,y in stream pixels
    fn notify_pointer_motion_absolute(
        &self,
        stream: &str,
        x: f64,
        y: f64,
    ) -> zbus::Result<()>;
    // ---- clipboard (mutter >= 3.36?; present in 43)
    fn enable_clipboard(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    fn disable_clipboard(&self) -> zbus::Result<()>;
    /// options: "mime-types" (as) we offer; empty/absent = we own nothing
    fn set_selection(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    /// answer to SelectionTransfer: returns an fd to write the data into
    fn selection_write(&self, serial: u32) -> zbus::Result<zbus::zvariant::OwnedFd>;
    fn selection_write_done(&self, serial: u32, success: bool) -> zbus::Result<()>;
    /// read the session's clipboard: returns an fd to read to EOF
    fn selection_read(&self, mime_type: &str) -> zbus::Result<zbus::zvariant::OwnedFd>;
    /// options: "mime-types" (as), "session-is-owner" (b)
    #[zbus(signal)]
    fn selection_owner_changed(&self, options: HashMap<String, OwnedValue>) -> zbus::Result<()>;
    #[zbus(signal)]
    fn selection_transfer(&self, mime_type: String, serial: u32) -> zbus::Result<()>;
    #[zbus(property)]
    fn session_id(&self) -> zbus::Result<String>;
    #[zbus(signal, name = "Closed")]
    fn closed(&self) -> zbus::Result<()>;
}

}
pub use rd_session::RemoteDesktopSessionProxy;

/// Unicode char -> X keysym (Latin-1 maps 1:1, the rest is 0x0100_0000 | codepoint).
pub fn char_to_keysym(c: char) -> u32 {
    match c {
        '\n' => 0xff0d, // Return
        '\t' => 0xff09, // Tab
        '\u{8}' => 0xff08, // BackSpace
        c if (c as u32) >= 0x20 && (c as u32) <= 0x7e => c as u32,
        c if (c as u32) >= 0xa0 && (c as u32) <= 0xff => c as u32,
        c => 0x0100_0000 | c as u32,
    }
}

pub const BTN_LEFT: i32 = 0x110;
pub const BTN_RIGHT: i32 = 0x111;
pub const BTN_MIDDLE: i32 = 0x112;
