//! Screen capture on Windows: DXGI Desktop Duplication where it opens ([`super::dxgi`]: faster,
//! sees full-screen Direct3D, and says when nothing changed), else GDI: `BitBlt` of a monitor's
//! area of the screen into a 32-bit top-down DIB section, kept while the monitor keeps its place
//! and size. A duplication that fails (lost on a desktop switch) falls back to GDI at once and
//! is opened again later.

use super::Origin;
use super::dxgi::{Duplication, Grab};
use super::gdi::{self, Area, Grabber};
use super::inputdesk;
use crate::platform::{ScreenError, ScreenSource};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_protocol::session::DisplayInfo;

/// How often a capturer checks that it is on the desktop that receives input.
const DESKTOP_CHECK: Duration = Duration::from_millis(500);
/// After DXGI failed to open, GDI is used this long before it is tried again.
const DXGI_RETRY: Duration = Duration::from_secs(30);
/// After a working duplication was lost (a desktop switch), how soon to open it again.
const DXGI_REOPEN: Duration = Duration::from_secs(1);

/// A monitor's duplication and its last image (what "unchanged" stands for).
struct Dxgi {
    area: Area,
    dup: Duplication,
    last: Vec<u8>,
}

/// The monitors, through GDI. Keeps the grabber of the last display used; GDI handles belong
/// to this thread's use, so this stays on the thread that made it.
pub struct GdiScreen {
    origin: Arc<Origin>,
    cached: Option<(Area, Grabber)>,
    /// When the input desktop was last checked.
    checked: Option<Instant>,
    dxgi: Option<Dxgi>,
    /// When DXGI may be tried again after failing.
    dxgi_after: Option<Instant>,
    /// Whether "DXGI unavailable" was logged (once per capturer).
    dxgi_told: bool,
}

impl GdiScreen {
    pub fn new(origin: Arc<Origin>) -> Self {
        Self {
            origin,
            cached: None,
            checked: None,
            dxgi: None,
            dxgi_after: None,
            dxgi_told: false,
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
        if let Some(frame) = self.grab_dxgi(area) {
            self.origin.set(area.left, area.top);
            return Ok(frame);
        }
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

    /// The monitor's image through DXGI, when it works here; `None`: use GDI this time.
    fn grab_dxgi(&mut self, area: Area) -> Option<(u32, u32, Vec<u8>)> {
        if self.dxgi.as_ref().is_some_and(|d| d.area != area) {
            self.dxgi = None;
        }
        if self.dxgi.is_none() {
            if self.dxgi_after.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            match Duplication::open(area.left, area.top, area.width, area.height) {
                Ok(dup) => {
                    tracing::info!("capturing with DXGI desktop duplication");
                    self.dxgi = Some(Dxgi {
                        area,
                        dup,
                        last: Vec::new(),
                    });
                }
                Err(e) => {
                    if !self.dxgi_told {
                        self.dxgi_told = true;
                        tracing::info!(
                            "DXGI desktop duplication unavailable ({e}); capturing with GDI"
                        );
                    }
                    self.dxgi_after = Some(Instant::now() + DXGI_RETRY);
                    return None;
                }
            }
        }
        let d = self.dxgi.as_mut()?;
        // The first image may take a moment; after it, "no new frame" means unchanged.
        let wait = if d.last.is_empty() { 200 } else { 0 };
        let size = (area.width as u32, area.height as u32);
        match d.dup.grab(&mut d.last, wait) {
            Ok(Grab::Frame) => Some((size.0, size.1, d.last.clone())),
            Ok(Grab::Unchanged) if !d.last.is_empty() => Some((size.0, size.1, d.last.clone())),
            Ok(Grab::Unchanged) => None,
            Err(e) => {
                tracing::debug!("DXGI desktop duplication lost ({e}); GDI until it reopens");
                self.dxgi = None;
                self.dxgi_after = Some(Instant::now() + DXGI_REOPEN);
                None
            }
        }
    }
}
