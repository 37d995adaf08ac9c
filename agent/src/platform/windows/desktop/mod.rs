//! The Windows desktop: capture through DXGI Desktop Duplication where it opens, else GDI (`BitBlt`), input through `SendInput`, the pointer
//! through `GetCursorInfo`/`GetIconInfo`, the clipboard through arboard. The FFI lives in
//! [`dxgi`], [`gdi`], [`send`] and [`inputdesk`], the only modules that allow `unsafe`. Capture and input
//! follow the input desktop (the secure desktop of UAC prompts and the sign-in screen) where
//! the process may.
//!
//! Coordinates: input events and the pointer's position are in the pixels of the display last
//! captured (the one the viewer shows), so they are offset by that display's origin on the
//! virtual screen (the primary display until a capture says otherwise).

mod dxgi;
mod gdi;
mod input;
mod inputdesk;
mod keymap;
mod pointer;
mod screen;
mod send;

use crate::platform::clipboard::ArboardClipboard;
use crate::platform::{
    Clipboard, Desktop, DesktopKind, InputSink, Pointer, ScreenError, ScreenSource,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tether_protocol::session::DisplayInfo;

/// The top-left corner, on the virtual screen, of the display last captured: shared by a
/// desktop's capturers, input and pointer.
#[derive(Default)]
struct Origin(AtomicU64);

impl Origin {
    fn set(&self, x: i32, y: i32) {
        let packed = (u64::from(x as u32) << 32) | u64::from(y as u32);
        self.0.store(packed, Ordering::Relaxed);
    }

    fn get(&self) -> (i32, i32) {
        let packed = self.0.load(Ordering::Relaxed);
        ((packed >> 32) as u32 as i32, packed as u32 as i32)
    }
}

/// The interactive desktop of the Windows session this process runs in.
pub struct WindowsDesktop {
    origin: Arc<Origin>,
}

impl WindowsDesktop {
    /// Makes the process DPI-aware (physical pixels everywhere) and the desktop.
    pub fn new() -> Self {
        gdi::dpi_aware();
        Self {
            origin: Arc::default(),
        }
    }
}

impl Default for WindowsDesktop {
    fn default() -> Self {
        Self::new()
    }
}

impl Desktop for WindowsDesktop {
    fn kind(&self) -> DesktopKind {
        DesktopKind::Windows
    }

    fn screens(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        screen::displays()
    }

    fn screen(&self) -> Box<dyn ScreenSource> {
        Box::new(screen::GdiScreen::new(self.origin.clone()))
    }

    fn pointer(&self) -> Option<Box<dyn Pointer>> {
        Some(Box::new(pointer::WinPointer::new(self.origin.clone())))
    }

    fn input(&self) -> Box<dyn InputSink> {
        Box::new(input::WinInput::new(self.origin.clone()))
    }

    fn clipboard(&self) -> &dyn Clipboard {
        &ArboardClipboard
    }

    fn owner(&self) -> Option<u32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Origin;

    #[test]
    fn the_origin_keeps_negative_coordinates() {
        let o = Origin::default();
        assert_eq!(o.get(), (0, 0));
        o.set(-1920, -8);
        assert_eq!(o.get(), (-1920, -8));
        o.set(2560, 0);
        assert_eq!(o.get(), (2560, 0));
    }
}
