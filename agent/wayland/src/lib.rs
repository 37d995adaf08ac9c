//! `tether-wayland`: the agent's hands and eyes in a Wayland session.
//!
//! Wayland gives no process outside the user's session a way to see or drive the screen: the
//! APIs live on the user's session bus and Wayland socket (mode 0700, the user's). So the agent,
//! a system service, starts this helper **as the desktop user**, with that session's
//! environment, and talks to it over the helper's standard input and output
//! ([`tether_protocol::helper`]). One helper serves one remote session and ends with it (the
//! agent closes the pipe), which also ends the compositor's screen sharing.
//!
//! Backends, picked at start ([`pick`]):
//! - [`gnome`]: `org.gnome.Mutter.ScreenCast` + `org.gnome.Mutter.RemoteDesktop` on the session
//!   bus, frames from PipeWire — no extra prompt (Tether's consent dialog is the user's one
//!   decision), as gnome-remote-desktop does.
//! - [`wlr`]: wlroots compositors (sway, …): `wlr-screencopy` with damage, the virtual keyboard
//!   and pointer protocols.
//! - [`portal`]: `org.freedesktop.portal.ScreenCast`/`RemoteDesktop` (KDE and others), with a
//!   restore token so the portal asks once.

/// The backend interface, shared with the Windows agent's desktop helper.
pub use tether_protocol::helper::backend;
#[cfg(target_os = "linux")]
pub mod gnome;
pub mod keymap;
#[cfg(target_os = "linux")]
pub mod portal;
pub mod pw;
pub use tether_protocol::helper::serve;
#[cfg(target_os = "linux")]
pub mod wlr;

/// The backend for this session: `choice` names one ("gnome", "wlroots", "portal"), or "auto"
/// tries mutter's own API first (no prompt), then wlroots' protocols, then the portal.
#[cfg(target_os = "linux")]
pub fn pick(
    choice: &str,
) -> Result<Box<dyn backend::Backend>, tether_protocol::helper::HelperError> {
    use tether_protocol::helper::HelperError;
    let gnome = || gnome::Gnome::connect().map(|b| Box::new(b) as Box<dyn backend::Backend>);
    let wlr = || wlr::Wlr::connect().map(|b| Box::new(b) as Box<dyn backend::Backend>);
    let portal = || portal::connect().map(|b| Box::new(b) as Box<dyn backend::Backend>);
    match choice {
        "gnome" => gnome(),
        "wlroots" => wlr(),
        "portal" => portal(),
        "auto" => {
            if gnome::available() {
                gnome()
            } else if wlr::Wlr::available() {
                wlr()
            } else if portal::available() {
                portal()
            } else {
                Err(HelperError::Unsupported(
                    "this Wayland session offers none of mutter's ScreenCast, wlroots' screencopy or the desktop portal".into(),
                ))
            }
        }
        other => Err(HelperError::Unsupported(format!(
            "unknown backend {other:?} (gnome, wlroots, portal or auto)"
        ))),
    }
}
