//! The X11 desktop: capture through scrap (XShm), the pointer through XFixes, input through
//! enigo and XTEST, the clipboard through arboard. Everything connects to the X server named by
//! `DISPLAY`.

mod input;
mod keyboard;
mod pointer;
mod screen;

use crate::platform::clipboard::ArboardClipboard;
use crate::platform::{
    Clipboard, Desktop, DesktopKind, InputSink, Pointer, ScreenError, ScreenSource,
};
use tether_protocol::session::DisplayInfo;

pub struct X11Desktop;

impl Desktop for X11Desktop {
    fn kind(&self) -> DesktopKind {
        DesktopKind::X11
    }

    fn screens(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        screen::X11Screen::default().displays()
    }

    fn screen(&self) -> Box<dyn ScreenSource> {
        Box::new(screen::X11Screen::default())
    }

    fn pointer(&self) -> Option<Box<dyn Pointer>> {
        match pointer::XFixesPointer::connect() {
            Some(p) => Some(Box::new(p)),
            None => pointer::EnigoPointer::open().map(|p| Box::new(p) as Box<dyn Pointer>),
        }
    }

    fn input(&self) -> Box<dyn InputSink> {
        Box::new(input::Devices::default())
    }

    fn clipboard(&self) -> &dyn Clipboard {
        &ArboardClipboard
    }

    /// The owner of the X server's socket for `$DISPLAY` (`/tmp/.X11-unix/X<n>`).
    fn owner(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        let display = std::env::var("DISPLAY").unwrap_or_default();
        let number = display
            .rsplit_once(':')
            .map(|(_, n)| n.split('.').next().unwrap_or(n).to_string());
        number
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| std::fs::metadata(format!("/tmp/.X11-unix/X{n}")).ok())
            .map(|m| m.uid())
    }
}
