//! X11 screen capture through scrap (XShm), what changed through the DAMAGE extension, so a
//! still screen is never captured, and which top-level windows moved (ConfigureNotify on the
//! root), so a dragged window goes as a copy.

use crate::platform::{Damage, ScreenError, ScreenSource, WindowMove};
use std::collections::HashMap;
use tether_protocol::session::DisplayInfo;
use tether_protocol::tiles::Rect;
use tracing::debug;
use x11rb::connection::Connection as _;
use x11rb::protocol::Event;
use x11rb::protocol::damage::{self, ConnectionExt as _, ReportLevel};
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

/// X11 through scrap (XShm). Keeps the capturer of the last display used, so streaming reuses
/// one shared-memory segment; scrap's types cannot move between threads, so neither can this.
#[derive(Default)]
pub struct X11Screen {
    cached: Option<(u32, scrap::Capturer)>,
    /// The damage watch of the display last asked about (`None` inside: the server has no
    /// DAMAGE extension, or it failed: every capture is compared in full).
    watch: Option<(u32, Option<DamageWatch>)>,
    /// When the whole screen was last compared (damage said nothing, or could not say).
    verified: Option<std::time::Instant>,
    /// When the damage last said something was drawn.
    drawn: Option<std::time::Instant>,
    /// Areas [`ScreenSource::late_damage`] took, reported again by the next `damage`.
    carry: Vec<Rect>,
}

/// Whatever the damage says, the screen is compared in full this often while something is being
/// drawn (within [`BUSY_FOR`]): a client drawing in a way the server does not account as damage
/// (some direct-rendering paths have) then shows within this time instead of never…
const VERIFY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// …and on a screen still for longer, only this often: a still screen costs (nearly) nothing.
const VERIFY_STILL: std::time::Duration = std::time::Duration::from_secs(30);
const BUSY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the whole screen is due for a comparison at `now`, last compared at `verified`,
/// something last drawn at `drawn`.
fn verify_due(
    verified: Option<std::time::Instant>,
    drawn: Option<std::time::Instant>,
    now: std::time::Instant,
) -> bool {
    let busy = drawn.is_some_and(|t| now.saturating_duration_since(t) < BUSY_FOR);
    let every = if busy { VERIFY_EVERY } else { VERIFY_STILL };
    verified.is_none_or(|t| now.saturating_duration_since(t) >= every)
}

/// More damaged rectangles than this in one poll: the whole screen is compared instead (one
/// comparison is cheaper than hundreds of small ones, and the list stays bounded).
const MAX_RECTS: usize = 256;

/// Top-level windows whose places are followed (more are not: their moves go as pixels).
const MAX_WINDOWS: usize = 1024;

/// Places of a window remembered, the newest last.
const TRAIL: usize = 4;
/// Most moves offered for one frame (each costs a comparison).
const MAX_MOVES: usize = 96;

/// Where a top-level window has been lately.
struct Trail {
    size: (u32, u32),
    places: std::collections::VecDeque<(i32, i32)>,
    /// Calls of [`DamageWatch::moves`] that still report it (it moved lately).
    fresh: u8,
}

impl Trail {
    fn new(at: (i32, i32), size: (u32, u32)) -> Self {
        Self {
            size,
            places: [at].into(),
            fresh: 0,
        }
    }
}

/// The DAMAGE extension on one X screen's root window: the server accumulates the areas drawn
/// to, tells us once when the accumulated area stops being empty (`NonEmpty` level, so an
/// animation does not flood the connection), and hands the areas over on request.
struct DamageWatch {
    conn: RustConnection,
    root: u32,
    damage: damage::Damage,
    /// Receives the accumulated damage at each [`Self::take`].
    region: u32,
    size: (u32, u32),
    /// A notification arrived that [`Self::take`] has not collected yet.
    pending: bool,
    /// Where each top-level window has been lately.
    windows: HashMap<u32, Trail>,
    /// The server tells this connection when the pointer moves (XInput 2 raw motion) or
    /// changes its image (XFixes), so [`Self::wait`] wakes for those too.
    pointer_events: bool,
    /// The pointer moved or changed since [`Self::wait`] last looked.
    pointer: bool,
}

impl DamageWatch {
    /// Watches X screen `screen` of the server named by `display` (`None`: `$DISPLAY`).
    fn connect(display: Option<&str>, screen: u32) -> Option<Self> {
        let (conn, _) = x11rb::connect(display).ok()?;
        conn.damage_query_version(1, 1).ok()?.reply().ok()?;
        conn.xfixes_query_version(5, 0).ok()?.reply().ok()?;
        let root = conn.setup().roots.get(screen as usize)?;
        let (root, size) = (
            root.root,
            (
                u32::from(root.width_in_pixels),
                u32::from(root.height_in_pixels),
            ),
        );
        let damage = conn.generate_id().ok()?;
        conn.damage_create(damage, root, ReportLevel::NON_EMPTY)
            .ok()?
            .check()
            .ok()?;
        let region = conn.generate_id().ok()?;
        conn.xfixes_create_region(region, &[]).ok()?.check().ok()?;
        let windows = top_level_windows(&conn, root).unwrap_or_else(|e| {
            debug!("X11: top-level windows not followed ({e}): moves go as pixels");
            HashMap::new()
        });
        let pointer_events = watch_pointer(&conn, root).unwrap_or_else(|e| {
            debug!("X11: pointer not watched ({e}): it is polled");
            false
        });
        Some(Self {
            conn,
            root,
            damage,
            region,
            size,
            // What happened before the watch began is unknown: the first poll collects.
            pending: true,
            windows,
            pointer_events,
            pointer: false,
        })
    }

    /// Follows a top-level window's new place (a ConfigureNotify): the same size elsewhere is
    /// a move; a new size starts its trail again (a resized window is redrawn, not moved).
    fn configured(&mut self, window: u32, at: (i32, i32), size: (u32, u32)) {
        let room = self.windows.len() < MAX_WINDOWS;
        match self.windows.get_mut(&window) {
            Some(t) if t.size == size && t.places.back() != Some(&at) => {
                if t.places.len() == TRAIL {
                    t.places.pop_front();
                }
                t.places.push_back(at);
                t.fresh = 2;
            }
            // Restacked, or configured in place: nothing moved.
            Some(t) if t.size == size => {}
            Some(t) => *t = Trail::new(at, size),
            None if room => {
                self.windows.insert(window, Trail::new(at, size));
            }
            None => {}
        }
    }

    /// Copies `areas` of the screen into `frame` (the screen's size, rows packed, BGRX as XShm
    /// gives it: the same bytes); false when the server cannot give them so.
    fn read_areas(&self, frame: &mut [u8], areas: &[Rect]) -> bool {
        use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat};
        let (w, h) = self.size;
        if frame.len() != w as usize * h as usize * 4 {
            return false;
        }
        // All requests first, then the replies: one round trip.
        let mut cookies = Vec::with_capacity(areas.len());
        for r in areas {
            let fits = r.x.checked_add(r.w).is_some_and(|e| e <= w)
                && r.y.checked_add(r.h).is_some_and(|e| e <= h)
                && r.w > 0
                && r.h > 0
                && r.w <= u32::from(u16::MAX)
                && r.h <= u32::from(u16::MAX);
            if !fits {
                return false;
            }
            let c = self.conn.get_image(
                ImageFormat::Z_PIXMAP,
                self.root,
                r.x as i16,
                r.y as i16,
                r.w as u16,
                r.h as u16,
                !0,
            );
            match c {
                Ok(c) => cookies.push((*r, c)),
                Err(_) => return false,
            }
        }
        for (r, c) in cookies {
            let Ok(img) = c.reply() else { return false };
            let row = r.w as usize * 4;
            if img.depth != 24 || img.data.len() != row * r.h as usize {
                return false;
            }
            for (i, src) in img.data.chunks_exact(row).enumerate() {
                let start = ((r.y as usize + i) * w as usize + r.x as usize) * 4;
                frame[start..start + row].copy_from_slice(src);
            }
        }
        true
    }

    /// The windows that moved since the last two calls, as every move between the last few
    /// places of each: which of them a capture shows depends on when it ran, so the coder
    /// checks them all against the pixels.
    fn moves(&mut self) -> Vec<WindowMove> {
        if !self.read_events() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for t in self.windows.values_mut().filter(|t| t.fresh > 0) {
            t.fresh -= 1;
            for &from in &t.places {
                for &to in t.places.iter().filter(|&&p| p != from) {
                    out.push(WindowMove {
                        from,
                        to,
                        size: t.size,
                    });
                }
            }
            if out.len() >= MAX_MOVES {
                break;
            }
        }
        out
    }

    /// Reads the notifications that arrived; false when the connection broke.
    fn read_events(&mut self) -> bool {
        loop {
            match self.conn.poll_for_event() {
                Ok(Some(Event::DamageNotify(_))) => self.pending = true,
                Ok(Some(Event::ConfigureNotify(e))) => self.configured(
                    e.window,
                    (i32::from(e.x), i32::from(e.y)),
                    outer(e.width, e.height, e.border_width),
                ),
                Ok(Some(Event::CreateNotify(e))) if self.windows.len() < MAX_WINDOWS => {
                    let at = (i32::from(e.x), i32::from(e.y));
                    let size = outer(e.width, e.height, e.border_width);
                    self.windows.insert(e.window, Trail::new(at, size));
                }
                Ok(Some(Event::DestroyNotify(e))) => {
                    self.windows.remove(&e.window);
                }
                Ok(Some(Event::XinputRawMotion(_) | Event::XfixesCursorNotify(_))) => {
                    self.pointer = true;
                }
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(e) => {
                    debug!("X11 damage: {e}");
                    return false;
                }
            }
        }
    }

    /// Blocks until a notification is there to collect, the pointer moved or changed since the
    /// last wait, or `timeout` passes; true for the first two (or a broken connection).
    fn wait(&mut self, timeout: std::time::Duration) -> bool {
        use std::os::fd::AsFd as _;
        if !self.read_events() || self.pending || std::mem::take(&mut self.pointer) {
            return true;
        }
        let fd = self.conn.stream().as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec::try_from(timeout).ok();
        let _ = rustix::event::poll(&mut fds, timeout.as_ref());
        !self.read_events() || self.pending || std::mem::take(&mut self.pointer)
    }

    /// The areas drawn to since the last call (clipped to the screen); `None` when they cannot
    /// be read (then everything may have changed). Costs no round trip while nothing changed.
    fn take(&mut self) -> Option<Vec<Rect>> {
        if !self.read_events() {
            return None;
        }
        if !self.pending {
            return Some(Vec::new());
        }
        // Moves the accumulated damage into our region (the server's becomes empty, so the
        // next drawing notifies again), then reads it.
        self.conn
            .damage_subtract(self.damage, x11rb::NONE, self.region)
            .ok()?;
        let reply = self
            .conn
            .xfixes_fetch_region(self.region)
            .ok()?
            .reply()
            .ok()?;
        self.pending = false;
        if reply.rectangles.len() > MAX_RECTS {
            return Some(vec![Rect {
                x: 0,
                y: 0,
                w: self.size.0,
                h: self.size.1,
            }]);
        }
        Some(
            reply
                .rectangles
                .iter()
                .filter_map(|r| clip(r, self.size))
                .collect(),
        )
    }
}

/// Asks the server to tell `conn` when the pointer moves (XInput 2 raw motion, from every
/// device, over any window) and when its image changes (XFixes); false without XInput 2.
fn watch_pointer(conn: &RustConnection, root: u32) -> Result<bool, x11rb::errors::ReplyError> {
    use x11rb::connection::RequestConnection as _;
    use x11rb::protocol::xfixes::CursorNotifyMask;
    use x11rb::protocol::xinput::{self, ConnectionExt as _, XIEventMask};
    if conn
        .extension_information(xinput::X11_EXTENSION_NAME)?
        .is_none()
    {
        return Ok(false);
    }
    let v = conn.xinput_xi_query_version(2, 0)?.reply()?;
    if v.major_version < 2 {
        return Ok(false);
    }
    conn.xinput_xi_select_events(
        root,
        &[xinput::EventMask {
            deviceid: u16::from(xinput::Device::ALL_MASTER),
            mask: vec![XIEventMask::RAW_MOTION],
        }],
    )?
    .check()?;
    conn.xfixes_select_cursor_input(root, CursorNotifyMask::DISPLAY_CURSOR)?
        .check()?;
    Ok(true)
}

/// The root's children (the top-level windows, or a window manager's frames) with their
/// places, after asking to hear of their changes (SubstructureNotify on the root, which any
/// number of clients may select).
fn top_level_windows(
    conn: &RustConnection,
    root: u32,
) -> Result<HashMap<u32, Trail>, Box<dyn std::error::Error>> {
    use x11rb::protocol::xproto::{ChangeWindowAttributesAux, ConnectionExt as _, EventMask};
    conn.change_window_attributes(
        root,
        &ChangeWindowAttributesAux::new().event_mask(EventMask::SUBSTRUCTURE_NOTIFY),
    )?
    .check()?;
    let children = conn.query_tree(root)?.reply()?.children;
    // All requests first, then the replies: one round trip, not one per window.
    let cookies = children
        .iter()
        .take(MAX_WINDOWS)
        .map(|&w| Ok((w, conn.get_geometry(w)?)))
        .collect::<Result<Vec<_>, x11rb::errors::ConnectionError>>()?;
    Ok(cookies
        .into_iter()
        // A window gone in the meantime is simply not followed.
        .filter_map(|(w, c)| {
            let g = c.reply().ok()?;
            let at = (i32::from(g.x), i32::from(g.y));
            Some((w, Trail::new(at, outer(g.width, g.height, g.border_width))))
        })
        .collect())
}

/// A window's size with its border: what moves with it (X places the border's corner at the
/// window's position).
fn outer(width: u16, height: u16, border: u16) -> (u32, u32) {
    let b = 2 * u32::from(border);
    (u32::from(width) + b, u32::from(height) + b)
}

/// `r` within a screen of `size`; `None` when nothing of it is on the screen.
fn clip(r: &x11rb::protocol::xproto::Rectangle, size: (u32, u32)) -> Option<Rect> {
    let x0 = i64::from(r.x).clamp(0, i64::from(size.0));
    let y0 = i64::from(r.y).clamp(0, i64::from(size.1));
    let x1 = (i64::from(r.x) + i64::from(r.width)).clamp(0, i64::from(size.0));
    let y1 = (i64::from(r.y) + i64::from(r.height)).clamp(0, i64::from(size.1));
    (x1 > x0 && y1 > y0).then(|| Rect {
        x: x0 as u32,
        y: y0 as u32,
        w: (x1 - x0) as u32,
        h: (y1 - y0) as u32,
    })
}

impl X11Screen {
    /// Keeps `areas` for the next [`ScreenSource::damage`]; bounded (a flood of small areas is
    /// the whole screen of `size` next time anyway).
    fn keep(&mut self, areas: &[Rect], size: (u32, u32)) {
        self.carry.extend(areas.iter().copied());
        if self.carry.len() > MAX_RECTS {
            self.carry.truncate(MAX_RECTS);
            self.carry.push(Rect {
                x: 0,
                y: 0,
                w: size.0,
                h: size.1,
            });
        }
    }
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

    fn damage(&mut self, display: u32) -> Damage {
        if self.watch.as_ref().is_none_or(|(d, _)| *d != display) {
            let w = DamageWatch::connect(None, display);
            if w.is_none() {
                debug!("no X11 DAMAGE extension: every capture is compared in full");
            }
            self.watch = Some((display, w));
        }
        let now = std::time::Instant::now();
        let due = verify_due(self.verified, self.drawn, now);
        let carried = std::mem::take(&mut self.carry);
        let damage = match self.watch.as_mut().and_then(|(_, w)| w.as_mut()) {
            Some(w) => match w.take() {
                Some(areas) if !areas.is_empty() || !carried.is_empty() => {
                    self.drawn = Some(now);
                    if due {
                        Damage::Unknown
                    } else {
                        let mut areas = areas;
                        areas.extend(carried);
                        Damage::Areas(areas)
                    }
                }
                Some(_) if due => Damage::Unknown,
                Some(mut areas) => {
                    areas.extend(carried);
                    Damage::Areas(areas)
                }
                None => {
                    // The connection broke: compare in full from now on.
                    self.watch = Some((display, None));
                    Damage::Unknown
                }
            },
            None => Damage::Unknown,
        };
        if damage == Damage::Unknown {
            self.verified = Some(now);
        }
        damage
    }

    fn wait_damage(&mut self, display: u32, timeout: std::time::Duration) -> bool {
        match self.watch.as_mut() {
            Some((d, Some(w))) if *d == display => {
                let _ = w.wait(timeout);
                true
            }
            _ => false,
        }
    }

    fn wakes_on_pointer(&mut self, display: u32) -> bool {
        matches!(self.watch.as_ref(), Some((d, Some(w))) if *d == display && w.pointer_events)
    }

    fn capture_areas(
        &mut self,
        display: u32,
        frame: &mut [u8],
        width: u32,
        height: u32,
        areas: &[Rect],
    ) -> Result<bool, ScreenError> {
        Ok(match self.watch.as_ref() {
            Some((d, Some(w))) if *d == display && w.size == (width, height) => {
                w.read_areas(frame, areas)
            }
            _ => false,
        })
    }

    fn moves(&mut self, display: u32) -> Vec<WindowMove> {
        match self.watch.as_mut() {
            Some((d, Some(w))) if *d == display => w.moves(),
            _ => Vec::new(),
        }
    }

    fn late_damage(&mut self, display: u32) -> Vec<Rect> {
        let Some((d, Some(w))) = self.watch.as_mut() else {
            return Vec::new();
        };
        if *d != display {
            return Vec::new();
        }
        let late = w.take().unwrap_or_default();
        let size = w.size;
        self.keep(&late, size);
        late
    }

    fn settle(&mut self, display: u32, quiet: std::time::Duration, max: std::time::Duration) {
        let end = std::time::Instant::now() + max;
        loop {
            let Some((d, Some(w))) = self.watch.as_mut().filter(|(d, _)| *d == display) else {
                std::thread::sleep(quiet);
                return;
            };
            let _ = d;
            // What was drawn so far is collected (so further drawing notifies again) and
            // reported by the next `damage`.
            let Some(drawn) = w.take() else { return };
            if drawn.is_empty() {
                // Woken by the pointer: nothing is being drawn.
                return;
            }
            let size = w.size;
            let left = end.saturating_duration_since(std::time::Instant::now());
            let _ = w.wait(quiet.min(left));
            let more = w.pending;
            self.keep(&drawn, size);
            if !more || left <= quiet {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, Rectangle};

    /// A private Xvfb, killed on drop; its display name.
    struct Xvfb(std::process::Child, String);
    impl Xvfb {
        fn start() -> Self {
            let mut child = std::process::Command::new("Xvfb")
                .args([
                    "-displayfd",
                    "1",
                    "-nolisten",
                    "tcp",
                    "-screen",
                    "0",
                    "640x480x24",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("Xvfb (apt install xvfb)");
            // Xvfb writes its display number once it accepts connections.
            let mut out = child.stdout.take().expect("stdout");
            let mut number = String::new();
            let mut byte = [0u8; 1];
            while out.read(&mut byte).expect("Xvfb output") == 1 && byte[0] != b'\n' {
                number.push(byte[0] as char);
            }
            Xvfb(child, format!(":{}", number.trim()))
        }
    }
    impl Drop for Xvfb {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Another client, drawing on the root window of an X display.
    struct Painter {
        conn: x11rb::rust_connection::RustConnection,
        root: u32,
        gc: u32,
    }

    impl Painter {
        /// Draws in 0xff8800.
        fn new(display: &str) -> Self {
            let (conn, screen) = x11rb::connect(Some(display)).expect("connect");
            let root = conn.setup().roots[screen].root;
            let gc = conn.generate_id().expect("id");
            conn.create_gc(gc, root, &CreateGCAux::new().foreground(0x00ff_8800))
                .expect("gc");
            Self { conn, root, gc }
        }

        /// Fills `r` and waits until the server has done it.
        fn fill(&self, x: i16, y: i16, width: u16, height: u16) {
            let r = Rectangle {
                x,
                y,
                width,
                height,
            };
            self.conn
                .poly_fill_rectangle(self.root, self.gc, &[r])
                .expect("fill");
            self.conn
                .get_input_focus()
                .expect("sync")
                .reply()
                .expect("sync");
        }
    }

    /// Waits for `watch` to report damage (the server's notification is asynchronous).
    /// Waits (30 s at most) until the watch wakes with nothing drawn: for the pointer.
    fn pointer_seen(watch: &mut DamageWatch) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if watch.wait(deadline.saturating_duration_since(std::time::Instant::now())) {
                return !watch.pending;
            }
        }
        false
    }

    /// The pointer wakes a waiting watch, so the capture can sleep long on a still screen:
    /// moved by another client (XTEST, as `xdotool` and the agent's input do), and given
    /// another image (a window's cursor defined under it). Nothing drawn meanwhile.
    #[test]
    fn x11_the_pointer_moving_or_changing_wakes_the_watch() {
        use x11rb::protocol::xproto::{ChangeWindowAttributesAux, ConnectionExt as _};
        use x11rb::protocol::xtest::ConnectionExt as _;
        let x = Xvfb::start();
        let mut watch = DamageWatch::connect(Some(&x.1), 0).expect("Xvfb has DAMAGE");
        assert!(watch.pointer_events, "Xvfb has XInput 2 and XFixes");
        let _ = watch.take().expect("first poll");
        assert!(!watch.pointer);
        let (conn, screen) = x11rb::connect(Some(&x.1)).expect("connect");
        let root = conn.setup().roots[screen].root;
        conn.xtest_fake_input(6, 0, 0, root, 200, 100, 0)
            .expect("motion");
        conn.flush().expect("flush");
        assert!(pointer_seen(&mut watch), "no wake for a pointer motion");
        // The wait that saw it cleared it: the next one sleeps again until the image changes.
        assert!(!watch.pointer);
        let font = conn.generate_id().expect("id");
        conn.open_font(font, b"cursor").expect("font");
        let cursor = conn.generate_id().expect("id");
        // XC_xterm (152): the I-beam.
        conn.create_glyph_cursor(
            cursor, font, font, 152, 153, 0, 0, 0, 0xffff, 0xffff, 0xffff,
        )
        .expect("cursor");
        conn.change_window_attributes(root, &ChangeWindowAttributesAux::new().cursor(cursor))
            .expect("define")
            .check()
            .expect("defined");
        assert!(pointer_seen(&mut watch), "no wake for a new pointer image");
        assert_eq!(watch.take(), Some(Vec::new()), "nothing was drawn");
    }

    fn next_damage(watch: &mut DamageWatch) -> Vec<Rect> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            watch.wait(deadline.saturating_duration_since(std::time::Instant::now()));
            let areas = watch.take().expect("damage readable");
            if !areas.is_empty() {
                return areas;
            }
            assert!(std::time::Instant::now() < deadline, "no damage reported");
        }
    }

    #[test]
    fn x11_damage_reports_exactly_what_was_drawn_and_nothing_while_still() {
        let x = Xvfb::start();
        let mut watch = DamageWatch::connect(Some(&x.1), 0).expect("Xvfb has DAMAGE");
        assert_eq!(watch.size, (640, 480));
        let _ = watch.take().expect("first poll");
        // A still screen: no damage, and no round trip to learn it; waiting for a change ends
        // at the timeout.
        for _ in 0..100 {
            assert_eq!(watch.take(), Some(Vec::new()));
        }
        let t = std::time::Instant::now();
        watch.wait(std::time::Duration::from_millis(50));
        assert!(t.elapsed() >= std::time::Duration::from_millis(45));
        assert_eq!(watch.take(), Some(Vec::new()));

        // Another client fills a rectangle on the root window.
        let painter = Painter::new(&x.1);
        painter.fill(100, 50, 20, 10);

        let areas = next_damage(&mut watch);
        assert_eq!(
            areas,
            vec![Rect {
                x: 100,
                y: 50,
                w: 20,
                h: 10
            }]
        );
        // Taken: the screen is still again.
        assert_eq!(watch.take(), Some(Vec::new()));

        // Drawing partly off screen is clipped to it.
        painter.fill(630, 470, 50, 50);
        assert_eq!(
            next_damage(&mut watch),
            vec![Rect {
                x: 630,
                y: 470,
                w: 10,
                h: 10
            }]
        );
    }

    #[test]
    fn x11_small_areas_are_read_alone_into_the_last_frame() {
        let x = Xvfb::start();
        let watch = DamageWatch::connect(Some(&x.1), 0).expect("Xvfb has DAMAGE");
        Painter::new(&x.1).fill(100, 50, 20, 10);
        let (w, h) = watch.size;
        let mut frame = vec![7u8; (w * h * 4) as usize];
        let area = Rect {
            x: 95,
            y: 45,
            w: 30,
            h: 20,
        };
        assert!(watch.read_areas(&mut frame, &[area]));
        let px = |x: u32, y: u32| {
            let i = ((y * w + x) * 4) as usize;
            frame[i..i + 4].to_vec()
        };
        // BGRX, as XShm gives it; around the fill the root's black; outside the area untouched.
        assert_eq!(px(100, 50), vec![0x00, 0x88, 0xff, 0x00]);
        assert_eq!(px(119, 59), vec![0x00, 0x88, 0xff, 0x00]);
        assert_eq!(px(96, 46), vec![0, 0, 0, 0]);
        assert_eq!(px(94, 45), vec![7; 4]);
        assert_eq!(px(125, 50), vec![7; 4]);
        // Areas beyond the screen, or a frame of the wrong size, are refused.
        let beyond = Rect {
            x: w - 5,
            y: 0,
            w: 10,
            h: 10,
        };
        assert!(!watch.read_areas(&mut frame, &[beyond]));
        assert!(!watch.read_areas(&mut frame[4..], &[area]));
    }

    /// Waits for `watch` to report moves (ConfigureNotify is asynchronous too).
    fn next_moves(watch: &mut DamageWatch) -> Vec<WindowMove> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let m = watch.moves();
            if !m.is_empty() {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "no move reported");
            watch.wait(std::time::Duration::from_millis(100));
        }
    }

    #[test]
    fn x11_moves_of_top_level_windows_are_reported_from_where_they_were() {
        use x11rb::connection::Connection as _;
        use x11rb::protocol::xproto::{ConfigureWindowAux, CreateWindowAux, WindowClass};
        let x = Xvfb::start();
        // A window that exists before the watch starts, and one made after.
        let (app, screen) = x11rb::connect(Some(&x.1)).expect("connect");
        let root = app.setup().roots[screen].root;
        let make = |at: (i16, i16)| {
            let win = app.generate_id().expect("id");
            app.create_window(
                0,
                win,
                root,
                at.0,
                at.1,
                200,
                100,
                0,
                WindowClass::INPUT_OUTPUT,
                0,
                &CreateWindowAux::new().background_pixel(0x0030_6090),
            )
            .expect("create");
            app.map_window(win).expect("map");
            app.get_input_focus().expect("sync").reply().expect("sync");
            win
        };
        let early = make((10, 20));
        let mut watch = DamageWatch::connect(Some(&x.1), 0).expect("Xvfb has DAMAGE");
        let late = make((300, 300));
        let _ = watch.take();
        assert_eq!(watch.moves(), vec![]);

        // Dragged in two steps before anyone asks: every move between its places is offered
        // (which one a capture shows depends on when it ran), twice.
        for (x, y) in [(40, 50), (70, -30)] {
            app.configure_window(early, &ConfigureWindowAux::new().x(x).y(y))
                .expect("move");
        }
        app.get_input_focus().expect("sync").reply().expect("sync");
        let m = next_moves(&mut watch);
        let mv = |from, to| WindowMove {
            from,
            to,
            size: (200, 100),
        };
        assert_eq!(m.len(), 6, "{m:?}");
        for wanted in [
            mv((10, 20), (70, -30)),
            mv((40, 50), (70, -30)),
            mv((10, 20), (40, 50)),
        ] {
            assert!(m.contains(&wanted), "{wanted:?} in {m:?}");
        }
        assert_eq!(watch.moves().len(), 6, "offered again");
        assert_eq!(watch.moves(), vec![], "then no more");

        // The window made after the watch started is followed too; a resize is not a move.
        app.configure_window(late, &ConfigureWindowAux::new().x(310).y(290))
            .expect("move");
        app.configure_window(early, &ConfigureWindowAux::new().width(150))
            .expect("resize");
        app.get_input_focus().expect("sync").reply().expect("sync");
        let m = next_moves(&mut watch);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.contains(&mv((300, 300), (310, 290))));
    }

    #[test]
    fn a_still_screen_is_compared_in_full_rarely_a_busy_one_every_two_seconds() {
        let t0 = std::time::Instant::now();
        let s = |n: u64| t0 + std::time::Duration::from_secs(n);
        assert!(verify_due(None, None, t0));
        // Drawn a moment ago: every 2 s.
        assert!(!verify_due(Some(s(100)), Some(s(99)), s(101)));
        assert!(verify_due(Some(s(100)), Some(s(99)), s(102)));
        // Nothing drawn for over 10 s: every 30 s.
        assert!(!verify_due(Some(s(100)), Some(s(80)), s(102)));
        assert!(!verify_due(Some(s(100)), None, s(129)));
        assert!(verify_due(Some(s(100)), None, s(130)));
        // A clock read earlier than before is not a reason to compare.
        assert!(!verify_due(Some(s(100)), None, s(50)));
    }

    #[test]
    fn damage_is_clipped_to_the_screen() {
        let r = |x, y, width, height| Rectangle {
            x,
            y,
            width,
            height,
        };
        let size = (1280, 800);
        assert_eq!(
            clip(&r(10, 20, 30, 40), size),
            Some(Rect {
                x: 10,
                y: 20,
                w: 30,
                h: 40
            })
        );
        assert_eq!(
            clip(&r(-10, -5, 30, 40), size),
            Some(Rect {
                x: 0,
                y: 0,
                w: 20,
                h: 35
            })
        );
        assert_eq!(
            clip(&r(1270, 790, 100, 100), size),
            Some(Rect {
                x: 1270,
                y: 790,
                w: 10,
                h: 10
            })
        );
        assert_eq!(clip(&r(1280, 0, 10, 10), size), None);
        assert_eq!(clip(&r(-100, 0, 50, 10), size), None);
        assert_eq!(clip(&r(0, 0, 0, 10), size), None);
        assert_eq!(
            clip(&r(i16::MIN, i16::MIN, u16::MAX, u16::MAX), size),
            Some(Rect {
                x: 0,
                y: 0,
                w: 1280,
                h: 800
            })
        );
    }
}
