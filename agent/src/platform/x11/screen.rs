//! X11 screen capture through scrap (XShm).

use crate::platform::{ScreenError, ScreenSource};
use tether_protocol::session::DisplayInfo;

/// X11 through scrap (XShm). Keeps the capturer of the last display used, so streaming reuses
/// one shared-memory segment; scrap's types cannot move between threads, so neither can this.
#[derive(Default)]
pub struct X11Screen {
    cached: Option<(u32, scrap::Capturer)>,
}

impl ScreenSource for X11Screen {
    fn displays(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        let all = scrap::Display::all().map_err(ScreenError::NoDisplay)?;
        Ok(all
            .iter()
            .enumerate()
            .map(|(i, d)| DisplayInfo {
                index: i as u32,
                width: d.width() as u32,
                height: d.height() as u32,
                primary: i == 0,
            })
            .collect())
    }

    fn capture(&mut self, display: u32) -> Result<(u32, u32, Vec<u8>), ScreenError> {
        if self.cached.as_ref().is_none_or(|(d, _)| *d != display) {
            let d = scrap::Display::all()
                .map_err(ScreenError::NoDisplay)?
                .into_iter()
                .nth(display as usize)
                .ok_or(ScreenError::NoSuchDisplay(display))?;
            let cap = scrap::Capturer::new(d).map_err(ScreenError::Capture)?;
            self.cached = Some((display, cap));
        }
        let Some((_, cap)) = self.cached.as_mut() else {
            return Err(ScreenError::NoSuchDisplay(display));
        };
        let (w, h) = (cap.width(), cap.height());
        let frame = loop {
            match cap.frame() {
                Ok(f) => break f,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => return Err(ScreenError::Capture(e)),
            }
        };
        // The frame's stride may exceed width × 4; pack the rows.
        let stride = frame.len().checked_div(h).unwrap_or(0);
        let row = w * 4;
        let mut out = Vec::with_capacity(row * h);
        for y in 0..h {
            let start = y * stride;
            match frame.get(start..start + row) {
                Some(r) => out.extend_from_slice(r),
                None => {
                    return Err(ScreenError::Capture(std::io::Error::other(
                        "frame shorter than its size",
                    )));
                }
            }
        }
        Ok((w as u32, h as u32, out))
    }
}
