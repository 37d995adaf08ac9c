//! Screen capture on Windows through GDI: `BitBlt` of a monitor's area of the screen into a
//! 32-bit top-down DIB section, kept while the monitor keeps its place and size.
//!
//! DXGI Desktop Duplication (faster, and it sees full-screen Direct3D) is not used yet: Wine
//! cannot test it (its `DuplicateOutput` is a stub), and it needs more `windows-sys` features.

use super::Origin;
use super::gdi::{self, Area, Grabber};
use super::inputdesk;
use crate::platform::{ScreenError, ScreenSource};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_protocol::session::DisplayInfo;

/// How often a capturer checks that it is on the desktop that receives input.
const DESKTOP_CHECK: Duration = Duration::from_millis(500);

/// The monitors, through GDI. Keeps the grabber of the last display used; GDI handles belong
/// to this thread's use, so this stays on the thread that made it.
pub struct GdiScreen {
    origin: Arc<Origin>,
    cached: Option<(Area, Grabber)>,
    /// When the input desktop was last checked.
    checked: Option<Instant>,
}

impl GdiScreen {
    pub fn new(origin: Arc<Origin>) -> Self {
        Self {
            origin,
            cached: None,
            checked: None,
        }
    }
}

pub fn displays() -> Result<Vec<DisplayInfo>, ScreenError> {
    let monitors = gdi::monitors().map_err(ScreenError::NoDisplay)?;
    Ok(monitors
        .iter()
        .enumerate()
        .map(|(i, m)| DisplayInfo {
            index: i as u32,
            width: m.area.width.max(0) as u32,
            height: m.area.height.max(0) as u32,
            primary: m.primary,
        })
        .collect())
}

impl ScreenSource for GdiScreen {
    fn displays(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        displays()
    }

    fn capture(&mut self, display: u32) -> Result<(u32, u32, Vec<u8>), ScreenError> {
        // The secure desktop (UAC, sign-in) is another desktop: BitBlt from ours would show
        // black or a stale screen, or fail.
        if self.checked.is_none_or(|t| t.elapsed() >= DESKTOP_CHECK) {
            self.checked = Some(Instant::now());
            inputdesk::follow();
        }
        match self.grab(display) {
            Err(ScreenError::Capture(e)) if inputdesk::follow() => {
                tracing::debug!("capture failed ({e}); retrying on the input desktop");
                self.cached = None;
                self.grab(display)
            }
            r => r,
        }
    }
}

impl GdiScreen {
    fn grab(&mut self, display: u32) -> Result<(u32, u32, Vec<u8>), ScreenError> {
        let area = gdi::monitors()
            .map_err(ScreenError::NoDisplay)?
            .get(display as usize)
            .map(|m| m.area)
            .ok_or(ScreenError::NoSuchDisplay(display))?;
        if self
            .cached
            .as_ref()
            .is_none_or(|(a, g)| a != &area || g.size() != (area.width, area.height))
        {
            // Drop the old DIB before making the new one.
            self.cached = None;
            let g = Grabber::new(area.width, area.height).map_err(ScreenError::Capture)?;
            self.cached = Some((area, g));
        }
        let Some((_, grabber)) = self.cached.as_mut() else {
            return Err(ScreenError::NoSuchDisplay(display));
        };
        let mut out = Vec::new();
        grabber
            .grab(area.left, area.top, &mut out)
            .map_err(ScreenError::Capture)?;
        // Input and the pointer are in this display's coordinates from now on.
        self.origin.set(area.left, area.top);
        Ok((area.width as u32, area.height as u32, out))
    }
}
