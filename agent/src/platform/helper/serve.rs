//! The helper's side over a desktop of this process: the Windows agent's `desktop-helper`
//! (started in the signed-in user's session) serves its [`Desktop`] to the agent service with
//! this backend, through [`tether_protocol::helper::serve`].
//!
//! The desktop gives whole frames; the backend keeps the last one of each display and answers
//! "unchanged" when nothing differs, else the band of rows that changed, so neither the pipe
//! nor the agent's compare sees a still screen twice.

use crate::platform::{Desktop, Pointer, ScreenSource};
use std::collections::HashMap;
use std::sync::Arc;
use tether_protocol::helper::backend::{Backend, Capture, Frame};
use tether_protocol::helper::{HelperError, PointerBitmap, PointerState};
use tether_protocol::session::{DisplayInfo, InputEvent};
use tether_protocol::tiles::Rect;

pub struct DesktopBackend {
    name: &'static str,
    desktop: Arc<dyn Desktop>,
    screen: Box<dyn ScreenSource>,
    input: Box<dyn crate::platform::InputSink>,
    pointer: Option<Box<dyn Pointer>>,
    /// The last frame returned for each display: (width, height, pixels).
    last: HashMap<u32, (u32, u32, Vec<u8>)>,
}

impl DesktopBackend {
    /// Serves `desktop`; make it on the thread that serves (capturers and input may be tied
    /// to their thread).
    pub fn new(name: &'static str, desktop: Arc<dyn Desktop>) -> Self {
        DesktopBackend {
            name,
            screen: desktop.screen(),
            input: desktop.input(),
            pointer: desktop.pointer(),
            desktop,
            last: HashMap::new(),
        }
    }
}

/// The rows of two equal-sized frames that differ, as one full-width band; `None` when none do.
fn changed_rows(old: &[u8], new: &[u8], width: u32) -> Option<(u32, u32)> {
    let stride = (width as usize * 4).max(1);
    let rows = || old.chunks(stride).zip(new.chunks(stride)).enumerate();
    let first = rows().find(|(_, (a, b))| a != b)?.0;
    let last = rows()
        .rev()
        .find(|(_, (a, b))| a != b)
        .map_or(first, |r| r.0);
    Some((first as u32, last as u32 + 1))
}

impl Backend for DesktopBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn compositor(&self) -> String {
        format!("{:?}", self.desktop.kind())
    }

    fn displays(&mut self) -> Result<Vec<DisplayInfo>, HelperError> {
        self.desktop
            .screens()
            .map_err(|e| HelperError::Capture(e.to_string()))
    }

    fn capture(&mut self, display: u32) -> Result<Capture, HelperError> {
        let (width, height, pixels) = self.screen.capture(display).map_err(|e| match e {
            crate::platform::ScreenError::NoSuchDisplay(d) => HelperError::NoSuchDisplay(d),
            e => HelperError::Capture(e.to_string()),
        })?;
        let damage = match self.last.get(&display) {
            Some((w, h, old)) if (*w, *h) == (width, height) => {
                match changed_rows(old, &pixels, width) {
                    None => return Ok(Capture::Unchanged),
                    Some((y0, y1)) => Some(vec![Rect {
                        x: 0,
                        y: y0,
                        w: width,
                        h: y1 - y0,
                    }]),
                }
            }
            _ => None,
        };
        self.last.insert(display, (width, height, pixels.clone()));
        Ok(Capture::Frame(Frame {
            width,
            height,
            pixels,
            damage,
        }))
    }

    fn stop_capture(&mut self) {
        self.last.clear();
    }

    fn input(&mut self, event: &InputEvent) -> Result<(), HelperError> {
        self.input
            .apply(event)
            .map_err(|e| HelperError::Input(e.to_string()))
    }

    fn pointer(&mut self) -> Option<PointerState> {
        let ((x, y), image) = self.pointer.as_mut()?.poll()?;
        Some(PointerState {
            x,
            y,
            image: image.map(|i| PointerBitmap {
                width: i.width,
                height: i.height,
                hot_x: i.hot_x,
                hot_y: i.hot_y,
                rgba: i.rgba,
            }),
        })
    }

    fn get_clipboard(&mut self) -> Result<String, HelperError> {
        self.desktop
            .clipboard()
            .get()
            .map_err(|e| HelperError::Clipboard(e.to_string()))
    }

    fn set_clipboard(&mut self, text: String) -> Result<(), HelperError> {
        self.desktop
            .clipboard()
            .set(text)
            .map_err(|e| HelperError::Clipboard(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::changed_rows;

    #[test]
    fn only_the_rows_that_differ_are_reported() {
        let w = 2;
        let a = vec![0u8; 2 * 4 * 5];
        assert_eq!(changed_rows(&a, &a, w), None);
        let mut b = a.clone();
        b[8 + 3] = 1; // row 1
        b[3 * 8] = 9; // row 3
        assert_eq!(changed_rows(&a, &b, w), Some((1, 4)));
        let mut c = a.clone();
        c[4 * 8 + 7] = 1; // the last row only
        assert_eq!(changed_rows(&a, &c, w), Some((4, 5)));
    }
}
