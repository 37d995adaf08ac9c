//! What every desktop helper's backend gives it: displays, frames, input, pointer, clipboard.
//!
//! Backends are driven from one thread, one request at a time ([`super::serve`]); each keeps
//! whatever threads or event loops it needs (PipeWire's loop, a D-Bus connection, the Wayland
//! event queue, a Windows desktop) behind these calls.

use super::{HelperError, PointerState};
use crate::session::{DisplayInfo, InputEvent};
use crate::tiles::Rect;

/// One captured frame: BGRX pixels, rows packed (stride = width × 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    /// Where it may differ from the previous frame returned for the same display; `None`:
    /// unknown.
    pub damage: Option<Vec<Rect>>,
}

/// The result of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    Frame(Frame),
    /// Nothing changed since the last frame returned for this display.
    Unchanged,
}

pub trait Backend {
    /// "gnome", "wlroots", "portal" or "windows".
    fn name(&self) -> &'static str;
    /// The compositor as it names itself, where known.
    fn compositor(&self) -> String;
    /// The displays, the first being the primary (index = position in the list). Must not start
    /// screen sharing.
    fn displays(&mut self) -> Result<Vec<DisplayInfo>, HelperError>;
    /// The newest frame of `display`. The first call starts sharing it (and may wait for the
    /// first frame, a few seconds at most).
    fn capture(&mut self, display: u32) -> Result<Capture, HelperError>;
    /// Stops sharing every display.
    fn stop_capture(&mut self);
    fn input(&mut self, event: &InputEvent) -> Result<(), HelperError>;
    /// The pointer's position (and image when it changed), when known.
    fn pointer(&mut self) -> Option<PointerState>;
    fn get_clipboard(&mut self) -> Result<String, HelperError>;
    fn set_clipboard(&mut self, text: String) -> Result<(), HelperError>;
}
