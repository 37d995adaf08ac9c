//! The desktop-portal backend: screen and input through `org.freedesktop.portal.ScreenCast` and
//! `org.freedesktop.portal.RemoteDesktop` (via `ashpd`), for Wayland desktops that are neither
//! GNOME/mutter ([`crate::gnome`]) nor wlroots ([`crate::wlr`]) — KDE Plasma and others.
//!
//! Unlike mutter's private API, the portal asks the user itself: `Start` shows the desktop's
//! own "share your screen and allow remote control?" dialog. To ask only once, the session is
//! requested with persist mode "until explicitly revoked" and the portal's restore token is
//! kept on disk ([`token`]); the next run hands it back and the portal restores the choice
//! silently. A token the portal rejects is deleted and the flow run once more without it; a
//! cancelled dialog is the user's "no" and reaches the agent as
//! [`HelperError::ScreenRefused`]. The decisions live in [`machine`] and the input lowering in
//! [`input`], both without I/O and unit-tested.
//!
//! One portal session carries input and every shared monitor (`multiple = true`): its streams,
//! in the portal's order, are the displays (the first primary), each read through PipeWire on
//! the remote the portal opens (`OpenPipeWireRemote`). The session starts on the first request
//! that needs it (displays, capture or input — the portal cannot list monitors any other way)
//! and ends with [`Backend::stop_capture`], so the desktop's sharing indicator is on only while
//! Tether uses the screen. If the desktop ends the session (the user revokes it), requests fail
//! with `ScreenRefused` until the agent stops the capture, rather than popping the dialog again.
//!
//! **Untested end to end here**: the portal could not run on the development machine
//! (xdg-desktop-portal-wlr needs a GPU; see `docs/research/wayland/FINDINGS.md`). The calls
//! follow the portal specification and ashpd 0.12; the unit tests cover the token store, the
//! state machine and the input lowering.

pub mod input;
pub mod machine;
pub mod token;
